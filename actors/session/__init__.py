"""The user-session decider: one user's visits and referral, coupon wallet, orders, push
frequency cap and geofenced store visits (entity id = the user).

Seven small deciders, one per concern, each over its own slice of the user's state, are
`combine`d into the one entity kind a session shard hosts (`actors/combine.py`):

- `referral`  sessions and first-touch attribution      `actors/session/referral.py`
- `wallet`    coupons: held, locked, redeemed, lapsed    `actors/session/wallet.py` (its
              commands, events and refusals: `actors/session/coupons.py`); its timers
              are the session's
- `orders`    the user's orders as the user sees them    `actors/session/tracking.py`
- `pushes`    the push frequency cap                     `actors/session/pushcap.py`
- `visited`   geofenced store visits                     `actors/session/geofence.py`
- `behaviour` product views, add-to-carts, favourites      `actors/session/behaviour.py`
- `exposures` experiment variants shown to the user        `actors/session/exposure.py`

Every command first passes the session's intake (its int and str fields, and that it is
for this user), then goes to the one part that takes it. Every name a caller needs is
importable from here. Pure: no I/O, clock, randomness or logging; `now` and ids arrive in
the commands.
"""

from __future__ import annotations

from dataclasses import dataclass

import immutables

from saleday.actors.combine import combine
from saleday.actors.decider import Decider, compact_pickle
from saleday.actors.fields import Intake
from saleday.actors.lifecycle import OrderStatus
from saleday.actors.session import (
    behaviour,
    exposure,
    geofence,
    pushcap,
    referral,
    tracking,
    wallet,
)
from saleday.actors.session.behaviour import ACTIONS, BehaviourRecorded, RecordBehaviour
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
)
from saleday.actors.session.exposure import (
    AssignmentChanged,
    ExposureRecorded,
    Exposures,
    RecordExposure,
)
from saleday.actors.session.geofence import ReportLocation, Store, StoreVisited, Visits, distance_m
from saleday.actors.session.pushcap import (
    DAY_MS,
    MAX_PUSH_WINDOW_MS,
    PUSH_KINDS,
    FrequencyCapped,
    PushDelivered,
    Pushes,
    RecordPush,
)
from saleday.actors.session.referral import (
    Referral,
    ReferralAttributed,
    SessionStarted,
    StartSession,
)
from saleday.actors.session.tracking import (
    ORDER_STATUSES,
    InvalidOrderTransition,
    Orders,
    OrderStatusChanged,
    TrackOrder,
)
from saleday.actors.session.wallet import Coupon, CouponStatus, Wallet
from saleday.events.values import quick_init

SessionCommand = (StartSession | ReceiveCoupon | LockCoupon | RedeemCoupon | UnlockCoupon
                  | RelockCoupon | ReturnCoupon | ExpireCoupons | TrackOrder | RecordPush | ReportLocation | RecordBehaviour
                  | RecordExposure)

SessionEvent = (SessionStarted | ReferralAttributed | CouponReceived | CouponLocked
                | CouponRedeemed | CouponUnlocked | CouponLockVoided | CouponLapsed | CouponReturned
                | OrderStatusChanged | PushDelivered | StoreVisited | BehaviourRecorded
                | ExposureRecorded)


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionState:
    """One user: a slice of state per part of the session decider."""

    user: str
    referral: Referral
    wallet: Wallet
    orders: Orders
    pushes: Pushes
    visited: Visits
    behaviour: int = 0
    exposures: Exposures = exposure.EMPTY

    @property
    def first_seen(self) -> int:
        """The start of the user's first session (0 before it), which the gateway passes
        as `inviter_since` when this user invites someone."""
        return self.referral.first_seen

    @property
    def inviter(self) -> str:
        """Who the user was attributed to at first touch ("" = nobody)."""
        return self.referral.inviter

    @property
    def coupons(self) -> immutables.Map[str, Coupon]:
        """The coupons in the user's wallet, by id."""
        return self.wallet.coupons


_INTAKE = Intake(
    "session",
    (StartSession, ReceiveCoupon, LockCoupon, RedeemCoupon, UnlockCoupon, RelockCoupon,
     ReturnCoupon, ExpireCoupons,
     TrackOrder, RecordPush, ReportLocation, RecordBehaviour, RecordExposure),
    entity="user", optional_strs=referral.MAY_BE_EMPTY,
    non_negative=(*referral.NON_NEGATIVE, *wallet.NON_NEGATIVE, *tracking.NON_NEGATIVE,
                  *pushcap.NON_NEGATIVE, *behaviour.NON_NEGATIVE))
"""Each command's int and str fields and its user, checked before any part sees it."""

session_decider: Decider[SessionCommand, SessionEvent, SessionState] = combine(
    "session", SessionState, entity="user", intake=_INTAKE,
    parts={"referral": referral.referral_decider, "wallet": wallet.wallet_decider,
           "orders": tracking.tracking_decider, "pushes": pushcap.pushcap_decider,
           "visited": geofence.geofence_decider, "behaviour": behaviour.behaviour_decider,
           "exposures": exposure.exposure_decider})

COMMANDS = session_decider.commands
initial = session_decider.initial
decide = session_decider.decide
evolve = session_decider.evolve
entity_of = session_decider.entity_of
deadline_of = session_decider.deadline_of
next_deadline = session_decider.next_deadline
expire = wallet.expire

__all__ = [
    "ACTIONS", "COMMANDS", "DAY_MS", "AssignmentChanged", "BehaviourRecorded", "ExposureRecorded",
    "Exposures", "RecordBehaviour", "RecordExposure", "MAX_PUSH_WINDOW_MS", "ORDER_STATUSES", "PUSH_KINDS", "Coupon",
    "CouponAlreadyRedeemed", "CouponExpired", "CouponInUse", "CouponLapsed", "CouponLocked",
    "CouponLockVoided", "CouponNotFound", "CouponNotLocked", "CouponNotRedeemed", "CouponReceived",
    "CouponReturned", "ReturnCoupon",
    "CouponRedeemed", "RelockCoupon", "CouponStatus", "CouponUnlocked", "ExpireCoupons", "FrequencyCapped",
    "InvalidOrderTransition", "LockCoupon", "LockNotExpired", "LockVoided", "MinimumSpendNotMet",
    "OrderStatus", "OrderStatusChanged", "Orders", "PushDelivered", "Pushes",
    "ReceiveCoupon", "RecordPush", "RedeemCoupon", "Referral", "ReferralAttributed",
    "ReportLocation", "SessionCommand", "SessionEvent", "SessionStarted", "SessionState",
    "StartSession", "Store", "StoreVisited", "TrackOrder", "UnlockCoupon", "Visits", "Wallet",
    "decide", "deadline_of", "distance_m", "entity_of", "evolve", "expire", "initial",
    "next_deadline", "session_decider",
]
