"""The user-session decider: one user's visits and referral, coupon wallet, orders, push
frequency cap and geofenced store visits (entity id = the user).

Sessions and referrals. A session id is started once. A user's FIRST session (first
touch) may attribute the user to an inviter, and only then: later sessions never change
who invited whom. The gateway passes `inviter_since`, the time the inviter was first
seen (their `first_seen`, 0 if never), and attribution needs `0 < inviter_since < now`:
the inviter was seen strictly before the invitee's first touch. Every attribution edge
therefore goes from an earlier-seen user to a later-seen one, so first-seen times rise
strictly along any path of the referral graph and no path can return to where it
started: the graph has no cycles (nor self-loops, which are also refused outright), and
since each user is attributed at most once it is a forest.

Coupon wallet. A coupon is held, locked by one order (the "try" of checkout), redeemed
by that order (its "confirm"), or lapsed. Validity `[received, valid_until)` is checked
when locking; a lock then holds the coupon for its order until the order's payment
deadline `until`, so it neither lapses nor can be locked by another order, and its order
may redeem it. The order's "cancel" unlocks it; a lock still held at `until` is released
by the next expiry (reason "lock_expired"), so an abandoned checkout cannot keep a
coupon. An unlocked coupon past `valid_until` lapses at the next expiry (the same one
that released its lock, if due). A coupon is redeemed at most once and never after it
lapsed.

Every checkout step may be retried or arrive out of order. A cancel that arrives before
its try ("cancel before try": an unlock from an order that holds no lock on the coupon
and never did) records `CouponLockVoided`, and the late try is then refused
(`LockVoided`), so it cannot lock a coupon for an order that was already given up. A
lock is one-shot per (coupon, order): once released (unlocked or expired) that order
cannot lock the coupon again either, and a repeated unlock decides nothing.

Orders move forward only: placed -> paid | cancelled, paid -> refunded and
cancelled -> refunded (a payment that arrives after a cancel is refunded).

Push frequency cap: at most `cap` pushes delivered in the rolling window
`(now - window_ms, now]`, by the delivery events' time. The state keeps only the
deliveries of the last `MAX_PUSH_WINDOW_MS` (the widest window a command may ask for),
which is also how far back a repeated push id is recognised.

Geofence: reporting a location within `radius_m` (great-circle distance) of a store
records one visit per user per store, ever. Coordinates are integer micro-degrees;
the distance is computed in floats and never stored.

Pure: no I/O, clock, randomness or logging. `now` and ids arrive in the commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import asin, cos, radians, sin, sqrt
from typing import ClassVar, assert_never

import immutables

from actors.decider import Decider, InvalidCommand, Rejection, compact_pickle
from actors.fields import INT64_MAX, INT64_MIN, FieldChecks, fast_replace
from events.registry import event_type

Store = tuple[str, int, int, str, int]
"""A geofenced store `(store_id, lat_e6, lon_e6, campaign, radius_m)`."""

ORDER_STATUSES = ("placed", "paid", "cancelled", "refunded")
PUSH_KINDS = ("coupon", "ad")
DAY_MS = 86_400_000
MAX_PUSH_WINDOW_MS = 7 * DAY_MS
"""The widest frequency-cap window a command may ask for; deliveries older than this
(before the latest one) are dropped from the state."""
EARTH_RADIUS_M = 6_371_000

HELD, LOCKED, REDEEMED, LAPSED = "held", "locked", "redeemed", "lapsed"
"""The states of a coupon in the wallet."""

_NEXT_STATUS = {"": ("placed",), "placed": ("paid", "cancelled"), "paid": ("refunded",),
                "cancelled": ("refunded",), "refunded": ()}
"""The order statuses each status may move to ("" = an order not tracked yet)."""


# --- commands -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartSession:
    """The user opened a session, arriving through these UTM tags and perhaps an invite
    from `inviter`, who was first seen at `inviter_since` (0 = never)."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"inviter_since"})
    """Not fingerprinted (actors/decider.py): looked up by the flow at drive time."""

    user: str
    session_id: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    now: int
    inviter: str = ""
    inviter_since: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiveCoupon:
    """Put a coupon worth `value_cents` off an order of at least `min_spend_cents`,
    valid until `valid_until` (exclusive), into the user's wallet."""

    user: str
    coupon_id: str
    campaign: str
    value_cents: int
    min_spend_cents: int
    valid_until: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LockCoupon:
    """Hold a coupon for an order of `order_total_cents` until its payment deadline `until`."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"until"})
    """Not fingerprinted (actors/decider.py): the checkout derives it from `now`."""

    user: str
    coupon_id: str
    order_id: str
    order_total_cents: int
    until: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RedeemCoupon:
    """The order that holds the coupon was paid: the coupon is used up."""

    user: str
    coupon_id: str
    order_id: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UnlockCoupon:
    """The order's checkout was given up: the coupon goes back to the wallet (or, if the
    order never locked it, the order's lock is voided before it can happen)."""

    user: str
    coupon_id: str
    order_id: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpireCoupons:
    """Release every lock whose `until` is at or before `now`, then lapse every held (not
    locked, not redeemed) coupon whose validity ended by `now`."""

    user: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackOrder:
    """An order of the user reached `status` (placed, paid, cancelled or refunded)."""

    user: str
    order_id: str
    status: str
    amount_cents: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordPush:
    """Deliver a push ("coupon" or "ad") unless `cap` were delivered in the last `window_ms`."""

    user: str
    push_id: str
    kind: str
    now: int
    cap: int = 3
    window_ms: int = DAY_MS


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportLocation:
    """The user is at `(lat_e6, lon_e6)`; `stores` are the geofenced stores to check."""

    user: str
    lat_e6: int
    lon_e6: int
    now: int
    stores: tuple[Store, ...]


