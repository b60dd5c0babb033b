"""The words of a SKU: its commands, its events, its refusals, and the one limit they state.

What they mean, and the rules that decide them, are `actors/sku/rules.py`'s; what a SKU
knows is `actors/sku/state.py`'s. Events keep their wire names (`inventory.*`): the log
stores those, never a module path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from saleday.actors.decider import Rejection
from saleday.events.registry import event_type

Tiers = tuple[tuple[int, int], ...]
"""Price tiers `((units, unit_price_cents), ...)`; the last tier has units == 0."""

MAX_UNITS_PER_RESERVATION = 10_000
"""The most units one `ReserveStock` (one checkout line) may hold; more is refused as
`QuantityTooLarge`. Each unit's price and tier travel in the `StockReserved` event, so an
unbounded quantity would make one command cost seconds and megabytes of log."""


# --- commands -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AddStock:
    """Put `qty` more units on the shelf (the initial stock, or a restock)."""

    sku: str
    qty: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigureSale:
    """Set (or change) the sale's price tiers, per-user limit and window `[start, end)`."""

    sku: str
    tiers: Tiers
    per_user_limit: int
    start: int
    end: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveStock:
    """Hold `qty` units (1 to `MAX_UNITS_PER_RESERVATION`) for `user` until `deadline`,
    at the prices the tiers give."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"deadline"})
    """Left out of the idempotency fingerprint: a re-driven checkout derives it anew."""

    reservation_id: str
    user: str
    sku: str
    qty: int
    now: int
    deadline: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfirmReservation:
    """The reservation was paid for: its units are sold."""

    reservation_id: str
    sku: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseReservation:
    """The reservation is given up (order cancelled, payment failed): units go back.

    `user` is the owner the reservation is held for; a release naming another user is
    refused (`NotReservationOwner`), as is the release of a confirmed reservation."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"reason"})
    """Left out of the idempotency fingerprint: a re-driven cancel may give another reason."""

    reservation_id: str
    sku: str
    user: str
    reason: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpireReservations:
    """Release every held reservation whose deadline is at or before `now`."""

    sku: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SetAsideStock:
    """Take `qty` units off the shelf and keep them for `user` under `hold_id` (a presale
    deposit's units: `hold_id` = `presale/<deposit id>`), outside the flash sale: no sale
    window, tier or per-user limit applies, and no deadline: the units stay set aside
    until `SellSetAside` or `ReturnSetAside` names the hold."""

    sku: str
    hold_id: str
    user: str
    qty: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SellSetAside:
    """The set-aside units of `hold_id` are sold (the presale's balance was paid)."""

    sku: str
    hold_id: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnSetAside:
    """The set-aside units of `hold_id` go back on the shelf (the deposit was forfeited)."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"reason"})

    sku: str
    hold_id: str
    reason: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnSoldUnits:
    """The order that paid for the confirmed reservation was refunded as a whole: its
    sold units go back on the shelf (and into their tiers), once."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"reason"})
    """Left out of the idempotency fingerprint: a re-driven refund may give another reason."""

    reservation_id: str
    sku: str
    reason: str
    now: int


SkuCommand = (AddStock | ConfigureSale | ReserveStock | ConfirmReservation
              | ReleaseReservation | ExpireReservations | SetAsideStock | SellSetAside
              | ReturnSetAside | ReturnSoldUnits)

COMMANDS = (AddStock, ConfigureSale, ReserveStock, ConfirmReservation, ReleaseReservation,
            ExpireReservations, SetAsideStock, SellSetAside, ReturnSetAside, ReturnSoldUnits)



# --- events ---------------------------------------------------------------------------


@event_type("inventory.stock_added")
@dataclass(frozen=True, slots=True, kw_only=True)
class StockAdded:
    """`qty` units were put on the shelf."""

    sku: str
    qty: int


@event_type("inventory.sale_configured")
@dataclass(frozen=True, slots=True, kw_only=True)
class SaleConfigured:
    """The sale now has these tiers, per-user limit (0 = none) and window `[start, end)`."""

    sku: str
    tiers: Tiers
    per_user_limit: int
    start: int
    end: int


@event_type("inventory.stock_reserved")
@dataclass(frozen=True, slots=True, kw_only=True)
class StockReserved:
    """`qty` units are held for `user` until `deadline`; unit k costs `unit_prices[k]` and
    was taken from tier `tiers[k]`."""

    reservation_id: str
    user: str
    sku: str
    qty: int
    unit_prices: tuple[int, ...]
    tiers: tuple[int, ...]
    deadline: int
    reserved_at: int


