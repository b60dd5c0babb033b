"""The type registry: stable wire names for event classes, and pure upcasters.

Event types are frozen slotted dataclasses registered under a wire name such as
`inventory.stock_reserved` and a schema version. The log stores the wire name, never a
module path, so classes can move. Reading an event recorded under an older schema
version runs the registered upcasters `v1 -> v2 -> ...`, each a pure `dict -> dict`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from saleday.events.codec import gc_paused
from saleday.events.envelope import Data, Envelope, NewEvent
from saleday.events.errors import EventDecodeError, UnknownEventType, UnknownSchemaVersion
from saleday.events.values import quick_init

T = TypeVar("T")
Upcaster = Callable[[Data], Data]
"""A pure function lifting one event payload from schema version n to n + 1."""


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    version: int
    cls: type
    fields: tuple[str, ...]
    build: Callable[[Data], Any]
    payload: Callable[[Any], Data]


def _builder(cls: type) -> Callable[[Data], Any]:
    """A constructor for payloads that carry exactly the class's fields.

    It fills the slots directly, which is what a frozen dataclass's `__init__` does too,
    minus the keyword-argument parsing; anything unusual (missing fields that take a
    default, unknown fields, a `__post_init__`) goes through the class itself. The body
    is written out one line per field (as `dataclasses` writes `__init__`): a loop over
    the fields costs a third more per event, and readers build millions of them.
    """
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(not f.init for f in fields):
        return lambda data: cls(**data)
    scope: dict[str, Any] = {"cls": cls, "new": object.__new__}
    scope.update((f"set_{i}", getattr(cls, f.name).__set__) for i, f in enumerate(fields))
    sets = [f"        set_{i}(obj, data[{f.name!r}])" for i, f in enumerate(fields)] or ["        pass"]
    source = "\n".join([
        "def build(data):",
        f"    if len(data) != {len(fields)}:",
        "        return cls(**data)",
        "    obj = new(cls)",
        "    try:",
        *sets,
        "    except KeyError:",
        "        return cls(**data)",
        "    return obj",
    ])
    exec(source, scope)  # noqa: S102 - our own field names, written with repr
    return scope["build"]


def _payload(fields: tuple[str, ...]) -> Callable[[Any], Data]:
    """`{field: event.field}` for the (sorted) `fields`, written out as one dict display: a
    comprehension of `getattr`s cost twice as much, on every event a shard decides."""
    body = ", ".join(f"{f!r}: event.{f}" for f in fields)
    scope: dict[str, Any] = {}
    exec(f"def payload(event):\n    return {{{body}}}", scope)  # noqa: S102 - our field names
    return scope["payload"]


class EventRegistry:
    """Maps wire names and schema versions to event classes, and back."""

    def __init__(self) -> None:
        self._by_name: dict[str, _Entry] = {}
        self._by_class: dict[type, _Entry] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def event(self, name: str, *, version: int = 1) -> Callable[[type[T]], type[T]]:
        """Class decorator: register a frozen slotted dataclass under `name` at `version`."""

        def register(cls: type[T]) -> type[T]:
            self.register(cls, name, version=version)
            return cls

        return register

    def register(self, cls: type, name: str, *, version: int = 1) -> None:
        """Register `cls` under the wire `name`; the name and the class must both be new."""
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:
            raise TypeError(f"{cls.__name__}: event types must be frozen dataclasses")
        if "__slots__" not in cls.__dict__:
            raise TypeError(f"{cls.__name__}: event types must be slotted dataclasses")
        if not name or "." not in name:
            raise ValueError(f"{cls.__name__}: wire name {name!r} must read 'area.event_name'")
        if version < 1:
            raise ValueError(f"{name}: schema version must be >= 1")
        if name in self._by_name:
            raise ValueError(f"wire name {name!r} is already registered to "
                             f"{self._by_name[name].cls.__name__}")
        if cls in self._by_class:
            raise ValueError(f"{cls.__name__} is already registered as {self._by_class[cls].name!r}")
        quick_init(cls)   # every event of every command is built through it (events/values.py)
        fields = tuple(sorted(f.name for f in dataclasses.fields(cls)))
        entry = _Entry(name, version, cls, fields, _builder(cls), _payload(fields))
        self._by_name[name] = entry
        self._by_class[cls] = entry

    def upcaster(self, name: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: register a pure function lifting `name` from `from_version` to +1."""

        def register(fn: Upcaster) -> Upcaster:
            key = (name, from_version)
            if key in self._upcasters:
                raise ValueError(f"{name}: an upcaster from v{from_version} is already registered")
            self._upcasters[key] = fn
            return fn

        return register

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def wire_name(self, cls: type) -> str:
        return self._by_class[cls].name

    def encode(self, event: Any) -> tuple[str, int, Data]:
        """Return `(wire name, schema version, payload)` of a registered event object."""
        try:
            entry = self._by_class[type(event)]
        except KeyError:
            raise TypeError(f"{type(event).__name__} is not a registered event type") from None
        return entry.name, entry.version, entry.payload(event)

    def new_event(self, event: Any, *, command_id: str, recorded_at: int,
                  correlation_id: str = "", causation_id: str = "") -> NewEvent:
        """Wrap a registered event object as a `NewEvent` ready to append."""
        name, version, data = self.encode(event)
        return NewEvent(type=name, schema_version=version, data=data, command_id=command_id,
                        recorded_at=recorded_at, correlation_id=correlation_id,
                        causation_id=causation_id)

    def decode(self, env: Envelope) -> Any:
        """Build the event object of a recorded envelope, upcasting older payloads."""
        entry = self._by_name.get(env.type)
        if entry is None:
            raise UnknownEventType(env.stream, env.version, env.type)
        data = env.data
        if env.schema_version != entry.version:
            data = self._upcast(env, entry)
        try:
            return entry.build(data)
        except TypeError as exc:
            raise EventDecodeError(env.stream, env.version, env.type, str(exc)) from None

    def decode_all(self, envelopes: Iterable[Envelope]) -> list[Any]:
        """`decode` each of `envelopes`, with the lookups of the common case hoisted."""
        by_name, decode = self._by_name, self.decode
        out: list[Any] = []
        append = out.append
        with gc_paused():
            for env in envelopes:
                entry = by_name.get(env[2])
                if entry is None or env[3] != entry.version:
                    append(decode(env))  # upcasts, or raises naming the event
                    continue
                try:
                    append(entry.build(env[8]))
                except TypeError:
                    append(decode(env))  # raises EventDecodeError naming the event
        return out

    def _upcast(self, env: Envelope, entry: _Entry) -> Data:
        v = env.schema_version
        if v > entry.version:
            raise UnknownSchemaVersion(env.stream, env.version, env.type, v,
                                       f"newer than this code's v{entry.version}")
        if v < 1:
            raise UnknownSchemaVersion(env.stream, env.version, env.type, v, "versions start at 1")
        data = dict(env.data)
        while v < entry.version:
            step = self._upcasters.get((entry.name, v))
            if step is None:
                raise UnknownSchemaVersion(env.stream, env.version, env.type, v,
                                           f"no upcaster from v{v} to v{v + 1}")
            data = step(data)
            v += 1
        return data


registry = EventRegistry()
"""The process-wide registry that the domain's event modules register into."""

event_type = registry.event
upcaster = registry.upcaster
