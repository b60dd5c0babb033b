"""`saleday bench cluster`: how the log's append rate scales with shards and Redis masters,
and what acknowledging each commit only after `WAIT 1` (a replica has it) costs.

For each master count M, a local Redis Cluster of M masters, each with one replica, is
started (`bench.redis_cluster`), with each shard's stream placed on master `i % M`.
Then for each `wait_replicas` value, M shard processes (spawned) each append `events`
reservation-shaped events to their own stream in commits of `batch`, all starting
together (a barrier); the figures, each the median of `repeat` runs:

- `events_per_s`: all events over the wall time from the first start to the last end;
- `events_per_master_cpu_s`: all events over the CPU seconds the masters spent (INFO cpu):
  what one Redis core appends when it is the bottleneck, whatever else runs here;
- `events_per_writer_cpu_s`: all events over the writers' CPU seconds (sealing, hashing,
  encoding and the client): what one shard core appends to the log.
 Every figure from one run is comparable; the
machine is in the output, because a 2-core VM shares its cores between the writers and
the Redis servers.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
import uuid
from typing import Any

from saleday.events import open_store

SPAWN = multiprocessing.get_context("spawn")


def _writer(url: str, stream: str, events: int, batch: int, start: Any) -> tuple[float, ...]:
    """Append `events` events to `stream` in commits of `batch` (timed), after one commit
    before the start line (connections made, scripts loaded) and the others' barrier
    `start`: (start, end) wall times and the CPU seconds this process spent between."""
    from saleday.bench.store import make_events

    prepared = make_events(events + batch)
    store = open_store(url)
    try:
        version = store.append(stream, prepared[:batch], 0).last_version
        start.wait()
        started, cpu = time.time(), time.process_time()
        for i in range(batch, events + batch, batch):
            version = store.append(stream, prepared[i:i + batch], version).last_version
        assert version == events + batch
        return started, time.time(), time.process_time() - cpu
    finally:
        store.close()


def _cpu_s(ports: list[int]) -> float:
    """CPU seconds the Redis servers on `ports` have used so far (INFO cpu)."""
    import redis

    total = 0.0
    for port in ports:
        client = redis.Redis(port=port, socket_timeout=5)
        try:
            info = client.info("cpu")
        finally:
            client.close()
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


def _warm(_: int) -> None:
    """Import in a pool process what a writer needs, before any start line is drawn."""
    import saleday.bench.store  # noqa: F401
    import saleday.events.redis_cluster_store  # noqa: F401


def bench_masters(masters: int, *, waits: tuple[int, ...], events: int, batch: int,
                  repeat: int, appendfsync: str) -> list[dict[str, Any]]:
    """One row per `wait_replicas` value for a cluster of `masters` masters (and replicas)."""
    from saleday.bench.redis_cluster import LocalCluster

    prefix = "bench"
    streams = [f"sku-{i:03d}" for i in range(masters)]
    rows = []
    with LocalCluster(masters, replicas=True, appendfsync=appendfsync, prefix=prefix,
                      place={s: i for i, s in enumerate(streams)}) as cluster:
        probe = open_store(f"{cluster.url}?prefix={prefix}")
        try:
            placed = {s: probe.master_of(s) for s in streams}  # type: ignore[attr-defined]
        finally:
            probe.close()
        masters_ports = cluster.ports[:masters]
        with SPAWN.Manager() as manager, SPAWN.Pool(masters) as pool:
            pool.map(_warm, range(masters), chunksize=1)
            for wait in waits:
                rates, per_master_cpu, per_writer_cpu = [], [], []
                for _ in range(repeat):
                    url = (f"{cluster.url}?prefix={prefix}-{uuid.uuid4().hex[:8]}"
                           f"&wait_replicas={wait}&wait_timeout_ms=5000")
                    start = manager.Barrier(masters)
                    before = _cpu_s(masters_ports)
                    spans = pool.starmap(_writer, [(url, s, events, batch, start)
                                                   for s in streams], chunksize=1)
                    # The masters' CPU also counts each writer's untimed first commit: 1/N+1.
                    redis_cpu = (_cpu_s(masters_ports) - before) * events / (events + batch)
                    wall = max(s[1] for s in spans) - min(s[0] for s in spans)
                    rates.append(events * masters / wall)
                    per_master_cpu.append(events * masters / max(redis_cpu, 1e-9))
                    per_writer_cpu.append(events * masters / sum(s[2] for s in spans))
                median = statistics.median(rates)
                rows.append({"masters": masters, "shards": masters, "wait_replicas": wait,
                             "events_per_s": round(median),
                             "commits_per_s": round(median / batch),
                             "events_per_master_cpu_s": round(statistics.median(per_master_cpu)),
                             "events_per_writer_cpu_s": round(statistics.median(per_writer_cpu)),
                             "runs": [round(r) for r in rates],
                             "masters_used": len(set(placed.values()))})
    return rows


def run(*, masters: tuple[int, ...] = (1, 2, 4), waits: tuple[int, ...] = (0, 1),
        events: int = 20_000, batch: int = 100, repeat: int = 3,
        appendfsync: str = "no-aof") -> dict[str, Any]:
    """The rows for every master count, each with its speed-up over the first count's row
    of the same `wait_replicas`, and the cost of WAIT against no wait at the same size."""
    from saleday.simulator.results import machine_info

    rows: list[dict[str, Any]] = []
    for m in masters:
        rows += bench_masters(m, waits=waits, events=events, batch=batch, repeat=repeat,
                              appendfsync=appendfsync)
    first = {r["wait_replicas"]: r for r in rows if r["masters"] == masters[0]}
    for r in rows:
        r["x_first"] = round(r["events_per_s"] / first[r["wait_replicas"]]["events_per_s"], 2)
        no_wait = next((o for o in rows if o["masters"] == r["masters"]
                        and o["wait_replicas"] == 0), None)
        if no_wait is not None and r["wait_replicas"]:
            r["x_no_wait"] = round(r["events_per_s"] / no_wait["events_per_s"], 2)
    return {"rows": rows, "params": {"events_per_shard": events, "batch": batch,
                                     "repeat": repeat, "appendfsync": appendfsync,
                                     "replicas_per_master": 1},
            "machine": machine_info()}
