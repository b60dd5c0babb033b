"""The presale decider: deposits in their window, balances in theirs, forfeits after."""

from __future__ import annotations

from hypothesis import given as hgiven
from hypothesis import settings
from hypothesis import strategies as st

from saleday.actors.decider import InvalidCommand, Rejection
from saleday.actors.presale import (
    BalancePaid,
    DepositForfeited,
    DepositNotPayable,
    DepositPaid,
    ForfeitDeposits,
    OpenPresale,
    PayBalance,
    PayDeposit,
    PresaleClosed,
    PresaleOpened,
    PresaleSoldOut,
    decide,
    evolve,
    next_deadline,
    presale_decider,
)
from saleday.events.chain import canonical
from saleday.events.registry import registry
from tests.actors.given import given

SKU = "sku-p"
D0, B0, B1 = 1_000, 5_000, 9_000   # deposits from, balance from, balance until
OPENED = PresaleOpened(sku=SKU, units=10, deposit_cents=5_000, deposit_value_cents=15_000,
                       price_cents=39_900, deposits_from=D0, balance_from=B0, balance_until=B1)


def deposit(did: str = "d1", qty: int = 2, now: int = D0 + 1, user: str = "ann") -> PayDeposit:
    return PayDeposit(sku=SKU, deposit_id=did, user=user, qty=qty, now=now)


def deposited(did: str = "d1", qty: int = 2, at: int = D0 + 1, user: str = "ann") -> DepositPaid:
    return DepositPaid(sku=SKU, deposit_id=did, user=user, qty=qty, deposit_cents=5_000 * qty,
                       paid_at=at)


def balance(did: str = "d1", amount: int = 2 * 24_900, now: int = B0,
            pid: str = "p1") -> PayBalance:
    return PayBalance(sku=SKU, deposit_id=did, payment_id=pid, amount_cents=amount, now=now)


def test_a_presale_opens_on_consistent_terms_only():
    """A deposit worth more than it costs but not more than the price, windows in order."""
    open_ = OpenPresale(sku=SKU, units=10, deposit_cents=5_000, deposit_value_cents=15_000,
                        price_cents=39_900, deposits_from=D0, balance_from=B0, balance_until=B1,
                        now=0)
    given(presale_decider).when(open_).then(OPENED)
    given(presale_decider, OPENED).when(open_).then()
    for bad in ({"deposit_value_cents": 50_000}, {"deposit_cents": 0}, {"balance_from": D0},
                {"units": 0}):
        fields = {f: getattr(open_, f) for f in open_.__dataclass_fields__} | bad
        given(presale_decider).when(OpenPresale(**fields)).then_rejected(InvalidCommand)


def test_a_deposit_holds_units_in_the_deposit_window():
    """A deposit pays deposit x qty and holds its units for the holder."""
    then = given(presale_decider, OPENED).when(deposit()).then(deposited())
    assert then.state.held == 2 and then.state.left == 8
    given(presale_decider, OPENED, deposited()).when(deposit()).then()


def test_deposits_outside_their_window_or_beyond_the_units_are_refused():
    """Before it opens, once the balance window starts, or past the units: refused."""
    given(presale_decider).when(deposit()).then_rejected(PresaleClosed, window="deposit")
    given(presale_decider, OPENED).when(deposit(now=D0 - 1)).then_rejected(PresaleClosed)
    given(presale_decider, OPENED).when(deposit(now=B0)).then_rejected(PresaleClosed)
    given(presale_decider, OPENED, deposited(qty=9)).when(deposit("d2", qty=2)) \
        .then_rejected(PresaleSoldOut, left=1)


