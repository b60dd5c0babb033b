"""Properties of the member decider's points ledger over any run of its commands.

Invoice choices, earnings (for the invoice chosen, repeated or not), redemptions of any size
(repeated or not), checkout holds (held, spent, released, lapsed), refunded orders' points
taken back, expiries and tier changes arrive in any order while time moves forward. After
every step: the balance is never negative and balance + held equals earned - redeemed -
expired - taken back; a hold is spent at most once; no lot holds a lapsed or empty rest after an expiry ran; replaying the decided
events rebuilds the state; every event is loggable. And price-protection claims of any
shape: each line refunded at most once, by exactly the drop, within its tier's period.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from saleday.actors.decider import InvalidCommand, Rejection, fold
from saleday.actors.member import (
    DAY_MS,
    PROTECTION_DAYS,
    TIERS,
    ChangeTier,
    ChooseInvoice,
    ClaimPriceProtection,
    EarnPoints,
    ExpirePoints,
    HoldPoints,
    InsufficientPoints,
    PointsEarned,
    PointsExpired,
    PointsHeld,
    PointsNotHeld,
    PointsRedeemed,
    PointsReleased,
    PointsTakenBack,
    PriceProtectionRefunded,
    RedeemPoints,
    ReleasePoints,
    SpendPoints,
    TakeBackPoints,
    TierChanged,
    decide,
    evolve,
    member_decider,
)
from saleday.events.chain import canonical
from saleday.events.registry import registry

USER = "u"
T0 = 1_762_790_400_000

STEPS = st.one_of(
    st.tuples(st.just("tick"), st.integers(0, 200 * DAY_MS)),
    st.tuples(st.just("earn"), st.sampled_from(("o1", "o2", "o3", "o4", "o5")),
              st.integers(0, 50_000), st.integers(0, 5), st.integers(1, 400)),
    st.tuples(st.just("invoice"), st.sampled_from(("o1", "o2", "o3", "o4", "o5")),
              st.sampled_from(("none", "paper", "electronic"))),
    st.tuples(st.just("redeem"), st.sampled_from(("r1", "r2", "r3", "r4")),
              st.integers(1, 1_500)),
    st.tuples(st.just("expire")),
    st.tuples(st.just("hold"), st.sampled_from(("h1", "h2", "h3")), st.integers(1, 1_500),
              st.integers(1, 40 * DAY_MS)),
    st.tuples(st.just("spend"), st.sampled_from(("h1", "h2", "h3"))),
    st.tuples(st.just("release"), st.sampled_from(("h1", "h2", "h3"))),
    st.tuples(st.just("tier"), st.sampled_from(("regular", "silver", "gold", "diamond"))),
    st.tuples(st.just("take_back"), st.sampled_from(("o1", "o2", "o3", "o4", "o5"))),
)


def command_for(step: tuple, now: int, state):
    match step:
        case ("earn", ref, cents, rate, days):
            return EarnPoints(user=USER, order_ref=ref, amount_cents=cents,
                              invoice=state.invoices.get(ref, "none"), points_per_yuan=rate,
                              valid_days=days, now=now)
        case ("invoice", ref, invoice):
            return ChooseInvoice(user=USER, order_ref=ref, invoice=invoice, title="", tax_id="",
                                 now=now)
        case ("redeem", rid, points):
            return RedeemPoints(user=USER, redemption_id=rid, points=points, now=now)
        case ("expire",):
            return ExpirePoints(user=USER, now=now)
        case ("hold", hid, points, span):
            return HoldPoints(user=USER, hold_id=hid, points=points, until=now + span, now=now)
        case ("spend", hid):
            return SpendPoints(user=USER, hold_id=hid, now=now)
        case ("release", hid):
            return ReleasePoints(user=USER, hold_id=hid, reason="cancel", now=now)
        case ("tier", tier):
            return ChangeTier(user=USER, tier=tier, rule="prop", now=now)
        case ("take_back", ref):
            return TakeBackPoints(user=USER, order_ref=ref, reason="refunded", now=now)
    raise AssertionError(step)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(STEPS, max_size=40))
def test_the_points_balance_is_never_negative_and_adds_up(steps):
    """Balance + held = earned - redeemed - expired - taken back, balance >= 0, after any
    run (with holds spent once or given back, refunded orders closed once and earning
    nothing after), and the log rebuilds it."""
    state = member_decider.initial(USER)
    log: list = []
    now = T0
    totals = {"earned": 0, "redeemed": 0, "expired": 0, "taken_back": 0}
    spent: set[str] = set()
    for step in steps:
        if step[0] == "tick":
            now += step[1]
            continue
        result = decide(command_for(step, now, state), state)
        if isinstance(result, Rejection):
            assert isinstance(result, InsufficientPoints | InvalidCommand | PointsNotHeld), result
            if isinstance(result, InsufficientPoints):
                assert result.wanted > result.balance >= 0
            continue
        for event in result:
            name, _, data = registry.encode(event)
            canonical(data, name)
            state = evolve(state, event)
            log.append(event)
            match event:
                case PointsEarned():
                    assert event.order_ref not in state.taken_back, "earned after its refund"
                    totals["earned"] += event.points
                case PointsTakenBack():
                    assert 0 <= event.points <= event.earned
                    totals["taken_back"] += event.points
                case PointsRedeemed():
                    totals["redeemed"] += event.points
                    assert sum(p for _, p in event.taken) == event.points
                    assert event.redemption_id not in spent   # a hold is spent once
                    spent.add(event.redemption_id)
                case PointsHeld() | PointsReleased():
                    assert sum(p for _, p, _ in event.taken) == event.points > 0
                case PointsExpired():
                    assert event.expires_at <= now and event.points > 0
                    totals["expired"] += event.points
        assert state.balance >= 0
        assert all(points > 0 for _, points, _ in state.lots)
        assert all(hold[0] > 0 for hold in state.holds.values())
        assert state.balance + state.held == (state.earned - state.redeemed - state.expired
                                              - totals["taken_back"])
        assert sum(state.taken_back.values()) == totals["taken_back"]
        assert (state.earned, state.redeemed, state.expired) == (
            totals["earned"], totals["redeemed"], totals["expired"])
        if step[0] in ("expire", "redeem"):
            assert all(expires_at > now for _, _, expires_at in state.lots)
    assert fold(member_decider, USER, log) == state


CLAIMS = st.lists(st.tuples(
    st.sampled_from(("o1", "o2")), st.sampled_from(("s1", "s2")),
    st.lists(st.integers(0, 20_000), min_size=1, max_size=4).map(tuple),
    st.integers(1, 25_000), st.integers(-5, 400), st.sampled_from(TIERS)), max_size=25)


@settings(max_examples=150, deadline=None)
@given(claims=CLAIMS)
def test_protection_refunds_each_line_once_and_never_above_the_drop(claims):
    """Whatever claims arrive, each line is refunded at most once, by exactly the drop below
    each unit paid, only within the period of the tier when paid, never above what was paid."""
    state = member_decider.initial(USER)
    refunded: set[tuple[str, str]] = set()
    for ref, sku, units, price, days_after, tier in claims:
        if tier != state.tier:
            state = evolve(state, TierChanged(user=USER, previous=state.tier, tier=tier,
                                              rule="p", changed_at=T0))
        command = ClaimPriceProtection(user=USER, order_ref=ref, sku=sku, unit_prices=units,
                                       paid_at=T0 + 1, price_cents=price,
                                       dropped_at=T0 + 1 + days_after * DAY_MS,
                                       windows=PROTECTION_DAYS, now=T0)
        result = decide(command, state)
        if isinstance(result, Rejection):
            continue
        (event,) = result
        assert isinstance(event, PriceProtectionRefunded)
        assert (ref, sku) not in refunded
        refunded.add((ref, sku))
        assert 0 < event.refund_cents == sum(max(0, u - price) for u in units) <= sum(units)
        assert 0 <= days_after <= dict(PROTECTION_DAYS)[state.tier_at(T0 + 1)]
        state = evolve(state, event)