SessionCommand = (StartSession | ReceiveCoupon | LockCoupon | RedeemCoupon | UnlockCoupon
                  | ExpireCoupons | TrackOrder | RecordPush | ReportLocation)

COMMANDS = (StartSession, ReceiveCoupon, LockCoupon, RedeemCoupon, UnlockCoupon,
            ExpireCoupons, TrackOrder, RecordPush, ReportLocation)


# --- events ---------------------------------------------------------------------------


@event_type("sessions.session_started")
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted:
    """The user started session `session_id` through these UTM tags (possibly empty)."""

    user: str
    session_id: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    started_at: int


@event_type("sessions.referral_attributed")
@dataclass(frozen=True, slots=True, kw_only=True)
class ReferralAttributed:
    """On the user's first touch, the user was attributed to `inviter` (seen earlier)."""

    user: str
    inviter: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    attributed_at: int


@event_type("sessions.coupon_received")
@dataclass(frozen=True, slots=True, kw_only=True)
class CouponReceived:
    """A coupon of `campaign` is in the wallet, valid until `valid_until` (exclusive)."""

    user: str
    coupon_id: str
    campaign: str
    value_cents: int
    min_spend_cents: int
    valid_until: int
    received_at: int


@event_type("sessions.coupon_locked")
@dataclass(frozen=True, slots=True, kw_only=True)
class CouponLocked:
    """The coupon is held for `order_id` while its checkout runs, at most until `until`."""

    user: str
    coupon_id: str
    order_id: str
    until: int


@event_type("sessions.coupon_redeemed")
@dataclass(frozen=True, slots=True, kw_only=True)
class CouponRedeemed:
    """The coupon took `value_cents` off `order_id`; it is used up."""

    user: str
    coupon_id: str
    order_id: str
    value_cents: int


@event_type("sessions.coupon_unlocked")
@dataclass(frozen=True, slots=True, kw_only=True)
class CouponUnlocked:
    """`order_id` let go of the coupon ("cancelled"), or its lock reached `until` unpaid
    ("lock_expired"); it lapses at the first expiry from `valid_until`."""

    user: str
    coupon_id: str
    order_id: str
    valid_until: int
    reason: str


