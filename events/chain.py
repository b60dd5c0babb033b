"""The hash chain: canonical payloads, sealing a commit, and the one verifier of a stream.

`ChainVerifier` is the only place the chain is checked: over decoded fields or over the
stored bytes, by the stores' readers, `saleday log verify`, the audit's sources and the
benchmarks alike.

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
from itertools import chain, compress, repeat
from operator import add, attrgetter, itemgetter
from typing import Any

import msgpack
from msgpack import Unpacker

from saleday.events.codec import decode_commit, gc_paused
from saleday.events.envelope import HASH_SIZE, ZERO_HASH, Data, Envelope, NewEvent, StoredCommit
from saleday.events.errors import (
    CorruptRecordError,
    HashChainBroken,
    InvalidAppend,
    InvalidEventData,
)
from saleday.events.values import quick_init

_SCALARS = (str, int, bool, bytes, type(None))
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_hasher = blake2b(digest_size=HASH_SIZE).copy
"""A fresh `blake2b(digest_size=32)`: copying an empty one skips the constructor's keyword
parsing, ~20 % of hashing an event (`chain_hash` below is the rule, written out inline
where every event of a commit is hashed)."""


def chain_hash(prev_hash: bytes, body: bytes) -> bytes:
    """`blake2b(prev_hash + body, digest_size=32)`: an event's hash from its predecessor's
    and its own packed bytes."""
    h = _hasher()
    h.update(prev_hash)
    h.update(body)
    return h.digest()


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


@quick_init
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
    if len(events) == 1:   # most commits of a shard's small batches
        sealed = _seal_one(stream, version, prev_hash, events[0])
        return sealed if sealed is not None else _seal_each(stream, version, prev_hash, events)
    sealed = _seal_columns(stream, version, prev_hash, events)
    return sealed if sealed is not None else _seal_each(stream, version, prev_hash, events)


_ROW_FIELDS = attrgetter("type", "schema_version", "recorded_at", "command_id",
                         "correlation_id", "causation_id", "data")
_SEQ_TYPES = frozenset((list, tuple))
_SORTED_KEYS: set[tuple] = set()
"""Payload key tuples seen to be all str and in order (payloads of one event type share one)."""
_SORTED_KEYS_MAX = 4096


def _keys_sorted(datas: Sequence[dict]) -> bool:
    """True if every payload's keys are strs in sorted order (remembering the key sets)."""
    keysets = set(map(tuple, datas))
    if keysets <= _SORTED_KEYS:
        return True
    for keys in keysets - _SORTED_KEYS:
        if not _STR_ONLY.issuperset(map(type, keys)) or list(keys) != sorted(keys):
            return False
        if len(_SORTED_KEYS) < _SORTED_KEYS_MAX:
            _SORTED_KEYS.add(keys)
    return True


def _seal_columns(stream: str, version: int, prev_hash: bytes,
                  events: Sequence[NewEvent]) -> SealedCommit | None:
    """`seal` for the common commit, a column at a time: fields checked per column, every
    payload found canonical as it is (str keys in order, scalar values or flat arrays of
    them), each event packed by one C call. None when anything needs a closer look, and
    `_seal_each` then seals event by event (and raises saying what is wrong)."""
    if set(map(type, events)) != {NewEvent}:
        return None
    rows = list(map(_ROW_FIELDS, events))
    types, schemas, times, cids, corrs, causes, datas = zip(*rows)
    if not (set(map(type, types)) == {str} and all(types)
            and set(map(type, schemas)) == {int} and min(schemas) > 0
            and set(map(type, times)) == {int} and min(times) >= 0
            and set(map(type, cids)) == {str} and all(cids) and "\x00" not in "".join(cids)
            and _STR_ONLY.issuperset(map(type, corrs)) and _STR_ONLY.issuperset(map(type, causes))
            and set(map(type, datas)) == {dict} and _keys_sorted(datas)):
        return None
    values = list(chain.from_iterable(map(dict.values, datas)))
    kinds = set(map(type, values))
    if not kinds <= _SCALAR_TYPES:
        if not kinds <= _SCALAR_TYPES | _SEQ_TYPES:
            return None
        arrays = compress(values, map(_SEQ_TYPES.__contains__, map(type, values)))
        if not _SCALAR_TYPES.issuperset(map(type, chain.from_iterable(arrays))):
            return None
    n = len(rows)
    try:
        bodies = list(map(_packb, map(add, zip(repeat(stream), range(version + 1, version + n + 1)),
                                      rows)))
    except (OverflowError, TypeError, ValueError):
        return None
    hashes: list[bytes] = []
    keep = hashes.append
    h = prev_hash
    fresh = _hasher
    for body in bodies:
        x = fresh()
        x.update(h)
        x.update(body)
        h = x.digest()
        keep(h)
    bodies.insert(0, _array_header(n))
    return SealedCommit(stream, version + 1, version + n, prev_hash, h, b"".join(hashes),
                        b"".join(bodies), list(dict.fromkeys(cids)))


