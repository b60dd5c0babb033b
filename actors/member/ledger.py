"""The member's points ledger: earning, redeeming, holding, spending, releasing, expiring
and taking back points, as pure decisions over `MemberState` (`actors/member/rules.py`
dispatches the commands here and folds the events; its docstring states each rule).

Points live in lots, one per earning order: `(order_ref, points left, expires_at)`, kept
soonest to expire first (ties by order ref). A redemption or a hold takes from the lots
that expire first, after expiring the lots already lapsed, in the same decision. The
ledger adds up: balance (the lots) + held = earned - redeemed - expired - taken back,
balance >= 0. Pure: no I/O, clock, randomness or logging.
"""

from __future__ import annotations

from saleday.actors.decider import InvalidCommand, Rejection
from saleday.actors.fields import INT64_MAX
from saleday.actors.member.fold import evolve, refs
from saleday.actors.member.state import MemberState
from saleday.actors.member.words import (
    DAY_MS,
    INVOICES,
    EarnPoints,
    HoldPoints,
    InsufficientPoints,
    Lots,
    MemberEvent,
    PointsEarned,
    PointsExpired,
    PointsHeld,
    PointsNotHeld,
    PointsRedeemed,
    PointsReleased,
    PointsTakenBack,
    RedeemPoints,
    SpendPoints,
    TakeBackPoints,
)

MAX_VALID_DAYS = 3650
"""Points valid longer than ten years are a mistake in the rate table, not a policy."""


def points_for(amount_cents: int, invoice: str, points_per_yuan: int) -> int:
    """The points a paid order earns: per whole yuan, doubled for an electronic invoice."""
    points = amount_cents // 100 * points_per_yuan
    return points * 2 if invoice == "electronic" else points


def earn(command: EarnPoints, state: MemberState) -> list[MemberEvent] | Rejection:
    if command.invoice not in INVOICES:
        return InvalidCommand(reason=f"invoice must be one of {INVOICES}, "
                                     f"not {command.invoice!r}")
    chosen = state.invoices.get(command.order_ref, "none")
    if command.invoice != chosen:
        return InvalidCommand(reason=f"order {command.order_ref!r} asked for invoice "
                                     f"{chosen!r}, not {command.invoice!r}")
    if not 1 <= command.valid_days <= MAX_VALID_DAYS:
        return InvalidCommand(reason=f"valid_days must be 1..{MAX_VALID_DAYS}, "
                                     f"not {command.valid_days}")
    if command.order_ref in state.earnings or command.order_ref in state.taken_back:
        return []   # earned once already, or refunded: nothing to earn
    points = points_for(command.amount_cents, command.invoice, command.points_per_yuan)
    expires_at = command.now + command.valid_days * DAY_MS
    if points > INT64_MAX or state.earned + points > INT64_MAX or expires_at > INT64_MAX:
        return InvalidCommand(reason="the points or their expiry do not fit a 64-bit int")
    if points == 0:
        return []
    return [PointsEarned(user=command.user, order_ref=command.order_ref,
                         amount_cents=command.amount_cents, invoice=command.invoice,
                         points=points, earned_at=command.now, expires_at=expires_at)]


def take_back(command: TakeBackPoints, state: MemberState) -> list[MemberEvent]:
    ref = command.order_ref
    if ref in state.taken_back:
        return []
    left = sum(points for lot_ref, points, _ in state.lots if lot_ref == ref)
    return [PointsTakenBack(user=command.user, order_ref=ref, earned=state.earnings.get(ref, 0),
                            points=left, reason=command.reason, taken_back_at=command.now)]


def redeem(command: RedeemPoints, state: MemberState) -> list[MemberEvent] | Rejection:
    known = state.redemptions.get(command.redemption_id)
    if known is not None:
        if known != command.points:
            return InvalidCommand(reason=f"redemption {command.redemption_id!r} was for "
                                         f"{known} points")
        return []
    if command.points < 1:
        return InvalidCommand(reason="a redemption takes at least one point")
    lapsed = _lapsed(state, command.now)
    live = [lot for lot in state.lots if lot[2] > command.now]
    balance = sum(points for _, points, _ in live)
    if command.points > balance:
        return InsufficientPoints(user=command.user, wanted=command.points, balance=balance)
    return [*lapsed, PointsRedeemed(user=command.user, redemption_id=command.redemption_id,
                                    points=command.points,
                                    taken=refs(_take_soonest(tuple(live), command.points)),
                                    redeemed_at=command.now)]


