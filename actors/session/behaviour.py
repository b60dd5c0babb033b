"""A user's browsing behaviour as events: each product view, add-to-cart and favourite.

`RecordBehaviour` carries the moment it happened on the client (`at`, event time) and the
moment it reached the system (`now`); `at` may lie before `now` (a client sends its views
in a batch, or late) but never after it. Each accepted command is one
`BehaviourRecorded` event in the user's session stream, which the event-time window
views (`projections/windows.py`) fold. The slice of state is only how many were recorded:
behaviour is kept in the log, not in the session.

A part of the session decider (`actors/session/__init__.py`), which checks the command's
fields and user first. Pure: no I/O, clock, randomness or logging.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

from saleday.actors.decider import Decider, InvalidCommand
from saleday.events.registry import event_type

ACTIONS = ("view", "cart", "fav")
NON_NEGATIVE = ("at",)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordBehaviour:
    """The user did `action` ("view", "cart" or "fav") on `sku` of `category` at `at`."""

    user: str
    action: str
    sku: str
    category: str
    at: int
    now: int


@event_type("sessions.behaviour_recorded")
@dataclass(frozen=True, slots=True, kw_only=True)
class BehaviourRecorded:
    """The user did `action` on `sku` (of `category`) at `at` (event time)."""

    user: str
    action: str
    sku: str
    category: str
    at: int


def decide(command: RecordBehaviour, state: int) -> list[BehaviourRecorded] | InvalidCommand:
    """The behaviour recorded, unless its action is unknown or it happened after `now`."""
    if command.action not in ACTIONS:
        return InvalidCommand(reason=f"behaviour action must be one of {ACTIONS}, "
                                     f"not {command.action!r}")
    if command.at > command.now:
        return InvalidCommand(reason=f"behaviour at {command.at} lies after now ({command.now})")
    return [BehaviourRecorded(user=command.user, action=command.action, sku=command.sku,
                              category=command.category, at=command.at)]


def evolve(state: int, event: BehaviourRecorded) -> int:
    """One more behaviour recorded."""
    return state + 1


behaviour_decider: Decider[RecordBehaviour, BehaviourRecorded, int] = Decider(
    kind="session.behaviour", initial=lambda user: 0, decide=decide, evolve=evolve,
    entity_of=attrgetter("user"), commands=(RecordBehaviour,), events=(BehaviourRecorded,))
