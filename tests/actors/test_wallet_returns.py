"""The wallet and a refunded order: the coupon it redeemed goes back, held, if still
valid, once (given/when/then)."""

from __future__ import annotations

from saleday.actors.session import (
    CouponExpired,
    CouponLocked,
    CouponNotFound,
    CouponNotRedeemed,
    CouponReturned,
    ExpireCoupons,
    LockVoided,
    ReturnCoupon,
    deadline_of,
    session_decider,
)
from tests.actors.given import given
from tests.actors.test_session import (
    USER,
    VALID_UNTIL,
    lapsed,
    lock,
    locked,
    received,
    redeemed,
)

NOW = 20_000


def give_back(order: str = "o1", now: int = NOW) -> ReturnCoupon:
    return ReturnCoupon(user=USER, coupon_id="c1", order_id=order, now=now)


def returned(order: str = "o1") -> CouponReturned:
    return CouponReturned(user=USER, coupon_id="c1", order_id=order, value_cents=500,
                          valid_until=VALID_UNTIL, returned_at=NOW)


REDEEMED = (received(), locked(), redeemed())


def test_a_refunded_orders_coupon_goes_back_to_the_wallet():
    """A coupon redeemed by the refunded order and still valid is held again, and its
    lapse is timed again at its validity."""
    then = given(session_decider, *REDEEMED).when(give_back()).then(returned())
    coupon = then.state.coupons["c1"]
    assert (coupon.status, coupon.order_id) == ("held", "")
    assert deadline_of(returned()) == VALID_UNTIL


def test_a_returned_coupon_serves_another_order_but_not_the_refunded_one():
    """Another order may lock the returned coupon; the refunded order may not again."""
    g = given(session_decider, *REDEEMED, returned())
    g.when(lock(order="o2", now=NOW + 1)).then(
        CouponLocked(user=USER, coupon_id="c1", order_id="o2", until=30_000))
    g.when(lock(order="o1", now=NOW + 1)).then_rejected(LockVoided)


def test_a_coupon_goes_back_once():
    """A second return for the same order decides nothing."""
    given(session_decider, *REDEEMED, returned()).when(give_back()).then()


def test_a_coupon_past_its_validity_stays_redeemed():
    """At or after `valid_until` the coupon could buy nothing: `CouponExpired`."""
    given(session_decider, *REDEEMED).when(give_back(now=VALID_UNTIL)).then_rejected(
        CouponExpired, valid_until=VALID_UNTIL)


def test_only_the_order_that_redeemed_it_gets_it_back():
    """A coupon held, locked, or redeemed by another order is `CouponNotRedeemed`; an
    unknown one `CouponNotFound`."""
    given(session_decider, received()).when(give_back()).then_rejected(
        CouponNotRedeemed, status="held")
    given(session_decider, received(), locked()).when(give_back()).then_rejected(
        CouponNotRedeemed, status="locked")
    given(session_decider, *REDEEMED).when(give_back(order="o2")).then_rejected(
        CouponNotRedeemed, status="redeemed")
    given(session_decider, received("c2")).when(give_back()).then_rejected(CouponNotFound)


def test_a_returned_coupon_lapses_at_its_validity():
    """Held again, the returned coupon lapses at the first expiry from `valid_until`."""
    given(session_decider, *REDEEMED, returned()).when(
        ExpireCoupons(user=USER, now=VALID_UNTIL)).then(lapsed())
