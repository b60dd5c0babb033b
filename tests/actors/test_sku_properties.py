"""Properties of the SKU decider over any sequence of commands, checked by folding its events.

Hypothesis drives random restocks, sale configurations, reservations, confirmations,
releases and expiries, returns of sold units (a refunded order), and presale set-asides
sold or returned, on a few SKUs while time
moves forward. After every step the
invariants the audit proves must hold, and every decided event must be loggable.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from saleday.actors.decider import InvalidCommand, Rejection, fold
from saleday.actors.sku import (
    AddStock,
    ConfigureSale,
    ConfirmReservation,
    ExpireReservations,
    NotSold,
    ReleaseReservation,
    ReservationConfirmed,
    ReservationExpired,
    ReservationReleased,
    ReserveStock,
    ReturnSetAside,
    ReturnSoldUnits,
    SellSetAside,
    SetAsideReturned,
    SetAsideSold,
    SetAsideStock,
    SkuState,
    SoldUnitsReturned,
    StockAdded,
    StockReserved,
    StockSetAside,
    UnknownSku,
    decide,
    evolve,
    sku_decider,
)
from saleday.events.chain import seal
from saleday.events.codec import decode_commit
from saleday.events.envelope import ZERO_HASH
from saleday.events.registry import registry

SKUS = st.sampled_from(("sku-a", "sku-b", "sku-c"))
USERS = st.sampled_from(("u1", "u2", "u3"))
RESERVATION_IDS = st.sampled_from(("r1", "r2", "r3", "r4", "r5", "r6"))
PRICES = st.integers(0, 10_000)
BOUNDED_TIERS = st.lists(st.tuples(st.integers(0, 4), PRICES), max_size=2)
"""Mostly valid bounded tiers; units 0 makes the configuration invalid, on purpose."""
TIERS = st.builds(lambda bounded, last: (*bounded, (0, last)), BOUNDED_TIERS, PRICES)


def expected_tiers(state: SkuState, qty: int) -> list[int]:
    """The tier of each of the next `qty` units, worked out unit by unit."""
    taken = list(state.tier_taken)
    last = len(state.tiers) - 1
    out = []
    for _ in range(qty):
        tier = next(i for i, (units, _) in enumerate(state.tiers) if i == last or taken[i] < units)
        taken[tier] += 1
        out.append(tier)
    return out


class Ledger:
    """What the log says about one SKU, counted from the events alone, not from `evolve`."""

    def __init__(self) -> None:
        self.events: list = []
        self.stocked = 0
        self.sold = 0
        self.held: dict[str, StockReserved] = {}
        self.per_user: Counter[str] = Counter()
        self.set_aside: dict[str, int] = {}
        self.hold_sold = 0
        """Units sold from presale holds (outside the tiers)."""
        self.sold_res: dict[str, StockReserved] = {}
        """Confirmed reservations whose units may still be returned."""
        self.returned: set[str] = set()

    def record(self, event) -> None:
        self.events.append(event)
        match event:
            case StockAdded():
                self.stocked += event.qty
            case StockReserved():
                self.held[event.reservation_id] = event
                self.per_user[event.user] += event.qty
            case ReservationConfirmed():
                sold = self.sold_res[event.reservation_id] = self.held.pop(event.reservation_id)
                self.sold += sold.qty
            case SoldUnitsReturned():
                sold = self.sold_res.pop(event.reservation_id)
                self.sold -= sold.qty
                self.per_user[sold.user] -= sold.qty
                self.returned.add(event.reservation_id)
            case ReservationReleased() | ReservationExpired():
                reservation = self.held.pop(event.reservation_id)
                self.per_user[reservation.user] -= reservation.qty
            case StockSetAside():
                self.set_aside[event.hold_id] = event.qty
            case SetAsideSold():
                self.sold += self.set_aside.pop(event.hold_id)
                self.hold_sold += event.qty
            case SetAsideReturned():
                self.set_aside.pop(event.hold_id)

    @property
    def reserved(self) -> int:
        return sum(r.qty for r in self.held.values())


class SkuMachine(RuleBasedStateMachine):
    """A few SKUs driven by random commands, with time moving forward."""

    reservations = Bundle("reservations")
    """(sku, reservation id) of reservations made, to confirm or release later."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000
        self.states: dict[str, SkuState] = {}
        self.ledgers: dict[str, Ledger] = {}

    def run(self, command) -> list | Rejection:
        """Decide `command`, check each event against the state it applies to, and fold it."""
        sku = command.sku
        state = self.states.get(sku) or sku_decider.initial(sku)
        ledger = self.ledgers.setdefault(sku, Ledger())
        result = decide(command, state)
        if isinstance(result, Rejection):
            assert type(result) is not Rejection
            return result
        assert_loggable(sku, result)
        for event in result:
            check_event(state, ledger, event)
            state = evolve(state, event)
            ledger.record(event)
        self.states[sku] = state
        return result

    @initialize(stock=st.lists(st.integers(0, 12), min_size=3, max_size=3),
                tiers=st.lists(TIERS, min_size=3, max_size=3), limit=st.integers(0, 4))
    def open_sales(self, stock: list[int], tiers: list, limit: int) -> None:
        """Most runs start with the SKUs stocked and on sale, so reservations get going."""
        for sku, qty, sku_tiers in zip(("sku-a", "sku-b", "sku-c"), stock, tiers):
            self.run(AddStock(sku=sku, qty=qty, now=self.now))
            self.run(ConfigureSale(sku=sku, tiers=sku_tiers, per_user_limit=limit,
                                   start=self.now, end=self.now + 5_000, now=self.now))

    @rule(ms=st.integers(0, 150), expire_all=st.booleans())
    def tick(self, ms: int, expire_all: bool) -> None:
        """Time passes; like a shard's periodic tick, maybe expire what is due everywhere."""
        self.now += ms
        if expire_all:
            for sku in list(self.states):
                self.expire_due(sku)

    @rule(sku=SKUS, qty=st.sampled_from((5, 1, 3, 8, 0, -1)))
    def add_stock(self, sku: str, qty: int) -> None:
        self.run(AddStock(sku=sku, qty=qty, now=self.now))

    @rule(sku=SKUS, tiers=TIERS, limit=st.integers(0, 4), opens=st.integers(-1_000, 500),
          length=st.integers(-10, 3_000))
    def configure_sale(self, sku: str, tiers, limit: int, opens: int, length: int) -> None:
        start = self.now + opens
        self.run(ConfigureSale(sku=sku, tiers=tiers, per_user_limit=limit, start=start,
                               end=start + length, now=self.now))

    @rule(target=reservations, rid=RESERVATION_IDS, user=USERS, sku=SKUS,
          qty=st.sampled_from((1, 2, 3, 4, 0)), ttl=st.sampled_from((1, 20, 100, 600)))
    def reserve(self, rid: str, user: str, sku: str, qty: int, ttl: int):
        result = self.run(ReserveStock(reservation_id=rid, user=user, sku=sku, qty=qty,
                                       now=self.now, deadline=self.now + ttl))
        return multiple() if isinstance(result, Rejection) else (sku, rid, user)

    @rule(held=reservations)
    def confirm_held(self, held: tuple[str, str, str]) -> None:
        sku, rid, _ = held
        self.run(ConfirmReservation(reservation_id=rid, sku=sku, now=self.now))

    @rule(held=reservations)
    def release_held(self, held: tuple[str, str, str]) -> None:
        sku, rid, user = held
        self.run(ReleaseReservation(reservation_id=rid, sku=sku, user=user, reason="payment_failed",
                                    now=self.now))

    @rule(held=reservations)
    def return_sold(self, held: tuple[str, str, str]) -> None:
        """A refund returns a confirmed reservation's units once; anything else is refused."""
        sku, rid, _ = held
        before = self.states[sku]
        result = self.run(ReturnSoldUnits(reservation_id=rid, sku=sku, reason="refunded",
                                          now=self.now))
        if isinstance(result, Rejection):
            assert isinstance(result, (NotSold, UnknownSku)), result
            assert rid not in before.confirmed
        elif not result:
            assert rid in before.returned

    @rule(sku=SKUS)
    def expire_due(self, sku: str) -> None:
        events = self.run(ExpireReservations(sku=sku, now=self.now))
        state = self.states.get(sku) or sku_decider.initial(sku)
        assert all(r.deadline > self.now for r in state.reservations.values()), \
            "a due reservation survived its expiry"
        deadlines = [(e.deadline, e.reservation_id) for e in events]
        assert deadlines == sorted(deadlines)

    @rule(hold=st.sampled_from(("h1", "h2", "h3")), user=USERS, sku=SKUS,
          qty=st.sampled_from((1, 2, 5, 0)))
    def set_aside(self, hold: str, user: str, sku: str, qty: int) -> None:
        self.run(SetAsideStock(sku=sku, hold_id=hold, user=user, qty=qty, now=self.now))

    @rule(hold=st.sampled_from(("h1", "h2", "h3")), sku=SKUS, sell=st.booleans())
    def close_hold(self, hold: str, sku: str, sell: bool) -> None:
        self.run(SellSetAside(sku=sku, hold_id=hold, now=self.now) if sell else
                 ReturnSetAside(sku=sku, hold_id=hold, reason="forfeited", now=self.now))

    @rule(sku=SKUS, qty=st.sampled_from(["1", 1.0, True, None]))
    def malformed_reserve(self, sku: str, qty) -> None:
        result = self.run(ReserveStock(reservation_id="r1", user="u1", sku=sku, qty=qty,
                                       now=self.now, deadline=self.now + 1))
        assert isinstance(result, InvalidCommand)

    @invariant()
    def stock_is_conserved(self) -> None:
        for sku, state in self.states.items():
            ledger = self.ledgers[sku]
            assert min(state.available, state.reserved, state.set_aside, state.sold) >= 0
            assert (state.available + state.reserved + state.set_aside + state.sold
                    == state.stocked)
            assert (state.stocked, state.reserved, state.sold) == (
                ledger.stocked, ledger.reserved, ledger.sold)
            assert state.set_aside == sum(ledger.set_aside.values())
            assert {h: q for h, (_, q) in state.set_asides.items()} == ledger.set_aside
            assert dict(state.per_user) == {u: n for u, n in ledger.per_user.items() if n}
            assert set(state.reservations) == set(ledger.held)

    @invariant()
    def tiers_hold_exactly_the_taken_units(self) -> None:
        for sku, state in self.states.items():   # presale holds are outside the tiers
            assert sum(state.tier_taken) == state.reserved + state.sold - \
                self.ledgers[sku].hold_sold
            assert len(state.tier_taken) == len(state.tiers)
            for (units, _), taken in zip(state.tiers[:-1], state.tier_taken):
                assert 0 <= taken <= units
            assert all(taken >= 0 for taken in state.tier_taken)

    @invariant()
    def replaying_the_log_gives_the_same_state(self) -> None:
        for sku, state in self.states.items():
            assert fold(sku_decider, sku, self.ledgers[sku].events) == state


