"""The SKU decider: one product's stock, its flash-sale price tiers, per-user limits and
reservations with deadlines.

Stock moves between three buckets and never leaves them: `available` (on the shelf),
`reserved` (held for a checkout until a deadline) and `sold` (paid). At every point
`available + reserved + sold == stocked`, none negative.

A sale is a window `[start, end)`, a per-user limit (0 = none) and price tiers
`((units, unit_price_cents), ...)`: every tier but the last covers `units` units, the last
(units == 0) covers everything after. Each reserved unit goes to the LOWEST tier that has
room and costs that tier's price, so a reservation spanning tiers carries both prices in
log order. A tier's units are taken while reserved or sold. Released and expired units
return to the tier they came from, so "the first 100 at half price" means at most 100
units are ever *sold* at half price, and a released half-price unit is offered at half
price again. A user's limit counts held plus confirmed units; releasing frees it.

A release names the reservation's owner (`user`): only the user a reservation is held
for can release it (`NotReservationOwner` otherwise), and a confirmed (paid) reservation
cannot be released at all (`AlreadyConfirmed`). A release for a reservation id that holds
nothing and was never confirmed (a TCC cancel that overtook its try) records
`ReservationVoided`: the id is closed, and a try that arrives later is refused
(`VoidedBeforeTry`), so no reservation is left hanging. (Nothing is held then, so there is
no owner to check: the void does not record who sent it.)

Limits: one reservation holds at most `MAX_UNITS_PER_RESERVATION` units (10,000;
`QuantityTooLarge` past it), since each unit carries its own price and tier in the
event. Every int field must fit the log's 64-bit ints, and `now`, deadlines, the sale
window and the per-user limit must not be negative (`InvalidCommand`).

Idempotency (actors/decider.py `fingerprint`): `now` and the fields a command lists in
`STAMPED` (a reservation's `deadline`, derived from `now` by the checkout flow; a
release's free-text `reason`) may differ when a command is sent again under its id.

Reconfiguring a sale (say to extend its window) keeps the units taken per tier by index,
so it is refused when a tier would hold fewer units than are taken in it, or when the
number of tiers changes while any unit is taken. Prices may change; reservations keep
the prices they were given.

Pure: no I/O, clock, randomness or logging. `now` and ids arrive in the commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, assert_never

import immutables

from saleday.actors.decider import Decider, InvalidCommand, Rejection, compact_pickle
from saleday.actors.fields import Intake, fast_replace, is_int64
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


SkuCommand = (AddStock | ConfigureSale | ReserveStock | ConfirmReservation
              | ReleaseReservation | ExpireReservations)

COMMANDS = (AddStock, ConfigureSale, ReserveStock, ConfirmReservation, ReleaseReservation,
            ExpireReservations)

_INTAKE = Intake("sku", COMMANDS, entity="sku", optional_strs=("reason",),
                 non_negative=("now", "deadline", "start", "end", "per_user_limit"))
"""Each command's int and str fields and its SKU, checked before any business rule."""


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


SkuEvent = (StockAdded | SaleConfigured | StockReserved | ReservationConfirmed
            | ReservationReleased | ReservationExpired | ReservationVoided)


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
    """A reservation with this id is already held."""

    sku: str
    reservation_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadlinePassed(Rejection):
    """The reservation's deadline has passed; its expiry will release it."""

    sku: str
    reservation_id: str
    deadline: int


# --- state ----------------------------------------------------------------------------


@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """Units held for a user until a deadline, with each unit's price and tier."""

    user: str
    qty: int
    unit_prices: tuple[int, ...]
    tiers: tuple[int, ...]
    deadline: int


@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class SkuState:
    """One SKU: its stock buckets, sale configuration and held reservations.

    `tier_taken[i]` counts the reserved and sold units of tier i; `per_user` counts each
    user's reserved plus sold units (users at zero are dropped).
    """

    sku: str
    known: bool
    stocked: int
    available: int
    reserved: int
    sold: int
    tiers: Tiers
    tier_taken: tuple[int, ...]
    per_user_limit: int
    start: int
    end: int
    configured: bool
    reservations: immutables.Map[str, Reservation]
    per_user: immutables.Map[str, int]
    voided: immutables.Map[str, int]
    """Reservation ids cancelled before they were tried -> when."""
    confirmed: immutables.Map[str, str] = immutables.Map()
    """Reservation ids confirmed (sold) -> their user; a release of one is refused.
    (Last, with a default: a snapshot taken before it existed still loads.)"""


