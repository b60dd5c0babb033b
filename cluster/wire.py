"""The wire between the gateway and the shards: request and reply batches as msgpack.

Ray would pickle the requests and replies, and pickling frozen slotted dataclasses costs
~11 µs per request and ~15 µs per reply here — more than deciding them. This codec sends
each object as `[name, [field values in declaration order]]` in one msgpack blob and
rebuilds it on the other side, a few µs per request. Names are the classes' qualified
names: both ends run the same code (the log, which outlives code, uses stable wire names).

Not every Python value crosses: msgpack takes ints in [-2**63, 2**64) and strs that are
valid UTF-8 (no lone surrogates). `unencodable` says which field of a request cannot
cross, so the gateway refuses that request alone (`InvalidCommand`) and sends the rest;
a reply that cannot cross is replaced by an `InvalidCommand` saying why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any

import msgpack

from saleday.actors.decider import InvalidCommand, Rejection
from saleday.actors.host import Accepted, Request, TransportFailure
from saleday.events import registry as event_registry

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def _subclasses(cls: type) -> Iterable[type]:
    """Live subclasses; skips the pre-`slots=True` originals that `dataclass` replaced."""
    for sub in cls.__subclasses__():
        if "__slots__" in sub.__dict__:
            yield sub
        yield from _subclasses(sub)


class _Type:
    __slots__ = ("name", "cls", "get", "build", "single")

    def __init__(self, cls: type) -> None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        self.name = f"{cls.__module__}:{cls.__qualname__}"
        self.cls = cls
        self.single = len(names) == 1
        self.get = attrgetter(*names) if names else (lambda obj: ())
        self.build = _builder(cls, names) if "__post_init__" not in cls.__dict__ else (
            lambda values: cls(**dict(zip(names, values, strict=True))))

    def values(self, obj: Any) -> Any:
        got = self.get(obj)
        return (got,) if self.single else got


def _builder(cls: type, names: tuple[str, ...]) -> Callable[[Sequence[Any]], Any]:
    """Build a `cls` from its field values in declaration order, filling the slots
    directly; written out one line per field (a loop costs a third more per object).
    Too many or too few values raise ValueError, as `zip(strict=True)` did."""
    scope: dict[str, Any] = {"cls": cls, "new": object.__new__}
    scope.update((f"set_{i}", getattr(cls, n).__set__) for i, n in enumerate(names))
    unpack = "".join(f"v{i}, " for i in range(len(names)))
    source = "\n".join([
        "def build(values):",
        f"    ({unpack}) = values",
        "    obj = new(cls)",
        *[f"    set_{i}(obj, v{i})" for i in range(len(names))],
        "    return obj",
    ])
    exec(source, scope)  # noqa: S102 - the class's own fields, by position
    return scope["build"]


class Wire:
    """Encodes request batches (gateway -> shard) and reply batches (shard -> gateway)."""

    def __init__(self, commands: Iterable[type]) -> None:
        classes = (list(commands) + list(_subclasses(Rejection))
                   + list(_subclasses(TransportFailure)))
        classes += [event_registry._by_name[n].cls for n in event_registry.names()]
        self._by_cls: dict[type, _Type] = {}
        self._by_name: dict[str, _Type] = {}
        for cls in classes:
            if dataclasses.is_dataclass(cls) and cls not in self._by_cls:
                t = _Type(cls)
                self._by_cls[cls] = t
                self._by_name[t.name] = t

    def _t(self, obj: Any) -> _Type:
        t = self._by_cls.get(type(obj))
        if t is None:  # a class loaded after this Wire was built
            if not dataclasses.is_dataclass(obj):
                raise TypeError(f"{type(obj).__name__} cannot cross the wire")
            t = self._by_cls[type(obj)] = _Type(type(obj))
            self._by_name[t.name] = t
        return t

    # requests: [command_id, correlation_id, causation_id, name, values] -----------------

    def encode_requests(self, requests: Sequence[Request]) -> bytes:
        out = []
        for r in requests:
            t = self._t(r.command)
            out.append((r.command_id, r.correlation_id, r.causation_id, t.name,
                        t.values(r.command)))
        return _packb(out)

    def unencodable(self, request: Request) -> str | None:
        """Why `request` cannot cross the wire (naming the field), or None if it can."""
        try:
            t = self._t(request.command)
            values = t.values(request.command)
            _packb((request.command_id, request.correlation_id, request.causation_id, t.name,
                    values))
            return None
        except Exception as exc:  # noqa: BLE001 - msgpack raises several kinds; say which field
            name = type(request.command).__name__
            if not dataclasses.is_dataclass(request.command):
                return f"{name} cannot cross the wire: {exc}"
            parts = [("command_id", request.command_id), ("correlation_id", request.correlation_id),
                     ("causation_id", request.causation_id)]
            parts += [(f.name, getattr(request.command, f.name))
                      for f in dataclasses.fields(request.command)]
            for field_name, value in parts:
                problem = _pack_problem(value)
                if problem is not None:
                    return f"{name}.{field_name} cannot cross the wire ({problem}): {value!r:.80}"
            return f"{name} cannot cross the wire: {type(exc).__name__}: {exc}"

    def decode_requests(self, blob: bytes) -> list[Request]:
        """Rebuild requests; one that cannot be rebuilt becomes a `str` command, which the
        shard refuses as an `InvalidCommand` without failing the rest of the batch."""
        out = []
        by_name = self._by_name
        for command_id, correlation_id, causation_id, name, values in msgpack.unpackb(
                blob, use_list=False):
            t = by_name.get(name)
            try:
                command = t.build(values) if t is not None else f"unknown command type {name}"
            except (TypeError, ValueError) as exc:
                command = f"malformed {name}: {exc}"
            out.append(Request(command_id, command, correlation_id, causation_id))
        return out

    # replies: [0, first, last, duplicate, [[name, values], ...]] or [1, name, values] --

    def encode_replies(self, replies: Sequence[Any]) -> bytes:
        out = [self._reply(reply) for reply in replies]
        try:
            return _packb(out)
        except Exception:  # noqa: BLE001 - find the reply that cannot cross; answer it apart
            return _packb([item if _pack_problem(item) is None else self._reply(InvalidCommand(
                reason=f"the reply ({type(reply).__name__}) cannot cross the wire: "
                       f"{_pack_problem(item)}")) for item, reply in zip(out, replies)])

    def _reply(self, reply: Any) -> tuple:
        if type(reply) is Accepted:
            events = [(t.name, t.values(e)) for e in reply.events for t in (self._t(e),)]
            return (0, reply.first_version, reply.last_version, reply.duplicate, events)
        t = self._t(reply)
        return (1, t.name, t.values(reply))

    def decode_replies(self, blob: bytes) -> list[Any]:
        out = []
        by_name = self._by_name
        for item in msgpack.unpackb(blob, use_list=False):
            if item[0] == 0:
                _, first, last, duplicate, events = item
                out.append(Accepted(tuple(by_name[n].build(v) for n, v in events),
                                    first, last, duplicate))
            else:
                out.append(by_name[item[1]].build(item[2]))
        return out


def _pack_problem(value: Any) -> str | None:
    """Why msgpack cannot pack `value` (in words), or None if it can."""
    try:
        _packb(value)
        return None
    except Exception as exc:  # noqa: BLE001 - OverflowError, UnicodeEncodeError, TypeError, ...
        return f"{type(exc).__name__}: {exc}"

