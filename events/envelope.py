"""The records of the log: what a writer appends and what a reader gets back.

`NewEvent` is an event about to be appended: its type, schema version, payload and
the ids and time the caller stamped on it. `Envelope` is a recorded event: the same
plus the stream, its gapless version and the hash chain. `Envelope` is a NamedTuple
rather than a dataclass because readers build millions of them and a tuple is the
cheapest immutable record CPython has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from saleday.events.values import quick_init

HASH_SIZE = 32
"""Bytes of an event hash (BLAKE2b-256)."""
ZERO_HASH = bytes(HASH_SIZE)
"""`prev_hash` of version 1 of every stream."""

Data = dict[str, Any]
"""An event payload: a map of str keys to msgpack-native values (no floats)."""


def event_ref(stream: str, version: int) -> str:
    """How a `causation_id` names a recorded event: `stream@version` (`team-002@417`)."""
    return f"{stream}@{version}"


def parse_event_ref(ref: str) -> tuple[str, int] | None:
    """`(stream, version)` of an `event_ref`, or None if `ref` does not name an event."""
    stream, at, version = ref.rpartition("@")
    if not (stream and at and version.isdigit() and version.isascii()):
        return None
    return stream, int(version)


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class NewEvent:
    """An event to append: payload plus the ids and event time stamped by the caller."""

    type: str
    data: Data
    command_id: str
    recorded_at: int
    schema_version: int = 1
    correlation_id: str = ""
    causation_id: str = ""


class Envelope(NamedTuple):
    """A recorded event. Field order is the hash preimage's order, then the two hashes."""

    stream: str
    version: int
    type: str
    schema_version: int
    recorded_at: int
    command_id: str
    correlation_id: str
    causation_id: str
    data: Data
    prev_hash: bytes
    hash: bytes


class StoredCommit(NamedTuple):
    """One commit as both stores keep it (docs/LOG_FORMAT.md, "How the stores keep it").

    `hashes` is the events' hashes concatenated; `body` a msgpack array of their hash
    preimages, so the hashed bytes are the stored bytes.
    """

    stream: str
    first_version: int
    last_version: int
    prev_hash: bytes
    hashes: bytes
    body: bytes


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResult:
    """What one commit recorded: its version range and the stream's new head hash.

    `duplicate` is True when the commit's command ids were already recorded and the
    store answered with the earlier commit's result, writing nothing.
    """

    stream: str
    first_version: int
    last_version: int
    head_hash: bytes
    duplicate: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamHead:
    """The tip of a stream: its last version, that version's hash, and its writer epoch."""

    stream: str
    version: int = 0
    hash: bytes = ZERO_HASH
    epoch: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """A host's folded state of a stream up to `version`, as opaque bytes."""

    stream: str
    version: int
    recorded_at: int
    data: bytes = field(repr=False)
