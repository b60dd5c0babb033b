"""What happened: the event log of saleday.

Envelope and hash chain (`chain`), type registry and upcasters (`registry`), the
`EventStore` protocol (`store`) with its SQLite, Redis Streams (one server or a Redis
Cluster) and memory backends, and `Tail` for reading all streams from per-stream
positions. The wire format is documented for auditors in docs/LOG_FORMAT.md.
"""

from saleday.events.backends import open_store
from saleday.events.chain import (
    ChainBreak,
    ChainVerifier,
    canonical,
    event_hash,
    seal,
    verify_commits,
)
from saleday.events.envelope import (
    ZERO_HASH,
    AppendResult,
    Data,
    Envelope,
    NewEvent,
    Snapshot,
    StoredCommit,
    StreamHead,
    event_ref,
    parse_event_ref,
)
from saleday.events.errors import (
    ConcurrencyError,
    CorruptRecordError,
    DuplicateCommandError,
    EventDecodeError,
    EventLogError,
    FencedError,
    HashChainBroken,
    InvalidAppend,
    InvalidEventData,
    InvalidStoreUrl,
    InvalidStreamName,
    ReplicationShortfall,
    SnapshotError,
    StoreUnavailable,
    UnknownEventType,
    UnknownSchemaVersion,
)
from saleday.events.registry import EventRegistry, event_type, registry, upcaster
from saleday.events.store import EventStore
from saleday.events.tail import Tail

__all__ = [
    "ZERO_HASH", "AppendResult", "ChainBreak", "ChainVerifier", "ConcurrencyError", "CorruptRecordError",
    "Data", "DuplicateCommandError", "Envelope", "EventDecodeError", "EventLogError",
    "EventRegistry", "EventStore", "FencedError", "HashChainBroken", "InvalidAppend",
    "InvalidEventData", "InvalidStoreUrl", "InvalidStreamName", "NewEvent",
    "ReplicationShortfall", "Snapshot",
    "SnapshotError", "StoreUnavailable", "StoredCommit", "StreamHead", "Tail", "UnknownEventType",
    "UnknownSchemaVersion", "canonical", "event_hash", "event_ref", "event_type", "open_store",
    "parse_event_ref", "registry", "seal", "upcaster", "verify_commits",
]
