"""The EventStore protocol, and opening a store from a URL.

Two backends implement it and pass one contract suite (tests/events/test_store_contract.py):

- `sqlite:///path/events.db` — the embedded default: one file, WAL, one transaction per commit.
- `redis://[user:password@]host:port/db`, `rediss://...` — Redis Streams, one stream key per
  event stream, appended by a Lua script. Query options: `prefix` (key prefix, default
  `saleday`), `connect_timeout` and `socket_timeout` (seconds), `wait_replicas` and
  `wait_timeout_ms` (acknowledge a commit only once WAIT confirms that many replicas), and
  a few of redis-py's own (`OPTIONS` lists them).
- `redis+cluster://[user:password@]host:port,host:port/` — the same store on Redis Cluster
  (the nodes listed are seeds; the client finds the rest), with the same saleday options.

`open_store` checks a URL (`check_url`) before opening anything: an unknown scheme, an
option the backend does not take (the message lists those it does), an option without a
value, or a SQLite path that is a directory is an `InvalidStoreUrl`; a place where the
file cannot be made (under a file, read-only) is a `StoreUnavailable` when it is opened.

A stream's events are appended in commits: all or nothing, checked against the expected
version, deduplicated by command id and fenced by writer epoch.

`open_store(url, read_only=True)` is how readers (audit, export, views, `log verify`,
`status`) open a log: it must already exist (`StoreUnavailable` otherwise), nothing is
created or written (no file, table, lock file or key), and every write raises
`StoreUnavailable`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from saleday.events.codec import envelopes
from saleday.events.envelope import (
    AppendResult,
    Envelope,
    NewEvent,
    Snapshot,
    StoredCommit,
    StreamHead,
)
from saleday.events.errors import (
    InvalidAppend,
    InvalidStoreUrl,
    InvalidStreamName,
    StoreUnavailable,
)

_STREAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:|\-]{0,199}")

_STORE_OPTIONS = ("prefix", "connect_timeout", "socket_timeout", "wait_replicas",
                  "wait_timeout_ms")
_REDIS_OPTIONS = (*_STORE_OPTIONS, "db", "health_check_interval", "max_connections",
                  "retry_on_timeout", "socket_keepalive")
OPTIONS: dict[str, tuple[str, ...]] = {
    "sqlite": ("synchronous", "busy_timeout_ms"),
    "redis": _REDIS_OPTIONS,
    "rediss": (*_REDIS_OPTIONS, "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile",
               "ssl_check_hostname"),
    "redis+cluster": _STORE_OPTIONS,
    "memory": (),
}
"""The query options each store URL scheme takes."""
SQLITE_SYNCHRONOUS = ("full", "normal", "extra")


@runtime_checkable
class EventStore(Protocol):
    """What every backend offers. Methods raise only `events.errors` types."""

    url: str
    """The store's URL with any password removed: safe to log."""

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: int | None,
               *, epoch: int | None = None) -> AppendResult:
        """Append `events` to `stream` as one atomic commit.

        `expected_version` is the version the caller last saw (0: the stream must be new;
        None: whatever it is now). A stale one raises `ConcurrencyError` carrying the
        actual version. A commit whose command ids are all already recorded (in one earlier
        commit) writes nothing and returns that commit's result with `duplicate=True`.
        With `epoch`, a writer older than the stream's current epoch gets `FencedError`.
        """
        ...

    def read(self, stream: str, from_version: int = 1, limit: int | None = None) -> list[Envelope]:
        """Return up to `limit` events of `stream` from `from_version` on, in order."""
        ...

    def read_commits(self, stream: str, from_version: int = 1) -> Iterator[StoredCommit]:
        """Yield the stored commits of `stream` that hold `from_version` and later, raw."""
        ...

    def recorded(self, stream: str, command_ids: Sequence[str]) -> dict[str, int]:
        """Which of `command_ids` the stream has recorded: id -> last version of its commit."""
        ...

    def head(self, stream: str) -> StreamHead:
        """Return the stream's last version, its hash and its writer epoch (zeros if new)."""
        ...

    def streams(self) -> dict[str, int]:
        """Return every stream that holds events, with its last version (from the heads)."""
        ...

    def logged_streams(self) -> dict[str, int]:
        """Return every stream that has commits, with the last version of its last commit,
        found from the commit records themselves rather than from the heads `streams()`
        reads: what an auditor lists, so a stream whose head was lost is not hidden."""
        ...

    def acquire_epoch(self, stream: str) -> int:
        """Take the next writer epoch of `stream`, fencing every writer of an older one."""
        ...

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep `snapshot` as the stream's latest, unless a later one is already kept."""
        ...

    def load_snapshot(self, stream: str) -> Snapshot | None:
        """Return the stream's latest snapshot, if any."""
        ...

    def close(self) -> None:
        ...