def test_the_balance_pays_the_price_less_the_deposit_value_in_its_window():
    """¥50 counting as ¥150 on ¥399: the balance is ¥249 a unit, paid once."""
    given(presale_decider, OPENED, deposited()).when(balance()).then(BalancePaid(
        sku=SKU, deposit_id="d1", payment_id="p1", qty=2, balance_cents=49_800, paid_at=B0))
    paid = BalancePaid(sku=SKU, deposit_id="d1", payment_id="p1", qty=2, balance_cents=49_800,
                       paid_at=B0)
    given(presale_decider, OPENED, deposited(), paid).when(balance()).then()
    given(presale_decider, OPENED, deposited(), paid).when(balance(pid="p2")) \
        .then_rejected(DepositNotPayable, reason="already_paid")
    given(presale_decider, OPENED, deposited()).when(balance(amount=1)) \
        .then_rejected(DepositNotPayable, reason="wrong_amount")
    given(presale_decider, OPENED, deposited()).when(balance(now=B0 - 1)) \
        .then_rejected(PresaleClosed, window="balance")


def test_unpaid_deposits_are_forfeited_when_the_balance_window_closes_and_not_before():
    """At balance_until the unpaid deposit is kept and its units released; never earlier."""
    paid = BalancePaid(sku=SKU, deposit_id="d1", payment_id="p1", qty=2, balance_cents=49_800,
                       paid_at=B0)
    past = (OPENED, deposited(), deposited("d2", qty=3, user="bo"), paid)
    given(presale_decider, *past).when(ForfeitDeposits(sku=SKU, now=B1 - 1)).then()
    then = given(presale_decider, *past).when(ForfeitDeposits(sku=SKU, now=B1))
    then.then(DepositForfeited(sku=SKU, deposit_id="d2", qty=3, deposit_cents=15_000,
                               forfeited_at=B1))
    assert then.state.held == 2 and next_deadline(then.state) is None
    assert next_deadline(given(presale_decider, *past).state) == B1
    given(presale_decider, *past, *then.events).when(balance("d2", amount=3 * 24_900,
                                                             now=B1 - 1)) \
        .then_rejected(DepositNotPayable, reason="forfeited")


def test_presale_events_are_loggable_under_presales_names():
    """Each event encodes under a stable presales.* wire name."""
    for event in (OPENED, deposited(), DepositForfeited(sku=SKU, deposit_id="d", qty=1,
                                                        deposit_cents=1, forfeited_at=1)):
        name, _, data = registry.encode(event)
        assert name.startswith("presales.")
        canonical(data, name)


STEPS = st.lists(st.one_of(
    st.tuples(st.just("deposit"), st.sampled_from("abcdef"), st.integers(0, 4)),
    st.tuples(st.just("balance"), st.sampled_from("abcdef"), st.booleans()),
    st.tuples(st.just("forfeit")),
    st.tuples(st.just("tick"), st.integers(0, 2_500))), max_size=40)


@settings(max_examples=150, deadline=None)
@hgiven(steps=STEPS)
def test_money_and_units_add_up_over_any_run(steps):
    """Deposits + balances = paid in, forfeits only after the window, held <= units."""
    state, now = evolve(presale_decider.initial(SKU), OPENED), 0
    money_in = deposits = balances = forfeited_units = deposited_units = 0
    for step in steps:
        if step[0] == "tick":
            now += step[1]
            continue
        match step:
            case ("deposit", did, qty):
                command = deposit(did, qty=qty, now=now)
            case ("balance", did, right):
                known = state.deposits.get(did)
                amount = state.balance_of(known[1]) if known and right else 7
                command = balance(did, amount=amount, now=now, pid=f"p-{did}")
            case _:
                command = ForfeitDeposits(sku=SKU, now=now)
        result = decide(command, state)
        if isinstance(result, Rejection):
            continue
        for event in result:
            canonical(registry.encode(event)[2], registry.encode(event)[0])
            match event:
                case DepositPaid():
                    assert D0 <= event.paid_at < B0
                    deposits += event.deposit_cents
                    money_in += event.deposit_cents
                    deposited_units += event.qty
                case BalancePaid():
                    assert B0 <= event.paid_at < B1
                    balances += event.balance_cents
                    money_in += event.balance_cents
                case DepositForfeited():
                    assert event.forfeited_at >= B1
                    forfeited_units += event.qty
            state = evolve(state, event)
        assert deposits + balances == money_in
        assert 0 <= state.held == deposited_units - forfeited_units <= state.units
        assert state.unpaid == sum(s == "held" for _, _, s in state.deposits.values())
