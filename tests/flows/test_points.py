"""Following the log for points: paid orders earn once, refunded ones earn nothing and
take back what they earned."""

from __future__ import annotations

from types import SimpleNamespace

from saleday.actors.member import EarnPoints, TakeBackPoints
from saleday.actors.order import CheckoutStarted, OrderRefunded, PaymentCaptured
from saleday.flows.points import PointsEarning

T0 = 1_762_790_400_000


def env(at: int) -> SimpleNamespace:
    return SimpleNamespace(stream="order-000", version=0, recorded_at=at)


def started(oid: str) -> tuple:
    return env(T0), CheckoutStarted(order_id=oid, user="ann", lines=(("sku-1", 1),),
                                    coupon_id="", payment_deadline=T0 + 60_000, started_at=T0)


def paid(oid: str) -> tuple:
    return env(T0 + 5), PaymentCaptured(order_id=oid, payment_id=f"p-{oid}", amount_cents=9_900)


def refunded(oid: str) -> tuple:
    return env(T0 + 9), OrderRefunded(order_id=oid, payment_id=f"p-{oid}", amount_cents=9_900,
                                      reason="hold_expired")


def seen(earning: PointsEarning, *events: tuple) -> PointsEarning:
    for e, event in events:
        earning.observe(e, event)
    return earning


def test_a_refunded_order_earns_nothing_and_is_taken_back():
    """Of two paid orders, the refunded one gets `TakeBackPoints` at its refund time, not
    `EarnPoints`; the other earns."""
    earning = seen(PointsEarning(), started("o1"), paid("o1"), started("o2"), paid("o2"),
                   refunded("o2"))
    claims = earning.claims()
    assert [cid for cid, _ in claims] == ["points:o1", "points-back:o2"]
    assert isinstance(claims[0][1], EarnPoints)
    assert claims[1][1] == TakeBackPoints(user="ann", order_ref="o2", reason="hold_expired",
                                          now=T0 + 9)


def test_a_live_follower_takes_back_what_it_earned_before_the_refund():
    """A follower that earned for an order, then sees its refund, gives the take-back once."""
    earning = seen(PointsEarning(), started("o1"), paid("o1"))
    assert [cid for cid, _ in earning.new_claims()] == ["points:o1"]
    seen(earning, refunded("o1"))
    assert [cid for cid, _ in earning.new_claims()] == ["points-back:o1"]
    assert earning.new_claims() == []
