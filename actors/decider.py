"""The shape of an entity kind: a pure decider, plus what a shard host needs to host it.

A decider is `initial`, `decide(command, state) -> events | Rejection` and
`evolve(state, event) -> state`, all pure: no I/O, clock, randomness or logging. Time and
ids arrive inside commands. An expected refusal (sold out, limit reached, ...) is a
`Rejection` value returned to the caller, never an exception.

Many entities of one kind are the same decider indexed by entity id; `entity_of` finds
the id in a command or an event. Timers are data too: `deadline_of` tells the host when
an event sets a deadline, `next_deadline` when a state next has something due, and
`expire(entity_id, now)` is the command the host issues once it is due; `timer_of` says
which deadline an event sets or ends, so the host can name an expiry's cause.

Idempotency: a command id names one command. A host answers a repeated id from its dedup
record, but only if the command is the same one: its `fingerprint` (the class name and
the field values) must match what was recorded, else the reply is an
`IdempotencyConflict`, as payment APIs answer a reused idempotency key. The fingerprint
leaves out the *stamping* fields, which a flow driven again after a crash fills afresh:
`now` on every command, and whatever a command class lists in its `STAMPED` class
variable (values derived from `now` such as deadlines, values the flow looked up at
drive time, and free-text reasons). So `ReserveStock(..., now=t2, deadline=t2 + w)`
under the id of `ReserveStock(..., now=t1, deadline=t1 + w)` is the same command, but
another SKU, user or quantity is not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields, is_dataclass
from operator import attrgetter
from typing import Any, Generic, TypeVar

import msgpack

from saleday.events.values import quick_init

C = TypeVar("C")
E = TypeVar("E")
S = TypeVar("S")


def snake_case(name: str) -> str:
    """`SoldOut` -> `sold_out`: how a refusal's class name reads as a stable code."""
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


_CODES: dict[type, str] = {}


def code_of(cls: type) -> str:
    """The code of an answer class (`SoldOut` -> `sold_out`), worked out once per class: a
    shard words every refusal it sends back, and `snake_case` each time cost as much as
    deciding a sold-out command."""
    code = _CODES.get(cls)
    if code is None:
        code = _CODES[cls] = snake_case(cls.__name__)
    return code


@dataclass(frozen=True, slots=True, kw_only=True)
class Coded:
    """An answer other than acceptance, named by its class: a `Rejection` by the rules, or a
    transport failure (`actors.host.TransportFailure`)."""

    @property
    def code(self) -> str:
        """A stable snake_case name of the answer, e.g. `sold_out`."""
        return code_of(type(self))

    def describe(self) -> str:
        """The answer in words, with its fields."""
        details = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.code}({details})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection(Coded):
    """A typed business refusal. Subclasses are frozen dataclasses named for the reason."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidCommand(Rejection):
    """A command that is malformed: wrong types, out-of-range values, unknown kind."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IdempotencyConflict(Rejection):
    """This command id was already used for a different command (other fields than the
    stamping ones, see `fingerprint`); nothing was decided. Use a fresh id."""

    command_id: str
    reason: str


STAMPED_ALWAYS = frozenset({"now"})
"""Fields no fingerprint includes: the event time every caller stamps afresh."""


def stamped_fields(cls: type) -> frozenset[str]:
    """The fields of `cls` that its fingerprint leaves out: `now` and `cls.STAMPED`."""
    return STAMPED_ALWAYS | frozenset(getattr(cls, "STAMPED", ()))


_fingerprint_getters: dict[type, Callable[[Any], tuple]] = {}
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack

Fingerprint = tuple
"""`(class name, values of the unstamped fields)`: what makes a command the same command."""


def _fingerprint_getter(cls: type) -> Callable[[Any], tuple]:
    if not is_dataclass(cls):
        return lambda command: (repr(command),)
    stamped = stamped_fields(cls)
    names = [f.name for f in fields(cls) if f.name not in stamped]
    if not names:
        return lambda command: ()
    get = attrgetter(*names)
    return (lambda command: (get(command),)) if len(names) == 1 else get


