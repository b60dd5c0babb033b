"""`saleday bench reserve`: a flash sale end to end, against two Redis baselines.

The workload: `skus` SKUs with `stock` units each, the first 30% of each SKU's units at
half price; `requests` reservations of one unit each (demand = `demand` x supply) from
`users` users, SKUs drawn Zipf-like (exponent `zipf`), all generated from `seed`.

Systems, on the same workload in the same run:
- `saleday[sqlite]`, `saleday[redis]`: client -> batching gateway -> Ray shard actors ->
  decide -> durable append (one commit per batch) -> reply. A closed loop keeps `window`
  requests outstanding; with `client_kind="requests"` (the default) each request is submitted
  and answered on its own (a future each), with `client_kind="pipelined"` in chunks of 256 (one
  `Gateway.submit_batch` each, timed as one round trip), as the Lua peer's client sends.
- `seed_decrby_rollback`: the seed's approach, `DECRBY` then `INCRBY` back when negative,
  one round trip per request.
- `redis_lua_pipelined`: an atomic Lua check-and-decrement plus `XADD` of the event,
  pipelined 256 at a time.

Each row has `req_per_s`, `p50_ms`, `p99_ms` (latency from submit to reply) and
`oversold` (units granted beyond stock, counted independently from what was recorded:
the event log for saleday, the baseline's own counters for the baselines).

This module drives saleday and the whole run (and `run_recovery`); the workload is
`saleday.bench.workload`, the Redis baselines `saleday.bench.redis_baselines`.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from typing import Any

import redis

from saleday.actors.host import Accepted
from saleday.actors.sku import (
    AddStock,
    ConfigureSale,
    ReservationExpired,
    ReservationReleased,
    ReserveStock,
    StockAdded,
    StockReserved,
)
from saleday.bench.redis_baselines import run_lua_pipelined, run_seed_decrby
from saleday.bench.workload import Workload, make_workload, percentiles
from saleday.cluster.wire import Wire
from saleday.events import StoreUnavailable, open_store, registry
from saleday.events.redis_cluster_store import cluster_client_from_url
from saleday.events.redis_store import client_from_url
from saleday.simulator.results import machine_info as machine

NOW0 = 1_762_790_400_000  # 2025-11-11T00:00:00+08:00 (baselines; saleday runs on the wall clock)


SYSTEMS = ("saleday[sqlite]", "saleday[redis]", "seed_decrby_rollback", "redis_lua_pipelined")
"""What `run` measures: saleday on each log backend, and the two Redis baselines."""

CLIENTS = ("requests", "pipelined")
"""How saleday's rows are driven (see the module docstring)."""


# -- saleday ------------------------------------------------------------------------------

def run_saleday(store_url: str, work: Workload, *, shards: int, window: int,
                max_batch: int, max_wait_ms: float, ray_address: str | None = None,
                shard_resource: str | None = None, client_kind: str = "requests") -> dict[str, Any]:
    from saleday.cluster.runtime import Runtime, RuntimeConfig

    config = RuntimeConfig(store_url=store_url, shards={"sku": shards}, max_batch=max_batch,
                           max_wait_ms=max_wait_ms, max_in_flight=2, tick_s=0,
                           ray_address=ray_address, shard_resource=shard_resource)
    runtime = Runtime(config).start()
    try:
        return asyncio.run(_drive_saleday(runtime, work, window, store_url, client_kind))
    finally:
        runtime.stop(kill_shards=True)


async def _open_sale(gateway: Any, work: Workload, tag: str) -> list[ReserveStock]:
    """Stock and open every SKU of `work` (named with `tag`); return its reservations."""
    half = (work.stock * 3) // 10
    setup = [c for sku in work.skus for c in (
        AddStock(sku=f"{tag}{sku}", qty=work.stock, now=NOW0),
        ConfigureSale(sku=f"{tag}{sku}", tiers=((half, 4950), (0, 9900)) if half else ((0, 9900),),
                      per_user_limit=0, start=NOW0, end=NOW0 + 10 * 365 * 86_400_000, now=NOW0))]
    for reply in await gateway.submit_many(setup):
        assert isinstance(reply, Accepted), reply
    now = int(time.time() * 1000)  # the shards expire reservations on their wall clock
    return [ReserveStock(reservation_id=f"{tag}r-{i}", user=user, sku=f"{tag}{sku}", qty=1,
                         now=now, deadline=now + 900_000)
            for i, (user, sku) in enumerate(work.requests)]


