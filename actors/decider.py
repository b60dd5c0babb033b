"""The shape of an entity kind: a pure decider, plus what a shard host needs to host it.

A decider is `initial`, `decide(command, state) -> events | Rejection` and
`evolve(state, event) -> state`, all pure: no I/O, clock, randomness or logging. Time and
ids arrive inside commands. An expected refusal (sold out, limit reached, ...) is a
`Rejection` value returned to the caller, never an exception.

Many entities of one kind are the same decider indexed by entity id; `entity_of` finds
the id in a command or an event. Timers are data too: `deadline_of` tells the host when
an event sets a deadline, `next_deadline` when a state next has something due, and
`expire(entity_id, now)` is the command the host issues once it is due.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, Generic, TypeVar

C = TypeVar("C")
E = TypeVar("E")
S = TypeVar("S")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """A typed business refusal. Subclasses are frozen dataclasses named for the reason."""

    @property
    def code(self) -> str:
        """A stable snake_case name of the refusal, e.g. `sold_out`."""
        name = type(self).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")

    def describe(self) -> str:
        """The refusal in words, with its fields."""
        details = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.code}({details})"


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidCommand(Rejection):
    """A command that is malformed: wrong types, out-of-range values, unknown kind."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Decider(Generic[C, E, S]):
    """One entity kind: its pure functions, and how a host finds ids and deadlines."""

    kind: str
    initial: Callable[[str], S]
    """The state of an entity that has no events yet, given its id."""
    decide: Callable[[C, S], Sequence[E] | Rejection]
    evolve: Callable[[S, E], S]
    entity_of: Callable[[Any], str]
    """The entity id a command or an event is about."""
    commands: tuple[type, ...]
    """The command classes this decider accepts; anything else is an `InvalidCommand`."""
    deadline_of: Callable[[E], int | None] = lambda event: None
    """When an event starts a timer: the time (ms) at which `expire` is due."""
    next_deadline: Callable[[S], int | None] = lambda state: None
    """The earliest time (ms) at which `expire` has something to do for this state."""
    expire: Callable[[str, int], C] | None = None
    """The command that ends what is due for an entity at `now`."""
    events: tuple[type, ...] = ()
    """The event classes `evolve` folds; needed only to `combine` this decider with others."""


def compact_pickle(cls: type[S]) -> type[S]:
    """Let a frozen slotted dataclass pickle as `(class, field values)`.

    The default pickling of such classes goes through Python-level `__getstate__` /
    `__setstate__` per object, which made shard snapshots (hundreds of thousands of state
    objects) take ~3x longer. States keep their value semantics; only the pickle changes.
    """
    names = tuple(f.name for f in fields(cls))
    get = attrgetter(*names)
    single = len(names) == 1
    _SETTERS[cls] = tuple(getattr(cls, n).__set__ for n in names)

    def __reduce__(self: Any) -> tuple:
        values = get(self)
        return (_rebuild, (cls, (values,) if single else values))

    cls.__reduce__ = __reduce__  # type: ignore[assignment]
    return cls


_SETTERS: dict[type, tuple[Callable[[Any, Any], None], ...]] = {}


def _rebuild(cls: type, values: tuple) -> Any:
    obj = object.__new__(cls)
    for set_, value in zip(_SETTERS[cls], values, strict=True):  # another shape: refuse
        set_(obj, value)
    return obj


def fold(decider: Decider[C, E, S], entity_id: str, events: Sequence[E]) -> S:
    """Replay `events` of one entity from its initial state."""
    state = decider.initial(entity_id)
    for event in events:
        state = decider.evolve(state, event)
    return state