class StoreBase:
    """What both backends share: reading envelopes on top of their raw commits."""

    url: str
    read_only: bool = False

    def _writable(self) -> None:
        """Raise `StoreUnavailable` if this store was opened read-only."""
        if self.read_only:
            raise StoreUnavailable(self.url, "opened read-only: a reader never writes to the log")

    def read(self, stream: str, from_version: int = 1, limit: int | None = None) -> list[Envelope]:
        check_stream(stream)
        check_read(stream, from_version, limit)
        return envelopes(self.read_commits(stream, from_version), from_version, limit)

    def read_commits(self, stream: str, from_version: int = 1) -> Iterator[StoredCommit]:
        check_stream(stream)
        check_read(stream, from_version, None)
        return self._commits(stream, from_version)

    def _commits(self, stream: str, from_version: int) -> Iterator[StoredCommit]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_stream(stream: object) -> str:
    """Return `stream` if it is a valid stream name, else raise `InvalidStreamName`.

    Names are 1-200 chars of letters, digits and `_ . : | -`, starting with a letter or
    digit; braces are excluded because the Redis backend uses them as hash tags.
    """
    if type(stream) is not str:
        raise InvalidStreamName(stream, "must be a str")
    if stream in _CHECKED:   # a shard names its one stream on every call
        return stream
    if not _STREAM_NAME.fullmatch(stream):
        raise InvalidStreamName(stream, "use 1-200 of A-Z a-z 0-9 _ . : | - (starting alnum)")
    if len(_CHECKED) < 65_536:
        _CHECKED.add(stream)
    return stream


_CHECKED: set[str] = set()
"""Stream names found valid (a bounded cache: the same few names come on every call)."""


def check_expected(stream: str, expected_version: int | None, epoch: int | None = None) -> None:
    if expected_version is not None and (type(expected_version) is not int or expected_version < 0):
        raise InvalidAppend(f"stream {stream!r}: expected_version must be None or an int >= 0")
    if epoch is not None and (type(epoch) is not int or epoch < 0):
        raise InvalidAppend(f"stream {stream!r}: epoch must be None or an int >= 0")


def check_read(stream: str, from_version: int, limit: int | None) -> None:
    if type(from_version) is not int or from_version < 1:
        raise InvalidAppend(f"stream {stream!r}: from_version must be an int >= 1")
    if limit is not None and (type(limit) is not int or limit < 0):
        raise InvalidAppend(f"stream {stream!r}: limit must be None or an int >= 0")


def redact(url: str) -> str:
    """Return `url` with any password replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    netloc = f"{user}:***@{parts.netloc.rpartition('@')[2]}"  # host[:port] as written
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def sqlite_path(url: str) -> str:
    """The file a `sqlite:` URL names. As in SQLAlchemy, `sqlite:///saleday-data/events.db`
    is relative to the working directory and `sqlite:////var/lib/saleday/events.db` (four
    slashes) is absolute. Options after `?` are not part of the path."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite" or parts.netloc or parts.path in ("", "/", "//"):
        raise InvalidStoreUrl(f"sqlite URL must read sqlite:///path/events.db (relative) or "
                              f"sqlite:////abs/path/events.db, not {redact(url)!r}")
    path = parts.path[1:]
    if Path(path).is_dir():
        raise InvalidStoreUrl(f"sqlite URL {redact(url)!r} names a directory; name a file in "
                              f"it, e.g. sqlite:///{path.rstrip('/')}/events.db")
    return path