_EMPTY: immutables.Map = immutables.Map()


def initial(sku: str) -> SkuState:
    """A SKU nobody has stocked or put on sale yet."""
    return SkuState(sku=sku, known=False, stocked=0, available=0, reserved=0, sold=0,
                    tiers=(), tier_taken=(), per_user_limit=0, start=0, end=0,
                    configured=False, reservations=_EMPTY, per_user=_EMPTY, voided=_EMPTY,
                    confirmed=_EMPTY)


# --- decide ---------------------------------------------------------------------------


def decide(command: SkuCommand, state: SkuState) -> list[SkuEvent] | Rejection:
    """The facts `command` establishes against `state`, or why it is refused."""
    refused = _INTAKE.refusal(command, state.sku)
    if refused is not None:
        return refused
    match command:
        case AddStock():
            return _add_stock(command, state)
        case ConfigureSale():
            return _configure_sale(command, state)
        case ReserveStock():
            return _reserve(command, state)
        case ConfirmReservation():
            return _confirm(command, state)
        case ReleaseReservation():
            return _release(command, state)
        case ExpireReservations():
            return _expire_due(command, state)
        case _:
            return _INTAKE.not_taken(command)


def _add_stock(command: AddStock, state: SkuState) -> list[SkuEvent] | Rejection:
    if command.qty < 0:
        return InvalidCommand(reason=f"cannot add negative stock ({command.qty})")
    if command.qty == 0:
        return InvalidQuantity(sku=command.sku, qty=command.qty)
    return [StockAdded(sku=command.sku, qty=command.qty)]


def _configure_sale(command: ConfigureSale, state: SkuState) -> list[SkuEvent] | Rejection:
    tiers = _normalized_tiers(command.tiers)
    if isinstance(tiers, str):
        return InvalidCommand(reason=tiers)
    if command.per_user_limit < 0:
        return InvalidCommand(reason=f"per_user_limit must be >= 0, not {command.per_user_limit}")
    if command.start >= command.end:
        return InvalidCommand(reason=f"the sale window [{command.start}, {command.end}) is empty")
    if sum(state.tier_taken) and len(tiers) != len(state.tiers):
        return InvalidCommand(reason=f"cannot change the number of tiers from {len(state.tiers)} "
                                     f"to {len(tiers)} while units are taken")
    for i, ((units, _), taken) in enumerate(zip(tiers[:-1], state.tier_taken)):
        if units < taken:
            return InvalidCommand(reason=f"tier {i} would hold {units} units but {taken} are taken")
    event = SaleConfigured(sku=command.sku, tiers=tiers, per_user_limit=command.per_user_limit,
                           start=command.start, end=command.end)
    unchanged = (state.configured and (state.tiers, state.per_user_limit, state.start, state.end)
                 == (tiers, command.per_user_limit, command.start, command.end))
    return [] if unchanged else [event]


def _reserve(command: ReserveStock, state: SkuState) -> list[SkuEvent] | Rejection:
    sku, qty, now = command.sku, command.qty, command.now
    if command.deadline <= now:
        return InvalidCommand(reason=f"deadline {command.deadline} is not after now ({now})")
    if qty < 1:
        return InvalidQuantity(sku=sku, qty=qty)
    if qty > MAX_UNITS_PER_RESERVATION:
        return QuantityTooLarge(sku=sku, qty=qty, limit=MAX_UNITS_PER_RESERVATION)
    if not state.known:
        return UnknownSku(sku=sku)
    if not (state.configured and state.start <= now < state.end):
        return SaleNotOpen(sku=sku, now=now, start=state.start, end=state.end)
    if command.reservation_id in state.voided:
        return VoidedBeforeTry(sku=sku, reservation_id=command.reservation_id)
    if command.reservation_id in state.reservations:
        return DuplicateReservation(sku=sku, reservation_id=command.reservation_id)
    held = state.per_user.get(command.user, 0)
    if state.per_user_limit and held + qty > state.per_user_limit:
        return LimitExceeded(sku=sku, user=command.user, limit=state.per_user_limit, held=held)
    if qty > state.available:
        return SoldOut(sku=sku, requested=qty, available=state.available)
    tiers = _tiers_for(qty, state)
    return [StockReserved(reservation_id=command.reservation_id, user=command.user, sku=sku,
                          qty=qty, unit_prices=tuple(state.tiers[t][1] for t in tiers),
                          tiers=tiers, deadline=command.deadline, reserved_at=now)]


