"""Where projections keep their views: changed rows and per-stream positions, stored together.

A checkpoint (named, e.g. `orders` or `orders@1of3` for one part of a split projection)
is the set of positions `{stream: last version applied}` plus the view rows
`(view, table, key) -> JSON value` those positions produced. `commit` writes a batch's
changed rows AND its new positions in one atomic step, checking that the stored
positions of the batch's streams are still the ones the batch started from:

- a crash before the commit leaves the previous rows and positions, so the batch is
  folded again on restart (nothing skipped);
- a crash after it leaves both advanced, so the batch is not folded again (nothing
  doubled);
- a second runner on the same checkpoint (a zombie) fails with `CheckpointConflict`
  instead of applying a batch twice.

Backends, chosen by URL like the event store:
- `sqlite:///path/projections.db[?synchronous=normal|full]` — one transaction per commit
  (WAL; `normal` by default: an OS crash may lose the last commits, but rows and positions
  together, so the projection re-folds them; it never applies a batch twice).
- `redis://host:port/db?prefix=...` — one Lua script per commit (checks and writes in one
  atomic step); keys `<prefix>:proj:{<checkpoint>}:pos|rows` share a hash tag.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from saleday.events.errors import EventLogError
from saleday.events.store import sqlite_path

Row = tuple[str, str, str, Any]
"""One stored view row: (view, table, key, JSON value); value None deletes the row."""


class CheckpointError(EventLogError):
    """Base of the errors of checkpoint stores (an `EventLogError`, so the CLI reports it)."""


class InvalidCheckpointUrl(CheckpointError, ValueError):
    """A checkpoint store URL that names no known backend or has bad options."""


class CheckpointUnavailable(CheckpointError):
    """The checkpoint store could not be reached or failed to write."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(f"checkpoint store {url}: {reason}")


class CheckpointConflict(CheckpointError):
    """The stored positions moved since this runner read them: another runner owns it."""

    def __init__(self, checkpoint: str, stream: str, expected: int, actual: int) -> None:
        self.checkpoint, self.stream, self.expected, self.actual = checkpoint, stream, expected, actual
        super().__init__(f"checkpoint {checkpoint!r}: stream {stream!r} is at {actual}, not "
                         f"{expected} as this runner expected (another runner writes it?)")


