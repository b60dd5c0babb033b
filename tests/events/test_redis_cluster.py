"""The log on Redis Cluster beyond the contract: URLs, streams spread over masters by slot,
appends acknowledged by replicas (WAIT), and a master failover with and without it.

The contract suite (test_store_contract.py::TestRedisClusterStore) runs every store case on
the session's cluster; the failover tests here start a cluster of their own, because they
kill one of its masters.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis

from saleday.actors.host import Accepted, Request, ShardHost, Unavailable
from saleday.actors.sku import AddStock, ConfigureSale, ReserveStock, sku_decider
from saleday.events import (
    InvalidStoreUrl,
    ReplicationShortfall,
    StoreUnavailable,
    open_store,
)
from saleday.events.store import check_url
from tests.helpers import LocalRedisCluster, ev, verify, wait_until, with_query

T0 = 1_762_790_400_000


# -- URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize("url, says", [
    ("redis+cluster://127.0.0.1/", "host:port"),
    ("redis+cluster://127.0.0.1:7000,:7001/", "host:port"),
    ("redis+cluster://127.0.0.1:7000,127.0.0.1:x/", "host:port"),
    ("redis+cluster://127.0.0.1:7000/0", "only database 0"),
    ("redis+cluster://127.0.0.1:7000/?db=1", "unknown option 'db'"),
    ("redis+cluster://127.0.0.1:7000/?wait_replicas=-1", "wait_replicas"),
    ("redis://127.0.0.1:6379/0?wait_replicas=one", "wait_replicas"),
    ("redis://127.0.0.1:6379/0?wait_timeout_ms=0", "wait_timeout_ms"),
])
def test_a_malformed_cluster_or_wait_option_is_an_invalid_store_url(url, says):
    """A cluster URL without host:port seeds, with a database, or a bad WAIT option is
    refused before anything is opened, saying what is wrong."""
    with pytest.raises(InvalidStoreUrl, match=says):
        check_url(url)


def test_an_unreachable_cluster_is_store_unavailable_without_the_password():
    """A cluster nobody answers for is StoreUnavailable at open, quickly, its URL redacted."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        open_store("redis+cluster://app:s3cret@127.0.0.1:1,127.0.0.1:2/?connect_timeout=0.5")
    assert time.monotonic() - started < 5
    assert "s3cret" not in str(info.value) and "app:***@127.0.0.1:1,127.0.0.1:2" in str(info.value)


# -- streams over masters -------------------------------------------------------------


@pytest.mark.redis
def test_streams_spread_over_masters_and_master_of_names_the_holder(redis_cluster_store_url):
    """Shard streams land on several masters by slot, and master_of names the master that
    really holds each stream's keys (the index set may sit on another one)."""
    import redis

    store = open_store(redis_cluster_store_url)
    try:
        streams = [f"sku-{i:03d}" for i in range(8)]
        for s in streams:
            store.append(s, [ev(1, command_id=f"{s}-1")], 0)
        masters = {s: store.master_of(s) for s in streams}
        assert len(set(masters.values())) >= 2
        prefix = store.prefix
        for s, master in masters.items():
            host, port = master.rsplit(":", 1)
            node = redis.Redis(host=host, port=int(port))
            try:
                assert node.exists(f"{prefix}:{{{s}}}:log", f"{prefix}:{{{s}}}:meta") == 2
            finally:
                node.close()
        assert store.streams() == dict.fromkeys(streams, 1)
    finally:
        store.close()


@pytest.mark.redis
def test_a_plain_store_names_its_one_server_as_every_streams_master(redis_store_url):
    """On one Redis, master_of is that server's host:port for every stream."""
    store = open_store(redis_store_url)
    try:
        port = redis_store_url.split("//", 1)[1].split("/", 1)[0]
        assert store.master_of("sku-000") == store.master_of("order-001") == port
    finally:
        store.close()


# -- WAIT -----------------------------------------------------------------------------


@pytest.mark.redis
def test_a_wait_no_replica_confirms_is_a_shortfall_and_its_retry_is_deduplicated(redis_store_url):
    """On a Redis without replicas, wait_replicas=1 makes every append a ReplicationShortfall
    naming the stream and the counts; the commit is on the server, and a retry with the same
    command ids is answered from the dedup record (and waits again), never written twice."""
    store = open_store(with_query(redis_store_url, wait_replicas="1", wait_timeout_ms="20"))
    try:
        with pytest.raises(ReplicationShortfall) as info:
            store.append("s", [ev(1), ev(2)], 0)
        assert (info.value.stream, info.value.last_version, info.value.acked,
                info.value.wanted) == ("s", 2, 0, 1)
        assert isinstance(info.value, StoreUnavailable) and "20 ms" in str(info.value)
        assert store.head("s").version == 2
        with pytest.raises(ReplicationShortfall):
            store.append("s", [ev(1), ev(2)], 0)
        assert [e.command_id for e in verify(store, "s")] == ["cmd-1", "cmd-2"]
    finally:
        store.close()


# -- a master fails over ---------------------------------------------------------------


