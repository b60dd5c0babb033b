"""Decoding stored commits back into envelopes, with corruption reported by position.

A commit is stored as `(first_version, last_version, prev_hash, hashes, body)`, where
`body` is a msgpack array of the events' hash preimages (see events/chain.py, which also
verifies the chain over these bytes). Reading unpacks a whole commit in one call — the
hot path of recovery and projections — and only on failure walks it event by event to
name the version that is broken.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import repeat
from operator import add, itemgetter
from struct import Struct

import msgpack

from saleday.events.envelope import HASH_SIZE, Envelope, StoredCommit
from saleday.events.errors import CorruptRecordError

_new = tuple.__new__
_FIELDS = 9
_stream_of, _version_of, _data_of = itemgetter(0), itemgetter(1), itemgetter(8)
_SPLITTERS: dict[int, Struct] = {}


def split_hashes(hashes: bytes, n: int) -> tuple[bytes, ...]:
    """The `n` hashes of a commit's `hashes` column, 32 bytes each, cut in one C call
    (`len(hashes)` must be `n * HASH_SIZE`). Commits come in few sizes, so the cutters
    are kept, up to 256 of them."""
    cut = _SPLITTERS.get(n)
    if cut is None:
        cut = Struct(f"{HASH_SIZE}s" * n)
        if len(_SPLITTERS) < 256:
            _SPLITTERS[n] = cut
    return cut.unpack(hashes)


def build_envelopes(rows: tuple, prev_hash: bytes, hashes: bytes) -> list[Envelope]:
    """Envelopes of a commit's decoded rows, each row followed by its previous and own hash.

    The rows must already be checked (nine fields, in place); written as C-level maps, so
    no Python frame runs per event."""
    hs = split_hashes(hashes, len(rows))
    return list(map(_new, repeat(Envelope), map(add, rows, zip((prev_hash, *hs[:-1]), hs))))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while bulk-decoding: msgpack's docs advise it, and it halves
    the cost of building millions of small containers that cannot form cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def envelopes(commits: Iterable[StoredCommit], from_version: int = 1,
              limit: int | None = None) -> list[Envelope]:
    """Decode `commits` (in stream order) into the envelopes from `from_version` on."""
    out: list[Envelope] = []
    if limit == 0:
        return out
    with gc_paused():
        for commit in commits:
            envs = decode_commit(*commit)
            if commit.first_version < from_version:
                envs = envs[from_version - commit.first_version:]
            out.extend(envs)
            if limit is not None and len(out) >= limit:
                del out[limit:]
                break
    return out


def decode_commit(stream: str, first: int, last: int, prev_hash: bytes, hashes: bytes,
                  body: bytes) -> list[Envelope]:
    """Turn one stored commit into envelopes, checking each sits where it claims to."""
    n = last - first + 1
    if n < 1 or len(hashes) != n * HASH_SIZE or len(prev_hash) != HASH_SIZE:
        raise CorruptRecordError(stream, first, f"commit {first}..{last} has malformed hashes")
    try:
        rows = msgpack.unpackb(body, use_list=False, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise _locate(stream, first, n, body, exc) from exc
    if type(rows) is not tuple or len(rows) != n:
        raise CorruptRecordError(stream, first, f"commit {first}..{last} holds "
                                 f"{len(rows) if type(rows) is tuple else 'no'} events, not {n}")
    if n == 1:   # most commits of a shard's small batches
        row = rows[0]
        if (type(row) is tuple and len(row) == _FIELDS and row[1] == first and row[0] == stream
                and type(row[8]) is dict):
            return [_new(Envelope, row + (prev_hash, hashes))]
        raise _misplaced(stream, first, rows)
    try:
        fits = (set(map(type, rows)) == {tuple}
                and set(map(len, rows)) == {_FIELDS}
                and list(map(_version_of, rows)) == list(range(first, last + 1))
                and set(map(_stream_of, rows)) == {stream}
                and set(map(type, map(_data_of, rows))) == {dict})
    except (TypeError, IndexError, KeyError):
        fits = False
    if not fits:
        raise _misplaced(stream, first, rows)
    return build_envelopes(rows, prev_hash, hashes)


def _misplaced(stream: str, first: int, rows: tuple) -> CorruptRecordError:
    """Name the first record of a commit that is not a well-formed event in its place."""
    for v, row in enumerate(rows, start=first):
        if type(row) is not tuple or len(row) != _FIELDS or row[1] != v or row[0] != stream:
            return CorruptRecordError(stream, v, "record does not carry its own stream and version")
        if type(row[8]) is not dict:
            return CorruptRecordError(stream, v, "record payload is not a map")
    return CorruptRecordError(stream, first, "commit is malformed")  # pragma: no cover


def _locate(stream: str, first: int, n: int, body: bytes, exc: Exception) -> CorruptRecordError:
    """Walk a commit that failed to unpack and name the first event that is broken."""
    unpacker = msgpack.Unpacker(use_list=False, raw=False)
    unpacker.feed(body)
    try:
        unpacker.read_array_header()
    except Exception:
        return CorruptRecordError(stream, first, f"commit header unreadable: {exc}")
    for v in range(first, first + n):
        try:
            unpacker.unpack()
        except msgpack.OutOfData:
            return CorruptRecordError(stream, v, "record truncated")
        except Exception as inner:
            return CorruptRecordError(stream, v, f"record undecodable: {inner}")
    return CorruptRecordError(stream, first + n - 1, f"commit has trailing bytes: {exc}")
