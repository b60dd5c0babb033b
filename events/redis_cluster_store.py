"""The Redis store on Redis Cluster: `redis+cluster://[user:password@]host:port,host:port/`.

The key layout, the Lua scripts and every answer are `redis_store`'s: each key of an event
stream carries the hash tag `{<stream>}`, so a stream lives in one hash slot, on one
master, and a commit's script touches that slot alone. The stream index
`<prefix>:streams` is a key of its own (one slot): it is only ever written by a
single-key SADD, never inside a script with a stream's keys, so no command spans two
slots. Reading many streams (`streams()`, `logged_streams()`) goes through redis-py's
cluster pipeline and SCAN of every master.

Streams spread across masters by slot (CRC16 of the stream name mod 16384);
`master_of(stream)` names the master that holds a stream now — what `saleday status`
shows per shard.

With `wait_replicas=N`, the append script and `WAIT N timeout` go down one connection to
the stream's master (a pipeline on that node's client), because WAIT counts the writes of
its own connection. After a failover or a resharding that connection errs (or answers
MOVED): the append raises `StoreUnavailable`, the cluster's slot map is read again before
the next one, and the caller retries with the same command ids (deduplicated).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

import redis
import redis.exceptions
from redis.cluster import ClusterNode, RedisCluster

from saleday.events.errors import InvalidStoreUrl, StoreUnavailable
from saleday.events.redis_store import RedisEventStore, store_options
from saleday.events.store import check_stream, cluster_seeds, redact


def cluster_client_from_url(url: str) -> tuple[RedisCluster, str]:
    """A redis-py cluster client and the key prefix for a `redis+cluster://` store URL."""
    client, ours = _cluster_client(url)
    return client, ours.prefix


def _cluster_client(url: str):  # type: ignore[no-untyped-def]
    ours, rest = store_options(url)
    if rest:
        raise InvalidStoreUrl(f"{redact(url)}: a cluster store takes no option "
                              f"{', '.join(sorted(rest))}")
    parts = urlsplit(url)
    seeds = [ClusterNode(host, port) for host, port in cluster_seeds(url)]
    try:
        client = RedisCluster(
            startup_nodes=seeds, username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            socket_connect_timeout=ours.connect_timeout, socket_timeout=ours.socket_timeout,
            decode_responses=False)
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise StoreUnavailable(redact(url), f"{type(exc).__name__}: {exc}") from exc
    return client, ours


class RedisClusterEventStore(RedisEventStore):
    """An `EventStore` on Redis Cluster: `RedisEventStore` with a cluster client. Opening
    one asks the seeds for the slot map, so an unreachable cluster is `StoreUnavailable`
    at once."""

    _r: RedisCluster  # type: ignore[assignment]

    def __init__(self, client: RedisCluster, **kw) -> None:  # type: ignore[no-untyped-def]
        self._refresh = False
        super().__init__(client, **kw)  # type: ignore[arg-type]

    @classmethod
    def from_url(cls, url: str, *, read_only: bool = False) -> RedisClusterEventStore:
        client, ours = _cluster_client(url)
        return cls(client, prefix=ours.prefix, url=url, read_only=read_only,
                   wait_replicas=ours.wait_replicas, wait_timeout_ms=ours.wait_timeout_ms)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Also the cluster client's own failures (no node reachable, slot not covered)."""
        try:
            with super()._errors():
                yield
        except redis.exceptions.RedisClusterException as exc:
            self._refresh = True
            raise StoreUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc

    def master_of(self, stream: str) -> str:
        """`host:port` of the master that holds `stream`'s slot now."""
        check_stream(stream)
        with self._errors():
            if self._refresh:
                self._reload_slots()
            return self._r.get_node_from_key(self._keys(stream)[0]).name

    def _node(self, stream: str) -> redis.Redis:
        if self._refresh:
            self._reload_slots()
        return self._r.get_redis_connection(self._r.get_node_from_key(self._keys(stream)[0]))

    def _reload_slots(self) -> None:
        self._r.nodes_manager.initialize()
        self._refresh = False

    def _pipelined(self, pipe) -> list:  # type: ignore[no-untyped-def]
        try:
            return pipe.execute()
        except redis.exceptions.NoScriptError:
            raise  # the master does not know the script yet: loaded and retried
        except redis.exceptions.RedisError:
            # The master died, failed over or moved the slot: read the slot map again
            # before the next append (this one's outcome is unknown: StoreUnavailable).
            self._refresh = True
            raise