_HEADER_1 = _array_header(1)


def _seal_one(stream: str, version: int, prev_hash: bytes, ev: NewEvent) -> SealedCommit | None:
    """`_seal_columns` for a commit of one event, without the per-column machinery: the
    same checks on the same fields, the payload canonical as it is. None when anything
    needs a closer look (`_seal_each` then seals it, or says what is wrong)."""
    if type(ev) is not NewEvent:
        return None
    kind, schema, at, cid, corr, cause, data = _ROW_FIELDS(ev)
    if not (type(kind) is str and kind and type(schema) is int and schema > 0
            and type(at) is int and at >= 0
            and type(cid) is str and cid and "\x00" not in cid
            and type(corr) is str and type(cause) is str and type(data) is dict
            and (tuple(data) in _SORTED_KEYS or _keys_sorted((data,)))):
        return None
    for value in data.values():
        if type(value) not in _SCALAR_TYPES and not (
                type(value) in _SEQ_TYPES and _SCALAR_TYPES.issuperset(map(type, value))):
            return None
    v = version + 1
    try:
        body = _packb((stream, v, kind, schema, at, cid, corr, cause, data))
    except (OverflowError, TypeError, ValueError):
        return None
    h = chain_hash(prev_hash, body)
    return SealedCommit(stream, v, v, prev_hash, h, h, _HEADER_1 + body, [cid])


def _seal_each(stream: str, version: int, prev_hash: bytes, events: Sequence[NewEvent]) -> SealedCommit:
    """`seal` event by event: canonicalises payloads, and names the first field that is wrong."""
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
        h = chain_hash(h, body)
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
    return chain_hash(prev_hash, body)


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where a stream's chain stops holding: the first version that does not follow, and why."""

    stream: str
    version: int
    reason: str


class ChainVerifier:
    """The one check of a stream's hash chain: gapless versions, linked and intact hashes.

    It holds the stream's last verified version and hash, and is fed the stream in order,
    from version 1 or from a known head, in as many calls as you like. The rule is applied
    two ways, which agree on every log a writer sealed:

    - over decoded fields (`feed`, `check`): each hash recomputed by `event_hash`, as an
      auditor with an export would, which also proves the stored bytes are canonical;
    - over the stored bytes (`feed_commits`, `read_commit`): each hash = BLAKE2b-256
      (previous hash + the event's bytes as stored), the fast check of a store
      (`verify_commits`, what `saleday log verify` does).

    `feed` and `feed_commits` raise `HashChainBroken` (or `CorruptRecordError` for bytes
    that do not decode) naming stream and version; `check` returns the break instead. On a
    break the verifier keeps the last version and hash that verified.
    """

    __slots__ = ("stream", "version", "head_hash")

    def __init__(self, stream: str, version: int = 0, head_hash: bytes = ZERO_HASH) -> None:
        self.stream = stream
        self.version = version
        self.head_hash = head_hash

    # --- over decoded fields -----------------------------------------------------------

    def check(self, envelopes: Sequence[Envelope]) -> tuple[int, ChainBreak | None]:
        """How many of `envelopes` verify (a prefix), and the break after them, if any."""
        stream, v, h = self.stream, self.version, self.head_hash
        for i, env in enumerate(envelopes):
            v += 1
            problem = None
            if env.stream != stream:
                problem = f"expected version {v} of this stream, found {env.stream!r} version {env.version}"
            elif env.version != v:
                problem = (f"expected version {v} of this stream, found version {env.version}"
                           + (" (an event is missing or out of order)" if env.version > v
                              else " (out of order or repeated)"))
            elif env.prev_hash != h:
                problem = "prev_hash is not the previous event's hash"
            else:
                try:
                    if event_hash(h, env) != env.hash:
                        problem = "hash does not match the event's content"
                except CorruptRecordError as exc:
                    problem = exc.reason
            if problem is not None:
                self.version, self.head_hash = v - 1, h
                return i, ChainBreak(stream, v, problem)
            h = env.hash
        self.version, self.head_hash = v, h
        return len(envelopes), None

    def feed(self, envelopes: Iterable[Envelope]) -> None:
        """Verify the next `envelopes`; the first broken link raises `HashChainBroken`."""
        envs = envelopes if isinstance(envelopes, Sequence) else list(envelopes)
        _, broken = self.check(envs)
        if broken is not None:
            raise HashChainBroken(broken.stream, broken.version, broken.reason)

    # --- over the stored bytes ---------------------------------------------------------

    def feed_commits(self, commits: Iterable[StoredCommit]) -> None:
        """Verify the next stored commits over their bytes; raises at the first break."""
        self.version, self.head_hash = _verify_stored(self.stream, commits, self.version,
                                                      self.head_hash)

    def read_commit(self, commit: StoredCommit, rows: bool = False) -> list:
        """Verify one stored commit over its bytes and return its events, decoded in the same
        pass (each event is unpacked once: the audit's hot path).

        With `rows` the events may come back as decoded rows (an envelope's first nine
        fields, no hashes), saving the envelopes. A commit that does not verify is checked
        again by `feed_commits` and `decode_commit`, which raise saying where and why.
        """
        done = _verified_rows(self.stream, commit, self.version, self.head_hash, rows)
        if done is None:
            _, head_hash = _verify_stored(self.stream, [commit], self.version, self.head_hash)
            envs = decode_commit(*commit)
            done = envs, head_hash
        self.version, self.head_hash = commit.last_version, done[1]
        return done[0]


