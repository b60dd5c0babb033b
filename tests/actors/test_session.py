"""The session decider: sessions and referrals, coupon wallet, orders, push cap, geofence."""

from __future__ import annotations

import math
import pickle

import pytest

from saleday.actors.decider import InvalidCommand
from saleday.actors.session import (
    DAY_MS,
    CouponAlreadyRedeemed,
    CouponExpired,
    CouponInUse,
    CouponLapsed,
    CouponLocked,
    CouponLockVoided,
    CouponNotFound,
    CouponNotLocked,
    CouponReceived,
    CouponRedeemed,
    CouponUnlocked,
    ExpireCoupons,
    FrequencyCapped,
    InvalidOrderTransition,
    LockCoupon,
    LockNotExpired,
    LockVoided,
    MinimumSpendNotMet,
    OrderStatusChanged,
    PushDelivered,
    ReceiveCoupon,
    RecordPush,
    RedeemCoupon,
    ReferralAttributed,
    RelockCoupon,
    ReportLocation,
    SessionStarted,
    StartSession,
    StoreVisited,
    TrackOrder,
    UnlockCoupon,
    deadline_of,
    distance_m,
    expire,
    next_deadline,
    session_decider,
)
from tests.actors.given import given

USER = "alice"
NOW = 10_000
VALID_UNTIL = 50_000
UNTIL = 30_000


def start(sid: str = "s1", now: int = NOW, inviter: str = "", since: int = 0,
          user: str = USER) -> StartSession:
    return StartSession(user=user, session_id=sid, utm_source="wechat", utm_medium="share",
                        utm_campaign="1111", now=now, inviter=inviter, inviter_since=since)


def started(sid: str = "s1", at: int = NOW, user: str = USER) -> SessionStarted:
    return SessionStarted(user=user, session_id=sid, utm_source="wechat", utm_medium="share",
                          utm_campaign="1111", started_at=at)


def attributed(inviter: str = "bob", at: int = NOW) -> ReferralAttributed:
    return ReferralAttributed(user=USER, inviter=inviter, utm_source="wechat",
                              utm_medium="share", utm_campaign="1111", attributed_at=at)


def received(cid: str = "c1", valid_until: int = VALID_UNTIL, value: int = 500,
             min_spend: int = 2_000) -> CouponReceived:
    return CouponReceived(user=USER, coupon_id=cid, campaign="double11", value_cents=value,
                          min_spend_cents=min_spend, valid_until=valid_until, received_at=NOW)


def lock(cid: str = "c1", order: str = "o1", total: int = 5_000, now: int = NOW,
         until: int = UNTIL) -> LockCoupon:
    return LockCoupon(user=USER, coupon_id=cid, order_id=order, order_total_cents=total,
                      until=until, now=now)


def locked(cid: str = "c1", order: str = "o1", until: int = UNTIL) -> CouponLocked:
    return CouponLocked(user=USER, coupon_id=cid, order_id=order, until=until)


def redeem(cid: str = "c1", order: str = "o1", now: int = NOW) -> RedeemCoupon:
    return RedeemCoupon(user=USER, coupon_id=cid, order_id=order, now=now)


def redeemed(cid: str = "c1", order: str = "o1", value: int = 500) -> CouponRedeemed:
    return CouponRedeemed(user=USER, coupon_id=cid, order_id=order, value_cents=value)


def unlock(cid: str = "c1", order: str = "o1", now: int = NOW) -> UnlockCoupon:
    return UnlockCoupon(user=USER, coupon_id=cid, order_id=order, now=now)


def unlocked(cid: str = "c1", order: str = "o1", valid_until: int = VALID_UNTIL,
             reason: str = "cancelled") -> CouponUnlocked:
    return CouponUnlocked(user=USER, coupon_id=cid, order_id=order, valid_until=valid_until,
                          reason=reason)


def voided(cid: str = "c1", order: str = "o1") -> CouponLockVoided:
    return CouponLockVoided(user=USER, coupon_id=cid, order_id=order)


def lapsed(cid: str = "c1") -> CouponLapsed:
    return CouponLapsed(user=USER, coupon_id=cid)


