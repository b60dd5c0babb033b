"""The SKU decider: one product's stock, its flash-sale price tiers, per-user limits and
reservations with deadlines (entity id = the SKU).

Stock moves between four buckets and never leaves them: `available` (on the shelf),
`reserved` (held for a checkout until a deadline), `set_aside` (kept for a presale
deposit until its balance is paid or it is forfeited) and `sold` (paid; back to
`available` when its order is refunded as a whole, `ReturnSoldUnits`). At every point
`available + reserved + set_aside + sold == stocked`, none negative.

One decider in three modules:

- `words`  its commands, events and refusals, and `MAX_UNITS_PER_RESERVATION`
           `actors/sku/words.py`
- `state`  what a SKU knows (the classes snapshots name)    `actors/sku/state.py`
- `rules`  how a command is decided and an event folded, and its timers
           `actors/sku/rules.py` (the rules in words are its docstring)

Every name a caller needs is importable from here. Pure: no I/O, clock, randomness or
logging; `now` and ids arrive in the commands.
"""

from __future__ import annotations

from saleday.actors.decider import Decider
from saleday.actors.sku.rules import (
    deadline_of,
    decide,
    entity_of,
    evolve,
    expire,
    next_deadline,
    timer_of,
)
from saleday.actors.sku.state import Reservation, SkuState, initial
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

sku_decider: Decider[SkuCommand, SkuEvent, SkuState] = Decider(
    kind="sku", initial=initial, decide=decide, evolve=evolve, entity_of=entity_of,
    commands=COMMANDS, deadline_of=deadline_of, next_deadline=next_deadline, expire=expire,
    timer_of=timer_of)

__all__ = [
    "COMMANDS", "MAX_UNITS_PER_RESERVATION", "AddStock", "AlreadyConfirmed", "ConfigureSale",
    "ConfirmReservation", "DeadlinePassed", "DuplicateReservation", "ExpireReservations",
    "InvalidQuantity", "LimitExceeded", "NotReservationOwner", "NotSold", "QuantityTooLarge",
    "ReleaseReservation", "Reservation", "ReservationConfirmed", "ReservationExpired",
    "ReservationNotFound", "ReservationReleased", "ReservationVoided", "ReserveStock",
    "ReturnSetAside", "ReturnSoldUnits", "SaleConfigured", "SaleNotOpen", "SellSetAside", "SetAsideNotHeld",
    "SetAsideReturned", "SetAsideSold", "SetAsideStock", "StockSetAside", "SkuCommand", "SkuEvent", "SkuState", "SoldOut", "SoldUnitsReturned",
    "StockAdded", "StockReserved", "Tiers", "UnknownSku", "VoidedBeforeTry", "deadline_of",
    "decide", "entity_of", "evolve", "expire", "initial", "next_deadline", "sku_decider",
    "timer_of",
]
