"""The rules of a SKU: how its commands are decided and its events folded.

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

Presale set-asides (`SetAsideStock`, `SellSetAside`, `ReturnSetAside`; driven by
`flows/presale_stock.py` from the presale's events): a deposit's units leave the shelf
into a fourth bucket, `set_aside`, kept for the deposit holder under a hold id; no sale
window, tier, per-user limit or deadline applies (the presale decides its own windows and
price). More than is available is refused `SoldOut`. The hold is then either sold whole
(the balance was paid: `set_aside -> sold`) or returned whole (the deposit was forfeited:
`set_aside -> available`), once: the same step again decides nothing, the other step is
refused `SetAsideNotHeld` (`sold`, `returned`, or `unknown_hold`). The same hold id set
aside again for the same user and quantity decides nothing; on other terms it is refused.
At every point available + reserved + set_aside + sold == stocked.

Refunds (`ReturnSoldUnits`, driven by the checkout's refund of a paid order,
`flows/checkout.py`): the units a confirmed reservation sold go back from `sold` to
`available`, into the tiers they came from, and free the user's per-user limit, as a
release would have. Once per reservation: a return again decides nothing; a reservation
still held (release it), voided, or never confirmed here is refused `NotSold`. The
reservation stays confirmed (a release of it is still `AlreadyConfirmed`). The state's
`confirmed` keeps each confirmed reservation as it was held, so its units and tiers are
known.

Reconfiguring a sale (say to extend its window) keeps the units taken per tier by index,
so it is refused when a tier would hold fewer units than are taken in it, or when the
number of tiers changes while any unit is taken. Prices may change; reservations keep
the prices they were given.

The words (commands, events, refusals) are `actors/sku/words.py`'s, the state
`actors/sku/state.py`'s; `actors/sku/__init__.py` makes them the `sku_decider`. Pure: no
I/O, clock, randomness or logging. `now` and ids arrive in the commands.
"""

from __future__ import annotations

from typing import assert_never

import immutables

from saleday.actors.decider import InvalidCommand, Rejection
from saleday.actors.fields import Intake, fast_replace, is_int64
from saleday.actors.sku.state import Reservation, SkuState
from saleday.actors.sku.words import (
    COMMANDS,
    MAX_UNITS_PER_RESERVATION,
    AddStock,
    AlreadyConfirmed,
    ConfigureSale,
    ConfirmReservation,
    DeadlinePassed,
    DuplicateReservation,
    ExpireReservations,
    InvalidQuantity,
    LimitExceeded,
    NotReservationOwner,
    NotSold,
    QuantityTooLarge,
    ReleaseReservation,
    ReservationConfirmed,
    ReservationExpired,
    ReservationNotFound,
    ReservationReleased,
    ReservationVoided,
    ReserveStock,
    ReturnSetAside,
    ReturnSoldUnits,
    SaleConfigured,
    SaleNotOpen,
    SellSetAside,
    SetAsideNotHeld,
    SetAsideReturned,
    SetAsideSold,
    SetAsideStock,
    SkuCommand,
    SkuEvent,
    SoldOut,
    SoldUnitsReturned,
    StockAdded,
    StockReserved,
    StockSetAside,
    Tiers,
    UnknownSku,
    VoidedBeforeTry,
)

_INTAKE = Intake("sku", COMMANDS, entity="sku", optional_strs=("reason",),
                 non_negative=("now", "deadline", "start", "end", "per_user_limit"))
"""Each command's int and str fields and its SKU, checked before any business rule."""


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
        case SetAsideStock():
            return _set_aside(command, state)
        case SellSetAside() | ReturnSetAside():
            return _close_set_aside(command, state)
        case ReturnSoldUnits():
            return _return_sold(command, state)
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
    if command.reservation_id in state.reservations or command.reservation_id in state.confirmed:
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


def _set_aside(command: SetAsideStock, state: SkuState) -> list[SkuEvent] | Rejection:
    sku, hold = command.sku, command.hold_id
    if command.qty < 1:
        return InvalidQuantity(sku=sku, qty=command.qty)
    if command.qty > MAX_UNITS_PER_RESERVATION:
        return QuantityTooLarge(sku=sku, qty=command.qty, limit=MAX_UNITS_PER_RESERVATION)
    if not state.known:
        return UnknownSku(sku=sku)
    known = state.set_asides.get(hold)
    if known is not None or hold in state.set_aside_closed:
        if known is not None and known != (command.user, command.qty):
            return InvalidCommand(reason=f"hold {hold!r} was set aside on other terms")
        return []
    if command.qty > state.available:
        return SoldOut(sku=sku, requested=command.qty, available=state.available)
    return [StockSetAside(sku=sku, hold_id=hold, user=command.user, qty=command.qty,
                          set_aside_at=command.now)]