@event_type("sessions.coupon_lock_voided")
@dataclass(frozen=True, slots=True, kw_only=True)
class CouponLockVoided:
    """`order_id` was given up before it locked the coupon: it never will."""

    user: str
    coupon_id: str
    order_id: str


@event_type("sessions.coupon_lapsed")
@dataclass(frozen=True, slots=True, kw_only=True)
class CouponLapsed:
    """The coupon's validity ended while it was neither locked nor redeemed."""

    user: str
    coupon_id: str


@event_type("sessions.order_status_changed")
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStatusChanged:
    """The order of `amount_cents` reached `status` at `at`."""

    user: str
    order_id: str
    status: str
    amount_cents: int
    at: int


@event_type("sessions.push_delivered")
@dataclass(frozen=True, slots=True, kw_only=True)
class PushDelivered:
    """A push of `kind` went out to the user at `at`."""

    user: str
    push_id: str
    kind: str
    at: int


@event_type("sessions.store_visited")
@dataclass(frozen=True, slots=True, kw_only=True)
class StoreVisited:
    """The user was first within a store's geofence at `at`: the live-stream coupon
    of `campaign` is theirs to claim."""

    user: str
    store_id: str
    campaign: str
    at: int


SessionEvent = (SessionStarted | ReferralAttributed | CouponReceived | CouponLocked
                | CouponRedeemed | CouponUnlocked | CouponLockVoided | CouponLapsed
                | OrderStatusChanged | PushDelivered | StoreVisited)


# --- rejections -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CouponNotFound(Rejection):
    """No coupon with this id is in the user's wallet."""

    user: str
    coupon_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CouponExpired(Rejection):
    """The coupon's validity ended at `valid_until` (or it already lapsed)."""

    user: str
    coupon_id: str
    valid_until: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CouponInUse(Rejection):
    """The coupon is locked by another order, `order_id`."""

    user: str
    coupon_id: str
    order_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CouponAlreadyRedeemed(Rejection):
    """The coupon was redeemed already (by another order, when redeeming)."""

    user: str
    coupon_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MinimumSpendNotMet(Rejection):
    """The order's total is below the coupon's minimum spend."""

    user: str
    coupon_id: str
    min_spend_cents: int
    order_total_cents: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CouponNotLocked(Rejection):
    """The coupon is not locked by `order_id`, so that order cannot redeem it."""

    user: str
    coupon_id: str
    order_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LockVoided(Rejection):
    """`order_id` was given up before (or after) it held the coupon: it cannot lock it."""

    user: str
    coupon_id: str
    order_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidOrderTransition(Rejection):
    """Orders move forward only; `current` is "" for an order not tracked yet."""

    user: str
    order_id: str
    current: str
    requested: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FrequencyCapped(Rejection):
    """`delivered_in_window` pushes already went out in the window; the cap is `cap`."""

    user: str
    push_id: str
    delivered_in_window: int
    cap: int


# --- state ----------------------------------------------------------------------------


@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Coupon:
    """A coupon in the wallet: its terms, its status, and the order locking or redeeming it
    (`until` is the lock's deadline while locked, else 0)."""

    campaign: str
    value_cents: int
    min_spend_cents: int
    valid_until: int
    status: str
    order_id: str
    until: int


@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionState:
    """One user's session history, wallet, orders, recent pushes and visited stores.

    `first_seen` is the start of the first session (0 before it): the gateway passes it
    as `inviter_since` when this user invites someone. `pushes` holds `(at, push_id)` of
    the deliveries within `MAX_PUSH_WINDOW_MS` of the latest, oldest first.
    `closed_locks` maps each `(coupon_id, order_id)` whose lock is over to how it ended:
    "voided" (cancelled before it was tried), "cancelled" or "lock_expired"; none of them
    can lock again.
    """

    user: str
    first_seen: int
    inviter: str
    sessions: immutables.Map[str, int]
    coupons: immutables.Map[str, Coupon]
    orders: immutables.Map[str, str]
    pushes: tuple[tuple[int, str], ...]
    visited: immutables.Map[str, int]
    closed_locks: immutables.Map[tuple[str, str], str]


