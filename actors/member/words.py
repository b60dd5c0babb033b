"""The words of a member: its commands, its events and its refusals.

What they mean, and the rules that decide them, are `actors/member/rules.py`'s; what a
member knows is `actors/member/state.py`'s. Events keep their wire names (`members.*`):
the log stores those, never a module path.
"""

from __future__ import annotations

from dataclasses import dataclass

from saleday.actors.decider import Rejection
from saleday.events.registry import event_type

DAY_MS = 86_400_000
"""One day in ms: points expire whole days after they were earned."""

TIERS = ("regular", "silver", "gold", "diamond")
"""The tiers, lowest first. A member nothing was recorded for is `regular`."""

SOURCES = ("import", "checkout")
"""Where an order in a member's history came from: a history file, or a paid checkout."""

INVOICES = ("none", "paper", "electronic")
"""The invoice a paid order asked for; an electronic one earns double points."""

PROTECTION_DAYS = (("diamond", 365), ("gold", 30), ("silver", 7), ("regular", 0))
"""The default price-protection period of each tier, in days (0: none)."""
Windows = tuple[tuple[str, int], ...]
"""Price-protection periods `((tier, days), ...)`; a tier not listed has none."""

Lots = tuple[tuple[str, int, int], ...]
"""Unexpired points not yet redeemed: `((order_ref, points left, expires_at), ...)`, the
soonest to expire first (ties by order_ref): redemptions take from the front."""
Taken = tuple[tuple[str, int], ...]
"""What a redemption took: `((order_ref, points), ...)` in the order taken."""


# --- commands -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordOrder:
    """Add an order to `user`'s history: `amount_cents` paid at `ordered_at` (ms),
    named `order_ref` (the same ref twice is one order)."""

    user: str
    order_ref: str
    ordered_at: int
    amount_cents: int
    source: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeTier:
    """Put `user` in `tier` from `now` on, as `rule` (the rule's name and terms) says."""

    user: str
    tier: str
    rule: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EarnPoints:
    """Credit `user` the points a paid order `order_ref` of `amount_cents` earns:
    `points_per_yuan` per whole yuan, twice that for an electronic `invoice`, valid for
    `valid_days` days from `now`."""

    user: str
    order_ref: str
    amount_cents: int
    invoice: str
    points_per_yuan: int
    valid_days: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RedeemPoints:
    """Spend `points` of `user`'s balance (a discount at checkout), named `redemption_id`."""

    user: str
    redemption_id: str
    points: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpirePoints:
    """Expire every lot of `user`'s points whose validity has ended by `now`."""

    user: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimPriceProtection:
    """Refund `user` the price drop on one paid line: `sku` in `order_ref`, its units paid
    `unit_prices` (cents, one per unit) at `paid_at`; the price is `price_cents` since
    `dropped_at`. Protected for as many days as `windows` gives the member's tier at
    `paid_at`."""

    user: str
    order_ref: str
    sku: str
    unit_prices: tuple[int, ...]
    paid_at: int
    price_cents: int
    dropped_at: int
    windows: Windows
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChooseInvoice:
    """At checkout, `user` asks for an `invoice` for `order_ref` (none, paper or
    electronic), made out to `title` with `tax_id` (both optional; the fields arrive in
    the command: no OCR)."""

    user: str
    order_ref: str
    invoice: str
    title: str
    tax_id: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldPoints:
    """At checkout, set `points` of `user`'s balance aside for order `hold_id` until it is
    paid (`SpendPoints`), given up (`ReleasePoints`) or `until` has passed (the timer
    releases it)."""

    user: str
    hold_id: str
    points: int
    until: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SpendPoints:
    """The order `hold_id` was paid: the points it held are redeemed."""

    user: str
    hold_id: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleasePoints:
    """The order `hold_id` was given up for `reason`: the points it held go back."""

    user: str
    hold_id: str
    reason: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeBackPoints:
    """The paid order `order_ref` was refunded (`reason`): the points it earned and that
    are still in its lot go, and the order earns none and is protected no more."""

    user: str
    order_ref: str
    reason: str
    now: int


MemberCommand = (RecordOrder | ChangeTier | EarnPoints | RedeemPoints | ExpirePoints
                 | ClaimPriceProtection | ChooseInvoice | HoldPoints | SpendPoints
                 | ReleasePoints | TakeBackPoints)

COMMANDS = (RecordOrder, ChangeTier, EarnPoints, RedeemPoints, ExpirePoints,
            ClaimPriceProtection, ChooseInvoice, HoldPoints, SpendPoints, ReleasePoints,
            TakeBackPoints)


# --- events ---------------------------------------------------------------------------


