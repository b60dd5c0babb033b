"""The typed errors of the event log.

Every error names what it is about (stream, version, type) in its message, so a
log line or a CLI error is readable without a traceback.
"""

from __future__ import annotations


class EventLogError(Exception):
    """Base of every error raised by the event log."""


class InvalidStreamName(EventLogError, ValueError):
    """A stream name that the stores cannot hold safely."""

    def __init__(self, stream: object, reason: str) -> None:
        self.stream = stream
        super().__init__(f"invalid stream name {stream!r}: {reason}")


class InvalidEventData(EventLogError, ValueError):
    """An event payload that is not msgpack-native (floats, non-string keys, objects)."""

    def __init__(self, event_type: str, path: str, reason: str) -> None:
        self.event_type = event_type
        self.path = path
        super().__init__(f"event {event_type!r}: data{path}: {reason}")


class InvalidAppend(EventLogError, ValueError):
    """An append call that is malformed (no events, bad expected version, ...)."""


class ConcurrencyError(EventLogError):
    """The expected version was stale: another commit reached the stream first."""

    def __init__(self, stream: str, expected: int | None, actual: int) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream!r}: expected version {expected}, but it is at {actual}"
        )


class FencedError(EventLogError):
    """A writer from an older epoch tried to append after a newer one took the stream."""

    def __init__(self, stream: str, epoch: int, current_epoch: int) -> None:
        self.stream = stream
        self.epoch = epoch
        self.current_epoch = current_epoch
        super().__init__(
            f"stream {stream!r}: writer epoch {epoch} is fenced by epoch {current_epoch}"
        )


class DuplicateCommandError(EventLogError):
    """Some, but not all, of a commit's command ids are already recorded in the stream.

    A commit whose command ids are all recorded is an idempotent retry and is answered
    with the recorded result; a partial overlap means the writer mixed a retried command
    into a new commit, which the log refuses rather than record it twice.
    """

    def __init__(self, stream: str, command_ids: list[str]) -> None:
        self.stream = stream
        self.command_ids = command_ids
        shown = ", ".join(command_ids[:5]) + (" ..." if len(command_ids) > 5 else "")
        super().__init__(
            f"stream {stream!r}: command ids already recorded in another commit: {shown}"
        )


class StoreUnavailable(EventLogError):
    """The store cannot be reached or answered with an I/O failure."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"event store {where} is unavailable: {reason}")


class ReplicationShortfall(StoreUnavailable):
    """A commit the Redis master executed that fewer replicas than the store URL's
    `wait_replicas` confirmed within `wait_timeout_ms`.

    Its outcome is unknown, as with any `StoreUnavailable`: the commit is on the master and
    survives unless the master fails before it reaches a replica. It was not acknowledged;
    retry it with the same command ids — a retry of a recorded commit is deduplicated (and
    waits for the replicas again), one the master lost is written afresh.
    """

    def __init__(self, where: str, stream: str, last_version: int, acked: int, wanted: int,
                 timeout_ms: int) -> None:
        self.stream = stream
        self.last_version = last_version
        self.acked = acked
        self.wanted = wanted
        self.timeout_ms = timeout_ms
        super().__init__(where, f"stream {stream!r}: the commit up to version {last_version} "
                                f"reached {acked} of {wanted} replicas within {timeout_ms} ms "
                                "(not acknowledged: retry with the same command ids)")


class InvalidStoreUrl(EventLogError, ValueError):
    """A store URL that names no backend we have, or is malformed."""


class CorruptRecordError(EventLogError):
    """A stored record that cannot be decoded or does not match its position."""

    def __init__(self, stream: str, version: int, reason: str) -> None:
        self.stream = stream
        self.version = version
        self.reason = reason
        super().__init__(f"stream {stream!r} version {version}: corrupt record: {reason}")


class HashChainBroken(CorruptRecordError):
    """A record whose hash does not follow from its content and its predecessor's hash."""


class UnknownEventType(EventLogError):
    """A recorded event whose wire type name no registered class carries."""

    def __init__(self, stream: str, version: int, event_type: str) -> None:
        self.stream = stream
        self.version = version
        self.event_type = event_type
        super().__init__(
            f"stream {stream!r} version {version}: unknown event type {event_type!r}"
        )


class UnknownSchemaVersion(EventLogError):
    """A recorded event whose schema version has no upcaster path to the current one."""

    def __init__(
        self, stream: str, version: int, event_type: str, schema_version: int, reason: str
    ) -> None:
        self.stream = stream
        self.version = version
        self.event_type = event_type
        self.schema_version = schema_version
        super().__init__(
            f"stream {stream!r} version {version}: event type {event_type!r} "
            f"schema version {schema_version}: {reason}"
        )


class EventDecodeError(EventLogError):
    """A recorded payload that does not fit its (upcast) event class."""

    def __init__(self, stream: str, version: int, event_type: str, reason: str) -> None:
        self.stream = stream
        self.version = version
        self.event_type = event_type
        super().__init__(
            f"stream {stream!r} version {version}: cannot decode {event_type!r}: {reason}"
        )


class SnapshotError(EventLogError):
    """A snapshot that cannot be saved (ahead of the stream) or loaded."""