_EMPTY: immutables.Map = immutables.Map()


def initial(user: str) -> SessionState:
    """A user never seen."""
    return SessionState(user=user, first_seen=0, inviter="", sessions=_EMPTY, coupons=_EMPTY,
                        orders=_EMPTY, pushes=(), visited=_EMPTY, closed_locks=_EMPTY)


# --- decide ---------------------------------------------------------------------------


def decide(command: SessionCommand, state: SessionState) -> list[SessionEvent] | Rejection:
    """The facts `command` establishes against `state`, or why it is refused."""
    malformed = _malformed(command, state)
    if malformed is not None:
        return malformed
    match command:
        case StartSession():
            return _start(command, state)
        case ReceiveCoupon():
            return _receive(command, state)
        case LockCoupon():
            return _lock(command, state)
        case RedeemCoupon():
            return _redeem(command, state)
        case UnlockCoupon():
            return _unlock(command, state)
        case ExpireCoupons():
            return _expire_due(command, state)
        case TrackOrder():
            return _track(command, state)
        case RecordPush():
            return _push(command, state)
        case ReportLocation():
            return _locate(command, state)
        case _:
            return InvalidCommand(
                reason=f"the session decider does not take {type(command).__name__}")


def _start(command: StartSession, state: SessionState) -> list[SessionEvent]:
    if command.session_id in state.sessions:
        return []
    c = command
    events: list[SessionEvent] = [SessionStarted(
        user=c.user, session_id=c.session_id, utm_source=c.utm_source, utm_medium=c.utm_medium,
        utm_campaign=c.utm_campaign, started_at=c.now)]
    first_touch = not state.sessions
    if first_touch and c.inviter and c.inviter != c.user and 0 < c.inviter_since < c.now:
        events.append(ReferralAttributed(
            user=c.user, inviter=c.inviter, utm_source=c.utm_source, utm_medium=c.utm_medium,
            utm_campaign=c.utm_campaign, attributed_at=c.now))
    return events


def _receive(command: ReceiveCoupon, state: SessionState) -> list[SessionEvent]:
    if command.coupon_id in state.coupons:
        return []
    c = command
    return [CouponReceived(user=c.user, coupon_id=c.coupon_id, campaign=c.campaign,
                           value_cents=c.value_cents, min_spend_cents=c.min_spend_cents,
                           valid_until=c.valid_until, received_at=c.now)]


def _lock(command: LockCoupon, state: SessionState) -> list[SessionEvent] | Rejection:
    user, coupon_id, order_id = command.user, command.coupon_id, command.order_id
    if (coupon_id, order_id) in state.closed_locks:
        return LockVoided(user=user, coupon_id=coupon_id, order_id=order_id)
    coupon = state.coupons.get(coupon_id)
    if coupon is None:
        return CouponNotFound(user=user, coupon_id=coupon_id)
    if coupon.status == REDEEMED:
        return CouponAlreadyRedeemed(user=user, coupon_id=coupon_id)
    if coupon.status == LOCKED:
        if coupon.order_id == order_id:
            return []
        return CouponInUse(user=user, coupon_id=coupon_id, order_id=coupon.order_id)
    if coupon.status == LAPSED or command.now >= coupon.valid_until:
        return CouponExpired(user=user, coupon_id=coupon_id, valid_until=coupon.valid_until)
    if command.order_total_cents < coupon.min_spend_cents:
        return MinimumSpendNotMet(user=user, coupon_id=coupon_id,
                                  min_spend_cents=coupon.min_spend_cents,
                                  order_total_cents=command.order_total_cents)
    if command.until <= command.now:
        return InvalidCommand(reason=f"lock deadline {command.until} is not after now "
                                     f"({command.now})")
    return [CouponLocked(user=user, coupon_id=coupon_id, order_id=order_id,
                         until=command.until)]


