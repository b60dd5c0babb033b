"""Where a run writes: an empty log of its own, locked while the run lasts; nothing lost.

A simulated sale day starts from an empty log. What happens to a log already there:

- the data dir's own log (`<data>/events.db`, no `--store`): a log an earlier run left is
  moved aside, with the views folded from it (`projections.db`) and its report
  (`report/`), to `<data>/previous-runs/<when it was last written, UTC>/`. So
  `saleday simulate` run twice in one folder works both times, `<data>/events.db` is
  always the last run's log (what `audit --data`, `view --data` and `export` read), and
  no earlier log is lost. Delete `previous-runs/` when you no longer want them.
- an explicit `--store`: it must be empty. A SQLite log that holds events is refused
  (`LogNotEmpty`) unless the run is told `overwrite`, which moves it (and the
  `projections.db` next to it) aside the same way, next to it; never unlinked. A
  non-empty Redis log is always refused: give it a fresh `?prefix=`.

A log is locked for the whole run (`run_lock`), taken before anything is moved or
checked; a second run on the same log is refused (`LogBusy`) and touches nothing:
- SQLite: an OS file lock (`flock`) on `<db>.run-lock` next to it, released when the run
  ends or its process dies;
- Redis: the key `<prefix>:run-lock` (SET NX) with a TTL of `REDIS_LOCK_TTL_S`, refreshed
  by a thread while the run lasts, deleted at its end; a run that died frees it when the
  TTL runs out. An ACL user without SET (the store's own least-privilege user) runs
  without it, with a warning: the non-empty check is then the only guard.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import structlog

from saleday.events import open_store
from saleday.events.store import redact, sqlite_path
from saleday.simulator.errors import SimulationError

log = structlog.get_logger("saleday.simulator")

PREVIOUS = "previous-runs"
_DB_FILES = ("", "-wal", "-shm")
REDIS_LOCK_TTL_S = 60.0
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class DataDirError(SimulationError):
    """The run's log cannot be used as asked (the CLI exits 2 with the message)."""


class LogBusy(DataDirError):
    """Another run holds the log's lock."""


class LogNotEmpty(DataDirError):
    """An explicitly named log already holds events, and the run was not told to move it."""


def sqlite_file(url: str) -> Path | None:
    """The file of a `sqlite:` store URL, None for any other store."""
    return Path(sqlite_path(url)).resolve() if url.startswith("sqlite:") else None


