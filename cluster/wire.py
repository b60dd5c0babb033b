"""The wire between the gateway and the shards: request and reply batches as msgpack.

Ray would pickle the requests and replies, and pickling frozen slotted dataclasses costs
~11 µs per request and ~15 µs per reply here — more than deciding them. This codec sends
each object as `[name, [field values in declaration order]]` in one msgpack blob and
rebuilds it on the other side, a few µs per request. Names are the classes' qualified
names: both ends run the same code (the log, which outlives code, uses stable wire names).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any

import msgpack

from actors.decider import Rejection
from actors.host import Accepted, Request
from events import registry as event_registry

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
        setters = tuple(getattr(cls, n).__set__ for n in names)
        new = object.__new__

        def build(values: Sequence[Any]) -> Any:
            obj = new(cls)
            for set_, value in zip(setters, values, strict=True):
                set_(obj, value)
            return obj

        self.build = build if "__post_init__" not in cls.__dict__ else (
            lambda values: cls(**dict(zip(names, values, strict=True))))

    def values(self, obj: Any) -> Any:
        got = self.get(obj)
        return (got,) if self.single else got


class Wire:
    """Encodes request batches (gateway -> shard) and reply batches (shard -> gateway)."""

    def __init__(self, commands: Iterable[type]) -> None:
        classes = list(commands) + list(_subclasses(Rejection))
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

    # requests: [command_id, correlation_id, name, values] ---------------------------

    def encode_requests(self, requests: Sequence[Request]) -> bytes:
        out = []
        for r in requests:
            t = self._t(r.command)
            out.append((r.command_id, r.correlation_id, t.name, t.values(r.command)))
        return _packb(out)

    def decode_requests(self, blob: bytes) -> list[Request]:
        """Rebuild requests; one that cannot be rebuilt becomes a `str` command, which the
        shard refuses as an `InvalidCommand` without failing the rest of the batch."""
        out = []
        by_name = self._by_name
        for command_id, correlation_id, name, values in msgpack.unpackb(blob, use_list=False):
            t = by_name.get(name)
            try:
                command = t.build(values) if t is not None else f"unknown command type {name}"
            except (TypeError, ValueError) as exc:
                command = f"malformed {name}: {exc}"
            out.append(Request(command_id, command, correlation_id))
        return out

    # replies: [0, first, last, duplicate, [[name, values], ...]] or [1, name, values] --

    def encode_replies(self, replies: Sequence[Any]) -> bytes:
        out = []
        for reply in replies:
            if type(reply) is Accepted:
                events = [(t.name, t.values(e)) for e in reply.events for t in (self._t(e),)]
                out.append((0, reply.first_version, reply.last_version, reply.duplicate, events))
            else:
                t = self._t(reply)
                out.append((1, t.name, t.values(reply)))
        return _packb(out)

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


def make_wire(commands: Iterable[type]) -> Wire:
    return Wire(commands)


WireFactory = Callable[[], Wire]