def track(status: str, order: str = "o1", amount: int = 9_900, now: int = NOW) -> TrackOrder:
    return TrackOrder(user=USER, order_id=order, status=status, amount_cents=amount, now=now)


def changed(status: str, order: str = "o1", amount: int = 9_900,
            at: int = NOW) -> OrderStatusChanged:
    return OrderStatusChanged(user=USER, order_id=order, status=status, amount_cents=amount, at=at)


def push(pid: str, now: int, cap: int = 3, window: int = DAY_MS, kind: str = "coupon"):
    return RecordPush(user=USER, push_id=pid, kind=kind, now=now, cap=cap, window_ms=window)


def delivered(pid: str, at: int, kind: str = "coupon") -> PushDelivered:
    return PushDelivered(user=USER, push_id=pid, kind=kind, at=at)


def session(*events):
    return given(session_decider, *events)


# --- sessions and referrals ------------------------------------------------------------


def test_a_first_session_is_recorded_with_its_utm_tags():
    """Starting a session records it with its UTM tags, and the user's first-seen time."""
    outcome = session().when(start()).then(started())
    assert outcome.state.first_seen == NOW and outcome.state.inviter == ""


def test_empty_utm_tags_are_allowed():
    """A session that came with no UTM tags at all still starts."""
    command = StartSession(user=USER, session_id="s1", utm_source="", utm_medium="",
                           utm_campaign="", now=NOW)
    session().when(command).then(SessionStarted(user=USER, session_id="s1", utm_source="",
                                                utm_medium="", utm_campaign="", started_at=NOW))


def test_a_repeated_session_id_decides_nothing():
    """Starting a session id that was already started decides nothing."""
    session(started()).when(start(now=NOW + 5)).then()


def test_first_seen_is_the_first_session():
    """Later sessions leave the first-seen time at the first session's start."""
    outcome = session(started()).when(start("s2", now=NOW + 100)).then(started("s2", NOW + 100))
    assert outcome.state.first_seen == NOW


def test_first_touch_with_an_earlier_inviter_is_attributed():
    """A first session invited by someone seen earlier attributes the user to the inviter."""
    outcome = (session().when(start(inviter="bob", since=NOW - 1))
               .then(started(), attributed("bob")))
    assert outcome.state.inviter == "bob"


def test_only_the_first_touch_is_attributed():
    """An invite arriving on a later session does not attribute (or re-attribute) the user."""
    session(started()).when(start("s2", now=NOW + 1, inviter="carol", since=5)) \
        .then(started("s2", NOW + 1))
    outcome = (session(started(), attributed("bob"))
               .when(start("s2", now=NOW + 1, inviter="carol", since=5))
               .then(started("s2", NOW + 1)))
    assert outcome.state.inviter == "bob"


def test_self_referral_is_refused_but_the_session_starts():
    """A user inviting themselves gets no attribution, but their session still starts."""
    session().when(start(inviter=USER, since=NOW - 1)).then(started())


@pytest.mark.parametrize("since", [NOW, NOW + 1, 0])
def test_an_inviter_not_seen_before_the_first_touch_is_not_attributed(since):
    """An inviter first seen at or after the invitee's first touch (or never) attributes nobody."""
    session().when(start(inviter="bob", since=since)).then(started())


# --- coupon wallet ---------------------------------------------------------------------


def test_receiving_a_coupon_puts_it_in_the_wallet():
    """A received coupon is held in the wallet with its terms."""
    outcome = (session().when(ReceiveCoupon(user=USER, coupon_id="c1", campaign="double11",
                                            value_cents=500, min_spend_cents=2_000,
                                            valid_until=VALID_UNTIL, now=NOW))
               .then(received()))
    coupon = outcome.state.coupons["c1"]
    assert (coupon.status, coupon.value_cents, coupon.valid_until) == ("held", 500, VALID_UNTIL)