@runtime_checkable
class CheckpointStore(Protocol):
    url: str

    def load(self, checkpoint: str) -> tuple[dict[str, int], list[Row]]:
        """The positions and every stored row of `checkpoint` (empty if it is new)."""
        ...

    def commit(self, checkpoint: str, expected: Mapping[str, int], positions: Mapping[str, int],
               rows: Iterable[Row]) -> None:
        """Atomically: check each stream of `positions` is stored at `expected` (0 if absent),
        then write `rows` and `positions`. Raise `CheckpointConflict` if a check fails."""
        ...

    def reset(self, checkpoint: str) -> None:
        """Forget `checkpoint`'s rows and positions (a rebuild starts from zero)."""
        ...

    def checkpoints(self) -> list[str]:
        ...

    def close(self) -> None:
        ...


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- SQLite -----------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (
    checkpoint TEXT NOT NULL, stream TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (checkpoint, stream)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rows (
    checkpoint TEXT NOT NULL, view TEXT NOT NULL, tbl TEXT NOT NULL, key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (checkpoint, view, tbl, key)) WITHOUT ROWID;
"""


class SqliteCheckpoints:
    """Checkpoints in one SQLite file; each commit is one `BEGIN IMMEDIATE` transaction."""

    def __init__(self, path: str | Path, *, synchronous: str = "normal") -> None:
        if synchronous not in ("normal", "full", "extra"):
            raise InvalidCheckpointUrl(f"sqlite synchronous must be normal, full or extra, "
                                       f"not {synchronous!r}")
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._synchronous = synchronous
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn().executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise CheckpointUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def load(self, checkpoint: str) -> tuple[dict[str, int], list[Row]]:
        try:
            conn = self._conn()
            conn.execute("BEGIN")
            try:
                positions = dict(conn.execute(
                    "SELECT stream, version FROM positions WHERE checkpoint = ?", (checkpoint,)))
                rows = [(v, t, k, json.loads(val)) for v, t, k, val in conn.execute(
                    "SELECT view, tbl, key, value FROM rows WHERE checkpoint = ?", (checkpoint,))]
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise CheckpointUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc
        return positions, rows

    def commit(self, checkpoint: str, expected: Mapping[str, int], positions: Mapping[str, int],
               rows: Iterable[Row]) -> None:
        upserts, deletes = [], []
        for view, table, key, value in rows:
            if value is None:
                deletes.append((checkpoint, view, table, key))
            else:
                upserts.append((checkpoint, view, table, key, _dump(value)))
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                stored = dict(conn.execute(
                    "SELECT stream, version FROM positions WHERE checkpoint = ?", (checkpoint,)))
                for stream in positions:
                    if stored.get(stream, 0) != expected.get(stream, 0):
                        raise CheckpointConflict(checkpoint, stream, expected.get(stream, 0),
                                                 stored.get(stream, 0))
                conn.executemany(
                    "INSERT INTO rows (checkpoint, view, tbl, key, value) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (checkpoint, view, tbl, key) DO UPDATE SET value = excluded.value",
                    upserts)
                if deletes:   # most batches delete no row: one statement less
                    conn.executemany(
                        "DELETE FROM rows WHERE checkpoint = ? AND view = ? AND tbl = ? AND key = ?",
                        deletes)
                conn.executemany(
                    "INSERT INTO positions (checkpoint, stream, version) VALUES (?, ?, ?)"
                    " ON CONFLICT (checkpoint, stream) DO UPDATE SET version = excluded.version",
                    [(checkpoint, s, v) for s, v in positions.items()])
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise CheckpointUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc

    def reset(self, checkpoint: str) -> None:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM rows WHERE checkpoint = ?", (checkpoint,))
            conn.execute("DELETE FROM positions WHERE checkpoint = ?", (checkpoint,))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise CheckpointUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc

    def checkpoints(self) -> list[str]:
        return [c for (c,) in self._conn().execute(
            "SELECT DISTINCT checkpoint FROM positions ORDER BY checkpoint")]

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()


# -- Redis ------------------------------------------------------------------------------

_COMMIT = """
local pos, rows = KEYS[1], KEYS[2]
local nstreams, nsets, ndels = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local i = 4
for _ = 1, nstreams do
  local stored = tonumber(redis.call('HGET', pos, ARGV[i])) or 0
  if stored ~= tonumber(ARGV[i + 1]) then
    return {'conflict', ARGV[i], stored}
  end
  i = i + 3
end
local j = 4
for _ = 1, nstreams do
  redis.call('HSET', pos, ARGV[j], ARGV[j + 2])
  j = j + 3
end
for _ = 1, nsets do
  redis.call('HSET', rows, ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, ndels do
  redis.call('HDEL', rows, ARGV[i])
  i = i + 1
end
return {'ok'}
"""


class RedisCheckpoints:
    """Checkpoints on Redis: a hash of positions and a hash of rows per checkpoint, written
    by one Lua script per commit (atomic: the check and every write, or nothing)."""

    def __init__(self, url: str) -> None:
        import redis

        from saleday.events.redis_store import client_from_url
        from saleday.events.store import redact

        self.url = redact(url)
        self._redis_errors = redis.exceptions.RedisError
        self._r, self.prefix = client_from_url(url)
        self._commit = self._r.register_script(_COMMIT)

    def _keys(self, checkpoint: str) -> tuple[str, str]:
        tag = f"{self.prefix}:proj:{{{checkpoint}}}"
        return f"{tag}:pos", f"{tag}:rows"

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._redis_errors as exc:
            raise CheckpointUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc

    def load(self, checkpoint: str) -> tuple[dict[str, int], list[Row]]:
        pos, rows = self._keys(checkpoint)
        pipe = self._r.pipeline(transaction=True)
        pipe.hgetall(pos)
        pipe.hgetall(rows)
        raw_pos, raw_rows = self._call(pipe.execute)
        positions = {s.decode(): int(v) for s, v in raw_pos.items()}
        out = []
        for field, value in raw_rows.items():
            view, table, key = json.loads(field)
            out.append((view, table, key, json.loads(value)))
        return positions, out

    def commit(self, checkpoint: str, expected: Mapping[str, int], positions: Mapping[str, int],
               rows: Iterable[Row]) -> None:
        sets: list[str] = []
        dels: list[str] = []
        for view, table, key, value in rows:
            field = _dump([view, table, key])
            if value is None:
                dels.append(field)
            else:
                sets += (field, _dump(value))
        args: list[Any] = [len(positions), len(sets) // 2, len(dels)]
        for stream, version in positions.items():
            args += (stream, expected.get(stream, 0), version)
        args += sets
        args += dels
        pos, rows_key = self._keys(checkpoint)
        result = self._call(self._commit, [pos, rows_key], args)
        if result[0] == b"conflict":
            stream = result[1].decode()
            raise CheckpointConflict(checkpoint, stream, expected.get(stream, 0), int(result[2]))

    def reset(self, checkpoint: str) -> None:
        self._call(self._r.delete, *self._keys(checkpoint))

    def checkpoints(self) -> list[str]:
        start = len(f"{self.prefix}:proj:{{")
        keys = self._call(lambda: list(self._r.scan_iter(match=f"{self.prefix}:proj:{{*}}:pos",
                                                          count=1000)))
        return sorted(k.decode()[start:-len("}:pos")] for k in keys)

    def close(self) -> None:
        self._r.close()


def open_checkpoints(url: str) -> CheckpointStore:
    """Open the checkpoint store a URL names: `sqlite:///path/projections.db` or `redis://...`."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        parts = urlsplit(url)
        try:
            path = sqlite_path(url)
        except EventLogError as exc:
            raise InvalidCheckpointUrl(str(exc).replace("events.db", "projections.db")) from None
        opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(opts) - {"synchronous"}
        if unknown:
            raise InvalidCheckpointUrl(f"unknown sqlite checkpoint URL options: {sorted(unknown)}")
        return SqliteCheckpoints(path, synchronous=opts.get("synchronous", "normal"))
    if scheme in ("redis", "rediss"):
        try:
            return RedisCheckpoints(url)
        except EventLogError as exc:
            raise InvalidCheckpointUrl(str(exc)) from exc
    from saleday.events.store import redact

    raise InvalidCheckpointUrl(f"unknown checkpoint store URL {redact(url)!r}: use "
                               "sqlite:///path/projections.db or redis://host:port/db?prefix=...")