def check_url(url: str) -> str:
    """Check a store URL before anything is opened (or removed) and return its scheme.

    Raises `InvalidStoreUrl` naming what is wrong: an unknown scheme, an option the
    scheme does not take (listing those it does), an option without a value, a SQLite
    option with a bad value, or a SQLite path that is a directory.
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in OPTIONS:
        raise InvalidStoreUrl(f"unknown event store URL {redact(url)!r}: use "
                              "sqlite:///path/events.db, redis://host:port/db, rediss://... or "
                              "redis+cluster://host:port,host:port/")
    known = OPTIONS[scheme]
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    for name, value in pairs:
        if name not in known:
            takes = (f"{scheme} store options: {', '.join(known)}" if known
                     else f"a {scheme}:// store takes no options")
            raise InvalidStoreUrl(f"store URL {redact(url)!r}: unknown option {name!r} ({takes})")
        if value == "":
            raise InvalidStoreUrl(f"store URL {redact(url)!r}: option {name!r} has no value")
    if scheme.startswith("redis"):
        _check_redis(url, scheme, dict(pairs))
    if scheme == "sqlite":
        sqlite_path(url)
        opts = dict(pairs)
        if opts.get("synchronous", "full") not in SQLITE_SYNCHRONOUS:
            raise InvalidStoreUrl(f"store URL {redact(url)!r}: synchronous must be "
                                  f"{', '.join(SQLITE_SYNCHRONOUS)}, not {opts['synchronous']!r}")
        busy = opts.get("busy_timeout_ms", "0")
        if not (busy.isascii() and busy.isdigit()) or int(busy) > 2**31 - 1:
            raise InvalidStoreUrl(f"store URL {redact(url)!r}: busy_timeout_ms must be a "
                                  f"whole number of milliseconds, not {busy!r}")
    return scheme


def _check_redis(url: str, scheme: str, opts: dict[str, str]) -> None:
    """The Redis options saleday reads itself, and a cluster URL's seed nodes."""
    replicas = opts.get("wait_replicas", "0")
    if not (replicas.isascii() and replicas.isdigit()) or int(replicas) > 64:
        raise InvalidStoreUrl(f"store URL {redact(url)!r}: wait_replicas must be a number of "
                              f"replicas from 0 to 64, not {replicas!r}")
    timeout = opts.get("wait_timeout_ms", "1000")
    if not (timeout.isascii() and timeout.isdigit()) or not 1 <= int(timeout) <= 2**31 - 1:
        raise InvalidStoreUrl(f"store URL {redact(url)!r}: wait_timeout_ms must be a whole "
                              f"number of milliseconds from 1 up, not {timeout!r}")
    if scheme == "redis+cluster":
        cluster_seeds(url)


def cluster_seeds(url: str) -> list[tuple[str, int]]:
    """The `host:port` seed nodes of a `redis+cluster://[user:password@]h:p,h:p/` URL."""
    hosts = urlsplit(url).netloc.rpartition("@")[2]
    seeds = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
            raise InvalidStoreUrl(f"store URL {redact(url)!r}: name the cluster's nodes as "
                                  f"host:port,host:port (got {item!r})")
        seeds.append((host.strip("[]"), int(port)))
    path = urlsplit(url).path
    if path not in ("", "/"):
        raise InvalidStoreUrl(f"store URL {redact(url)!r}: a Redis Cluster has only database 0; "
                              "end the node list with / and put options after ?")
    return seeds
