"""The embedded event store: one SQLite file in WAL mode.

Tables: `streams` (head version, head hash, writer epoch), `commits` (one row per commit:
version range, prev hash, the events' hashes and their packed bodies), `commands`
(command id -> the commit that recorded it, for dedup) and `snapshots`.

Each append is one `BEGIN IMMEDIATE` transaction, so a commit is all or nothing and a
killed process leaves no half-written state. With `synchronous=full` (the default) the
WAL is fsynced before `append` returns; `?synchronous=normal` trades the last commits on
an OS crash (never on a process crash) for speed. Each thread gets its own connection;
other processes may open the same file.

Opened `read_only` (auditors, exports, views), the file must exist and hold a `commits`
table; connections use a `file:...?mode=ro` URI, and nothing is created: no directory,
no lock file, no table. A log at rest (no `-wal` file: no connection has it open, every
commit is in the main file) is opened `immutable`, so not even the WAL's `-shm` index is
created and the log can sit on read-only media; a log with a `-wal` (a live writer, or
one that crashed) is read through it. A missing `streams` table reads as no heads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from saleday.events.chain import HASH_SIZE, SealedCommit, seal
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
from saleday.events.store import StoreBase, check_expected, check_stream, sqlite_path
from saleday.events.writer_lock import LockTimeout, WriterLock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    stream TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    hash BLOB NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commits (
    id INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    first_version INTEGER NOT NULL,
    last_version INTEGER NOT NULL,
    prev_hash BLOB NOT NULL,
    hashes BLOB NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (stream, last_version)
);
CREATE TABLE IF NOT EXISTS commands (
    stream TEXT NOT NULL,
    command_id TEXT NOT NULL,
    last_version INTEGER NOT NULL,
    PRIMARY KEY (stream, command_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    stream TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    data BLOB NOT NULL
) WITHOUT ROWID;
"""


_READ_PAGE = 64  # commits per query