def test_receiving_a_coupon_id_twice_decides_nothing():
    """A coupon id already in the wallet is not received again."""
    session(received()).when(ReceiveCoupon(user=USER, coupon_id="c1", campaign="other",
                                           value_cents=900, min_spend_cents=0,
                                           valid_until=VALID_UNTIL * 2, now=NOW)).then()


def test_locking_a_held_coupon_holds_it_for_the_order():
    """A valid coupon is locked for an order that meets its minimum spend."""
    outcome = session(received()).when(lock()).then(locked())
    assert outcome.state.coupons["c1"].status == "locked"


def test_locking_again_for_the_same_order_decides_nothing():
    """The same order locking its coupon again is a no-op (a retried checkout step)."""
    session(received(), locked()).when(lock()).then()


def test_a_coupon_locked_by_another_order_is_in_use():
    """A coupon locked by one order is refused to another, naming the holder."""
    session(received(), locked()).when(lock(order="o2")) \
        .then_rejected(CouponInUse, coupon_id="c1", order_id="o1")


def test_locking_an_unknown_coupon_is_refused():
    """Locking a coupon that is not in the wallet is CouponNotFound."""
    session().when(lock()).then_rejected(CouponNotFound, user=USER, coupon_id="c1")


@pytest.mark.parametrize("now", [VALID_UNTIL, VALID_UNTIL + 1])
def test_locking_at_or_after_valid_until_is_expired(now):
    """A coupon is valid until `valid_until`, exclusive: locking from then on is CouponExpired."""
    session(received()).when(lock(now=now)) \
        .then_rejected(CouponExpired, coupon_id="c1", valid_until=VALID_UNTIL)


def test_locking_a_lapsed_coupon_is_expired():
    """A lapsed coupon cannot be locked."""
    session(received(), lapsed()).when(lock()).then_rejected(CouponExpired, coupon_id="c1")


def test_locking_below_the_minimum_spend_is_refused():
    """An order below the coupon's minimum spend cannot lock it."""
    session(received(min_spend=2_000)).when(lock(total=1_999)) \
        .then_rejected(MinimumSpendNotMet, min_spend_cents=2_000, order_total_cents=1_999)


def test_locking_at_exactly_the_minimum_spend_is_accepted():
    """An order of exactly the minimum spend may use the coupon."""
    session(received(min_spend=2_000)).when(lock(total=2_000)).then(locked())


def test_locking_a_redeemed_coupon_is_refused():
    """A redeemed coupon cannot be locked again, by any order."""
    session(received(), locked(), redeemed()).when(lock(order="o2")) \
        .then_rejected(CouponAlreadyRedeemed, coupon_id="c1")


def test_redeeming_by_the_locking_order_uses_the_coupon():
    """The order that locked a coupon redeems it for its value."""
    outcome = session(received(), locked()).when(redeem()).then(redeemed())
    assert outcome.state.coupons["c1"].status == "redeemed"


def test_a_locked_coupon_can_be_redeemed_after_valid_until():
    """Validity is checked at lock time: the locking order may redeem after valid_until."""
    session(received(), locked()).when(redeem(now=VALID_UNTIL + 10)).then(redeemed())


def test_redeeming_again_for_the_same_order_decides_nothing():
    """A retried redemption by the same order is a no-op."""
    session(received(), locked(), redeemed()).when(redeem()).then()


def test_redeeming_for_another_order_after_redemption_is_refused():
    """A coupon is redeemed at most once: another order is refused."""
    session(received(), locked(), redeemed()).when(redeem(order="o2")) \
        .then_rejected(CouponAlreadyRedeemed, coupon_id="c1")


@pytest.mark.parametrize("past", [(), (locked(order="o2"),), (lapsed(),)])
def test_redeeming_a_coupon_not_locked_by_the_order_is_refused(past):
    """A held, lapsed, or otherwise-locked coupon cannot be redeemed by this order."""
    session(received(), *past).when(redeem()) \
        .then_rejected(CouponNotLocked, coupon_id="c1", order_id="o1")


def test_redeeming_an_unknown_coupon_is_refused():
    """Redeeming a coupon not in the wallet is CouponNotFound."""
    session().when(redeem()).then_rejected(CouponNotFound, coupon_id="c1")


