"""The words of a user's coupon wallet: its commands, its events and its refusals.

What they mean, and the rules that decide them, are `actors/session/wallet.py`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from saleday.actors.decider import Rejection
from saleday.events.registry import event_type

# --- commands -------------------------------------------------------------------------


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
class RelockCoupon:
    """The order was paid in time, but the wallet let its lock run out before the redeem
    arrived: take the lock again until `until`, so the order can redeem the coupon."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"until"})
    """Not fingerprinted (actors/decider.py): the checkout derives it from `now`."""

    user: str
    coupon_id: str
    order_id: str
    until: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnCoupon:
    """The order that redeemed the coupon was refunded as a whole: the coupon goes back to
    the wallet, if it is still valid at `now`."""

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


WalletCommand = (ReceiveCoupon | LockCoupon | RedeemCoupon | UnlockCoupon | RelockCoupon
                 | ReturnCoupon | ExpireCoupons)


# --- events ---------------------------------------------------------------------------


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


@event_type("sessions.coupon_returned")
@dataclass(frozen=True, slots=True, kw_only=True)
class CouponReturned:
    """`order_id`, which redeemed the coupon (worth `value_cents`), was refunded: the coupon
    is back in the wallet at `returned_at`, held, valid until `valid_until` as before."""

    user: str
    coupon_id: str
    order_id: str
    value_cents: int
    valid_until: int
    returned_at: int


WalletEvent = (CouponReceived | CouponLocked | CouponRedeemed | CouponUnlocked
               | CouponLockVoided | CouponLapsed | CouponReturned)


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
class LockNotExpired(Rejection):
    """Only a lock that ran out can be taken again by its order; this one `ended` so
    (voided, cancelled) or never existed ("")."""

    user: str
    coupon_id: str
    order_id: str
    ended: str


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
class CouponNotRedeemed(Rejection):
    """The coupon cannot go back for `order_id`: that order did not redeem it (it is
    `status`, for another order or none)."""

    user: str
    coupon_id: str
    order_id: str
    status: str