def _redeem(command: RedeemCoupon, state: SessionState) -> list[SessionEvent] | Rejection:
    user, coupon_id, order_id = command.user, command.coupon_id, command.order_id
    coupon = state.coupons.get(coupon_id)
    if coupon is None:
        return CouponNotFound(user=user, coupon_id=coupon_id)
    if coupon.status == REDEEMED:
        if coupon.order_id == order_id:
            return []
        return CouponAlreadyRedeemed(user=user, coupon_id=coupon_id)
    if coupon.status != LOCKED or coupon.order_id != order_id:
        return CouponNotLocked(user=user, coupon_id=coupon_id, order_id=order_id)
    return [CouponRedeemed(user=user, coupon_id=coupon_id, order_id=order_id,
                           value_cents=coupon.value_cents)]


def _unlock(command: UnlockCoupon, state: SessionState) -> list[SessionEvent]:
    user, coupon_id, order_id = command.user, command.coupon_id, command.order_id
    coupon = state.coupons.get(coupon_id)
    if coupon is not None and coupon.order_id == order_id:
        if coupon.status == LOCKED:
            return [CouponUnlocked(user=user, coupon_id=coupon_id, order_id=order_id,
                                   valid_until=coupon.valid_until, reason="cancelled")]
        return []  # redeemed by this order: too late to cancel, and nothing to give back
    if (coupon_id, order_id) in state.closed_locks:
        return []
    return [CouponLockVoided(user=user, coupon_id=coupon_id, order_id=order_id)]


def _expire_due(command: ExpireCoupons, state: SessionState) -> list[SessionEvent]:
    user, now = command.user, command.now
    locks = sorted((c.until, cid) for cid, c in state.coupons.items()
                   if c.status == LOCKED and c.until <= now)
    events: list[SessionEvent] = [
        CouponUnlocked(user=user, coupon_id=cid, order_id=state.coupons[cid].order_id,
                       valid_until=state.coupons[cid].valid_until, reason="lock_expired")
        for _, cid in locks]
    released = {cid for _, cid in locks}
    due = sorted((c.valid_until, cid) for cid, c in state.coupons.items()
                 if (c.status == HELD or cid in released) and c.valid_until <= now)
    events.extend(CouponLapsed(user=user, coupon_id=cid) for _, cid in due)
    return events


def _track(command: TrackOrder, state: SessionState) -> list[SessionEvent] | Rejection:
    current = state.orders.get(command.order_id, "")
    if command.status == current:
        return []
    if command.status not in _NEXT_STATUS[current]:
        return InvalidOrderTransition(user=command.user, order_id=command.order_id,
                                      current=current, requested=command.status)
    return [OrderStatusChanged(user=command.user, order_id=command.order_id,
                               status=command.status, amount_cents=command.amount_cents,
                               at=command.now)]


def _push(command: RecordPush, state: SessionState) -> list[SessionEvent] | Rejection:
    if any(push_id == command.push_id for _, push_id in state.pushes):
        return []
    now, start = command.now, command.now - command.window_ms
    in_window = sum(1 for at, _ in state.pushes if start < at <= now)
    if in_window >= command.cap:
        return FrequencyCapped(user=command.user, push_id=command.push_id,
                               delivered_in_window=in_window, cap=command.cap)
    return [PushDelivered(user=command.user, push_id=command.push_id, kind=command.kind, at=now)]


def _locate(command: ReportLocation, state: SessionState) -> list[SessionEvent]:
    events: list[SessionEvent] = []
    seen: set[str] = set()
    for store_id, lat_e6, lon_e6, campaign, radius_m in command.stores:
        if store_id in state.visited or store_id in seen:
            continue
        if distance_m(command.lat_e6, command.lon_e6, lat_e6, lon_e6) <= radius_m:
            seen.add(store_id)
            events.append(StoreVisited(user=command.user, store_id=store_id, campaign=campaign,
                                       at=command.now))
    return events


