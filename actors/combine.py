"""Several small deciders over one entity, composed into one entity kind.

An entity kind that has several concerns (a user's session: referral, wallet, orders, push
cap, geofence) is written as one small `Decider` per concern, each with its own slice of
the state, its own commands and its own events, and `combine`d into the kind a shard host
runs:

- the state is one frozen dataclass: the entity id, and one field per part holding that
  part's slice (`parts` names the fields);
- a command goes through the kind's `Intake` (fields, addressed entity), then to the one
  part that takes its class, which decides it against its slice alone;
- an event is folded by the one part that knows its class, into its slice alone;
- timers: at most one part keeps them (an expiry is one command), and the kind's
  `deadline_of`, `next_deadline`, `expire` and `timer_of` are that part's.

So the parts never see each other's state, and each reads as a decider of its own. A part
is a `Decider` whose `decide` may assume what the `Intake` checks, whose `initial` is its
empty slice, and which lists its `events`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any, TypeVar

from saleday.actors.decider import Decider, Rejection
from saleday.actors.fields import Intake

S = TypeVar("S")


def combine(kind: str, state: type[S], *, entity: str, intake: Intake,
            parts: Mapping[str, Decider]) -> Decider[Any, Any, S]:
    """The entity kind `kind` made of `parts`, over `state` (fields: `entity` + the parts).

    Raises ValueError if a command or event class belongs to two parts, if `state`'s
    fields are not the entity and the parts, or if more than one part keeps timers.
    """
    names = [f.name for f in fields(state)]
    if names != [entity, *parts]:
        raise ValueError(f"{state.__name__} must have the fields {[entity, *parts]}, "
                         f"not {names}")
    by_command: dict[type, tuple[Callable[[Any], Any], Callable]] = {}
    by_event: dict[type, Callable[[Any, Any], Any]] = {}
    for name, part in parts.items():
        get = attrgetter(name)
        for cls in part.commands:
            if cls in by_command:
                raise ValueError(f"{cls.__name__} is taken by two parts of {kind}")
            by_command[cls] = (get, part.decide)
        if not part.events:
            raise ValueError(f"the {name} part of {kind} lists no events")
        for cls in part.events:
            if cls in by_event:
                raise ValueError(f"{cls.__name__} is folded by two parts of {kind}")
            by_event[cls] = _folding_into(state, name, part.evolve)
    if intake.commands != by_command.keys():
        raise ValueError(f"the {kind} intake must check the parts' commands")
    timed = [(name, part) for name, part in parts.items() if part.expire is not None]
    if len(timed) > 1:
        raise ValueError(f"only one part of {kind} may keep timers, not {[n for n, _ in timed]}")
    entity_of = attrgetter(entity)

    def initial(entity_id: str) -> S:
        return state(**{entity: entity_id},
                     **{name: part.initial(entity_id) for name, part in parts.items()})

    def decide(command: Any, whole: S) -> Sequence[Any] | Rejection:
        refused = intake.refusal(command, entity_of(whole))
        if refused is not None:
            return refused
        route = by_command.get(type(command))
        if route is None:
            return intake.not_taken(command)
        get, decide_part = route
        return decide_part(command, get(whole))

    def evolve(whole: S, event: Any) -> S:
        fold = by_event.get(type(event))
        if fold is None:
            raise AssertionError(f"the {kind} decider does not fold {type(event).__name__}")
        return fold(whole, event)

    initial.__doc__ = f"A {kind} nothing happened to yet: every part's empty slice."
    decide.__doc__ = (f"The {kind} intake, then the part that takes the command, against "
                      f"its slice.")
    evolve.__doc__ = f"The {kind} state after `event`: its part's slice folds it."
    timers: dict[str, Any] = {}
    if timed:
        name, part = timed[0]
        get_slice, own = attrgetter(name), frozenset(part.events)
        slice_deadline, event_deadline = part.next_deadline, part.deadline_of
        event_timer = part.timer_of
        timers = dict(expire=part.expire,
                      deadline_of=lambda e: event_deadline(e) if type(e) in own else None,
                      timer_of=lambda e: event_timer(e) if type(e) in own else None,
                      next_deadline=lambda whole: slice_deadline(get_slice(whole)))
    return Decider(kind=kind, initial=initial, decide=decide, evolve=evolve,
                   entity_of=entity_of, commands=tuple(by_command),
                   events=tuple(by_event), **timers)


def _folding_into(state: type[S], name: str,
                  evolve: Callable[[Any, Any], Any]) -> Callable[[S, Any], S]:
    """`(whole, event) -> whole` with the slice `name` folded by `evolve`, without
    re-running `state.__init__` (this runs on every event of every replay)."""
    setters = tuple(state.__dict__[f.name].__set__ for f in fields(state))
    get_all = attrgetter(*(f.name for f in fields(state)))
    index = [f.name for f in fields(state)].index(name)
    get = attrgetter(name)
    new = object.__new__

    def fold(whole: S, event: Any) -> S:
        values = list(get_all(whole))
        values[index] = evolve(get(whole), event)
        obj = new(state)
        for set_, value in zip(setters, values):
            set_(obj, value)
        return obj

    return fold