def verify_commits(stream: str, commits: Iterable[StoredCommit], version: int = 0,
                   head_hash: bytes = ZERO_HASH) -> tuple[int, bytes]:
    """Check a stream's stored commits from `version` on (`ChainVerifier.feed_commits`);
    return the last version and hash seen. Raises `HashChainBroken` or `CorruptRecordError`."""
    return _verify_stored(stream, commits, version, head_hash)


def _verify_stored(stream: str, commits: Iterable[StoredCommit], version: int,
                   head_hash: bytes) -> tuple[int, bytes]:
    lead = _row_lead(stream)
    with gc_paused():
        for commit in commits:
            if _bulk_verified(lead, commit, version, head_hash):
                version, head_hash = commit.last_version, commit.hashes[-HASH_SIZE:]
                continue
            first, last, body, hashes = commit.first_version, commit.last_version, commit.body, commit.hashes
            if first != version + 1:
                raise HashChainBroken(stream, version + 1, f"next commit starts at version {first}")
            if commit.prev_hash != head_hash:
                raise HashChainBroken(stream, first, "prev_hash does not match the previous hash")
            n = last - first + 1
            if n < 1 or len(hashes) != n * HASH_SIZE:
                raise CorruptRecordError(stream, first, f"commit {first}..{last} has malformed hashes")
            unpacker = Unpacker(use_list=False, raw=False, max_buffer_size=len(body) + 1)
            unpacker.feed(body)
            try:
                if unpacker.read_array_header() != n:
                    raise CorruptRecordError(stream, first, f"commit does not hold {n} events")
            except (ValueError, msgpack.OutOfData, msgpack.UnpackException) as exc:
                raise CorruptRecordError(stream, first, f"commit header unreadable: {exc}") from None
            pos = unpacker.tell()
            for i in range(n):
                v = first + i
                try:
                    row = unpacker.unpack()
                except Exception as exc:  # msgpack raises several unrelated types
                    raise CorruptRecordError(stream, v, f"record undecodable: {exc}") from None
                end = unpacker.tell()
                if type(row) is not tuple or len(row) != _ROW or row[1] != v or row[0] != stream:
                    raise HashChainBroken(stream, v, "record does not carry its own stream and version")
                h = chain_hash(head_hash, body[pos:end])
                if h != hashes[i * HASH_SIZE:(i + 1) * HASH_SIZE]:
                    raise HashChainBroken(stream, v, "hash does not match the event's content")
                head_hash, pos = h, end
            if pos != len(body):
                raise CorruptRecordError(stream, last, "commit has trailing bytes")
            version = last
    return version, head_hash


_ROW = 9
"""Fields of a stored event (an envelope without its two hashes)."""
_FIXARRAY_9 = b"\x99"


def _row_lead(stream: str) -> bytes:
    """How a writer's event bytes start: a 9-item array, then the stream name."""
    return _FIXARRAY_9 + _packb(stream)


