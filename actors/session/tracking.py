"""A user's orders as the user sees them: each order's latest status, moving forward only.

The statuses and their moves are the order lifecycle's (`actors/lifecycle.py`): the session
sees an order from the moment it is placed, so placed -> paid | cancelled, paid ->
refunded and cancelled -> refunded (a payment that arrives after a cancel is refunded).
A repeat of the current status decides nothing.

A part of the session decider (`actors/session/__init__.py`), which checks the command's
fields and user first. Pure: no I/O, clock, randomness or logging.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import immutables

from saleday.actors.decider import Decider, InvalidCommand, Rejection
from saleday.actors.lifecycle import BY_VALUE, TRACKED, TRACKED_NEXT, OrderStatus
from saleday.events.registry import event_type

ORDER_STATUSES = tuple(s.value for s in TRACKED)
"""The statuses a `TrackOrder` may report, as plain strings."""
NON_NEGATIVE = ("amount_cents",)

Orders = immutables.Map[str, OrderStatus]
"""The tracked orders: order id -> its latest status."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackOrder:
    """An order of the user reached `status` (placed, paid, cancelled or refunded)."""

    user: str
    order_id: str
    status: str
    amount_cents: int
    now: int


@event_type("sessions.order_status_changed")
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStatusChanged:
    """The order of `amount_cents` reached `status` at `at`."""

    user: str
    order_id: str
    status: str
    amount_cents: int
    at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidOrderTransition(Rejection):
    """Orders move forward only; `current` is "" for an order not tracked yet."""

    user: str
    order_id: str
    current: str
    requested: str


EMPTY: Orders = immutables.Map()
"""No order tracked yet."""


def decide(command: TrackOrder, state: Orders) -> list[OrderStatusChanged] | Rejection:
    """The order's new status, unless it is not a move forward (or not a status)."""
    if command.status not in ORDER_STATUSES:
        return InvalidCommand(reason=f"order status must be one of {ORDER_STATUSES}, "
                                     f"not {command.status!r}")
    current = state.get(command.order_id, OrderStatus.NONE)
    if command.status == current:
        return []
    if command.status not in TRACKED_NEXT[current]:
        return InvalidOrderTransition(user=command.user, order_id=command.order_id,
                                      current=str(current), requested=command.status)
    return [OrderStatusChanged(user=command.user, order_id=command.order_id,
                               status=command.status, amount_cents=command.amount_cents,
                               at=command.now)]


def evolve(state: Orders, event: OrderStatusChanged) -> Orders:
    """The tracked orders after `event`."""
    return state.set(event.order_id, BY_VALUE[event.status])


tracking_decider: Decider[TrackOrder, OrderStatusChanged, Orders] = Decider(
    kind="session.tracking", initial=lambda user: EMPTY, decide=decide, evolve=evolve,
    entity_of=attrgetter("user"), commands=(TrackOrder,), events=(OrderStatusChanged,))