def _confirm(command: ConfirmReservation, state: SkuState) -> list[SkuEvent] | Rejection:
    held = _held(command.reservation_id, state)
    if isinstance(held, Rejection):
        return held
    if command.now > held.deadline:
        return DeadlinePassed(sku=command.sku, reservation_id=command.reservation_id,
                              deadline=held.deadline)
    return [ReservationConfirmed(reservation_id=command.reservation_id, sku=command.sku,
                                 user=held.user, qty=held.qty, amount_cents=sum(held.unit_prices))]


def _release(command: ReleaseReservation, state: SkuState) -> list[SkuEvent] | Rejection:
    held = _held(command.reservation_id, state)
    if isinstance(held, ReservationNotFound) and command.reservation_id in state.confirmed:
        return AlreadyConfirmed(sku=command.sku, reservation_id=command.reservation_id)
    if isinstance(held, ReservationNotFound):
        # Nothing held under this id: close it, so a try that arrives later is refused.
        if command.reservation_id in state.voided:
            return []
        return [ReservationVoided(reservation_id=command.reservation_id, sku=command.sku,
                                  reason=command.reason, voided_at=command.now)]
    if isinstance(held, Rejection):
        return held
    if held.user != command.user:
        return NotReservationOwner(sku=command.sku, reservation_id=command.reservation_id,
                                   user=command.user)
    return [ReservationReleased(reservation_id=command.reservation_id, sku=command.sku,
                                user=held.user, qty=held.qty, reason=command.reason)]


def _expire_due(command: ExpireReservations, state: SkuState) -> list[SkuEvent]:
    due = sorted((r.deadline, rid, r) for rid, r in state.reservations.items()
                 if r.deadline <= command.now)
    return [ReservationExpired(reservation_id=rid, sku=command.sku, user=r.user, qty=r.qty,
                               deadline=deadline)
            for deadline, rid, r in due]


def _held(reservation_id: str, state: SkuState) -> Reservation | Rejection:
    """The reservation held under `reservation_id`, or why there is none."""
    if not state.known:
        return UnknownSku(sku=state.sku)
    held = state.reservations.get(reservation_id)
    if held is None:
        return ReservationNotFound(sku=state.sku, reservation_id=reservation_id)
    return held


def _tiers_for(qty: int, state: SkuState) -> tuple[int, ...]:
    """The tier of each of the next `qty` units: the lowest tier with room, in order."""
    out: list[int] = []
    last = len(state.tiers) - 1
    for i, ((units, _), taken) in enumerate(zip(state.tiers, state.tier_taken)):
        room = qty - len(out) if i == last else min(units - taken, qty - len(out))
        out.extend([i] * max(room, 0))
        if len(out) == qty:
            break
    return tuple(out)


def _normalized_tiers(tiers: object) -> Tiers | str:
    """`tiers` as a tuple of `(units, price)` int pairs, or what is wrong with them."""
    if type(tiers) not in (tuple, list) or not tiers:
        return "tiers must be a non-empty sequence of (units, unit_price_cents) pairs"
    out = []
    for i, tier in enumerate(tiers):
        if type(tier) not in (tuple, list) or len(tier) != 2 or not all(is_int64(v) for v in tier):
            return f"tier {i} must be a pair of ints (units, unit_price_cents), not {tier!r}"
        units, price = tier
        if price < 0:
            return f"tier {i} has a negative price ({price})"
        if i == len(tiers) - 1 and units != 0:
            return f"the last tier must have units == 0 (all remaining units), not {units}"
        if i < len(tiers) - 1 and units < 1:
            return f"tier {i} must cover at least one unit, not {units}"
        out.append((units, price))
    return tuple(out)