def distance_m(lat1_e6: int, lon1_e6: int, lat2_e6: int, lon2_e6: int) -> float:
    """The great-circle (haversine) distance in metres between two points in micro-degrees."""
    phi1, phi2 = radians(lat1_e6 / 1e6), radians(lat2_e6 / 1e6)
    dphi, dlambda = phi2 - phi1, radians((lon2_e6 - lon1_e6) / 1e6)
    a = sin(dphi / 2) ** 2 + cos(phi1) * cos(phi2) * sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * asin(sqrt(min(a, 1.0)))


# --- malformed commands ---------------------------------------------------------------


def _is_int64(value: object) -> bool:
    """An int (not a bool) that fits the log's 64-bit integers."""
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


_MAY_BE_EMPTY = frozenset(("utm_source", "utm_medium", "utm_campaign", "inviter"))
"""Str fields that may be empty; every other str field is required."""
_NON_NEGATIVE = frozenset(("value_cents", "min_spend_cents", "order_total_cents",
                           "amount_cents", "inviter_since", "cap"))

_CHECKS = FieldChecks(COMMANDS, optional_strs=_MAY_BE_EMPTY, non_negative=_NON_NEGATIVE)
"""Each command's int and str fields, checked before any business rule."""


def _malformed(command: SessionCommand, state: SessionState) -> InvalidCommand | None:
    """What is wrong with `command`'s fields, or a command for another user.

    None also for a command class this decider does not know: `decide` refuses those.
    """
    if type(command) not in COMMANDS:
        return None
    name = type(command).__name__
    problem = _CHECKS.problem(command)
    if problem is not None:
        return InvalidCommand(reason=problem)
    if command.user != state.user:
        return InvalidCommand(reason=f"{name} for user {command.user!r} sent to user "
                                     f"{state.user!r}")
    match command:
        case TrackOrder() if command.status not in ORDER_STATUSES:
            return InvalidCommand(reason=f"order status must be one of {ORDER_STATUSES}, "
                                         f"not {command.status!r}")
        case RecordPush() if command.kind not in PUSH_KINDS:
            return InvalidCommand(reason=f"push kind must be one of {PUSH_KINDS}, "
                                         f"not {command.kind!r}")
        case RecordPush() if not 0 < command.window_ms <= MAX_PUSH_WINDOW_MS:
            return InvalidCommand(reason=f"window_ms must be in (0, {MAX_PUSH_WINDOW_MS}], "
                                         f"not {command.window_ms}")
        case ReportLocation():
            return _bad_location(command)
    return None


def _bad_location(command: ReportLocation) -> InvalidCommand | None:
    """What is wrong with a location report's coordinates or stores, if anything."""
    if not _on_earth(command.lat_e6, command.lon_e6):
        return InvalidCommand(reason=f"({command.lat_e6}, {command.lon_e6}) is not a "
                                     f"latitude/longitude in micro-degrees")
    stores = command.stores
    if type(stores) not in (tuple, list):
        return InvalidCommand(reason="stores must be a sequence of "
                                     "(store_id, lat_e6, lon_e6, campaign, radius_m)")
    for i, store in enumerate(stores):
        if (type(store) not in (tuple, list) or len(store) != 5
                or not all(type(store[k]) is str and store[k] for k in (0, 3))
                or not all(_is_int64(store[k]) for k in (1, 2, 4))
                or not _on_earth(store[1], store[2]) or store[4] < 0):
            return InvalidCommand(reason=f"store {i} must be (store_id, lat_e6, lon_e6, "
                                         f"campaign, radius_m >= 0), not {store!r}")
    return None


def _on_earth(lat_e6: int, lon_e6: int) -> bool:
    return -90_000_000 <= lat_e6 <= 90_000_000 and -180_000_000 <= lon_e6 <= 180_000_000


# --- evolve ---------------------------------------------------------------------------


replace = fast_replace(SessionState)