def test_unlocking_returns_the_coupon_to_the_wallet():
    """The locking order letting go makes the coupon held again, lockable by others."""
    outcome = session(received(), locked()).when(unlock()).then(unlocked())
    assert outcome.state.coupons["c1"].status == "held"
    session(received(), locked(), unlocked()).when(lock(order="o2")).then(locked(order="o2"))


@pytest.mark.parametrize("past", [(received(), locked(), redeemed()),
                                  (received(), locked(), unlocked()),
                                  (received(), locked(), unlocked(reason="lock_expired")),
                                  (voided(),), (received(), voided())])
def test_unlocking_a_lock_that_is_over_decides_nothing(past):
    """Unlocking is an idempotent cancel: a lock already redeemed, released or voided
    for the order decides nothing."""
    session(*past).when(unlock()).then()


@pytest.mark.parametrize("past", [(), (received(),), (received(), locked(order="o2")),
                                  (received(), locked(order="o2"), redeemed(order="o2")),
                                  (received(), locked(order="o2"), unlocked(order="o2"))])
def test_cancel_before_try_voids_the_lock(past):
    """An unlock from an order that never locked the coupon (known or not) voids its lock."""
    outcome = session(*past).when(unlock()).then(voided())
    assert outcome.state.wallet.closed_locks[("c1", "o1")] == "voided"


def test_a_voided_lock_is_refused_to_the_late_try():
    """After a cancel-before-try, the order's late lock is LockVoided, even for a held coupon."""
    session(received(), voided()).when(lock()) \
        .then_rejected(LockVoided, user=USER, coupon_id="c1", order_id="o1")
    session(voided()).when(lock()).then_rejected(LockVoided, coupon_id="c1", order_id="o1")


def test_a_voided_lock_leaves_other_orders_and_coupons_alone():
    """Voiding (c1, o1) does not stop o2 locking c1, nor o1 locking c2."""
    past = (received("c1"), received("c2"), voided("c1", "o1"))
    session(*past).when(lock("c1", "o2")).then(locked("c1", "o2"))
    session(*past).when(lock("c2", "o1")).then(locked("c2", "o1"))


@pytest.mark.parametrize("reason", ["cancelled", "lock_expired"])
def test_a_released_lock_cannot_be_taken_again_by_its_order(reason):
    """A retried try arriving after its order's lock was released is LockVoided."""
    session(received(), locked(), unlocked(reason=reason)).when(lock()) \
        .then_rejected(LockVoided, order_id="o1")


def relock(cid: str = "c1", order: str = "o1", now: int = NOW + 100,
           until: int = UNTIL + 1_000) -> RelockCoupon:
    return RelockCoupon(user=USER, coupon_id=cid, order_id=order, until=until, now=now)


def test_a_paid_order_takes_back_the_lock_that_ran_out_and_redeems_it():
    """Given a lock that expired before its paid order's redeem, when the order re-locks,
    then it holds the coupon again until the new `until` and can redeem it."""
    past = (received(), locked(), unlocked(reason="lock_expired"))
    outcome = session(*past).when(relock()).then(locked(until=UNTIL + 1_000))
    session(*past, locked(until=UNTIL + 1_000)).when(redeem()).then(redeemed())
    assert outcome.state.coupons["c1"].until == UNTIL + 1_000
    session(*past, locked(until=UNTIL + 1_000)).when(relock()).then()   # a retry


@pytest.mark.parametrize("past, refusal", [
    ((received(), locked(), unlocked(reason="cancelled")), LockNotExpired),
    ((received(), voided()), LockNotExpired),
    ((received(),), LockNotExpired),
    ((received(), locked(), unlocked(reason="lock_expired"), locked(order="o2")), CouponInUse),
    ((received(), locked(), unlocked(reason="lock_expired"), locked(order="o2"),
      redeemed(order="o2")), CouponAlreadyRedeemed),
    ((received(), locked(), unlocked(reason="lock_expired"), lapsed()), CouponExpired),
])
def test_only_a_lock_that_ran_out_on_a_coupon_still_free_is_taken_back(past, refusal):
    """A lock cancelled, voided or never taken is not taken back; nor a coupon another
    order holds or redeemed, or one that lapsed."""
    session(*past).when(relock()).then_rejected(refusal)


