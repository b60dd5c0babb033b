"""The wire between the gateway and the shards: request and reply batches as msgpack.

Ray would pickle the requests and replies, and pickling frozen slotted dataclasses costs
~11 µs per request and ~15 µs per reply here — more than deciding them. This codec sends
a batch as one msgpack blob of columns: one array per field for the whole batch (command
ids, correlation ids, causation ids; then the commands grouped by class, each class as
`[name, count, [one array per field in declaration order]]`, with each object's group
when there is more than one), and replies likewise (which are accepted, their versions,
their events grouped by class; the refusals grouped by class). Building a column of
objects is one C-level `map` over the columns, so a request costs ~1-2 µs a side instead
of a row decoded and rebuilt field by field. Names are the classes' qualified names: both
ends run the same code (the log, which outlives code, uses stable wire names).

Not every Python value crosses: msgpack takes ints in [-2**63, 2**64) and strs that are
valid UTF-8 (no lone surrogates). `unencodable` says which field of a request cannot
cross, so the gateway refuses that request alone (`InvalidCommand`) and sends the rest;
a reply that cannot cross is replaced by an `InvalidCommand` saying why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
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
    __slots__ = ("name", "cls", "get", "build", "make", "single", "width")

    def __init__(self, cls: type) -> None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        self.name = f"{cls.__module__}:{cls.__qualname__}"
        self.cls = cls
        self.width = len(names)
        self.single = len(names) == 1
        self.get = attrgetter(*names) if names else (lambda obj: ())
        plain = "__post_init__" not in cls.__dict__
        self.make = _builder(cls, names) if plain else (
            lambda *values: cls(**dict(zip(names, values, strict=True))))
        """Build one object from its field values as arguments."""
        make = self.make
        self.build = lambda values: make(*values)
        """Build one object from a sequence of its field values."""

    def values(self, obj: Any) -> Any:
        got = self.get(obj)
        return (got,) if self.single else got

    def columns(self, objs: Sequence[Any]) -> list:
        """The objects' field values, one column per field."""
        if self.single:
            return [list(map(self.get, objs))]
        return list(zip(*map(self.get, objs))) if self.width else []

    def rows(self, count: int, columns: Sequence[Sequence[Any]]) -> list:
        """`count` objects from `columns`; ValueError if the columns do not hold them."""
        if len(columns) != self.width or any(len(c) != count for c in columns):
            raise ValueError(f"{count} objects need {self.width} columns of {count} values")
        if not self.width:
            return [self.make() for _ in range(count)]
        return list(map(self.make, *columns))


def _builder(cls: type, names: tuple[str, ...]) -> Callable[..., Any]:
    """Build a `cls` from its field values as arguments, filling the slots directly;
    written out one line per field (a loop costs a third more per object)."""
    scope: dict[str, Any] = {"cls": cls, "new": object.__new__}
    scope.update((f"set_{i}", getattr(cls, n).__set__) for i, n in enumerate(names))
    source = "\n".join([
        f"def build({', '.join(f'v{i}' for i in range(len(names)))}):",
        "    obj = new(cls)",
        *[f"    set_{i}(obj, v{i})" for i in range(len(names))],
        "    return obj",
    ])
    exec(source, scope)  # noqa: S102 - the class's own fields, by position
    return scope["build"]