@event_type("members.order_recorded")
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRecorded:
    """`user` paid `amount_cents` for `order_ref` at `ordered_at` (from `source`)."""

    user: str
    order_ref: str
    ordered_at: int
    amount_cents: int
    source: str


@event_type("members.tier_changed")
@dataclass(frozen=True, slots=True, kw_only=True)
class TierChanged:
    """`user` moved from `previous` to `tier` at `changed_at`, by `rule`."""

    user: str
    previous: str
    tier: str
    rule: str
    changed_at: int


@event_type("members.points_earned")
@dataclass(frozen=True, slots=True, kw_only=True)
class PointsEarned:
    """`user` earned `points` for `order_ref` at `earned_at`, valid until `expires_at`."""

    user: str
    order_ref: str
    amount_cents: int
    invoice: str
    points: int
    earned_at: int
    expires_at: int


@event_type("members.points_redeemed")
@dataclass(frozen=True, slots=True, kw_only=True)
class PointsRedeemed:
    """`user` spent `points` under `redemption_id` at `redeemed_at`, taken from `taken`."""

    user: str
    redemption_id: str
    points: int
    taken: Taken
    redeemed_at: int


@event_type("members.points_expired")
@dataclass(frozen=True, slots=True, kw_only=True)
class PointsExpired:
    """The `points` left of `order_ref`'s lot lapsed at `expires_at`."""

    user: str
    order_ref: str
    points: int
    expires_at: int


@event_type("members.price_protection_refunded")
@dataclass(frozen=True, slots=True, kw_only=True)
class PriceProtectionRefunded:
    """`refund_cents` = the sum over the line's `unit_prices` of what each paid above
    `price_cents` go back to `user` for the line `sku` of `order_ref`: its price dropped at
    `dropped_at`, within the protection of the member's `tier` when it paid."""

    user: str
    order_ref: str
    sku: str
    unit_prices: tuple[int, ...]
    price_cents: int
    refund_cents: int
    tier: str
    dropped_at: int


@event_type("members.invoice_chosen")
@dataclass(frozen=True, slots=True, kw_only=True)
class InvoiceChosen:
    """`user` asked for an `invoice` for `order_ref`, to `title` / `tax_id`."""

    user: str
    order_ref: str
    invoice: str
    title: str
    tax_id: str
    chosen_at: int


@event_type("members.points_held")
@dataclass(frozen=True, slots=True, kw_only=True)
class PointsHeld:
    """`points` of `user`'s lots, `taken` from them (`((ref, points, expires_at), ...)`), are set aside for order `hold_id` at
    `held_at` until `until`: no longer in the balance, not yet redeemed."""

    user: str
    hold_id: str
    points: int
    taken: Lots
    held_at: int
    until: int


@event_type("members.points_released")
@dataclass(frozen=True, slots=True, kw_only=True)
class PointsReleased:
    """The points order `hold_id` held went back to the lots they were `taken` from (with
    their expiry), at `released_at`, for `reason` (the order's cancel reason, or
    "hold_expired")."""

    user: str
    hold_id: str
    points: int
    taken: Lots
    reason: str
    released_at: int


@event_type("members.points_taken_back")
@dataclass(frozen=True, slots=True, kw_only=True)
class PointsTakenBack:
    """`order_ref` was refunded at `taken_back_at` (`reason`): of the `earned` points it
    earned, the `points` still in its lot left the balance (0 when it earned none, or when
    they were spent, held or expired already); it earns and is protected no more."""

    user: str
    order_ref: str
    earned: int
    points: int
    reason: str
    taken_back_at: int


MemberEvent = (OrderRecorded | TierChanged | PointsEarned | PointsRedeemed | PointsExpired
               | PriceProtectionRefunded | InvoiceChosen | PointsHeld | PointsReleased
               | PointsTakenBack)


# --- rejections -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InsufficientPoints(Rejection):
    """The member's balance (unexpired points) is below what the redemption asks."""

    user: str
    wanted: int
    balance: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsNotHeld(Rejection):
    """Order `hold_id` holds no points to spend: `reason` is `released` (given up, or its
    hold lapsed) or `unknown_hold` (none was made)."""

    user: str
    hold_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NotProtected(Rejection):
    """The line is not price-protected: `reason` is `no_drop` (the price is not below what
    was paid), `tier_not_protected` (the member's tier when it paid has no protection),
    `outside_period` (the drop came before the payment or after the period),
    `already_refunded` (the line was refunded once already) or `order_refunded` (the whole
    order was refunded: nothing paid is left to protect)."""

    user: str
    order_ref: str
    sku: str
    reason: str