@pytest.mark.parametrize("until", [NOW, NOW - 1])
def test_a_lock_until_not_after_now_is_invalid(until):
    """A lock must end after it starts: `until` <= now is an InvalidCommand."""
    session(received()).when(lock(until=until)).then_rejected(InvalidCommand)


def test_a_lock_remembers_its_until():
    """The locked coupon carries the lock's deadline."""
    assert session(received(), locked(until=777)).state.coupons["c1"].until == 777


def test_expiry_lapses_due_coupons_in_valid_until_then_id_order():
    """Due coupons lapse in valid_until order, ties by id; coupons still valid stay."""
    (session(received("c3", valid_until=200), received("c2", valid_until=100),
             received("c1", valid_until=200), received("c4", valid_until=301))
     .when(ExpireCoupons(user=USER, now=300))
     .then(lapsed("c2"), lapsed("c1"), lapsed("c3")))


def test_locked_and_redeemed_coupons_do_not_lapse():
    """A coupon locked by an order (before its until), or redeemed, does not lapse."""
    (session(received("c1", valid_until=100), received("c2", valid_until=100),
             locked("c1", until=501), locked("c2", "o2"), redeemed("c2", "o2"))
     .when(ExpireCoupons(user=USER, now=500)).then())


def test_a_lock_is_released_at_its_until():
    """At `until` the lock is released ("lock_expired") and the coupon is held again."""
    outcome = (session(received(), locked(until=200)).when(ExpireCoupons(user=USER, now=200))
               .then(unlocked(reason="lock_expired")))
    assert outcome.state.coupons["c1"].status == "held"
    assert outcome.state.wallet.closed_locks[("c1", "o1")] == "lock_expired"
    session(received(), locked(until=200)).when(ExpireCoupons(user=USER, now=199)).then()


def test_an_expired_lock_of_an_invalid_coupon_lapses_in_the_same_expiry():
    """A lock due at a time its coupon is no longer valid is released, then the coupon lapses."""
    (session(received(valid_until=100), locked(until=300))
     .when(ExpireCoupons(user=USER, now=300))
     .then(unlocked(valid_until=100, reason="lock_expired"), lapsed()))


def test_due_locks_are_released_in_until_then_id_order_before_any_lapse():
    """Due locks go first, by until then id; due held coupons lapse after them."""
    (session(received("c1"), received("c2"), received("c3"), received("c4", valid_until=400),
             locked("c1", "o1", until=300), locked("c2", "o2", until=200),
             locked("c3", "o3", until=600))
     .when(ExpireCoupons(user=USER, now=500))
     .then(unlocked("c2", "o2", reason="lock_expired"),
           unlocked("c1", "o1", reason="lock_expired"), lapsed("c4")))


def test_a_coupon_unlocked_after_its_validity_lapses_at_the_next_expiry():
    """Unlocked past valid_until, a coupon lapses at the next expiry, and its timer says so."""
    outcome = (session(received(valid_until=100), locked()).when(unlock(now=150))
               .then(unlocked(valid_until=100)))
    assert deadline_of(outcome.events[0]) == 100 == next_deadline(outcome.state)
    session(received(valid_until=100), locked(), unlocked(valid_until=100)) \
        .when(expire(USER, 150)).then(lapsed())


def test_a_lapsed_coupon_is_not_lapsed_again():
    """Expiry decides nothing for a coupon that already lapsed."""
    session(received(valid_until=100), lapsed()).when(ExpireCoupons(user=USER, now=500)).then()


