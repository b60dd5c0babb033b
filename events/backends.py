"""From a store URL to its backend: the one module that knows every `EventStore` backend.

`events.store` holds the protocol and the URL rules the backends share; the backends
(`sqlite_store`, `redis_store`, `memory_store`) import it, and this module imports them,
so the protocol never imports its own implementations.
"""

from __future__ import annotations

from saleday.events.store import EventStore, check_url


def open_store(url: str, *, read_only: bool = False) -> EventStore:
    """Open the store a URL names: `sqlite:///path`, `redis://...`, `rediss://...`,
    `redis+cluster://host:port,host:port/` (Redis Cluster) or `memory://name` (this
    process's memory: simulations and tests only).

    With `read_only`, the log must already exist and is never written: a SQLite file is
    opened with `mode=ro` (no lock file, no tables created), a Redis server is pinged (a
    wrong password fails here) and must hold keys under the URL's prefix, and a memory log
    must exist in this process. Otherwise `StoreUnavailable` says why."""
    scheme = check_url(url)
    if scheme == "sqlite":
        from saleday.events.sqlite_store import SqliteEventStore

        return SqliteEventStore.from_url(url, read_only=read_only)
    if scheme in ("redis", "rediss"):
        from saleday.events.redis_store import RedisEventStore

        return RedisEventStore.from_url(url, read_only=read_only)
    if scheme == "redis+cluster":
        from saleday.events.redis_cluster_store import RedisClusterEventStore

        return RedisClusterEventStore.from_url(url, read_only=read_only)
    if scheme == "memory":
        from saleday.events.memory_store import MemoryEventStore

        return MemoryEventStore.from_url(url, read_only=read_only)
    raise AssertionError(f"check_url passed an unknown scheme {scheme!r}")