def fingerprint(command: Any) -> Fingerprint:
    """The class name and the values of every field but the stamped ones.

    Plain values, so a host can keep one per remembered command id and its snapshots
    carry them (taking it costs a fraction of a microsecond; a hash would cost more than
    deciding the command)."""
    cls = type(command)
    get = _fingerprint_getters.get(cls)
    if get is None:
        get = _fingerprint_getters[cls] = _fingerprint_getter(cls)
    return (cls.__qualname__, get(command))


def same_command(recorded: Fingerprint, fingerprint: Fingerprint) -> bool:
    """Whether two fingerprints name the same command; lists and tuples count alike (a
    command that crossed the wire has tuples where its sender may have had lists)."""
    try:
        if recorded == fingerprint:
            return True
        return _pack(recorded) == _pack(fingerprint)
    except Exception:  # noqa: BLE001 - values msgpack cannot take, or that cannot compare
        return False


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
    timer_of: Callable[[E], str | None] = lambda event: None
    """Which of its entity's timers an event starts, ends or settles (a reservation id, a
    coupon id), or None for the entity's one timer. The host names the event that set a
    deadline as the `causation_id` of the expiry that ends it."""
    events: tuple[type, ...] = ()
    """The event classes `evolve` folds; needed only to `combine` this decider with others."""

    def __post_init__(self) -> None:
        # Its commands are built once per command a client sends, and a refusal once per
        # command refused (most of a sell-out's answers): a quicker __init__ for both
        # (events/values.py; the classes are otherwise unchanged, and it is idempotent).
        for cls in self.commands:
            quick_init(cls)
        for cls in _answer_classes(Coded):
            quick_init(cls)


def _answer_classes(cls: type) -> list[type]:
    """The dataclasses among `cls`'s subclasses loaded so far (every `Rejection` and
    transport failure the deciders' modules define)."""
    found = []
    for sub in cls.__subclasses__():
        if "__slots__" in sub.__dict__:   # not the pre-`slots=True` original dataclass replaced
            found.append(sub)
        found.extend(_answer_classes(sub))
    return found


def compact_pickle(cls: type[S]) -> type[S]:
    """Let a frozen slotted dataclass pickle as `(class, field values)`.

    The default pickling of such classes goes through Python-level `__getstate__` /
    `__setstate__` per object, which made shard snapshots (hundreds of thousands of state
    objects) take ~3x longer. States keep their value semantics; only the pickle changes.
    A field added last with a default keeps older pickles loadable: they get the default.
    """
    names = tuple(f.name for f in fields(cls))
    get = attrgetter(*names)
    single = len(names) == 1
    _SETTERS[cls] = tuple(getattr(cls, n).__set__ for n in names)
    _DEFAULTS[cls] = tuple(f.default for f in fields(cls))

    def __reduce__(self: Any) -> tuple:
        values = get(self)
        return (_rebuild, (cls, (values,) if single else values))

    cls.__reduce__ = __reduce__  # type: ignore[assignment]
    return cls


_SETTERS: dict[type, tuple[Callable[[Any, Any], None], ...]] = {}
_DEFAULTS: dict[type, tuple[Any, ...]] = {}


def _rebuild(cls: type, values: tuple) -> Any:
    obj = object.__new__(cls)
    setters, defaults = _SETTERS[cls], _DEFAULTS[cls]
    missing = defaults[len(values):]
    if len(values) > len(setters) or any(d is MISSING for d in missing):
        raise ValueError(f"a pickle of {cls.__name__} with {len(values)} fields, not "
                         f"{len(setters)}: another shape")   # refuse, never shift fields
    for set_, value in zip(setters, values):
        set_(obj, value)
    for set_, default in zip(setters[len(values):], missing):  # pickled before fields were added
        set_(obj, default)
    return obj


def fold(decider: Decider[C, E, S], entity_id: str, events: Sequence[E]) -> S:
    """Replay `events` of one entity from its initial state."""
    state = decider.initial(entity_id)
    for event in events:
        state = decider.evolve(state, event)
    return state
