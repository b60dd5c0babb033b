"""The in-memory store — `memory://name`: the log in this process's memory, for simulations.

It keeps commits exactly as the other backends do (sealed, hash-chained, one record per
commit) and passes the same contract suite, but nothing survives the process: it is the
store of the in-process simulator's huge runs and of tests, never of a deployment. Every
`open_store("memory://name")` in a process opens the same log (so an audit after a run
reads what the run wrote); `drop(name)` forgets it. A lock makes each call atomic, so
threads may share one. Opened `read_only` (an audit), the log must already exist in this
process: a `memory://` URL handed to a fresh process (`saleday audit --store memory://x`)
names nothing, and saying so beats auditing an empty log.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from saleday.events.chain import HASH_SIZE, seal
from saleday.events.envelope import (
    ZERO_HASH,
    AppendResult,
    NewEvent,
    Snapshot,
    StoredCommit,
    StreamHead,
)
from saleday.events.errors import (
    ConcurrencyError,
    DuplicateCommandError,
    FencedError,
    InvalidStoreUrl,
    SnapshotError,
    StoreUnavailable,
)
from saleday.events.store import StoreBase, check_expected, check_stream


@dataclass
class _Stream:
    version: int = 0
    hash: bytes = ZERO_HASH
    epoch: int = 0
    commits: list[StoredCommit] = field(default_factory=list)
    lasts: list[int] = field(default_factory=list)
    commands: dict[str, int] = field(default_factory=dict)
    snapshot: Snapshot | None = None


class _Log:
    def __init__(self) -> None:
        self.streams: dict[str, _Stream] = {}
        self.lock = threading.Lock()


_LOGS: dict[str, _Log] = {}
_LOGS_LOCK = threading.Lock()


def drop(name: str) -> None:
    """Forget the log called `name` (the next open starts an empty one)."""
    with _LOGS_LOCK:
        _LOGS.pop(name, None)


class MemoryEventStore(StoreBase):
    """One named in-memory log; see the module docstring."""

    def __init__(self, name: str, *, read_only: bool = False) -> None:
        if not name or "/" in name:
            raise InvalidStoreUrl(f"memory store name {name!r}: use memory://<name>, e.g. memory://sim")
        self.name = name
        self.url = f"memory://{name}"
        self.read_only = read_only
        with _LOGS_LOCK:
            log = _LOGS.get(name)
            if log is None and read_only:
                raise StoreUnavailable(self.url, "no such log in this process: the memory store "
                                                 "only lives in the process that wrote it (audit "
                                                 "it there, or write the log to sqlite or redis)")
            self._log = log if log is not None else _LOGS.setdefault(name, _Log())

    @classmethod
    def from_url(cls, url: str, *, read_only: bool = False) -> MemoryEventStore:
        rest = url.split("://", 1)[1] if "://" in url else ""
        name, _, query = rest.partition("?")
        if query:
            raise InvalidStoreUrl(f"memory store {url!r} takes no options")
        return cls(name.strip("/"), read_only=read_only)

    def _stream(self, stream: str) -> _Stream:
        s = self._log.streams.get(stream)
        if s is None:
            s = self._log.streams[stream] = _Stream()
        return s

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: int | None,
               *, epoch: int | None = None) -> AppendResult:
        self._writable()
        check_stream(stream)
        check_expected(stream, expected_version, epoch)
        events = list(events)
        with self._log.lock:
            s = self._stream(stream)
            if epoch is not None and epoch < s.epoch:
                raise FencedError(stream, epoch, s.epoch)
            sealed = seal(stream, s.version, s.hash, events)
            recorded = self._recorded(s, stream, sealed.command_ids)
            if recorded is not None:
                return recorded
            if expected_version is not None and expected_version != s.version:
                raise ConcurrencyError(stream, expected_version, s.version)
            commit = StoredCommit(stream, sealed.first_version, sealed.last_version,
                                  sealed.prev_hash, sealed.hashes, sealed.body)
            s.commits.append(commit)
            s.lasts.append(sealed.last_version)
            for cid in sealed.command_ids:
                s.commands[cid] = sealed.last_version
            s.version, s.hash = sealed.last_version, sealed.head_hash
            s.epoch = max(s.epoch, epoch or 0)
        return AppendResult(stream=stream, first_version=sealed.first_version,
                            last_version=sealed.last_version, head_hash=sealed.head_hash)

    def _recorded(self, s: _Stream, stream: str, command_ids: list[str]) -> AppendResult | None:
        found = {cid: s.commands[cid] for cid in command_ids if cid in s.commands}
        if not found:
            return None
        commits = set(found.values())
        if len(found) != len(set(command_ids)) or len(commits) != 1:
            raise DuplicateCommandError(stream, sorted(found))
        commit = s.commits[bisect.bisect_left(s.lasts, commits.pop())]
        return AppendResult(stream=stream, first_version=commit.first_version,
                            last_version=commit.last_version,
                            head_hash=commit.hashes[-HASH_SIZE:], duplicate=True)

    def recorded(self, stream: str, command_ids: Sequence[str]) -> dict[str, int]:
        check_stream(stream)
        with self._log.lock:
            s = self._log.streams.get(stream)
            if s is None:
                return {}
            return {cid: s.commands[cid] for cid in command_ids if cid in s.commands}

    def acquire_epoch(self, stream: str) -> int:
        self._writable()
        check_stream(stream)
        with self._log.lock:
            s = self._stream(stream)
            s.epoch += 1
            return s.epoch

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self._writable()
        check_stream(snapshot.stream)
        with self._log.lock:
            s = self._log.streams.get(snapshot.stream)
            version = s.version if s else 0
            if snapshot.version < 1 or snapshot.version > version:
                raise SnapshotError(f"stream {snapshot.stream!r}: snapshot at version "
                                    f"{snapshot.version} is outside the stream (at {version})")
            assert s is not None
            if s.snapshot is None or snapshot.version >= s.snapshot.version:
                s.snapshot = snapshot

    def load_snapshot(self, stream: str) -> Snapshot | None:
        check_stream(stream)
        with self._log.lock:
            s = self._log.streams.get(stream)
            return s.snapshot if s else None

    def head(self, stream: str) -> StreamHead:
        check_stream(stream)
        with self._log.lock:
            s = self._log.streams.get(stream)
            if s is None:
                return StreamHead(stream=stream)
            return StreamHead(stream=stream, version=s.version, hash=s.hash, epoch=s.epoch)

    def streams(self) -> dict[str, int]:
        with self._log.lock:
            return {name: s.version for name, s in sorted(self._log.streams.items()) if s.version}

    def logged_streams(self) -> dict[str, int]:
        with self._log.lock:
            return {name: s.lasts[-1] for name, s in sorted(self._log.streams.items()) if s.lasts}

    def _commits(self, stream: str, from_version: int) -> Iterator[StoredCommit]:
        with self._log.lock:
            s = self._log.streams.get(stream)
            if s is None:
                return iter(())
            start = bisect.bisect_left(s.lasts, from_version)
            end = len(s.commits)
        # The list only grows: the commits up to `end` are the ones there now, without
        # copying the stream's tail (a read of one event near the start stays cheap).
        commits = s.commits
        return (commits[i] for i in range(start, end))

    def close(self) -> None:
        """Nothing to release: the log stays in memory until `drop(name)`."""