# --- evolve ---------------------------------------------------------------------------


replace = fast_replace(SkuState)


def evolve(state: SkuState, event: SkuEvent) -> SkuState:
    """The state after `event`. No validation: the event already happened."""
    match event:
        case StockAdded(qty=qty):
            return replace(state, known=True, stocked=state.stocked + qty,
                           available=state.available + qty)
        case SaleConfigured():
            taken = state.tier_taken
            if len(taken) != len(event.tiers):
                taken = (0,) * len(event.tiers)
            return replace(state, known=True, configured=True, tiers=event.tiers,
                           tier_taken=taken, per_user_limit=event.per_user_limit,
                           start=event.start, end=event.end)
        case StockReserved(qty=qty):
            held = Reservation(user=event.user, qty=qty, unit_prices=event.unit_prices,
                               tiers=event.tiers, deadline=event.deadline)
            return replace(state, available=state.available - qty,
                           reserved=state.reserved + qty,
                           tier_taken=_moved(state.tier_taken, event.tiers, +1),
                           reservations=state.reservations.set(event.reservation_id, held),
                           per_user=_counted(state.per_user, event.user, qty))
        case ReservationConfirmed(qty=qty):
            return replace(state, reserved=state.reserved - qty, sold=state.sold + qty,
                           reservations=_without(state.reservations, event.reservation_id),
                           confirmed=state.confirmed.set(event.reservation_id, event.user))
        case ReservationReleased() | ReservationExpired():
            return _returned(state, event.reservation_id)
        case ReservationVoided():
            return replace(state, voided=state.voided.set(event.reservation_id, event.voided_at))
        case _:
            assert_never(event)


def _returned(state: SkuState, reservation_id: str) -> SkuState:
    """The state after a held reservation's units go back to the shelf and their tiers."""
    held = state.reservations.get(reservation_id)
    if held is None:
        return state
    return replace(state, available=state.available + held.qty,
                   reserved=state.reserved - held.qty,
                   tier_taken=_moved(state.tier_taken, held.tiers, -1),
                   reservations=_without(state.reservations, reservation_id),
                   per_user=_counted(state.per_user, held.user, -held.qty))


def _moved(taken: tuple[int, ...], tiers: tuple[int, ...], sign: int) -> tuple[int, ...]:
    """`taken` with one unit added (sign +1) or removed (-1) per entry of `tiers`."""
    counts = list(taken)
    for t in tiers:
        counts[t] += sign
    return tuple(counts)


def _counted(per_user: immutables.Map[str, int], user: str, delta: int) -> immutables.Map[str, int]:
    """`per_user` with `delta` added to `user`'s count; a count of zero is dropped."""
    count = per_user.get(user, 0) + delta
    return per_user.set(user, count) if count else _without(per_user, user)


def _without(m: immutables.Map, key: str) -> immutables.Map:
    """`m` without `key` (which may be absent)."""
    return m.delete(key) if key in m else m


# --- what a shard host needs ----------------------------------------------------------


def entity_of(x: SkuCommand | SkuEvent) -> str:
    """The SKU a command or an event is about."""
    return x.sku


def deadline_of(event: SkuEvent) -> int | None:
    """When a reservation is due to expire; None for events that start no timer."""
    return event.deadline if type(event) is StockReserved else None


def next_deadline(state: SkuState) -> int | None:
    """The earliest deadline among the held reservations, if any."""
    if not state.reservations:
        return None
    return min(r.deadline for r in state.reservations.values())


def expire(sku: str, now: int) -> ExpireReservations:
    """The command a host issues once a reservation of `sku` is due."""
    return ExpireReservations(sku=sku, now=now)


sku_decider: Decider[SkuCommand, SkuEvent, SkuState] = Decider(
    kind="sku", initial=initial, decide=decide, evolve=evolve, entity_of=entity_of,
    commands=COMMANDS, deadline_of=deadline_of, next_deadline=next_deadline, expire=expire)
