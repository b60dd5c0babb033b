"""Deciders' states as plain msgpack data, and back, for declared classes only.

A shard snapshot is read back from a store that others may be able to write, so it is
data, never code: nothing here unpickles or imports. Each entity's state is encoded as
`[class name, [field values]]`; a field is encoded by its declared type (from the state
class's annotations): ints, strs, bools, floats, bytes and None as they are; tuples as
arrays; `immutables.Map` and `dict` as maps; an `Enum` as its value; a nested state class
as the array of its field values.

The classes a codec knows are exactly the decider's state class and the dataclasses its
fields name, followed through their own fields: an explicit, closed allow-list derived
from the code, listed with their field names in `schema`. Decoding raises
`StateCodecError` (and the shard replays its stream instead) for any other class name,
for an object with the wrong number of fields or a field of the wrong type, for an enum
value that is no member, and (`check_schema`) for a snapshot whose classes or fields
differ from this code's. Scalars inside arrays and maps of scalars are kept as msgpack
decoded them, unchecked: msgpack only yields plain values, so a forged snapshot can at
worst give a wrong state, never run code.

Encoding is one `attrgetter` per object and one C-level msgpack pass; decoding is one
C-level pass plus one function call per object (about pickle's speed). An entity's
encoded bytes can be kept and spliced into the next snapshot unchanged (`pack_snapshot`).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any

import immutables
import msgpack

_PLAIN = (int, str, bool, float, bytes, type(None))


class StateCodecError(ValueError):
    """A state that cannot be encoded, or data that is not a state this code knows."""


Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]


class _Field:
    """How one declared type is encoded and decoded.

    `encode` / `decode` are None where a value is its own encoding. `exact` is the type
    the encoded value has (a scalar's type, `tuple` for an array, `dict` for a map),
    checked for all of an object's fields at once in one C-level pass; None where
    `decode` checks it.
    """

    __slots__ = ("encode", "decode", "exact")

    def __init__(self, encode: Encode | None, decode: Decode | None, exact: type | None) -> None:
        self.encode = encode
        self.decode = decode
        self.exact = exact


def _getter(indices: list[int]) -> Callable[[Any], tuple]:
    if not indices:
        return lambda data: ()
    get = itemgetter(*indices)
    return (lambda data: (get(data),)) if len(indices) == 1 else get


class _Class:
    """One allowed state class: its name, fields, and how to take it apart and rebuild it."""

    __slots__ = ("cls", "name", "names", "encode", "decode")

    def __init__(self, cls: type, name: str) -> None:
        self.cls = cls
        self.name = name
        self.names = tuple(f.name for f in dataclasses.fields(cls))
        self.encode: Encode = _unset
        self.decode: Decode = _unset

    def compile(self, fields: list[_Field]) -> None:
        cls, names, name, n = self.cls, self.names, self.name, len(self.names)
        get = attrgetter(*names) if names else (lambda obj: ())
        if n == 1:
            one = get
            get = lambda obj: (one(obj),)  # noqa: E731
        special_enc = [(i, f.encode) for i, f in enumerate(fields) if f.encode is not None]
        if not special_enc:
            self.encode = get
        else:
            def encode(obj: Any) -> list[Any]:
                values = list(get(obj))
                for i, enc in special_enc:
                    values[i] = enc(values[i])
                return values
            self.encode = encode

        typed = [i for i, f in enumerate(fields) if f.exact is not None]
        types_of, expected = _getter(typed), tuple(fields[i].exact for i in typed)
        wrong = [(names[i], fields[i].exact) for i in typed]
        convert = [(i, f.decode) for i, f in enumerate(fields) if f.decode is not None]
        setters = tuple(cls.__dict__[f].__set__ for f in names)
        new = object.__new__
        post_init = "__post_init__" in cls.__dict__

        def decode(data: Any) -> Any:
            # One function call per object (a snapshot's load runs it per reservation):
            # check the shape and the field types, convert what needs it, build.
            if type(data) is not tuple or len(data) != n:
                raise StateCodecError(f"{name}: expected an array of {n} field values")
            if tuple(map(type, types_of(data))) != expected:
                for (field, exact), value in zip(wrong, types_of(data)):
                    if type(value) is not exact and not (exact is int and type(value) is bool):
                        raise StateCodecError(f"{name}.{field}: expected {exact.__name__}, "
                                              f"got {type(value).__name__}")
            if convert:
                data = list(data)
                for i, dec in convert:
                    data[i] = dec(data[i])
            if post_init:
                return cls(**dict(zip(names, data)))
            obj = new(cls)
            for set_, value in zip(setters, data):
                set_(obj, value)
            return obj
        self.decode = decode


def _unset(_: Any) -> Any:  # pragma: no cover - replaced by compile()
    raise AssertionError("state class used before it was compiled")


def _same(value: Any) -> Any:
    return value


def _array(value: Any, where: str) -> tuple:
    if type(value) is not tuple:
        raise StateCodecError(f"{where}: expected an array, got {type(value).__name__}")
    return value


def _checked(f: _Field, where: str) -> Decode:
    """`f.decode`, with `f.exact` checked first (for a value inside an array or a map)."""
    exact, dec = f.exact, f.decode or _same
    if exact is None or (exact is tuple and f.decode is not None):
        return dec  # it checks its value itself (a state class, an array it converts)

    def decode(value: Any) -> Any:
        if type(value) is not exact and not (exact is int and type(value) is bool):
            raise StateCodecError(f"{where}: expected {exact.__name__}, got {type(value).__name__}")
        return dec(value)
    return decode


class StateCodec:
    """Encodes and decodes the states of one decider (its declared state classes only)."""

    def __init__(self, roots: Iterable[type]) -> None:
        self._by_cls: dict[type, _Class] = {}
        self._by_name: dict[str, _Class] = {}
        for root in roots:
            self._class(root)
        self.schema: dict[str, tuple[str, ...]] = {
            c.name: c.names for c in sorted(self._by_name.values(), key=lambda c: c.name)}
        """Class name -> field names, for every class this codec knows."""

    # -- building ----------------------------------------------------------------------

    def _class(self, cls: type) -> _Class:
        known = self._by_cls.get(cls)
        if known is not None:
            return known
        if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
            raise TypeError(f"{cls!r} is not a dataclass; a state class must be one")
        name = cls.__qualname__
        if name in self._by_name:
            raise TypeError(f"two state classes are named {name!r}")
        c = self._by_cls[cls] = self._by_name[name] = _Class(cls, name)
        hints = typing.get_type_hints(cls)
        c.compile([self._field(hints[f], f"{name}.{f}") for f in c.names])
        return c

    def _field(self, hint: Any, where: str) -> _Field:
        """How to encode a value of the declared type `hint`. Leaves inside arrays and maps
        of scalars are kept as msgpack decoded them; everything else is checked or built."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint in _PLAIN:
            return _Field(None, None, hint)
        if origin in (typing.Union, types.UnionType):
            if all(a in _PLAIN for a in args):
                return _Field(None, self._one_of(args, where), None)
            raise TypeError(f"{where}: a union of {args} is not supported in a state")
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return self._enum(hint, where)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            nested = self._class(hint)
            if nested.decode is _unset:  # a class that contains itself: look it up late
                return _Field(lambda obj: nested.encode(obj), lambda data: nested.decode(data),
                              tuple)
            return _Field(nested.encode, nested.decode, tuple)
        if origin is tuple:
            return self._tuple(args, where)
        if origin in (immutables.Map, dict):
            return self._map(origin, args[0], args[1], where)
        raise TypeError(f"{where}: type {hint!r} is not supported in a state "
                        "(ints, strs, bools, floats, bytes, None, enums, tuples, dicts, "
                        "immutables.Map and state dataclasses are)")

    @staticmethod
    def _one_of(kinds: tuple[type, ...], where: str) -> Decode:
        allowed = frozenset(kinds) | ({bool} if int in kinds else set())

        def decode(value: Any) -> Any:
            if type(value) not in allowed:
                raise StateCodecError(f"{where}: expected one of "
                                      f"{sorted(k.__name__ for k in allowed)}, "
                                      f"got {type(value).__name__}")
            return value
        return decode

    @staticmethod
    def _enum(hint: type[enum.Enum], where: str) -> _Field:
        members = {m.value: m for m in hint}

        def decode(value: Any) -> Any:
            try:
                return members[value]
            except (KeyError, TypeError):
                raise StateCodecError(f"{where}: {value!r} is no {hint.__name__}") from None
        return _Field(attrgetter("value"), decode, None)

    def _tuple(self, args: tuple[Any, ...], where: str) -> _Field:
        variadic = len(args) == 2 and args[1] is Ellipsis
        items = [self._field(a, f"{where}[]") for a in (args[:1] if variadic else args)]
        if all(i.encode is None and i.decode is None for i in items):
            return _Field(None, None, tuple)  # scalars (or arrays of them) all the way down
        encs = [i.encode or _same for i in items]
        decs = [_checked(i, where) for i in items]
        if variadic:
            enc_item, dec_item = encs[0], decs[0]
            return _Field(lambda value: list(map(enc_item, value)),
                          lambda value: tuple(map(dec_item, _array(value, where))), tuple)
        n = len(items)

        def dec_fixed(value: Any) -> tuple:
            if len(_array(value, where)) != n:
                raise StateCodecError(f"{where}: expected {n} items")
            return tuple(d(v) for d, v in zip(decs, value))
        return _Field(lambda value: [e(v) for e, v in zip(encs, value)], dec_fixed, tuple)

    def _map(self, kind: type, key: Any, value: Any, where: str) -> _Field:
        k, v = self._field(key, f"{where} key"), self._field(value, f"{where} value")
        if k.encode is not None or k.decode is not None:
            raise TypeError(f"{where}: map keys must be scalars or arrays of them")
        to_map = immutables.Map if kind is immutables.Map else None
        to_dict = dict if kind is immutables.Map else None
        if v.encode is None and v.decode is None:
            return _Field(to_dict, to_map, dict)  # one C-level call each way
        enc_v, dec_v = v.encode or _same, _checked(v, where)
        build = immutables.Map if kind is immutables.Map else dict

        def dec(data: Any) -> Any:
            if type(data) is not dict:
                raise StateCodecError(f"{where}: expected a map, got {type(data).__name__}")
            return build(zip(data.keys(), map(dec_v, data.values())))
        return _Field(lambda m: {key_: enc_v(value_) for key_, value_ in m.items()}, dec, dict)

    # -- using -------------------------------------------------------------------------

    def packer(self) -> Callable[[Any], bytes]:
        """A function encoding one state to bytes (one per thread: packers are not shared)."""
        pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        by_cls = self._by_cls

        def encode(state: Any) -> bytes:
            c = by_cls.get(type(state))
            if c is None:
                raise StateCodecError(f"{type(state).__qualname__} is not a declared state class")
            try:
                return pack((c.name, c.encode(state)))
            except (TypeError, ValueError, OverflowError) as exc:
                raise StateCodecError(f"{c.name} cannot be encoded: {exc}") from exc
        return encode

    def decode(self, data: Any) -> Any:
        """A state from the unpacked `[class name, field values]` of `packer()`."""
        if type(data) is not tuple or len(data) != 2:
            raise StateCodecError("a state is [class name, field values]")
        c = self._by_name.get(data[0]) if type(data[0]) is str else None
        if c is None:
            raise StateCodecError(f"{data[0]!r} is not a state class of this shard")
        return c.decode(data[1])

    def check_schema(self, schema: Any) -> None:
        """Refuse data written by code whose state classes or fields differ from ours."""
        if schema != self.schema:
            raise StateCodecError("the snapshot's state classes differ from this code's")


@cache
def for_state_class(cls: type) -> StateCodec:
    """The codec of a decider whose `initial` returns `cls` (built once per class)."""
    return StateCodec([cls])


def for_decider(decider: Any) -> StateCodec:
    """The codec of `decider`'s states: the class of its initial state and what it names."""
    return for_state_class(type(decider.initial("")))


# -- snapshots: [header, {entity: state}], with each state's bytes spliced in as they are --


def pack_snapshot(header: Mapping[str, Any], states: Mapping[str, bytes]) -> bytes:
    """`[header, {entity: state}]` in msgpack, where each state is already encoded."""
    packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    parts = [packer.pack_array_header(2), packer.pack(dict(header)),
             packer.pack_map_header(len(states))]
    pack = packer.pack
    for entity, blob in states.items():
        parts.append(pack(entity))
        parts.append(blob)
    return b"".join(parts)


def unpack_snapshot(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and the still-encoded states of a `pack_snapshot` blob."""
    try:
        body = msgpack.unpackb(data, use_list=False, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StateCodecError(f"not a snapshot: {type(exc).__name__}: {exc}") from exc
    if (type(body) is not tuple or len(body) != 2 or type(body[0]) is not dict
            or type(body[1]) is not dict):
        raise StateCodecError("not a snapshot: expected [header, states]")
    return body[0], body[1]