def test_deadlines_are_the_lapsable_coupons_valid_until_and_the_locks_until():
    """A received coupon sets a timer at valid_until, a lock at its until; the next deadline
    is the earliest of the held coupons' valid_until and the locks' until."""
    assert deadline_of(received(valid_until=700)) == 700
    assert deadline_of(locked(until=900)) == 900
    assert deadline_of(voided()) is None
    state = session(received("c1", valid_until=100), received("c2", valid_until=300),
                    locked("c1", until=400)).state
    assert next_deadline(state) == 300
    state = session(received("c1", valid_until=100), received("c2", valid_until=300),
                    locked("c1", until=250)).state
    assert next_deadline(state) == 250
    state = session(received("c1"), locked("c1", until=250), redeemed("c1")).state
    assert next_deadline(state) is None
    assert next_deadline(session(started()).state) is None
    assert expire(USER, 5) == ExpireCoupons(user=USER, now=5)


# --- orders ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [("placed", "paid"), ("placed", "cancelled"),
                                  ("placed", "paid", "refunded"),
                                  ("placed", "cancelled", "refunded")])
def test_orders_move_forward(path):
    """An order moves placed -> paid | cancelled, paid -> refunded, cancelled -> refunded."""
    *past, last = path
    outcome = session(*(changed(s) for s in past)).when(track(last)).then(changed(last))
    assert outcome.state.orders["o1"] == last


def test_a_late_payment_after_cancel_is_refunded_not_paid():
    """A cancelled order cannot become paid; it is refunded instead."""
    session(changed("placed"), changed("cancelled")).when(track("paid")) \
        .then_rejected(InvalidOrderTransition, current="cancelled", requested="paid")
    session(changed("placed"), changed("cancelled")).when(track("refunded")) \
        .then(changed("refunded"))


def test_the_same_status_again_decides_nothing():
    """Tracking the status an order already has is a no-op."""
    session(changed("placed"), changed("paid")).when(track("paid", now=NOW + 9)).then()


@pytest.mark.parametrize("past, requested", [
    (("placed", "paid"), "placed"), (("placed", "paid"), "cancelled"),
    (("placed", "cancelled"), "placed"), (("placed", "paid", "refunded"), "paid"),
    ((), "paid"), (("placed",), "refunded"),
])
def test_orders_do_not_go_backwards_or_skip(past, requested):
    """Any other move is an InvalidOrderTransition naming the current and requested status."""
    current = past[-1] if past else ""
    session(*(changed(s) for s in past)).when(track(requested)) \
        .then_rejected(InvalidOrderTransition, order_id="o1", current=current,
                       requested=requested)


def test_orders_are_tracked_independently():
    """One order's status does not affect another's."""
    session(changed("placed"), changed("paid")).when(track("placed", order="o2")) \
        .then(changed("placed", order="o2"))


# --- push frequency cap ----------------------------------------------------------------


def test_pushes_under_the_cap_are_delivered():
    """Fewer than `cap` deliveries in the window: the push goes out."""
    session(delivered("p1", 0), delivered("p2", 10)).when(push("p3", 20, kind="ad")) \
        .then(delivered("p3", 20, kind="ad"))


def test_a_push_over_the_cap_is_refused():
    """With `cap` deliveries in the window, the next push is FrequencyCapped."""
    session(delivered("p1", 0), delivered("p2", 10), delivered("p3", 20)) \
        .when(push("p4", 30)).then_rejected(FrequencyCapped, push_id="p4",
                                            delivered_in_window=3, cap=3)


def test_the_window_slides_by_event_time():
    """A delivery exactly `window_ms` ago is outside the window; one ms later it is inside."""
    past = (delivered("p1", 1_000), delivered("p2", 2_000), delivered("p3", 3_000))
    session(*past).when(push("p4", 1_000 + DAY_MS)).then(delivered("p4", 1_000 + DAY_MS))
    session(*past).when(push("p4", 999 + DAY_MS)) \
        .then_rejected(FrequencyCapped, delivered_in_window=3)


def test_cap_and_window_come_from_the_command():
    """The cap and the window are the caller's: one per hour here."""
    hour = 3_600_000
    session(delivered("p1", 0)).when(push("p2", hour - 1, cap=1, window=hour)) \
        .then_rejected(FrequencyCapped, delivered_in_window=1, cap=1)
    session(delivered("p1", 0)).when(push("p2", hour, cap=1, window=hour)) \
        .then(delivered("p2", hour))