@event_type("inventory.reservation_confirmed")
@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationConfirmed:
    """The reservation was paid: its `qty` units are sold for `amount_cents` in total."""

    reservation_id: str
    sku: str
    user: str
    qty: int
    amount_cents: int


@event_type("inventory.reservation_released")
@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationReleased:
    """The reservation was given up; its units are back on the shelf and in their tiers."""

    reservation_id: str
    sku: str
    user: str
    qty: int
    reason: str


@event_type("inventory.reservation_expired")
@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationExpired:
    """The reservation reached its deadline unpaid; its units are back on the shelf."""

    reservation_id: str
    sku: str
    user: str
    qty: int
    deadline: int


@event_type("inventory.reservation_voided")
@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationVoided:
    """A release arrived for a reservation that was never made (a TCC cancel that overtook
    its try): the id is closed, so the late try is refused and nothing hangs."""

    reservation_id: str
    sku: str
    reason: str
    voided_at: int


@event_type("inventory.stock_set_aside")
@dataclass(frozen=True, slots=True, kw_only=True)
class StockSetAside:
    """`qty` units left the shelf, kept for `user` under `hold_id` at `set_aside_at`."""

    sku: str
    hold_id: str
    user: str
    qty: int
    set_aside_at: int


@event_type("inventory.set_aside_sold")
@dataclass(frozen=True, slots=True, kw_only=True)
class SetAsideSold:
    """The `qty` units set aside under `hold_id` for `user` were sold at `sold_at`."""

    sku: str
    hold_id: str
    user: str
    qty: int
    sold_at: int


@event_type("inventory.set_aside_returned")
@dataclass(frozen=True, slots=True, kw_only=True)
class SetAsideReturned:
    """The `qty` units set aside under `hold_id` went back on the shelf at `returned_at`."""

    sku: str
    hold_id: str
    user: str
    qty: int
    reason: str
    returned_at: int


@event_type("inventory.sold_units_returned")
@dataclass(frozen=True, slots=True, kw_only=True)
class SoldUnitsReturned:
    """The `qty` units the confirmed reservation sold to `user` for `amount_cents` went
    back on the shelf and into the tiers they came from at `returned_at` (its order was
    refunded: `reason`)."""

    reservation_id: str
    sku: str
    user: str
    qty: int
    amount_cents: int
    reason: str
    returned_at: int


SkuEvent = (StockAdded | SaleConfigured | StockReserved | ReservationConfirmed
            | ReservationReleased | ReservationExpired | ReservationVoided | StockSetAside
            | SetAsideSold | SetAsideReturned | SoldUnitsReturned)


# --- rejections -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownSku(Rejection):
    """No stock was ever added and no sale configured for this SKU."""

    sku: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidQuantity(Rejection):
    """A quantity below 1."""

    sku: str
    qty: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SaleNotOpen(Rejection):
    """`now` is outside the sale window `[start, end)` (both 0 when no sale is configured)."""

    sku: str
    now: int
    start: int
    end: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SoldOut(Rejection):
    """Fewer units are available than requested."""

    sku: str
    requested: int
    available: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitExceeded(Rejection):
    """The user already holds or bought `held` units; the request would pass `limit`."""

    sku: str
    user: str
    limit: int
    held: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantityTooLarge(Rejection):
    """More units than one reservation may hold (`MAX_UNITS_PER_RESERVATION`)."""

    sku: str
    qty: int
    limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NotReservationOwner(Rejection):
    """The release names a user the reservation is not held for; nothing changed."""

    sku: str
    reservation_id: str
    user: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AlreadyConfirmed(Rejection):
    """The reservation was paid for: its units are sold and cannot be released."""

    sku: str
    reservation_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationNotFound(Rejection):
    """No reservation with this id is held (never made, or already confirmed or released)."""

    sku: str
    reservation_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VoidedBeforeTry(Rejection):
    """The reservation's cancel arrived first: this id can no longer be reserved."""

    sku: str
    reservation_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DuplicateReservation(Rejection):
    """A reservation with this id is already held, or was sold (and maybe returned)."""

    sku: str
    reservation_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadlinePassed(Rejection):
    """The reservation's deadline has passed; its expiry will release it."""

    sku: str
    reservation_id: str
    deadline: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SetAsideNotHeld(Rejection):
    """No units are set aside under `hold_id`: `reason` is `unknown_hold` (never set aside),
    `sold` (a return after the sale) or `returned` (a sale after the return)."""

    sku: str
    hold_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NotSold(Rejection):
    """The reservation's units cannot be returned: `reason` is `held` (reserved, not yet
    confirmed: release it instead), `voided` (its cancel closed the id) or
    `unknown_reservation` (nothing was ever sold under this id here)."""

    sku: str
    reservation_id: str
    reason: str