def evolve(state: SessionState, event: SessionEvent) -> SessionState:
    """The state after `event`. No validation: the event already happened."""
    match event:
        case SessionStarted():
            first_seen = state.first_seen if state.sessions else event.started_at
            return replace(state, first_seen=first_seen,
                           sessions=state.sessions.set(event.session_id, event.started_at))
        case ReferralAttributed():
            return replace(state, inviter=event.inviter)
        case CouponReceived():
            coupon = Coupon(campaign=event.campaign, value_cents=event.value_cents,
                            min_spend_cents=event.min_spend_cents,
                            valid_until=event.valid_until, status=HELD, order_id="",
                            until=0)
            return replace(state, coupons=state.coupons.set(event.coupon_id, coupon))
        case CouponLocked():
            return _coupon_now(state, event.coupon_id, LOCKED, event.order_id, event.until)
        case CouponRedeemed():
            return _coupon_now(state, event.coupon_id, REDEEMED, event.order_id)
        case CouponUnlocked():
            state = replace(state, closed_locks=state.closed_locks.set(
                (event.coupon_id, event.order_id), event.reason))
            return _coupon_now(state, event.coupon_id, HELD, "")
        case CouponLockVoided():
            return replace(state, closed_locks=state.closed_locks.set(
                (event.coupon_id, event.order_id), "voided"))
        case CouponLapsed():
            return _coupon_now(state, event.coupon_id, LAPSED, "")
        case OrderStatusChanged():
            return replace(state, orders=state.orders.set(event.order_id, event.status))
        case PushDelivered():
            return replace(state, pushes=_recent_pushes(state.pushes, event.at, event.push_id))
        case StoreVisited():
            return replace(state, visited=state.visited.set(event.store_id, event.at))
        case _:
            assert_never(event)


def _coupon_now(state: SessionState, coupon_id: str, status: str, order_id: str,
                until: int = 0) -> SessionState:
    """The state with a wallet coupon moved to `status` for `order_id` (locked `until`)."""
    coupon = state.coupons.get(coupon_id)
    if coupon is None:
        return state
    moved = Coupon(campaign=coupon.campaign, value_cents=coupon.value_cents,
                   min_spend_cents=coupon.min_spend_cents, valid_until=coupon.valid_until,
                   status=status, order_id=order_id, until=until)
    return replace(state, coupons=state.coupons.set(coupon_id, moved))


def _recent_pushes(pushes: tuple[tuple[int, str], ...], at: int,
                   push_id: str) -> tuple[tuple[int, str], ...]:
    """`pushes` plus `(at, push_id)`, oldest first, without those too old for any window."""
    oldest = at - MAX_PUSH_WINDOW_MS
    kept = tuple(p for p in pushes if p[0] > oldest) + ((at, push_id),)
    return kept if not pushes or pushes[-1][0] <= at else tuple(sorted(kept))


# --- what a shard host needs ----------------------------------------------------------


def entity_of(x: SessionCommand | SessionEvent) -> str:
    """The user a command or an event is about."""
    return x.user


def deadline_of(event: SessionEvent) -> int | None:
    """When a held coupon is due to lapse (on receipt, and again once it is unlocked), or a
    lock is due to be released (`until`)."""
    match event:
        case CouponReceived() | CouponUnlocked():
            return event.valid_until
        case CouponLocked():
            return event.until
    return None


def next_deadline(state: SessionState) -> int | None:
    """The earliest `valid_until` of a held (lapsable) coupon or `until` of a lock, if any."""
    return min((c.valid_until if c.status == HELD else c.until
                for c in state.coupons.values() if c.status in (HELD, LOCKED)), default=None)


def expire(user: str, now: int) -> ExpireCoupons:
    """The command a host issues once a coupon of `user` is due to lapse or be unlocked."""
    return ExpireCoupons(user=user, now=now)


session_decider: Decider[SessionCommand, SessionEvent, SessionState] = Decider(
    kind="session", initial=initial, decide=decide, evolve=evolve, entity_of=entity_of,
    commands=COMMANDS, deadline_of=deadline_of, next_deadline=next_deadline, expire=expire)