def test_a_repeated_push_id_decides_nothing():
    """A push id delivered before is not delivered again, nor counted as capped."""
    session(delivered("p1", 0), delivered("p2", 1), delivered("p3", 2)).when(push("p1", 3)).then()


def test_the_state_keeps_only_recent_pushes():
    """Deliveries too old for any window are dropped from the state."""
    state = session(delivered("p1", 0), delivered("p2", 1),
                    delivered("p3", 8 * DAY_MS)).state
    assert state.pushes == ((8 * DAY_MS, "p3"),)


# --- geofence --------------------------------------------------------------------------

STORE_LAT, STORE_LON = 31_230_400, 121_473_700


def north_of_store(metres: float) -> tuple[int, int]:
    """A point `metres` due north of the store (along its meridian), in micro-degrees."""
    return STORE_LAT + round(math.degrees(metres / 6_371_000) * 1e6), STORE_LON


def store(sid: str = "st1", radius: int = 500, lat: int = STORE_LAT, lon: int = STORE_LON):
    return (sid, lat, lon, "live-1111", radius)


def at(point: tuple[int, int], stores=None, now: int = NOW) -> ReportLocation:
    return ReportLocation(user=USER, lat_e6=point[0], lon_e6=point[1], now=now,
                          stores=(store(),) if stores is None else stores)


def visited(sid: str = "st1", when: int = NOW) -> StoreVisited:
    return StoreVisited(user=USER, store_id=sid, campaign="live-1111", at=when)


def test_the_offset_points_are_where_the_tests_say():
    """The test points lie 499 m and 501 m from the store, to within the rounding of 1e-6°."""
    assert abs(distance_m(*north_of_store(499), STORE_LAT, STORE_LON) - 499) < 0.1
    assert abs(distance_m(*north_of_store(501), STORE_LAT, STORE_LON) - 501) < 0.1


def test_a_location_inside_the_radius_visits_the_store():
    """499 m from a store with a 500 m radius, the user visits it."""
    session().when(at(north_of_store(499))).then(visited())


def test_a_location_outside_the_radius_visits_nothing():
    """501 m from a store with a 500 m radius, nothing happens."""
    session().when(at(north_of_store(501))).then()


def test_a_store_is_visited_once_per_user():
    """A store already visited is not visited again, ever."""
    session(visited()).when(at(north_of_store(10), now=NOW + DAY_MS)).then()


def test_every_near_store_not_yet_visited_is_visited():
    """Each store within its own radius and not visited before is visited, in the given order."""
    here = north_of_store(300)
    stores = (store("st2", radius=200), store("st3"), store("st1"), store("st4", radius=1_000))
    session(visited("st1")).when(at(here, stores)).then(visited("st3"), visited("st4"))


def test_a_store_listed_twice_is_visited_once():
    """Duplicates in the store list do not visit a store twice in one report."""
    session().when(at(north_of_store(0), (store(), store()))).then(visited())


def test_no_stores_configured_decides_nothing():
    """A location report with no stores decides nothing."""
    session().when(at(north_of_store(0), ())).then()


def test_stores_may_arrive_as_lists():
    """Stores that crossed a msgpack wire as lists are understood."""
    session().when(at(north_of_store(0), [list(store())])).then(visited())


# --- malformed commands ----------------------------------------------------------------


