"""The hash chain: canonical payloads, sealing a commit, and verifying a stream.

The rule (documented for auditors in docs/LOG_FORMAT.md):

    hash = blake2b(prev_hash + msgpack.packb([stream, version, type, schema_version,
                   recorded_at, command_id, correlation_id, causation_id, data]),
                   digest_size=32)

where every map inside `data` has its keys sorted (recursively) and `prev_hash` of
version 1 is 32 zero bytes. The packed list is also exactly what the stores keep as
the event's body, so sealing packs each event once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import msgpack

from saleday.events.envelope import ZERO_HASH, Data, Envelope, NewEvent
from saleday.events.errors import HashChainBroken, InvalidAppend, InvalidEventData

HASH_SIZE = 32
_SCALARS = (str, int, bool, bytes, type(None))
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def canonical(data: Any, event_type: str = "?") -> Data:
    """Return `data` with every map's keys sorted; refuse what is not msgpack-native.

    Allowed values: str, int (64-bit), bool, bytes, None, lists/tuples and str-keyed
    maps of those. Floats are refused: money is integer cents, time integer ms.
    A payload that is already canonical is returned as is (the common case, since the
    registry emits fields in sorted order).
    """
    if type(data) is not dict:
        raise InvalidEventData(event_type, "", f"must be a map, not {type(data).__name__}")
    try:
        return _canonical_map(data)
    except _NotNative:
        raise _explain(data, event_type, "") from None


class _NotNative(Exception):
    pass


_SCALAR_TYPES = frozenset(_SCALARS)
_STR_ONLY = frozenset((str,))


def _canonical_map(data: dict) -> dict:
    keys = list(data)
    if keys and not _STR_ONLY.issuperset(map(type, keys)):
        raise _NotNative
    ordered = sorted(keys)
    if keys != ordered:
        data = {k: data[k] for k in ordered}
    if _SCALAR_TYPES.issuperset(map(type, data.values())):
        return data
    for v in data.values():
        if type(v) not in _SCALAR_TYPES and _canonical_value(v) is not v:
            return {k: v if type(v) in _SCALAR_TYPES else _canonical_value(v)
                    for k, v in data.items()}
    return data


def _canonical_value(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return _canonical_map(value)
    if kind is list or kind is tuple:
        if _SCALAR_TYPES.issuperset(map(type, value)):
            return value
        for v in value:
            if type(v) not in _SCALAR_TYPES and _canonical_value(v) is not v:
                return [v if type(v) in _SCALAR_TYPES else _canonical_value(v) for v in value]
        return value
    raise _NotNative


def _explain(value: Any, event_type: str, path: str) -> InvalidEventData:
    """Find the first value under `value` that is not msgpack-native, and say where."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return InvalidEventData(event_type, path, f"map key {key!r} is not a str")
            if type(item) not in _SCALAR_TYPES:
                found = _explain(item, event_type, f"{path}[{key!r}]")
                if found is not None:
                    return found
        return None  # type: ignore[return-value]
    if kind is list or kind is tuple:
        for i, item in enumerate(value):
            if type(item) not in _SCALAR_TYPES:
                found = _explain(item, event_type, f"{path}[{i}]")
                if found is not None:
                    return found
        return None  # type: ignore[return-value]
    if kind is float:
        return InvalidEventData(event_type, path, "floats are not allowed (use integer cents or ms)")
    return InvalidEventData(event_type, path, f"{kind.__name__} is not msgpack-native")


@dataclass(frozen=True, slots=True)
class SealedCommit:
    """A batch of events given versions and hashes, ready for a store to write as one commit.

    `body` is a msgpack array whose items are the events' hash preimages; `hashes` is
    the events' hashes concatenated (32 bytes each).
    """

    stream: str
    first_version: int
    last_version: int
    prev_hash: bytes
    head_hash: bytes
    hashes: bytes
    body: bytes
    command_ids: list[str]


def _array_header(n: int) -> bytes:
    return b"\xdd" + n.to_bytes(4, "big")