async def _drive_saleday(runtime: Any, work: Workload, window: int, store_url: str,
                         client_kind: str = "requests") -> dict[str, Any]:
    gateway = runtime.gateway()
    closed, opened = ((closed_loop, open_loop) if client_kind == "requests"
                      else (pipelined_closed_loop, pipelined_open_loop))
    commands = await _open_sale(gateway, work, "")
    started = time.perf_counter()
    latencies, replies = await closed(gateway, commands, window)
    elapsed = time.perf_counter() - started
    granted = sum(1 for r in replies if isinstance(r, Accepted))
    rejected: dict[str, int] = {}
    for r in replies:
        if not isinstance(r, Accepted):
            rejected[r.code] = rejected.get(r.code, 0) + 1
    p50, p99 = percentiles(latencies)
    peak = len(commands) / elapsed
    # The same sale again on fresh SKUs, offered at half the peak rate (open loop).
    half_commands = await _open_sale(gateway, work, "half-")
    half_latencies, _ = await opened(gateway, half_commands, peak / 2)
    half_p50, half_p99 = percentiles(half_latencies)
    return {"req_per_s": round(peak), "p50_ms": p50, "p99_ms": p99,
            "p50_ms_at_half_load": half_p50, "p99_ms_at_half_load": half_p99,
            "oversold": _oversold_from_log(store_url, work), "granted": granted,
            "rejected": rejected, "batches": gateway.stats["batches"]}


async def open_loop(gateway: Any, commands: list[Any], rate: float) -> tuple[list[float], list[Any]]:
    """Offer `commands` at `rate` per second whatever the replies, as real traffic would.

    The end is one future set by the last reply: gathering every request's future at the
    end held the client's loop for ~200 ms (150,000 callbacks added at once), and the
    replies landing meanwhile were timed late (p99 at half load +2-10 ms, max ~240 ms)."""
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    latencies: list[float] = []
    replies: list[Any] = [None] * len(commands)
    clock = time.perf_counter
    outstanding = len(commands)
    if not commands:
        return latencies, replies

    def done(f: asyncio.Future, i: int, t0: float) -> None:
        nonlocal outstanding
        latencies.append(clock() - t0)
        replies[i] = f.result()
        outstanding -= 1
        if outstanding == 0:
            finished.set_result(None)

    started = clock()
    sent = 0
    while sent < len(commands):
        due = min(len(commands), int((clock() - started) * rate) + 1)
        while sent < due:
            fut = gateway.submit_nowait(commands[sent])
            fut.add_done_callback(lambda f, i=sent, t0=clock(): done(f, i, t0))
            sent += 1
        await asyncio.sleep(0.001)
    await finished
    return latencies, replies


async def closed_loop(gateway: Any, commands: list[Any], window: int) -> tuple[list[float], list[Any]]:
    """Keep `window` commands outstanding until all are answered; no task per request
    (a task each would cost more than the gateway itself)."""
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    latencies: list[float] = []
    replies: list[Any] = [None] * len(commands)
    pending = iter(enumerate(commands))
    outstanding = 0
    clock = time.perf_counter

    def launch() -> None:
        nonlocal outstanding
        while outstanding < window:
            item = next(pending, None)
            if item is None:
                if outstanding == 0 and not finished.done():
                    finished.set_result(None)
                return
            i, command = item
            fut = gateway.submit_nowait(command)
            outstanding += 1
            fut.add_done_callback(lambda f, i=i, t0=clock(): done(i, t0, f))

    def done(i: int, t0: float, fut: asyncio.Future) -> None:
        nonlocal outstanding
        latencies.append(clock() - t0)
        replies[i] = fut.result()
        outstanding -= 1
        launch()

    launch()
    await finished
    return latencies, replies