@pytest.mark.parametrize("command", [
    start(sid=""),
    StartSession(user=USER, session_id="s1", utm_source=None, utm_medium="", utm_campaign="",
                 now=NOW),
    start(now=1.5),
    start(since=True),
    start(since=-1),
    ReceiveCoupon(user=USER, coupon_id="c1", campaign="x", value_cents=-1, min_spend_cents=0,
                  valid_until=VALID_UNTIL, now=NOW),
    ReceiveCoupon(user=USER, coupon_id="c1", campaign="x", value_cents=1.0, min_spend_cents=0,
                  valid_until=VALID_UNTIL, now=NOW),
    ReceiveCoupon(user=USER, coupon_id="c1", campaign="x", value_cents=1, min_spend_cents=-5,
                  valid_until=VALID_UNTIL, now=NOW),
    lock(total=-1),
    lock(total=True),
    lock(until=1.5),
    redeem(order=""),
    track("shipped"),
    track("paid", amount=-100),
    track("paid", amount=2**64),
    push("p1", NOW, kind="sms"),
    push("p1", NOW, cap=-1),
    push("p1", NOW, window=0),
    push("p1", NOW, window=30 * DAY_MS),
    at((91_000_000, 0)),
    at((0, 0), stores=(("st1", 0, 0, "c", 1.5),)),
    at((0, 0), stores=(("st1", 0, 0, "c"),)),
    at((0, 0), stores=(("", 0, 0, "c", 5),)),
    at((0, 0), stores=(("st1", 0, 0, "c", -5),)),
    at((0, 0), stores="st1"),
    start(user="bob"),
    "not a command",
])
def test_malformed_commands_are_invalid(command):
    """Wrong types, bools or floats for ints, negative money, unknown status or kind,
    bad coordinates, or another user's command are InvalidCommand."""
    result = session_decider.decide(command, session_decider.initial(USER))
    assert isinstance(result, InvalidCommand), result


def test_every_event_is_about_the_user():
    """The entity of every command and event is its user."""
    assert session_decider.entity_of(start()) == USER == session_decider.entity_of(visited())
    assert session_decider.kind == "session"


def test_state_pickles_compactly_and_equal():
    """A folded state survives a pickle round trip unchanged (shard snapshots)."""
    state = session(started(), attributed(), received(), locked(), changed("placed"),
                    delivered("p1", NOW), visited(), voided("c2", "o2")).state
    assert pickle.loads(pickle.dumps(state)) == state


# --- the composition -------------------------------------------------------------------


def test_every_session_event_keeps_its_wire_name():
    """Splitting the decider by concern left every event's stable name in the log as it was."""
    from saleday.events.registry import registry

    assert {cls.__name__: registry.wire_name(cls) for cls in session_decider.events} == {
        "SessionStarted": "sessions.session_started",
        "ReferralAttributed": "sessions.referral_attributed",
        "CouponReceived": "sessions.coupon_received",
        "CouponLocked": "sessions.coupon_locked",
        "CouponRedeemed": "sessions.coupon_redeemed",
        "CouponUnlocked": "sessions.coupon_unlocked",
        "CouponLockVoided": "sessions.coupon_lock_voided",
        "CouponLapsed": "sessions.coupon_lapsed",
        "CouponReturned": "sessions.coupon_returned",
        "OrderStatusChanged": "sessions.order_status_changed",
        "PushDelivered": "sessions.push_delivered",
        "StoreVisited": "sessions.store_visited",
        "BehaviourRecorded": "sessions.behaviour_recorded",
        "ExposureRecorded": "sessions.exposure_recorded"}


def test_each_concern_keeps_its_own_slice():
    """A wallet event leaves the referral, orders, pushes and visits slices as they were."""
    before = session(started(), changed("placed"), delivered("p1", NOW), visited()).state
    after = session_decider.evolve(before, received())
    assert (after.referral, after.orders, after.pushes, after.visited) == (
        before.referral, before.orders, before.pushes, before.visited)
    assert after.wallet.coupons["c1"].status == "held"


def test_what_the_gateway_reads_of_a_session_is_its_slices():
    """`first_seen` (for an invite), `inviter` and `coupons` (for a checkout) read as they
    always did."""
    state = session(started(at=NOW + 3), attributed("bob"), received()).state
    assert state.first_seen == NOW + 3 == state.referral.first_seen
    assert state.inviter == "bob" == state.referral.inviter
    assert state.coupons is state.wallet.coupons and list(state.coupons) == ["c1"]


def test_only_the_wallet_sets_deadlines():
    """Coupon events set timers; a session, an order, a push or a visit sets none."""
    assert deadline_of(received()) == VALID_UNTIL and deadline_of(locked(until=77)) == 77
    assert [deadline_of(e) for e in (started(), changed("paid"), delivered("p1", 1),
                                     visited())] == [None] * 4