def _close_set_aside(command: SellSetAside | ReturnSetAside,
                     state: SkuState) -> list[SkuEvent] | Rejection:
    sku, hold = command.sku, command.hold_id
    selling = type(command) is SellSetAside
    closed = state.set_aside_closed.get(hold)
    if closed is not None:
        if closed == ("sold" if selling else "returned"):
            return []
        return SetAsideNotHeld(sku=sku, hold_id=hold, reason=closed)
    held = state.set_asides.get(hold)
    if held is None:
        return SetAsideNotHeld(sku=sku, hold_id=hold, reason="unknown_hold")
    user, qty = held
    if selling:
        return [SetAsideSold(sku=sku, hold_id=hold, user=user, qty=qty, sold_at=command.now)]
    return [SetAsideReturned(sku=sku, hold_id=hold, user=user, qty=qty, reason=command.reason,
                             returned_at=command.now)]


def _return_sold(command: ReturnSoldUnits, state: SkuState) -> list[SkuEvent] | Rejection:
    sku, rid = command.sku, command.reservation_id
    if not state.known:
        return UnknownSku(sku=sku)
    if rid in state.returned:
        return []
    sold = state.confirmed.get(rid)
    if sold is None:
        reason = ("held" if rid in state.reservations else "voided" if rid in state.voided
                  else "unknown_reservation")
        return NotSold(sku=sku, reservation_id=rid, reason=reason)
    return [SoldUnitsReturned(reservation_id=rid, sku=sku, user=sold.user, qty=sold.qty,
                              amount_cents=sum(sold.unit_prices), reason=command.reason,
                              returned_at=command.now)]


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
    tiers, taken = state.tiers, state.tier_taken
    if not tiers:
        return ()
    last = len(tiers) - 1
    out: tuple[int, ...] = ()
    for i in range(min(last, len(taken))):
        room = tiers[i][0] - taken[i]
        if room >= qty:
            return out + (i,) * qty
        if room > 0:
            out += (i,) * room
            qty -= room
    return out + (last,) * qty


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
            rid = event.reservation_id
            held = state.reservations.get(rid)
            return replace(state, reserved=state.reserved - qty, sold=state.sold + qty,
                           reservations=_without(state.reservations, rid),
                           confirmed=state.confirmed.set(rid, held or _unheld(event)))
        case ReservationReleased() | ReservationExpired():
            return _returned(state, event.reservation_id)
        case ReservationVoided():
            return replace(state, voided=state.voided.set(event.reservation_id, event.voided_at))
        case StockSetAside(qty=qty):
            return replace(state, available=state.available - qty,
                           set_aside=state.set_aside + qty,
                           set_asides=state.set_asides.set(event.hold_id, (event.user, qty)))
        case SetAsideSold(qty=qty):
            return replace(state, set_aside=state.set_aside - qty, sold=state.sold + qty,
                           set_asides=_without(state.set_asides, event.hold_id),
                           set_aside_closed=state.set_aside_closed.set(event.hold_id, "sold"))
        case SetAsideReturned(qty=qty):
            return replace(state, set_aside=state.set_aside - qty,
                           available=state.available + qty,
                           set_asides=_without(state.set_asides, event.hold_id),
                           set_aside_closed=state.set_aside_closed.set(event.hold_id,
                                                                       "returned"))
        case SoldUnitsReturned():
            return _sold_returned(state, event.reservation_id)
        case _:
            assert_never(event)


def _sold_returned(state: SkuState, reservation_id: str) -> SkuState:
    """The state after a sold reservation's units go back to the shelf and their tiers."""
    sold = state.confirmed.get(reservation_id)
    if sold is None:
        return state
    return replace(state, available=state.available + sold.qty, sold=state.sold - sold.qty,
                   tier_taken=_moved(state.tier_taken, sold.tiers, -1),
                   returned=state.returned.set(reservation_id, sold.qty),
                   per_user=_counted(state.per_user, sold.user, -sold.qty))


def _unheld(event: ReservationConfirmed) -> Reservation:
    """What a confirmation of a reservation not held says it sold (evolve is total: the
    decider never confirms one; its units have no tiers to give back)."""
    return Reservation(user=event.user, qty=event.qty, unit_prices=(), tiers=(), deadline=0)


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


def timer_of(event: SkuEvent) -> str | None:
    """Each reservation is a timer of its own: the one its events start or end."""
    return getattr(event, "reservation_id", None)


def next_deadline(state: SkuState) -> int | None:
    """The earliest deadline among the held reservations, if any."""
    if not state.reservations:
        return None
    return min(r.deadline for r in state.reservations.values())


def expire(sku: str, now: int) -> ExpireReservations:
    """The command a host issues once a reservation of `sku` is due."""
    return ExpireReservations(sku=sku, now=now)