PIPELINE_DEPTH = 256
"""Requests a pipelined client sends together: the Lua peer's pipeline depth."""


async def pipelined_closed_loop(gateway: Any, commands: list[Any], window: int,
                                depth: int = PIPELINE_DEPTH) -> tuple[list[float], list[Any]]:
    """The Lua peer's client shape: chunks of `depth` requests, each sent as one
    `submit_batch` and timed as one round trip, `window` requests outstanding."""
    chunks = [commands[i:i + depth] for i in range(0, len(commands), depth)]
    latencies: list[float] = []
    replies: list[Any] = []
    answered: list[list[Any] | None] = [None] * len(chunks)
    clock = time.perf_counter
    pending = iter(enumerate(chunks))

    async def worker() -> None:
        for i, chunk in pending:
            t0 = clock()
            answered[i] = await gateway.submit_batch(chunk)
            latencies.extend([clock() - t0] * len(chunk))

    await asyncio.gather(*(worker() for _ in range(max(1, window // depth))))
    for chunk_replies in answered:
        replies.extend(chunk_replies or ())
    return latencies, replies


async def pipelined_open_loop(gateway: Any, commands: list[Any], rate: float,
                              depth: int = PIPELINE_DEPTH) -> tuple[list[float], list[Any]]:
    """`commands` offered at `rate` per second in chunks of `depth` (a chunk as soon as
    its last request is due), whatever the replies."""
    latencies: list[float] = []
    replies: list[Any] = [None] * len(commands)
    clock = time.perf_counter
    sent: list[asyncio.Future] = []

    def done(fut: asyncio.Future, start: int, t0: float) -> None:
        chunk_replies = fut.result()
        latencies.extend([clock() - t0] * len(chunk_replies))
        replies[start:start + len(chunk_replies)] = chunk_replies

    started = clock()
    for start in range(0, len(commands), depth):
        chunk = commands[start:start + depth]
        due = started + (start + len(chunk)) / rate
        if due > clock():
            await asyncio.sleep(due - clock())
        fut = gateway.submit_batch(chunk)
        fut.add_done_callback(lambda f, s=start, t0=clock(): done(f, s, t0))
        sent.append(fut)
    await asyncio.gather(*sent)
    return latencies, replies


def stock_from_log(store_url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per SKU, units stocked and units held or sold, folded from the log itself (never
    from a shard's memory): what an oversell check must trust."""
    added: dict[str, int] = {}
    held: dict[str, int] = {}
    store = open_store(store_url)
    try:
        for stream in store.streams():
            for env in store.read(stream):
                event = registry.decode(env)
                if isinstance(event, StockAdded):
                    added[event.sku] = added.get(event.sku, 0) + event.qty
                elif isinstance(event, StockReserved):
                    held[event.sku] = held.get(event.sku, 0) + event.qty
                elif isinstance(event, (ReservationReleased, ReservationExpired)):
                    held[event.sku] = held.get(event.sku, 0) - event.qty
    finally:
        store.close()
    return added, held


def _oversold_from_log(store_url: str, work: Workload) -> int:
    added, held = stock_from_log(store_url)
    return sum(max(0, held.get(s, 0) - added.get(s, 0)) for s in set(added) | set(held))


# -- the whole run ------------------------------------------------------------------------

def run(*, skus: int = 1000, stock: int = 100, demand: float = 3.0, users: int = 200_000,
        zipf: float = 1.0, seed: int = 11, shards: int = 2, window: int = 4096,
        max_batch: int = 1024, max_wait_ms: float = 2.0,
        redis_url: str = "redis://127.0.0.1:6379/0",
        systems: tuple[str, ...] = SYSTEMS, ray_nodes: int = 0, ray_address: str | None = None,
        shard_resource: str | None = None, client_kind: str = "requests") -> dict[str, Any]:
    """Each system's row; saleday's shards on a local Ray, the Ray at `ray_address`
    (placed by `shard_resource`), or with `ray_nodes` a multi-node Ray on this machine (a
    head and that many one-CPU shard nodes, the shards spread over them)."""
    from saleday.cluster.shard_actor import tune_gc

    if ray_nodes:
        from saleday.cluster import ray_api

        address, stop = ray_api.local_nodes(ray_nodes)
        try:
            result = run(skus=skus, stock=stock, demand=demand, users=users, zipf=zipf,
                         seed=seed, shards=shards, window=window, max_batch=max_batch,
                         max_wait_ms=max_wait_ms, redis_url=redis_url, systems=systems,
                         ray_address=address, shard_resource="saleday_shard", client_kind=client_kind)
        finally:
            stop()
        result["params"]["ray_nodes"] = ray_nodes
        return result

    work = make_workload(skus=skus, stock=stock, demand=demand, users=users, zipf=zipf, seed=seed)
    tune_gc()  # the driver is a long-lived, allocation-heavy process too
    result: dict[str, Any] = {}
    prefix = f"saleday-bench-{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in redis_url else "?"
    on_cluster = redis_url.startswith("redis+cluster:")
    try:
        client = (cluster_client_from_url(redis_url) if on_cluster
                  else client_from_url(redis_url))[0]
    except StoreUnavailable as exc:  # a cluster's client connects at once
        client, down = None, exc
    else:
        down = None
    try:
        with tempfile.TemporaryDirectory(prefix="saleday-bench-") as tmp:
            for system in systems:
                try:
                    if system == "saleday[sqlite]":
                        row = run_saleday(f"sqlite:///{os.path.join(tmp, 'events.db')}", work,
                                          shards=shards, window=window, max_batch=max_batch,
                                          max_wait_ms=max_wait_ms, ray_address=ray_address,
                                          shard_resource=shard_resource, client_kind=client_kind)
                    elif system == "saleday[redis]":
                        row = run_saleday(f"{redis_url}{sep}prefix={prefix}-log", work,
                                          shards=shards, window=window, max_batch=max_batch,
                                          max_wait_ms=max_wait_ms, ray_address=ray_address,
                                          shard_resource=shard_resource, client_kind=client_kind)
                    elif down is not None:
                        raise down
                    elif on_cluster:  # the baselines' scripts take keys of several slots
                        row = {"error": "the Redis baselines need one Redis (redis://), "
                                        "not a cluster"}
                    elif system == "seed_decrby_rollback":
                        row = run_seed_decrby(client, f"{prefix}-seed", work)
                    elif system == "redis_lua_pipelined":
                        row = run_lua_pipelined(client, f"{prefix}-lua", work)
                    else:
                        raise ValueError(f"unknown system {system!r}")
                except (redis.ConnectionError, redis.TimeoutError, StoreUnavailable) as exc:
                    row = {"error": f"Redis unavailable: {exc}"}
                result[system] = row
    finally:
        if client is not None:
            try:
                for key in client.scan_iter(match=f"{prefix}*", count=1000):
                    client.delete(key)
            except redis.RedisError:
                pass
            client.close()
    base = result.get("redis_lua_pipelined", {}).get("req_per_s")
    if base:
        for system in ("saleday[sqlite]", "saleday[redis]"):
            if "req_per_s" in result.get(system, {}):
                result[system]["x_redis_lua_pipelined"] = round(result[system]["req_per_s"] / base, 2)
    result["params"] = {"skus": skus, "stock": stock, "demand": demand, "users": users,
                        "zipf": zipf, "seed": seed, "requests": len(work.requests),
                        "shards": shards, "window": window, "max_batch": max_batch,
                        "max_wait_ms": max_wait_ms, "client": client_kind}
    result["machine"] = machine()
    return result


# -- recovery -----------------------------------------------------------------------------

def run_recovery(*, events: int = 1_000_000, snapshot_every: int = 50_000,
                 skus: int = 100) -> dict[str, Any]:
    """Fill one shard's stream with `events` events (reserve, then release, as a shard
    would write them, snapshots included), then time (a) recovery of a new host in this
    process from the latest snapshot, (b) a replay of the whole stream (whose rate gives
    the worst case: a tail of `snapshot_every` events after the snapshot) and (c) a Ray
    shard actor killed and restarted until it answers again."""
    from saleday.actors.host import Request, ShardHost
    from saleday.actors.sku import ReleaseReservation, sku_decider
    from saleday.cluster import ray_api

    with tempfile.TemporaryDirectory(prefix="saleday-bench-") as tmp:
        url = f"sqlite:///{os.path.join(tmp, 'events.db')}?synchronous=normal"
        store = open_store(url)
        stream = "sku-000"
        host = ShardHost(decider=sku_decider, store=store, stream=stream,
                         snapshot_every=snapshot_every)
        names = [f"sku-{i:04d}" for i in range(skus)]
        now = int(time.time() * 1000)
        host.handle([Request(f"setup-{c.sku}-{type(c).__name__}", c) for sku in names for c in (
            AddStock(sku=sku, qty=1_000_000, now=now),
            ConfigureSale(sku=sku, tiers=((0, 9900),), per_user_limit=0, start=0,
                          end=now + 86_400_000, now=now))])
        started = time.perf_counter()
        n = 0
        while host.version < events:
            batch = [Request(f"res-{n + i}", ReserveStock(
                reservation_id=f"r-{n + i}", user=f"u-{(n + i) % 9973}", sku=names[(n + i) % skus],
                qty=1, now=now, deadline=now + 3_600_000)) for i in range(500)]
            batch += [Request(f"rel-{n + i}", ReleaseReservation(
                reservation_id=f"r-{n + i}", sku=names[(n + i) % skus], user=f"u-{(n + i) % 9973}",
                reason="cancelled", now=now))
                for i in range(500)]
            host.handle(batch)
            n += 500
        fill_s = time.perf_counter() - started
        total = host.version
        t0 = time.perf_counter()
        recovered = ShardHost(decider=sku_decider, store=store, stream=stream,
                              snapshot_every=snapshot_every)
        in_process_ms = (time.perf_counter() - t0) * 1000
        assert recovered.version == total
        t0 = time.perf_counter()
        replayed = ShardHost(decider=sku_decider, store=store, stream=stream, use_snapshot=False)
        replay_rate = total / (time.perf_counter() - t0)
        assert replayed.states == recovered.states
        store.close()

        ray_api.start_ray()
        handle = ray_api.shard_handle(kind="sku", stream=stream, store_url=url,
                                     snapshot_every=snapshot_every)
        wire = Wire(sku_decider.commands)
        probe = lambda i: wire.encode_requests([Request(f"probe-{i}", ReserveStock(  # noqa: E731
            reservation_id=f"probe-{i}", user="u-probe", sku=names[0], qty=1,
            now=int(time.time() * 1000), deadline=int(time.time() * 1000) + 60_000))])
        ray_api.get(handle.handle.remote(probe(0)), timeout=120)
        old_pid = ray_api.get(handle.status.remote(), timeout=30)["pid"]
        ray_api.kill(handle, no_restart=False)
        actor_down = ray_api.actor_down_errors()
        t0 = time.perf_counter()
        while True:  # until the NEW incarnation has recovered and answered a reservation
            try:
                if ray_api.get(handle.status.remote(), timeout=30)["pid"] == old_pid:
                    time.sleep(0.005)
                    continue
                ray_api.get(handle.handle.remote(probe(1)), timeout=30)
                break
            except actor_down:
                time.sleep(0.005)
        ray_restart_ms = (time.perf_counter() - t0) * 1000
        ray_api.kill(handle, no_restart=True)
    return {"events": total, "snapshot_every": snapshot_every, "fill_s": round(fill_s, 1),
            "recover_in_process_ms": round(in_process_ms, 1),
            "replay_events_per_s": round(replay_rate),
            "worst_case_tail_ms": round(snapshot_every / replay_rate * 1000, 1),
            "ray_kill_to_serving_ms": round(ray_restart_ms, 1)}