def seal(stream: str, version: int, prev_hash: bytes, events: Sequence[NewEvent]) -> SealedCommit:
    """Give `events` the versions after `version` and chain them from `prev_hash`."""
    if not events:
        raise InvalidAppend(f"stream {stream!r}: a commit needs at least one event")
    bodies: list[bytes] = []
    hashes: list[bytes] = []
    command_ids: dict[str, None] = {}
    h = prev_hash
    v = version
    pack = _packb
    for ev in events:
        v += 1
        if not (type(ev) is NewEvent and type(ev.type) is str and ev.type
                and type(ev.schema_version) is int and ev.schema_version > 0
                and type(ev.recorded_at) is int and ev.recorded_at >= 0
                and type(ev.command_id) is str and ev.command_id and "\x00" not in ev.command_id
                and type(ev.correlation_id) is str and type(ev.causation_id) is str):
            _check_fields(stream, ev)  # raises, naming what is wrong
        try:
            body = pack([stream, v, ev.type, ev.schema_version, ev.recorded_at, ev.command_id,
                         ev.correlation_id, ev.causation_id, canonical(ev.data, ev.type)])
        except (OverflowError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidEventData):
                raise
            raise InvalidEventData(ev.type, "", str(exc)) from exc
        h = blake2b(h + body, digest_size=HASH_SIZE).digest()
        bodies.append(body)
        hashes.append(h)
        command_ids[ev.command_id] = None
    bodies.insert(0, _array_header(len(events)))
    return SealedCommit(stream, version + 1, v, prev_hash, h, b"".join(hashes), b"".join(bodies),
                        list(command_ids))


def _check_fields(stream: str, ev: NewEvent) -> None:
    if type(ev) is not NewEvent:
        raise InvalidAppend(f"stream {stream!r}: expected NewEvent, got {type(ev).__name__}")
    if type(ev.type) is not str or not ev.type:
        raise InvalidAppend(f"stream {stream!r}: event type must be a non-empty str")
    if type(ev.schema_version) is not int or ev.schema_version < 1:
        raise InvalidAppend(f"stream {stream!r}: {ev.type}: schema_version must be an int >= 1")
    if type(ev.recorded_at) is not int or ev.recorded_at < 0:
        raise InvalidAppend(f"stream {stream!r}: {ev.type}: recorded_at must be int ms >= 0")
    if type(ev.command_id) is not str or not ev.command_id or "\x00" in ev.command_id:
        raise InvalidAppend(f"stream {stream!r}: {ev.type}: command_id must be a non-empty str "
                            "without NUL characters")
    if type(ev.correlation_id) is not str or type(ev.causation_id) is not str:
        raise InvalidAppend(f"stream {stream!r}: {ev.type}: correlation/causation ids must be str")


def event_hash(prev_hash: bytes, env: Envelope) -> bytes:
    """Recompute one event's hash from its fields, exactly as docs/LOG_FORMAT.md says.

    A recorded payload that is not msgpack-native (say a byte flipped an int into a
    float) cannot have been sealed by a writer, so it is a broken chain, not bad input.
    """
    try:
        data = canonical(env.data, env.type)
        body = _packb([env.stream, env.version, env.type, env.schema_version, env.recorded_at,
                       env.command_id, env.correlation_id, env.causation_id, data])
    except (InvalidEventData, TypeError, ValueError, OverflowError) as exc:
        raise HashChainBroken(env.stream, env.version, f"record is not a sealable event: {exc}") from None
    return blake2b(prev_hash + body, digest_size=HASH_SIZE).digest()


class ChainVerifier:
    """Checks one stream's events in order: gapless versions, linked and intact hashes.

    Feed it the stream's envelopes from version 1 (in as many calls as you like);
    the first broken link raises `HashChainBroken` naming stream and version.
    """

    def __init__(self, stream: str, version: int = 0, head_hash: bytes = ZERO_HASH) -> None:
        self.stream = stream
        self.version = version
        self.head_hash = head_hash

    def feed(self, envelopes: Iterable[Envelope]) -> None:
        stream, v, h = self.stream, self.version, self.head_hash
        for env in envelopes:
            v += 1
            if env.stream != stream or env.version != v:
                raise HashChainBroken(stream, v, f"expected version {v} of this stream, "
                                      f"found {env.stream!r} version {env.version}")
            if env.prev_hash != h:
                raise HashChainBroken(stream, v, "prev_hash does not match the previous "
                                      "event's hash")
            if event_hash(h, env) != env.hash:
                raise HashChainBroken(stream, v, "hash does not match the event's content")
            h = env.hash
        self.version, self.head_hash = v, h