@contextmanager
def run_lock(url: str) -> Iterator[None]:
    """Hold the run lock of the log `url` names (a SQLite file or a Redis prefix; nothing
    to lock for a store in memory)."""
    if url.split(":", 1)[0].lower() in ("redis", "rediss"):
        with _redis_lock(url):
            yield
        return
    db = sqlite_file(url)
    if db is None:
        yield
        return
    lock_path = Path(f"{db}.run-lock")
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock_path, "a+")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise DataDirError(f"cannot lock the log {db}: {exc}") from exc
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            raise LogBusy(f"another run is writing the log {db}"
                          + (f" (pid {holder})" if holder else "")
                          + "; wait for it to finish, or give this run another --data "
                            "or --store") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def _redis_lock(url: str, ttl_s: float = REDIS_LOCK_TTL_S) -> Iterator[None]:
    import redis

    from saleday.events.redis_store import client_from_url

    client, prefix = client_from_url(url)
    key = f"{prefix}:run-lock"
    token = f"{socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"
    ttl_ms = int(ttl_s * 1000)
    try:
        try:
            taken = client.set(key, token, nx=True, px=ttl_ms)
            holder = None if taken else client.get(key)
        except redis.exceptions.NoPermissionError as exc:
            log.warning("run_lock_not_permitted", store=redact(url), error=str(exc))
            yield
            return
        except redis.exceptions.RedisError as exc:
            away = isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))
            raise DataDirError(f"cannot lock the log on {redact(url)}"
                               + (" (Redis unavailable)" if away else "")
                               + f": {type(exc).__name__}: {exc}") from exc
        if not taken:
            who = holder.decode(errors="replace") if holder else "another run"
            raise LogBusy(f"another run is writing the log on {redact(url)} ({who}); wait for "
                          f"it to finish (a run that died frees it within {ttl_s:g} s), or "
                          f"give this run another ?prefix=")
        stop = threading.Event()

        def refresh() -> None:
            while not stop.wait(ttl_s / 3):
                try:
                    client.eval(_EXTEND, 1, key, token, ttl_ms)
                except redis.exceptions.RedisError:
                    pass   # Redis away: the run's own retries decide what happens

        keeper = threading.Thread(target=refresh, name="run-lock", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join(2.0)
            try:
                client.eval(_RELEASE, 1, key, token)
            except redis.exceptions.RedisError:
                pass   # it expires
    finally:
        client.close()


def prepare_log(url: str, *, data_dir: Path, explicit: bool, overwrite: bool = False) -> Path | None:
    """Leave `url` naming an empty log; return where an earlier log was moved, if one was.

    Call it while holding `run_lock(url)`."""
    db = sqlite_file(url)
    if db is None:
        _check_empty(url, overwrite=overwrite)
        return None
    if not _holds_a_log(db):
        for suffix in _DB_FILES:   # an empty log: start a new file rather than trust it
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        return None
    if explicit and not overwrite:
        raise LogNotEmpty(f"the store {redact(url)} already holds a log; a run starts from an "
                          f"empty one: name an empty log, or pass --overwrite to move this one "
                          f"aside (to {db.parent / PREVIOUS}/)")
    try:
        return move_aside(db, report=None if explicit else data_dir / "report")
    except OSError as exc:
        raise DataDirError(f"could not move the earlier log {db} aside (nothing was "
                           f"deleted): {exc}") from exc


def move_aside(db: Path, *, report: Path | None = None) -> Path:
    """Move the log `db`, the `projections.db` next to it and `report` (if given) into
    `<db's dir>/previous-runs/<last written, UTC>/`; return that folder."""
    _fold_wal(db)
    stamp = datetime.fromtimestamp(db.stat().st_mtime, UTC).strftime("%Y%m%dT%H%M%SZ")
    target = db.parent / PREVIOUS / stamp
    n = 1
    while target.exists():
        n += 1
        target = db.parent / PREVIOUS / f"{stamp}-{n}"
    target.mkdir(parents=True)
    views = db.parent / "projections.db"
    for base in (db, views):
        for suffix in _DB_FILES:
            src = Path(f"{base}{suffix}")
            if src.exists():
                src.rename(target / src.name)
    if report is not None and report.is_dir():
        report.rename(target / report.name)
    return target


def _holds_a_log(db: Path) -> bool:
    """Whether `db` holds anything worth keeping: events, or a file that is not a saleday
    log at all (never destroyed on a guess)."""
    wal = Path(f"{db}-wal")
    if not db.exists() or db.stat().st_size == 0:
        return wal.exists() and wal.stat().st_size > 0
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        try:
            (count,) = conn.execute("SELECT COUNT(*) FROM streams WHERE version > 0").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return True
    return count > 0


def _fold_wal(db: Path) -> None:
    """Fold the WAL into the main file, so the log moves as one consistent file."""
    try:
        conn = sqlite3.connect(db)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.Error:
        pass   # not a SQLite file: moved as it is


def _check_empty(url: str, *, overwrite: bool) -> None:
    store = open_store(url)
    try:
        streams = store.streams()
    finally:
        store.close()
    if streams:
        raise LogNotEmpty(f"the store {redact(url)} already holds a log ({len(streams)} "
                          f"streams); a run starts from an empty one: give Redis a fresh "
                          f"?prefix=" + (" (--overwrite moves SQLite logs only)" if overwrite else ""))
