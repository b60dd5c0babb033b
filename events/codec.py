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

import msgpack

from saleday.events.envelope import HASH_SIZE, Envelope, StoredCommit
from saleday.events.errors import CorruptRecordError

_new = tuple.__new__
_FIELDS = 9


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
    size = HASH_SIZE
    hs = [hashes[i:i + size] for i in range(0, n * size, size)]
    try:
        fits = ([r[1] for r in rows] == list(range(first, last + 1))
                and {r[0] for r in rows} == {stream}
                and {len(r) for r in rows} == {_FIELDS}
                and {type(r[8]) for r in rows} == {dict})
    except (TypeError, IndexError, KeyError):
        fits = False
    if not fits:
        raise _misplaced(stream, first, rows)
    return [_new(Envelope, r + (p, h)) for r, p, h in zip(rows, [prev_hash, *hs[:-1]], hs)]


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