_REQUEST = _Type(Request)
_ACCEPTED = _Type(Accepted)
_command_id, _command = attrgetter("command_id"), attrgetter("command")
_correlation_id, _causation_id = attrgetter("correlation_id"), attrgetter("causation_id")
_first, _last = attrgetter("first_version"), attrgetter("last_version")
_duplicate, _events = attrgetter("duplicate"), attrgetter("events")


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

    # objects, columnar: [[[name, count, [column per field]], ...], order] ---------------
    # `order` is None when every object is of the first type, else each object's group.

    def _columns(self, objs: Sequence[Any]) -> list:
        kinds = list(map(type, objs))
        distinct = list(dict.fromkeys(kinds))
        if len(distinct) <= 1:
            groups = [(distinct[0], objs)] if distinct else []
            order = None
        else:
            place = {cls: n for n, cls in enumerate(distinct)}
            groups = [(cls, [o for o, k in zip(objs, kinds) if k is cls]) for cls in distinct]
            order = list(map(place.__getitem__, kinds))
        out = []
        for cls, members in groups:
            t = self._t(members[0])
            out.append((t.name, len(members), t.columns(members)))
        return [out, order]

    def _rows(self, block: Sequence[Any], unknown: Callable[[str, str], Any] | None) -> list:
        """The objects of a `_columns` block, in their order. A group that cannot be built
        becomes `unknown(name, why)` for each of its objects, or raises without `unknown`."""
        groups, order = block
        built = []
        for name, count, columns in groups:
            t = self._by_name.get(name)
            try:
                if t is None:
                    raise KeyError(name)
                built.append(t.rows(count, columns))
            except (KeyError, TypeError, ValueError) as exc:
                if unknown is None:
                    raise
                why = (f"unknown command type {name}" if t is None else f"malformed {name}: {exc}")
                built.append([unknown(name, why)] * count)
        if order is None:
            return built[0] if built else []
        its = [iter(b) for b in built]
        return [next(its[g]) for g in order]

    # requests: [command_ids, correlation_ids, causation_ids, commands (columnar)] -------

    def encode_requests(self, requests: Sequence[Request]) -> bytes:
        """One msgpack array per field, for the whole batch (see the module doc)."""
        return self.encode_request_columns(
            list(map(_command_id, requests)), list(map(_correlation_id, requests)),
            list(map(_causation_id, requests)), list(map(_command, requests)))

    def encode_request_columns(self, command_ids: Sequence[str], correlation_ids: Sequence[str],
                               causation_ids: Sequence[str], commands: Sequence[Any]) -> bytes:
        """`encode_requests` of requests given as one sequence per field."""
        return _packb((command_ids, correlation_ids, causation_ids, self._columns(commands)))

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
        ids, correlations, causations, block = msgpack.unpackb(blob, use_list=False)
        commands = self._rows(block, lambda name, why: why)
        if not len(ids) == len(correlations) == len(causations) == len(commands):
            raise ValueError("a request batch whose columns differ in length")
        return list(map(_REQUEST.make, ids, commands, correlations, causations))

    # replies: [accepted?, firsts, lasts, duplicates, event counts, events, others] ------
    # (`events` and `others` columnar, as commands are)

    def encode_replies(self, replies: Sequence[Any]) -> bytes:
        try:
            return _packb(self._reply_columns(replies))
        except Exception:  # noqa: BLE001 - find the reply that cannot cross; answer it apart
            return _packb(self._reply_columns([reply if _pack_problem(self._reply(reply)) is None
                                               else InvalidCommand(
                reason=f"the reply ({type(reply).__name__}) cannot cross the wire: "
                       f"{_pack_problem(self._reply(reply))}") for reply in replies]))

    def _reply_columns(self, replies: Sequence[Any]) -> tuple:
        accepted = [r for r in replies if type(r) is Accepted]
        others = [r for r in replies if type(r) is not Accepted]
        events = [e for r in accepted for e in r.events]
        return ([type(r) is Accepted for r in replies], list(map(_first, accepted)),
                list(map(_last, accepted)), list(map(_duplicate, accepted)),
                [len(r.events) for r in accepted], self._columns(events), self._columns(others))

    def _reply(self, reply: Any) -> tuple:
        """One reply as the values that cross (to find one that cannot)."""
        if type(reply) is Accepted:
            events = [(t.name, t.values(e)) for e in reply.events for t in (self._t(e),)]
            return (0, reply.first_version, reply.last_version, reply.duplicate, events)
        t = self._t(reply)
        return (1, t.name, t.values(reply))

    def decode_replies(self, blob: bytes) -> list[Any]:
        flags, firsts, lasts, duplicates, counts, events, others = msgpack.unpackb(blob, use_list=False)
        flat = iter(self._rows(events, None))
        accepted = iter(list(map(_ACCEPTED.make, [tuple(islice(flat, n)) for n in counts],
                                 firsts, lasts, duplicates)))
        rest = iter(self._rows(others, None))
        return [next(accepted) if is_accepted else next(rest) for is_accepted in flags]


def _pack_problem(value: Any) -> str | None:
    """Why msgpack cannot pack `value` (in words), or None if it can."""
    try:
        _packb(value)
        return None
    except Exception as exc:  # noqa: BLE001 - OverflowError, UnicodeEncodeError, TypeError, ...
        return f"{type(exc).__name__}: {exc}"
