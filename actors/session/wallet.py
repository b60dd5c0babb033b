"""A user's coupon wallet: coupons held, locked by one order's checkout, redeemed, lapsed.

A coupon is held, locked by one order (the "try" of checkout), redeemed by that order (its
"confirm"), or lapsed. Validity `[received, valid_until)` is checked when locking; a lock
then holds the coupon for its order until the order's payment deadline `until`, so it
neither lapses nor can be locked by another order, and its order may redeem it. The
order's "cancel" unlocks it; a lock still held at `until` is released by the next expiry
(reason "lock_expired"), so an abandoned checkout cannot keep a coupon. An unlocked coupon
past `valid_until` lapses at the next expiry (the same one that released its lock, if
due). A coupon is redeemed at most once and never after it lapsed.

    held ──lock──▶ locked ──redeem──▶ redeemed
     ▲  │             │
     └──┼─────────────┘ unlock / lock_expired
        └──expiry at or past valid_until──▶ lapsed

Every checkout step may be retried or arrive out of order. A cancel that arrives before
its try ("cancel before try": an unlock from an order that holds no lock on the coupon and
never did) records `CouponLockVoided`, and the late try is then refused (`LockVoided`), so
it cannot lock a coupon for an order that was already given up. A lock is one-shot per
(coupon, order): once released (unlocked or expired) that order cannot lock the coupon
again either (`LockCoupon`), and a repeated unlock decides nothing. The one way back is
`RelockCoupon`, which only a paid order's checkout sends (flows/checkout.py): its payment
was captured in time, but its redeem reached a wallet that had already let the lock run
out (the session shard could not commit for longer than the grace). It takes the lock
again when that lock ended "lock_expired" (never one cancelled or voided) and the coupon
is held and still valid; it is refused otherwise (`LockNotExpired`, `CouponInUse`,
`CouponAlreadyRedeemed`, `CouponExpired`), and the checkout then refunds the order.

A paid order refunded as a whole gives its redeemed coupon back (`ReturnCoupon`, sent by
the checkout's refund): a coupon redeemed by that order and still valid at `now` is held
again (`CouponReturned`), for any order but that one to lock (its lock is closed,
"returned"), and lapses at `valid_until` as before. Once: a repeat decides nothing. A
coupon past its validity stays redeemed (`CouponExpired`: it could buy nothing), and one
the order did not redeem is `CouponNotRedeemed`.

     redeemed ──return (its order refunded, still valid)──▶ held

Its commands, events and refusals are in `actors/session/coupons.py`. The part of the
session decider that keeps timers; the session decider checks the command's fields and
user first (`actors/session/__init__.py`). Pure: no I/O, clock, randomness or logging.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from operator import attrgetter
from typing import assert_never

import immutables

from saleday.actors.decider import Decider, InvalidCommand, Rejection, compact_pickle
from saleday.actors.fields import fast_replace
from saleday.actors.session.coupons import (
    CouponAlreadyRedeemed,
    CouponExpired,
    CouponInUse,
    CouponLapsed,
    CouponLocked,
    CouponLockVoided,
    CouponNotFound,
    CouponNotLocked,
    CouponNotRedeemed,
    CouponReceived,
    CouponRedeemed,
    CouponReturned,
    CouponUnlocked,
    ExpireCoupons,
    LockCoupon,
    LockNotExpired,
    LockVoided,
    MinimumSpendNotMet,
    ReceiveCoupon,
    RedeemCoupon,
    RelockCoupon,
    ReturnCoupon,
    UnlockCoupon,
    WalletCommand,
    WalletEvent,
)
from saleday.events.values import quick_init

NON_NEGATIVE = ("value_cents", "min_spend_cents", "order_total_cents")


class CouponStatus(StrEnum):
    """Where a coupon in the wallet stands (compare with `==`/`match`, never `is`: a status
    read back from a snapshot may be the plain string)."""

    HELD = "held"
    LOCKED = "locked"
    REDEEMED = "redeemed"
    LAPSED = "lapsed"


HELD, LOCKED, REDEEMED, LAPSED = CouponStatus


# --- state ----------------------------------------------------------------------------


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Coupon:
    """A coupon in the wallet: its terms, its status, and the order locking or redeeming it
    (`until` is the lock's deadline while locked, else 0)."""

    campaign: str
    value_cents: int
    min_spend_cents: int
    valid_until: int
    status: CouponStatus
    order_id: str
    until: int


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Wallet:
    """The user's coupons, and the locks that are over.

    `closed_locks` maps each `(coupon_id, order_id)` whose lock is over to how it ended:
    "voided" (cancelled before it was tried), "cancelled", "lock_expired" or "returned"
    (redeemed, then given back when the order was refunded); none of them can lock again.
    """

    coupons: immutables.Map[str, Coupon]
    closed_locks: immutables.Map[tuple[str, str], str]


EMPTY = Wallet(coupons=immutables.Map(), closed_locks=immutables.Map())
"""An empty wallet."""


# --- decide ---------------------------------------------------------------------------


def decide(command: WalletCommand, state: Wallet) -> list[WalletEvent] | Rejection:
    """The facts a wallet command establishes, or why it is refused."""
    match command:
        case ReceiveCoupon():
            return _receive(command, state)
        case LockCoupon():
            return _lock(command, state)
        case RedeemCoupon():
            return _redeem(command, state)
        case UnlockCoupon():
            return _unlock(command, state)
        case RelockCoupon():
            return _relock(command, state)
        case ReturnCoupon():
            return _return(command, state)
        case ExpireCoupons():
            return _expire_due(command, state)
        case _:
            assert_never(command)


def _receive(command: ReceiveCoupon, state: Wallet) -> list[WalletEvent]:
    if command.coupon_id in state.coupons:
        return []
    c = command
    return [CouponReceived(user=c.user, coupon_id=c.coupon_id, campaign=c.campaign,
                           value_cents=c.value_cents, min_spend_cents=c.min_spend_cents,
                           valid_until=c.valid_until, received_at=c.now)]


def _lock(command: LockCoupon, state: Wallet) -> list[WalletEvent] | Rejection:
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


def _relock(command: RelockCoupon, state: Wallet) -> list[WalletEvent] | Rejection:
    user, coupon_id, order_id = command.user, command.coupon_id, command.order_id
    coupon = state.coupons.get(coupon_id)
    if coupon is None:
        return CouponNotFound(user=user, coupon_id=coupon_id)
    if coupon.status == LOCKED and coupon.order_id == order_id:
        return []   # taken again already (a retry)
    ended = state.closed_locks.get((coupon_id, order_id), "")
    if coupon.status == REDEEMED:
        return CouponAlreadyRedeemed(user=user, coupon_id=coupon_id)
    if coupon.status == LOCKED:
        return CouponInUse(user=user, coupon_id=coupon_id, order_id=coupon.order_id)
    if ended != "lock_expired":
        return LockNotExpired(user=user, coupon_id=coupon_id, order_id=order_id, ended=ended)
    if coupon.status == LAPSED or command.now >= coupon.valid_until:
        return CouponExpired(user=user, coupon_id=coupon_id, valid_until=coupon.valid_until)
    if command.until <= command.now:
        return InvalidCommand(reason=f"lock deadline {command.until} is not after now "
                                     f"({command.now})")
    return [CouponLocked(user=user, coupon_id=coupon_id, order_id=order_id,
                         until=command.until)]


def _redeem(command: RedeemCoupon, state: Wallet) -> list[WalletEvent] | Rejection:
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


def _unlock(command: UnlockCoupon, state: Wallet) -> list[WalletEvent]:
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


def _expire_due(command: ExpireCoupons, state: Wallet) -> list[WalletEvent]:
    user, now = command.user, command.now
    locks = sorted((c.until, cid) for cid, c in state.coupons.items()
                   if c.status == LOCKED and c.until <= now)
    events: list[WalletEvent] = [
        CouponUnlocked(user=user, coupon_id=cid, order_id=state.coupons[cid].order_id,
                       valid_until=state.coupons[cid].valid_until, reason="lock_expired")
        for _, cid in locks]
    released = {cid for _, cid in locks}
    due = sorted((c.valid_until, cid) for cid, c in state.coupons.items()
                 if (c.status == HELD or cid in released) and c.valid_until <= now)
    events.extend(CouponLapsed(user=user, coupon_id=cid) for _, cid in due)
    return events


def _return(command: ReturnCoupon, state: Wallet) -> list[WalletEvent] | Rejection:
    user, coupon_id, order_id = command.user, command.coupon_id, command.order_id
    if state.closed_locks.get((coupon_id, order_id)) == "returned":
        return []
    coupon = state.coupons.get(coupon_id)
    if coupon is None:
        return CouponNotFound(user=user, coupon_id=coupon_id)
    if coupon.status != REDEEMED or coupon.order_id != order_id:
        return CouponNotRedeemed(user=user, coupon_id=coupon_id, order_id=order_id,
                                 status=str(coupon.status))
    if command.now >= coupon.valid_until:
        return CouponExpired(user=user, coupon_id=coupon_id, valid_until=coupon.valid_until)
    return [CouponReturned(user=user, coupon_id=coupon_id, order_id=order_id,
                           value_cents=coupon.value_cents, valid_until=coupon.valid_until,
                           returned_at=command.now)]


# --- evolve ---------------------------------------------------------------------------


replace = fast_replace(Wallet)


def evolve(state: Wallet, event: WalletEvent) -> Wallet:
    """The wallet after `event`. No validation: the event already happened."""
    match event:
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
        case CouponReturned():
            state = replace(state, closed_locks=state.closed_locks.set(
                (event.coupon_id, event.order_id), "returned"))
            return _coupon_now(state, event.coupon_id, HELD, "")
        case _:
            assert_never(event)


def _coupon_now(state: Wallet, coupon_id: str, status: CouponStatus, order_id: str,
                until: int = 0) -> Wallet:
    """The wallet with a coupon moved to `status` for `order_id` (locked `until`)."""
    coupon = state.coupons.get(coupon_id)
    if coupon is None:
        return state
    moved = Coupon(campaign=coupon.campaign, value_cents=coupon.value_cents,
                   min_spend_cents=coupon.min_spend_cents, valid_until=coupon.valid_until,
                   status=status, order_id=order_id, until=until)
    return replace(state, coupons=state.coupons.set(coupon_id, moved))


# --- timers ---------------------------------------------------------------------------


def deadline_of(event: WalletEvent) -> int | None:
    """When a held coupon is due to lapse (on receipt, and again once it is unlocked or
    returned), or a lock is due to be released (`until`)."""
    match event:
        case CouponReceived() | CouponUnlocked() | CouponReturned():
            return event.valid_until
        case CouponLocked():
            return event.until
    return None


def timer_of(event: WalletEvent) -> str | None:
    """Each coupon is a timer of its own: the one its events start or end."""
    return event.coupon_id


def next_deadline(state: Wallet) -> int | None:
    """The earliest `valid_until` of a held (lapsable) coupon or `until` of a lock, if any."""
    return min((c.valid_until if c.status == HELD else c.until
                for c in state.coupons.values() if c.status in (HELD, LOCKED)), default=None)


def expire(user: str, now: int) -> ExpireCoupons:
    """The command a host issues once a coupon of `user` is due to lapse or be unlocked."""
    return ExpireCoupons(user=user, now=now)


wallet_decider: Decider[WalletCommand, WalletEvent, Wallet] = Decider(
    kind="session.wallet", initial=lambda user: EMPTY, decide=decide, evolve=evolve,
    entity_of=attrgetter("user"),
    commands=(ReceiveCoupon, LockCoupon, RedeemCoupon, UnlockCoupon, RelockCoupon,
              ReturnCoupon, ExpireCoupons),
    events=(CouponReceived, CouponLocked, CouponRedeemed, CouponUnlocked, CouponLockVoided,
            CouponLapsed, CouponReturned),
    deadline_of=deadline_of, next_deadline=next_deadline, expire=expire, timer_of=timer_of)
