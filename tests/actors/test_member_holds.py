"""The member's points held at checkout: held, then spent when the order is paid or given
back when it is not (cancelled, or the hold lapsed)."""

from __future__ import annotations

from saleday.actors.decider import InvalidCommand
from saleday.actors.member import (
    DAY_MS,
    ExpirePoints,
    HoldPoints,
    InsufficientPoints,
    PointsEarned,
    PointsExpired,
    PointsHeld,
    PointsNotHeld,
    PointsRedeemed,
    PointsReleased,
    ReleasePoints,
    SpendPoints,
    member_decider,
    next_deadline,
)
from tests.actors.given import given

USER = "alice"
T0 = 1_762_790_400_000
UNTIL = T0 + 16 * 60_000


def lot(ref: str, points: int, days: int) -> PointsEarned:
    return PointsEarned(user=USER, order_ref=ref, amount_cents=points * 100, invoice="none",
                        points=points, earned_at=T0, expires_at=T0 + days * DAY_MS)


def hold(points: int = 150, hold_id: str = "o-9", now: int = T0 + 1,
         until: int = UNTIL) -> HoldPoints:
    return HoldPoints(user=USER, hold_id=hold_id, points=points, until=until, now=now)


def held(points: int = 150, taken=(("a", 100, T0 + 10 * DAY_MS), ("b", 50, T0 + 20 * DAY_MS)),
         hold_id: str = "o-9", at: int = T0 + 1, until: int = UNTIL) -> PointsHeld:
    return PointsHeld(user=USER, hold_id=hold_id, points=points, taken=taken, held_at=at,
                      until=until)


LOTS = (lot("a", 100, 10), lot("b", 200, 20))


def test_a_hold_takes_the_soonest_to_expire_points_out_of_the_balance():
    """Holding 150 takes lot a whole and 50 of lot b; the balance drops, nothing is redeemed."""
    then = given(member_decider, *LOTS).when(hold()).then(held())
    state = then.state
    assert (state.balance, state.held, state.redeemed) == (150, 150, 0)
    assert state.balance + state.held == state.earned - state.redeemed - state.expired


def test_a_hold_above_the_balance_is_refused():
    """The balance never goes negative: 301 of 300 is refused, and nothing is held."""
    given(member_decider, *LOTS).when(hold(301)) \
        .then_rejected(InsufficientPoints, wanted=301, balance=300)


def test_points_held_by_one_order_cannot_be_held_by_another():
    """What one order holds is out of the balance for the next."""
    given(member_decider, *LOTS, held()).when(hold(151, hold_id="o-10")) \
        .then_rejected(InsufficientPoints, wanted=151, balance=150)


def test_the_same_hold_again_decides_nothing_and_another_amount_is_refused():
    """A retried checkout step holds once; the same order asking for other points is invalid."""
    given(member_decider, *LOTS, held()).when(hold()).then()
    given(member_decider, *LOTS, held()).when(hold(10)).then_rejected(InvalidCommand)


def test_paying_spends_the_hold_as_a_redemption_of_its_lots():
    """SpendPoints redeems the held points from the lots they were taken from, once."""
    then = given(member_decider, *LOTS, held()).when(SpendPoints(user=USER, hold_id="o-9",
                                                                 now=T0 + 5))
    then.then(PointsRedeemed(user=USER, redemption_id="o-9", points=150,
                             taken=(("a", 100), ("b", 50)), redeemed_at=T0 + 5))
    state = then.state
    assert (state.balance, state.held, state.redeemed) == (150, 0, 150)
    spent = PointsRedeemed(user=USER, redemption_id="o-9", points=150,
                           taken=(("a", 100), ("b", 50)), redeemed_at=T0 + 5)
    given(member_decider, *LOTS, held(), spent).when(
        SpendPoints(user=USER, hold_id="o-9", now=T0 + 6)).then()


def test_cancelling_gives_the_points_back_with_their_expiry():
    """ReleasePoints puts the held points back in their lots; the balance is whole again."""
    then = given(member_decider, *LOTS, held()).when(
        ReleasePoints(user=USER, hold_id="o-9", reason="payment_failed", now=T0 + 5))
    then.then(PointsReleased(user=USER, hold_id="o-9", points=150,
                             taken=held().taken, reason="payment_failed", released_at=T0 + 5))
    assert then.state.lots == (("a", 100, T0 + 10 * DAY_MS), ("b", 200, T0 + 20 * DAY_MS))
    assert then.state.held == 0


def test_a_released_hold_cannot_be_spent_and_a_spent_one_cannot_be_released():
    """A payment after the hold went back is refused (the checkout logs it), and a paid
    order's points never come back."""
    released = PointsReleased(user=USER, hold_id="o-9", points=150, taken=held().taken,
                              reason="x", released_at=T0 + 2)
    given(member_decider, *LOTS, held(), released).when(
        SpendPoints(user=USER, hold_id="o-9", now=T0 + 5)) \
        .then_rejected(PointsNotHeld, reason="released")
    given(member_decider, *LOTS).when(SpendPoints(user=USER, hold_id="o-1", now=T0 + 5)) \
        .then_rejected(PointsNotHeld, reason="unknown_hold")
    spent = PointsRedeemed(user=USER, redemption_id="o-9", points=150,
                           taken=(("a", 100), ("b", 50)), redeemed_at=T0 + 5)
    given(member_decider, *LOTS, held(), spent).when(
        ReleasePoints(user=USER, hold_id="o-9", reason="x", now=T0 + 6)) \
        .then_rejected(PointsNotHeld, reason="spent")
    given(member_decider, *LOTS).when(
        ReleasePoints(user=USER, hold_id="o-1", reason="x", now=T0 + 6)).then()


def test_an_abandoned_hold_goes_back_at_its_end_by_the_timer():
    """The timer is due at the hold's end and releases it ("hold_expired")."""
    state = given(member_decider, *LOTS, held()).state
    assert next_deadline(state) == UNTIL
    given(member_decider, *LOTS, held()).when(ExpirePoints(user=USER, now=UNTIL)).then(
        PointsReleased(user=USER, hold_id="o-9", points=150, taken=held().taken,
                       reason="hold_expired", released_at=UNTIL))


def test_points_given_back_after_their_lot_lapsed_expire_at_once():
    """Held points do not lapse while held; given back after their expiry, they expire in
    the same decision, with the rest of their lot."""
    late = T0 + 15 * DAY_MS   # lot a (10 days) lapsed while held
    long_hold = held(until=T0 + 30 * DAY_MS)
    then = given(member_decider, *LOTS, long_hold).when(
        ReleasePoints(user=USER, hold_id="o-9", reason="x", now=late))
    then.then(PointsReleased(user=USER, hold_id="o-9", points=150, taken=long_hold.taken,
                             reason="x", released_at=late),
              PointsExpired(user=USER, order_ref="a", points=100,
                            expires_at=T0 + 10 * DAY_MS))
    state = then.state
    assert (state.balance, state.expired) == (200, 100)
    assert state.balance + state.held == state.earned - state.redeemed - state.expired
