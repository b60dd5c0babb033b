"""The member decider and a refunded order: what is left of its points is taken back once,
and it earns and is protected no more (given/when/then)."""

from __future__ import annotations

from saleday.actors.member import (
    DAY_MS,
    PROTECTION_DAYS,
    ClaimPriceProtection,
    EarnPoints,
    NotProtected,
    PointsEarned,
    PointsRedeemed,
    PointsTakenBack,
    TakeBackPoints,
    TierChanged,
    member_decider,
)
from tests.actors.given import given

USER = "alice"
T0 = 1_762_790_400_000
EARNED = PointsEarned(user=USER, order_ref="o1", amount_cents=10_099, invoice="none",
                      points=100, earned_at=T0, expires_at=T0 + 365 * DAY_MS)
OTHER = PointsEarned(user=USER, order_ref="o0", amount_cents=5_000, invoice="none",
                     points=50, earned_at=T0, expires_at=T0 + 30 * DAY_MS)


def take_back(ref: str = "o1") -> TakeBackPoints:
    return TakeBackPoints(user=USER, order_ref=ref, reason="hold_expired", now=T0 + 10)


def taken_back(points: int, earned: int = 100, ref: str = "o1") -> PointsTakenBack:
    return PointsTakenBack(user=USER, order_ref=ref, earned=earned, points=points,
                           reason="hold_expired", taken_back_at=T0 + 10)


def test_a_refunded_order_gives_back_the_points_it_earned():
    """The order's whole lot leaves the balance; other lots stay."""
    g = given(member_decider, OTHER, EARNED)
    g.when(take_back()).then(taken_back(100))
    after = given(member_decider, OTHER, EARNED, taken_back(100)).state
    assert after.balance == 50 and after.lots == (("o0", 50, T0 + 30 * DAY_MS),)
    assert after.balance + after.held == after.earned - after.redeemed - after.expired - 100


def test_points_already_spent_stay_spent():
    """Of 100 points earned, 70 spent (the other lot first, then 20 of this one): the 80
    left of the order's lot are taken back, nothing from elsewhere."""
    spent = PointsRedeemed(user=USER, redemption_id="r1", points=70,
                           taken=(("o0", 50), ("o1", 20)), redeemed_at=T0 + 1)
    given(member_decider, OTHER, EARNED, spent).when(take_back()).then(taken_back(80))


def test_an_order_that_earned_nothing_is_still_closed():
    """A refunded order with no points records a take-back of 0, and then earns nothing."""
    given(member_decider).when(take_back()).then(taken_back(0, earned=0))
    given(member_decider, taken_back(0, earned=0)).when(
        EarnPoints(user=USER, order_ref="o1", amount_cents=10_099, invoice="none",
                   points_per_yuan=1, valid_days=365, now=T0 + 20)).then()


def test_a_take_back_happens_once():
    """A second take-back of the same order decides nothing."""
    given(member_decider, EARNED, taken_back(100)).when(take_back()).then()


def test_price_protection_refuses_a_refunded_order():
    """A diamond member's drop claim on a refunded order is `NotProtected` (order_refunded)."""
    diamond = TierChanged(user=USER, previous="regular", tier="diamond", rule="r",
                          changed_at=T0)
    claim = ClaimPriceProtection(user=USER, order_ref="o1", sku="sku-1", unit_prices=(9_900,),
                                 paid_at=T0 + 1, price_cents=7_000, dropped_at=T0 + DAY_MS,
                                 windows=PROTECTION_DAYS, now=T0 + DAY_MS)
    assert given(member_decider, diamond).when(claim).events
    given(member_decider, diamond, taken_back(0, earned=0)).when(claim).then_rejected(
        NotProtected, reason="order_refunded")
