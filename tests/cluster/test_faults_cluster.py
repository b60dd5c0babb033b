"""Shards on a multi-node Ray cluster (one machine, `ray.cluster_utils.Cluster`) with the log
in a test-owned Redis (AOF, `appendfsync always`): shards go only to nodes offering the
shard resource, spread across them; a worker node removed mid-sale, or a shard actor killed
again and again under load, costs no acknowledged reservation, oversells nothing, and the
sale goes on."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import ray

from saleday.actors.host import Accepted, Busy, Unavailable
from saleday.actors.sku import AddStock, ConfigureSale, ReserveStock
from saleday.bench.reserve import stock_from_log
from saleday.cluster import ray_api
from saleday.cluster.runtime import Runtime, RuntimeConfig
from saleday.events import open_store, verify_commits
from tests.helpers import RedisServer, assert_audit_passes, now_ms, wait_until

pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.slow]
T0 = 1_762_790_400_000
# Ray notices a dead node after health_check_period_ms x failure_threshold (~1 s here,
# ~30 s by default), and only then restarts the node's actors elsewhere.
FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 200,
                      "health_check_timeout_ms": 500, "health_check_failure_threshold": 5}


@pytest.fixture(scope="module")
def cluster():
    """A head with no CPUs and no shard resource, and two worker nodes that offer it, all
    listening on loopback."""
    from ray.cluster_utils import Cluster

    with ray_api.single_machine_ray():
        c = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": False, "_system_config": FAST_HEALTH_CHECKS,
            "node_ip_address": ray_api.LOOPBACK})
        workers = [c.add_node(num_cpus=1, resources={"saleday_shard": 100},
                              node_ip_address=ray_api.LOOPBACK) for _ in range(2)]
        c.wait_for_nodes()
        ray.init(address=c.address, namespace=ray_api.NAMESPACE, log_to_driver=False)
    yield c, workers
    ray.shutdown()
    c.shutdown()


@pytest.fixture
def redis_aof(tmp_path):
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    yield server.url + "?prefix=sale&socket_timeout=2&connect_timeout=0.5"
    server.stop()


def start(url: str) -> Runtime:
    return Runtime(RuntimeConfig(store_url=url, shards={"sku": 2}, tick_s=0.5, retry_for_s=60,
                                 shard_resource="saleday_shard")).start()


def open_sale(rt: Runtime, skus: list[str], stock: int) -> None:
    setup = [c for sku in skus for c in (
        AddStock(sku=sku, qty=stock, now=T0),
        ConfigureSale(sku=sku, tiers=((stock // 2, 4950), (0, 9900)), per_user_limit=0,
                      start=T0, end=T0 + 10 * 365 * 86_400_000, now=T0))]
    assert all(isinstance(r, Accepted) for r in rt.client().submit_many(setup))


def reservations(n: int, skus: list[str]) -> dict[str, ReserveStock]:
    now = now_ms()
    return {f"reserve-{i}": ReserveStock(reservation_id=f"r-{i}", user=f"u-{i % 97}",
                                         sku=skus[i % len(skus)], qty=1, now=now,
                                         deadline=now + 900_000) for i in range(n)}


def run_sale(rt: Runtime, items: dict[str, ReserveStock], fault, *, after: int) -> dict[str, object]:
    """Submit `items` in waves through one gateway (same ids on every retry); call `fault`
    from another thread once `after` replies are in; retry Unavailable/Busy until settled."""

    async def drive() -> dict[str, object]:
        gateway = rt.gateway()
        replies: dict[str, object] = {}
        fired = threading.Event()
        faulting = None
        try:
            ids = list(items)
            for i in range(0, len(ids), 50):
                wave = ids[i:i + 50]
                got = await asyncio.gather(*(gateway.submit(items[c], command_id=c) for c in wave))
                replies.update(zip(wave, got))
                if len(replies) >= after and not fired.is_set():
                    fired.set()
                    faulting = asyncio.get_running_loop().run_in_executor(None, fault)
            if faulting is not None:
                await faulting
            deadline = time.monotonic() + 60
            while open_ := [c for c, r in replies.items() if isinstance(r, (Unavailable, Busy))]:
                assert time.monotonic() < deadline, f"{len(open_)} commands never settled"
                got = await asyncio.gather(*(gateway.submit(items[c], command_id=c) for c in open_))
                replies.update(zip(open_, got))
        finally:
            await gateway.close()
        return replies

    return asyncio.run(drive())


def assert_nothing_lost_or_oversold(url: str, items: dict[str, ReserveStock],
                                    replies: dict[str, object], supply: int) -> None:
    """Every accepted reservation is in the log exactly once, chains are intact, and no SKU
    holds more units than it was stocked with."""
    assert {type(r).__name__ for r in replies.values()} <= {"Accepted", "SoldOut"}
    accepted = {items[c].reservation_id for c, r in replies.items() if isinstance(r, Accepted)}
    store = open_store(url)
    logged: list[str] = []
    for stream in store.streams():
        verify_commits(stream, store.read_commits(stream))
        logged += [e.data["reservation_id"] for e in store.read(stream)
                   if e.type == "inventory.stock_reserved"]
    store.close()
    assert len(logged) == len(set(logged)), "a reservation was recorded twice"
    assert set(logged) == accepted
    added, held = stock_from_log(url)
    assert all(0 <= held.get(s, 0) <= added[s] for s in added), (held, added)
    assert_audit_passes(url)
    assert sum(held.values()) == len(accepted) == supply  # demand was above supply


def placed(rt: Runtime) -> dict[str, dict]:
    return ray_api.where({"sku-000", "sku-001"})


def test_shards_go_only_to_nodes_with_the_shard_resource_spread_across_them(cluster, redis_aof):
    """With a shard resource named, no shard lands on the head and the two shards take
    different worker nodes."""
    c, workers = cluster
    rt = start(redis_aof)
    try:
        nodes = {row["node_id"] for row in placed(rt).values()}
        assert c.head_node.node_id not in nodes
        assert nodes == {w.node_id for w in workers}
    finally:
        rt.stop(kill_shards=True)


def test_a_shard_killed_again_and_again_under_load_loses_nothing(cluster, redis_aof):
    """Three kills of one shard during a sale: it comes back each time from Redis, and the
    checks hold."""
    rt = start(redis_aof)
    try:
        skus = [f"sku-{i}" for i in range(10)]
        open_sale(rt, skus, 30)
        items = reservations(600, skus)

        def kill_three_times() -> None:
            for kills in range(1, 4):
                ray.kill(ray.get_actor("sku-000", namespace=ray_api.NAMESPACE), no_restart=False)

                def back() -> bool:
                    row = placed(rt)["sku-000"]
                    return row["state"] == "ALIVE" and row["restarts"] >= kills

                # The next kill hits a shard that came back, not one still restarting.
                wait_until(back, timeout=120, interval=0.05,
                           what=f"sku-000 alive again after kill {kills}")

        replies = run_sale(rt, items, kill_three_times, after=100)
        assert_nothing_lost_or_oversold(redis_aof, items, replies, supply=300)
        assert placed(rt)["sku-000"]["restarts"] >= 3
    finally:
        rt.stop(kill_shards=True)


def test_a_worker_node_removed_mid_sale_moves_its_shard_and_loses_nothing(cluster, redis_aof):
    """Killing every process of the node that hosts a shard (no graceful shutdown): Ray
    restarts the shard on the other worker, it recovers from Redis and serves; the checks
    hold. (Runs last: the module's cluster has one worker fewer afterwards.)"""
    c, workers = cluster
    rt = start(redis_aof)
    try:
        skus = [f"sku-{i}" for i in range(10)]
        open_sale(rt, skus, 30)
        items = reservations(600, skus)
        before = placed(rt)["sku-000"]
        victim = next(w for w in workers if w.node_id == before["node_id"])
        back_in: list[float] = []

        def remove() -> None:
            started = time.monotonic()
            c.remove_node(victim, allow_graceful=False)
            shard = ray.get_actor("sku-000", namespace=ray_api.NAMESPACE)
            while time.monotonic() - started < 60:
                try:
                    if ray.get(shard.status.remote(), timeout=30)["pid"] != before["pid"]:
                        back_in.append(time.monotonic() - started)
                        return
                except ray_api.transient_errors():
                    time.sleep(0.05)  # the call raced the node's death; ask the new one

        replies = run_sale(rt, items, remove, after=100)
        assert_nothing_lost_or_oversold(redis_aof, items, replies, supply=300)
        assert back_in and back_in[0] < 20, "the shard did not come back within 60 s"
        print(f"node removed -> shard serving on another node in {back_in[0]:.2f} s")
        after = placed(rt)["sku-000"]
        assert after["state"] == "ALIVE" and after["restarts"] >= 1
        assert after["node_id"] != victim.node_id and after["node_id"] != c.head_node.node_id
        status = {s["stream"]: s for s in rt.status()}
        assert status["sku-000"]["version"] == open_store(redis_aof).head("sku-000").version
    finally:
        rt.stop(kill_shards=True)