class SqliteEventStore(StoreBase):
    """An `EventStore` in one SQLite file."""

    def __init__(self, path: str | Path, *, synchronous: str = "full",
                 busy_timeout_ms: int = 30_000, read_only: bool = False) -> None:
        if synchronous not in ("full", "normal", "extra"):
            raise InvalidStoreUrl(f"sqlite synchronous must be full, normal or extra, not {synchronous!r}")
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._heads: dict[str, tuple[int, bytes]] = {}
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._thread_lock = threading.Lock()
        self.read_only = read_only
        self._has_heads = True
        self._lock_file = None
        self._writer: WriterLock | None = None
        if read_only:
            self._open_existing()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(f"{self.path}.writer-lock", "a+b")  # noqa: SIM115
            self._writer = WriterLock(self._lock_file, busy_timeout_ms / 1000)
        except OSError as exc:
            raise StoreUnavailable(self.url, str(exc)) from exc
        # Under the writer lock: SQLite answers a connection's `journal_mode=WAL` with
        # "database is locked", without waiting, while another process is setting a new
        # file up (processes opening one fresh log at once: a third of such races).
        with self._writer_lock(), self._errors():
            self._conn().executescript(_SCHEMA)

    def _open_existing(self) -> None:
        """Check, read-only, that the file is a log: it exists and has a commits table."""
        if not self.path.is_file():
            raise StoreUnavailable(self.url, f"no event log at {self.path} (a reader never creates one)")
        with self._errors():
            tables = {name for (name,) in self._conn().execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "commits" not in tables:
            self.close()
            raise StoreUnavailable(self.url, f"{self.path} is not a saleday event log (it has no "
                                             "commits table)")
        self._has_heads = "streams" in tables

    @classmethod
    def from_url(cls, url: str, *, read_only: bool = False) -> SqliteEventStore:
        parts = urlsplit(url)
        path = sqlite_path(url)
        opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(opts) - {"synchronous", "busy_timeout_ms"}
        if unknown:
            raise InvalidStoreUrl(f"unknown sqlite URL options: {sorted(unknown)}")
        return cls(path, synchronous=opts.get("synchronous", "full"),
                   busy_timeout_ms=int(opts.get("busy_timeout_ms", 30_000)), read_only=read_only)

    # -- connections ------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.read_only:
                conn = self._connect_read_only()
            else:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=self._busy_timeout_ms / 1000)
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            conn.execute("PRAGMA cache_size=-65536")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """A `mode=ro` connection; `immutable` too when no WAL exists (see the module doc)."""
        at_rest = not Path(f"{self.path}-wal").exists()
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro" + ("&immutable=1" if at_rest else "")
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                               timeout=self._busy_timeout_ms / 1000)
        conn.execute("PRAGMA query_only=1")
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._writable()
        with self._writer_lock(), self._errors():
            conn = self._conn()   # a thread's first connection sets WAL: under the lock
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """Queue writers (threads, then processes) on a lock that goes to the next one the
        moment it is free (`events/writer_lock.py`). SQLite's own busy handler polls with
        sleeps of up to 100 ms, which several shard processes writing one file turn into
        tail latency."""
        if self._writer is None:
            with self._thread_lock:
                yield
            return
        try:
            with self._writer.held():
                yield
        except LockTimeout as exc:
            raise StoreUnavailable(self.url, f"timed out waiting for the write lock ({exc})") from None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        with self._conns_lock:
            for conn in self._conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()


    # -- writing ----------------------------------------------------------------------

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: int | None,
               *, epoch: int | None = None) -> AppendResult:
        self._writable()
        check_stream(stream)
        check_expected(stream, expected_version, epoch)
        events = list(events)
        # Seal outside the write lock against the head we last saw; re-seal inside
        # only if another writer moved the stream meanwhile.
        cached = self._heads.get(stream)
        sealed: SealedCommit | None = None
        if cached is not None and (expected_version is None or expected_version == cached[0]):
            sealed = seal(stream, cached[0], cached[1], events)
        elif expected_version == 0:
            sealed = seal(stream, 0, ZERO_HASH, events)
        with self._write() as conn:
            row = conn.execute("SELECT version, hash, epoch FROM streams WHERE stream = ?",
                               (stream,)).fetchone()
            version, head_hash, current_epoch = row if row else (0, ZERO_HASH, 0)
            if epoch is not None and epoch < current_epoch:
                raise FencedError(stream, epoch, current_epoch)
            if expected_version is not None and expected_version != version:
                probe = sealed or seal(stream, expected_version, ZERO_HASH, events)
                recorded = self._recorded(conn, stream, probe.command_ids)
                if recorded is not None:
                    return recorded
                raise ConcurrencyError(stream, expected_version, version)
            if sealed is None or sealed.first_version != version + 1 or sealed.prev_hash != head_hash:
                sealed = seal(stream, version, head_hash, events)
            try:
                conn.execute(
                    "INSERT INTO commands (stream, command_id, last_version)"
                    " SELECT ?, value, ? FROM json_each(?)",
                    (stream, sealed.last_version, json.dumps(sealed.command_ids)))
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK")
                conn.execute("BEGIN")
                recorded = self._recorded(conn, stream, sealed.command_ids)
                if recorded is None:  # pragma: no cover - the insert just saw a duplicate
                    raise
                return recorded
            conn.execute(
                "INSERT INTO commits (stream, first_version, last_version, prev_hash, hashes, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (stream, sealed.first_version, sealed.last_version, sealed.prev_hash,
                 sealed.hashes, sealed.body))
            new_epoch = max(current_epoch, epoch or 0)
            conn.execute(
                "INSERT INTO streams (stream, version, hash, epoch) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (stream) DO UPDATE SET version = excluded.version,"
                " hash = excluded.hash, epoch = excluded.epoch",
                (stream, sealed.last_version, sealed.head_hash, new_epoch))
        self._heads[stream] = (sealed.last_version, sealed.head_hash)
        return AppendResult(stream=stream, first_version=sealed.first_version,
                            last_version=sealed.last_version, head_hash=sealed.head_hash)

    def _recorded(self, conn: sqlite3.Connection, stream: str,
                  command_ids: list[str]) -> AppendResult | None:
        """The earlier commit holding all of `command_ids`, None if none is recorded."""
        found: dict[str, int] = dict(conn.execute(
            "SELECT c.command_id, c.last_version FROM json_each(?) AS j"
            " JOIN commands AS c ON c.stream = ? AND c.command_id = j.value",
            (json.dumps(command_ids), stream)).fetchall())
        if not found:
            return None
        commits = set(found.values())
        if len(found) != len(command_ids) or len(commits) != 1:
            raise DuplicateCommandError(stream, sorted(found))
        first, hashes = conn.execute(
            "SELECT first_version, hashes FROM commits WHERE stream = ? AND last_version = ?",
            (stream, commits.pop())).fetchone()
        return AppendResult(stream=stream, first_version=first,
                            last_version=first + len(hashes) // HASH_SIZE - 1,
                            head_hash=hashes[-HASH_SIZE:], duplicate=True)

    def recorded(self, stream: str, command_ids: Sequence[str]) -> dict[str, int]:
        check_stream(stream)
        with self._errors():
            return dict(self._conn().execute(
                "SELECT c.command_id, c.last_version FROM json_each(?) AS j"
                " JOIN commands AS c ON c.stream = ? AND c.command_id = j.value",
                (json.dumps(list(command_ids)), stream)).fetchall())

    def acquire_epoch(self, stream: str) -> int:
        check_stream(stream)
        with self._write() as conn:
            (epoch,) = conn.execute(
                "INSERT INTO streams (stream, version, hash, epoch) VALUES (?, 0, ?, 1)"
                " ON CONFLICT (stream) DO UPDATE SET epoch = epoch + 1 RETURNING epoch",
                (stream, ZERO_HASH)).fetchone()
        return epoch

    def save_snapshot(self, snapshot: Snapshot) -> None:
        check_stream(snapshot.stream)
        with self._write() as conn:
            row = conn.execute("SELECT version FROM streams WHERE stream = ?",
                               (snapshot.stream,)).fetchone()
            if snapshot.version < 1 or snapshot.version > (row[0] if row else 0):
                raise SnapshotError(f"stream {snapshot.stream!r}: snapshot at version "
                                    f"{snapshot.version} is outside the stream (at {row[0] if row else 0})")
            conn.execute(
                "INSERT INTO snapshots (stream, version, recorded_at, data) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (stream) DO UPDATE SET version = excluded.version,"
                " recorded_at = excluded.recorded_at, data = excluded.data"
                " WHERE excluded.version >= snapshots.version",
                (snapshot.stream, snapshot.version, snapshot.recorded_at, snapshot.data))

    # -- reading ----------------------------------------------------------------------

    def head(self, stream: str) -> StreamHead:
        check_stream(stream)
        if not self._has_heads:
            return StreamHead(stream=stream)
        with self._errors():
            row = self._conn().execute("SELECT version, hash, epoch FROM streams WHERE stream = ?",
                                       (stream,)).fetchone()
        if row is None:
            return StreamHead(stream=stream)
        return StreamHead(stream=stream, version=row[0], hash=row[1], epoch=row[2])

    def streams(self) -> dict[str, int]:
        if not self._has_heads:
            return {}
        with self._errors():
            return dict(self._conn().execute(
                "SELECT stream, version FROM streams WHERE version > 0 ORDER BY stream").fetchall())

    def logged_streams(self) -> dict[str, int]:
        with self._errors():
            return dict(self._conn().execute(
                "SELECT stream, MAX(last_version) FROM commits GROUP BY stream ORDER BY stream"
            ).fetchall())

    def _commits(self, stream: str, from_version: int) -> Iterator[StoredCommit]:
        # Pages are fetched whole, so no statement (and no read snapshot) stays open on
        # this thread's connection while the caller holds the iterator.
        while True:
            with self._errors():
                rows = self._conn().execute(
                    "SELECT first_version, last_version, prev_hash, hashes, body FROM commits"
                    " WHERE stream = ? AND last_version >= ? ORDER BY last_version LIMIT ?",
                    (stream, from_version, _READ_PAGE)).fetchall()
            for first, last, prev_hash, hashes, body in rows:
                yield StoredCommit(stream, first, last, prev_hash, hashes, body)
            if len(rows) < _READ_PAGE:
                return
            from_version = rows[-1][1] + 1

    def load_snapshot(self, stream: str) -> Snapshot | None:
        check_stream(stream)
        with self._errors():
            row = self._conn().execute(
                "SELECT version, recorded_at, data FROM snapshots WHERE stream = ?",
                (stream,)).fetchone()
        if row is None:
            return None
        return Snapshot(stream=stream, version=row[0], recorded_at=row[1], data=row[2])