def _bulk_verified(lead: bytes, commit: StoredCommit, version: int, head_hash: bytes,
                   ends: list[int] | None = None) -> bool:
    """True if `commit` verifies over its stored bytes, checked a commit at a time.

    The rule of `_verify_stored`, with the per-event Python steps taken out: the events'
    boundaries come from skipping over them (no objects built), each event's lead bytes
    are compared with those a writer packs for its stream and version, and the hashes
    are computed in one comprehension and compared with the stored ones at once. Any
    doubt (a record laid out unlike a writer's, bytes that do not skip, a hash that
    differs) answers False, and the caller walks the commit event by event to say
    where and why. `ends`, if given, receives each event's end offset in `body`.
    """
    first, last, body, hashes = commit.first_version, commit.last_version, commit.body, commit.hashes
    n = last - first + 1
    if first != version + 1 or commit.prev_hash != head_hash or n < 1 \
            or len(hashes) != n * HASH_SIZE:
        return False
    try:
        unpacker = Unpacker(max_buffer_size=len(body) + 1)
        unpacker.feed(body)
        if unpacker.read_array_header() != n:
            return False
        skip, tell = unpacker.skip, unpacker.tell
        start = tell()
        offsets = [skip() or tell() for _ in range(n)]
    except Exception:  # noqa: BLE001 - msgpack raises several unrelated types on bad bytes
        return False
    if offsets[-1] != len(body):
        return False
    starts = [start, *offsets[:-1]]
    leads = [lead + v for v in map(_packb, range(first, last + 1))]
    if not all(map(body.startswith, leads, starts)):
        return False
    prevs = [head_hash, *[hashes[i:i + HASH_SIZE] for i in range(0, (n - 1) * HASH_SIZE, HASH_SIZE)]]
    computed: list[bytes] = []
    keep, fresh, view = computed.append, _hasher, memoryview(body)
    for p, a, b in zip(prevs, starts, offsets):
        x = fresh()
        x.update(p)
        x.update(view[a:b])
        keep(x.digest())
    if b"".join(computed) != hashes:
        return False
    if ends is not None:
        ends.extend(offsets)
    return True
_new = tuple.__new__
_data = itemgetter(8)


def _verified_rows(stream: str, commit: StoredCommit, version: int, head_hash: bytes,
                   rows_ok: bool) -> tuple[list, bytes] | None:
    """The commit's events and last hash if it verifies over its stored bytes, else None.

    `_bulk_verified`'s check, then the whole body unpacked in one call (as rows with
    `rows_ok`, else as envelopes). Anything amiss returns None: the caller then asks
    `_verify_stored` where and why.
    """
    if commit.last_version == commit.first_version and commit.body[:5] == _HEADER_1:
        return _verified_one(stream, commit, version, head_hash, rows_ok)
    if not _bulk_verified(_row_lead(stream), commit, version, head_hash):
        return None
    try:
        rows = msgpack.unpackb(commit.body, use_list=False, raw=False)
    except Exception:  # noqa: BLE001 - msgpack raises several unrelated types on bad bytes
        return None
    n = commit.last_version - commit.first_version + 1
    if type(rows) is not tuple or len(rows) != n or set(map(type, map(_data, rows))) != {dict}:
        return None
    hashes = commit.hashes
    if rows_ok:
        return list(rows), hashes[-HASH_SIZE:]
    hs = [hashes[i:i + HASH_SIZE] for i in range(0, n * HASH_SIZE, HASH_SIZE)]
    return [_new(Envelope, r + (p, h)) for r, p, h in zip(rows, [commit.prev_hash, *hs[:-1]], hs)], hs[-1]


def _verified_one(stream: str, commit: StoredCommit, version: int, head_hash: bytes,
                  rows_ok: bool) -> tuple[list, bytes] | None:
    """`_verified_rows` for a commit of one event laid out as a writer lays it out (the
    5-byte array header, then the event): the same checks without walking the body. The
    body unpacks to one event only if the bytes after the header are exactly that event,
    so they are the bytes hashed."""
    first, body, hashes = commit.first_version, commit.body, commit.hashes
    if first != version + 1 or commit.prev_hash != head_hash or len(hashes) != HASH_SIZE:
        return None
    if not body.startswith(_row_lead(stream) + _packb(first), 5):
        return None
    if chain_hash(head_hash, memoryview(body)[5:]) != hashes:
        return None
    try:
        rows = msgpack.unpackb(body, use_list=False, raw=False)
    except Exception:  # noqa: BLE001 - msgpack raises several unrelated types on bad bytes
        return None
    if (type(rows) is not tuple or len(rows) != 1 or type(rows[0]) is not tuple
            or len(rows[0]) != _ROW or type(rows[0][8]) is not dict):
        return None
    if rows_ok:
        return list(rows), hashes
    return [_new(Envelope, rows[0] + (head_hash, hashes))], hashes