def _take_soonest(live: Lots, wanted: int) -> Lots:
    """What `wanted` points take from `live` lots, soonest to expire first:
    `((ref, points, expires_at), ...)`."""
    taken = []
    for ref, points, expires_at in live:
        take = min(points, wanted)
        taken.append((ref, take, expires_at))
        wanted -= take
        if wanted == 0:
            break
    return tuple(taken)


def hold(command: HoldPoints, state: MemberState) -> list[MemberEvent] | Rejection:
    hold_id = command.hold_id
    known = state.holds.get(hold_id)
    if known is None:
        known_points = state.redemptions.get(hold_id, state.released.get(hold_id))
    else:
        known_points = known[0]
    if known_points is not None:
        if known_points != command.points:
            return InvalidCommand(reason=f"hold {hold_id!r} was for {known_points} points")
        return []
    if command.points < 1:
        return InvalidCommand(reason="a hold takes at least one point")
    if command.until <= command.now:
        return InvalidCommand(reason=f"a hold until {command.until} ends before it starts "
                                     f"({command.now})")
    lapsed = _lapsed(state, command.now)
    live = tuple(lot for lot in state.lots if lot[2] > command.now)
    balance = sum(points for _, points, _ in live)
    if command.points > balance:
        return InsufficientPoints(user=command.user, wanted=command.points, balance=balance)
    return [*lapsed, PointsHeld(user=command.user, hold_id=hold_id, points=command.points,
                                taken=_take_soonest(live, command.points),
                                held_at=command.now, until=command.until)]


def spend(command: SpendPoints, state: MemberState) -> list[MemberEvent] | Rejection:
    hold = state.holds.get(command.hold_id)
    if hold is None:
        if command.hold_id in state.redemptions:
            return []
        reason = "released" if command.hold_id in state.released else "unknown_hold"
        return PointsNotHeld(user=command.user, hold_id=command.hold_id, reason=reason)
    points, taken, _ = hold
    return [PointsRedeemed(user=command.user, redemption_id=command.hold_id, points=points,
                           taken=refs(taken), redeemed_at=command.now)]


def release(user: str, hold_id: str, reason: str, now: int,
             state: MemberState) -> list[MemberEvent] | Rejection:
    """Give a hold's points back to their lots; a lot already lapsed by `now` then expires
    in the same decision (with what it then holds). Releasing a hold that was never made,
    or released already, decides nothing; a spent one cannot be released."""
    hold = state.holds.get(hold_id)
    if hold is None:
        if hold_id in state.redemptions:
            return PointsNotHeld(user=user, hold_id=hold_id, reason="spent")
        return []
    released = PointsReleased(user=user, hold_id=hold_id, points=hold[0], taken=hold[1],
                              reason=reason, released_at=now)
    after = evolve(state, released)
    back = {ref for ref, _, _ in hold[1]}
    return [released, *(e for e in _lapsed(after, now) if e.order_ref in back)]


def expire_due(state: MemberState, now: int) -> list[MemberEvent]:
    """The timer: lapsed lots expire, and holds past their `until` go back (and expire in
    turn if their lots have lapsed)."""
    events: list[MemberEvent] = _lapsed(state, now)
    for event in events:
        state = evolve(state, event)
    for hold_id, (_, _, until) in sorted(state.holds.items()):
        if until <= now:
            released = release(state.user, hold_id, "hold_expired", now, state)
            assert isinstance(released, list)
            for event in released:
                state = evolve(state, event)
            events.extend(released)
    return events


def _lapsed(state: MemberState, now: int) -> list[MemberEvent]:
    return [PointsExpired(user=state.user, order_ref=ref, points=points, expires_at=expires_at)
            for ref, points, expires_at in state.lots if expires_at <= now]