def check_event(state: SkuState, ledger: Ledger, event) -> None:
    """The rules an auditor checks of one event against the state it was decided in."""
    match event:
        case StockReserved():
            assert event.qty == len(event.unit_prices) == len(event.tiers) >= 1
            assert event.qty <= state.available, "oversold"
            assert list(event.tiers) == expected_tiers(state, event.qty)
            assert all(price == state.tiers[tier][1]
                       for price, tier in zip(event.unit_prices, event.tiers))
            assert state.start <= event.reserved_at < state.end
            if state.per_user_limit:
                assert ledger.per_user[event.user] + event.qty <= state.per_user_limit
        case ReservationConfirmed():
            assert event.amount_cents == sum(ledger.held[event.reservation_id].unit_prices)
        case SoldUnitsReturned():
            sold = ledger.sold_res[event.reservation_id]
            assert (event.qty, event.user) == (sold.qty, sold.user)
            assert event.amount_cents == sum(sold.unit_prices)
            assert event.reservation_id not in ledger.returned, "returned twice"
        case StockSetAside():
            assert 1 <= event.qty <= state.available, "oversold"
            assert event.hold_id not in state.set_aside_closed
        case SetAsideSold() | SetAsideReturned():
            assert ledger.set_aside[event.hold_id] == event.qty, "a hold moved other units"


def assert_loggable(sku: str, events: list) -> None:
    """The events seal into a commit and decode back from its bytes unchanged."""
    if not events:
        return
    new = [registry.new_event(e, command_id=f"cmd-{i}", recorded_at=0)
           for i, e in enumerate(events)]
    commit = seal(f"sku|{sku}", 0, ZERO_HASH, new)
    envelopes = decode_commit(commit.stream, commit.first_version, commit.last_version,
                              commit.prev_hash, commit.hashes, commit.body)
    assert [registry.decode(env) for env in envelopes] == events


SkuMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
TestSkuProperties = SkuMachine.TestCase