def _sku_host(url: str) -> ShardHost:
    store = open_store(with_query(url, prefix="sale", connect_timeout="0.5", socket_timeout="1",
                                  wait_timeout_ms="200"))
    host = ShardHost(decider=sku_decider, store=store, stream="sku-000", clock=lambda: T0)
    replies = host.handle([
        Request("add-a", AddStock(sku="a", qty=1_000, now=T0)),
        Request("sale-a", ConfigureSale(sku="a", tiers=((0, 100),), per_user_limit=0, start=T0,
                                        end=T0 + 86_400_000, now=T0))])
    assert all(isinstance(r, Accepted) for r in replies), replies
    return host


def _reserve(host: ShardHost, ids: range) -> list:
    return host.handle([Request(f"c-{i}", ReserveStock(reservation_id=f"r-{i}", user=f"u{i}",
                                                       sku="a", qty=1, now=T0,
                                                       deadline=T0 + 600_000)) for i in ids])


def _reserved_in_log(host: ShardHost) -> list[str]:
    return [e.data["reservation_id"] for e in host.store.read("sku-000")
            if e.type.endswith("stock_reserved")]


def _head(host: ShardHost) -> int:
    try:
        return host.store.head("sku-000").version
    except StoreUnavailable:
        return 0


def _fail_over(cluster: LocalRedisCluster, host: ShardHost):
    """Cut the shard master's replica off (it lags from now on), then return a function
    that kills the master, wakes and promotes the replica, and brings the old master back
    as its replica."""
    master = cluster.node(int(host.store.master_of("sku-000").rsplit(":", 1)[1]))
    replica = cluster.replica_of(master)
    client = redis.Redis.from_url(master.url)
    try:   # what was committed so far has reached the replica before it is cut off
        assert client.wait(1, 10_000) >= 1
    finally:
        client.close()
    cluster.cut_off(replica, master)

    def fail_over() -> None:
        master.kill()
        replica.proc.send_signal(signal.SIGCONT)
        cluster.promote(replica)
        master.start()  # its nodes.conf is older than the takeover: it rejoins as a replica
        wait_until(cluster.ready, timeout=60, what="the cluster to heal after the failover")

    return fail_over


@pytest.mark.redis
@pytest.mark.slow
def test_with_wait_a_failover_loses_no_acknowledged_reservation(tmp_path):
    """wait_replicas=1: while the master's replica lags, reservations are answered
    Unavailable (never acknowledged); the master is killed and the replica promoted; the
    retried command ids are then recorded once and every acknowledged reservation is in
    the log, whose chain verifies. [about 7 s: a cluster of its own]"""
    with LocalRedisCluster(tmp_path) as cluster:
        host = _sku_host(with_query(cluster.url, wait_replicas="1"))
        acked = [r for r in _reserve(host, range(0, 20)) if isinstance(r, Accepted)]
        assert len(acked) == 20
        replicated = host.version
        fail_over = _fail_over(cluster, host)
        lagging = _reserve(host, range(20, 30))
        assert all(isinstance(r, Unavailable) and "reached 0 of 1 replicas" in r.reason
                   for r in lagging), lagging
        fail_over()
        # The unacknowledged commits were only on the dead master: the log is back at the
        # last acknowledged one, which the shard never went past.
        assert wait_until(lambda: _head(host) or None, timeout=30) == replicated == host.version

        def retried() -> list:
            """the retried reservations to be acknowledged after the failover"""
            replies = _reserve(host, range(20, 30))
            return replies if all(isinstance(r, Accepted) for r in replies) else []

        acked += wait_until(retried, timeout=30)
        in_log = _reserved_in_log(host)
        assert sorted(in_log) == sorted(f"r-{i}" for i in range(30))  # each exactly once
        assert host.log_rewound() is None and host.store.head("sku-000").version == host.version
        verify(host.store, "sku-000")
        host.store.close()


@pytest.mark.redis
@pytest.mark.slow
def test_without_wait_a_failover_loses_what_the_replica_had_not_received(tmp_path):
    """No wait (the default): reservations acknowledged while the replica lagged are lost
    when the master dies and the replica is promoted; the shard's head check notices the
    rewind and the shard never appends at a forked position. [about 7 s]"""
    with LocalRedisCluster(tmp_path) as cluster:
        host = _sku_host(cluster.url)
        assert all(isinstance(r, Accepted) for r in _reserve(host, range(0, 20)))
        replicated = host.version
        fail_over = _fail_over(cluster, host)
        assert all(isinstance(r, Accepted) for r in _reserve(host, range(20, 30)))
        acknowledged = host.version
        fail_over()
        wait_until(lambda: host.log_rewound() is not None, timeout=30,
                   what="the shard to see the log behind its own version")
        assert host.log_rewound() == replicated < acknowledged
        assert sorted(_reserved_in_log(host)) == sorted(f"r-{i}" for i in range(20))
        assert not any(isinstance(r, Accepted) for r in _reserve(host, range(30, 31)))
        assert host.store.head("sku-000").version == replicated
        verify(host.store, "sku-000")
        host.store.close()
