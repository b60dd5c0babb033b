"""`saleday bench store`: how fast the event stores append, read and verify.

Each backend gets a fresh store; the same events (shaped like a flash-sale reservation)
are appended in commits of `batch` events, each commit durable when `append` returns,
then read back and decoded into event objects (registered frozen dataclasses), then
read back and hash-chain verified two ways: over the stored bytes (`verify`, what
`saleday log verify` does) and by recomputing each hash from the decoded fields
(`verify_recompute`, what an auditor with an export does).
For SQLite, `contended` is what shards sharing one log file see: `writers` processes
appending one-event commits to one file at once (each on its own stream, as shards do),
with each commit's latency (the writer lock's queue, then the commit and its fsync).
`append_random_ids` appends the same events to a fresh store with their command ids in
random order (as ids from clients' own idempotency keys arrive), where `append`'s come in
time order (as the gateway mints them): the store's command-id index is a B-tree, and
ids that land anywhere in it cost more than ids that land at its end.
Every figure is the median of `repeat` runs. The machine is described in the output,
because numbers from these small shared machines are only comparable within one run.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import random
import statistics
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from saleday.events import (
    ChainVerifier,
    EventRegistry,
    EventStore,
    NewEvent,
    StoreUnavailable,
    open_store,
    verify_commits,
)
from saleday.simulator.results import machine_info

bench_registry = EventRegistry()


@bench_registry.event("bench.stock_reserved")
@dataclass(frozen=True, slots=True, kw_only=True)
class BenchStockReserved:
    """The shape of the hottest event of sale day, for measuring the log alone."""

    reservation_id: str
    user: str
    sku: str
    qty: int
    unit_prices: tuple[int, ...]
    deadline: int


def make_events(n: int, *, start: int = 0) -> list[NewEvent]:
    """`n` reservation events with distinct, time-ordered command ids."""
    now = 1_762_790_400_000  # 2025-11-11T00:00:00+08:00 in ms
    out = []
    for i in range(start, start + n):
        ev = BenchStockReserved(reservation_id=f"r-{i:09d}", user=f"u-{(i * 7919) % 1_000_003:07d}",
                                sku=f"sku-{i % 1000:04d}", qty=1 + i % 3,
                                unit_prices=(4_950,) * (1 + i % 3), deadline=now + 900_000 + i)
        out.append(bench_registry.new_event(ev, command_id=f"cmd-{i:012d}", recorded_at=now + i,
                                            correlation_id=f"order-{i:09d}"))
    return out


def in_random_order(events: list[NewEvent], *, seed: int = 7) -> list[NewEvent]:
    """`events` with their command ids dealt out in a random order (the same ids)."""
    ids = [e.command_id for e in events]
    random.Random(seed).shuffle(ids)
    return [replace(e, command_id=c) for e, c in zip(events, ids)]


def _append_all(store: EventStore, stream: str, batches: list[list[NewEvent]]) -> None:
    version = 0
    for b in batches:
        version = store.append(stream, b, version).last_version


def _rate(n: int, fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def bench_store(open_fresh: Callable[[], EventStore], *, events: int, batch: int,
                repeat: int) -> dict[str, Any]:
    """Median append, read+decode and read+verify rates of stores made by `open_fresh`."""
    prepared = make_events(events)
    batches = [prepared[i:i + batch] for i in range(0, events, batch)]
    shuffled = in_random_order(prepared)
    random_batches = [shuffled[i:i + batch] for i in range(0, events, batch)]
    appends, reads, verifies, recomputes, random_appends = [], [], [], [], []
    stream = "bench-0"
    for _ in range(repeat):
        store = open_fresh()
        try:

            def read_all() -> None:
                decoded = bench_registry.decode_all(store.read(stream))
                assert len(decoded) == events

            def verify_all() -> None:
                version, _ = verify_commits(stream, store.read_commits(stream))
                assert version == events

            def recompute_all() -> None:
                verifier = ChainVerifier(stream)
                verifier.feed(store.read(stream))
                assert verifier.version == events

            appends.append(_rate(events, lambda: _append_all(store, stream, batches)))
            reads.append(_rate(events, read_all))
            verifies.append(_rate(events, verify_all))
            recomputes.append(_rate(events, recompute_all))
        finally:
            _dispose(store)
        store = open_fresh()
        try:
            random_appends.append(_rate(events, lambda: _append_all(store, stream, random_batches)))
        finally:
            _dispose(store)
    return {
        "append_events_per_s": round(statistics.median(appends)),
        "read_events_per_s": round(statistics.median(reads)),
        "verify_events_per_s": round(statistics.median(verifies)),
        "verify_recompute_events_per_s": round(statistics.median(recomputes)),
        "append_random_ids_events_per_s": round(statistics.median(random_appends)),
        "runs": {"append": [round(x) for x in appends], "read": [round(x) for x in reads],
                 "verify": [round(x) for x in verifies],
                 "verify_recompute": [round(x) for x in recomputes],
                 "append_random_ids": [round(x) for x in random_appends]},
    }


def bench_eventsourcing(*, events: int, batch: int, repeat: int) -> dict[str, Any]:
    """The reference: the Python `eventsourcing` library on SQLite, same event shape, saved
    `batch` events at a time, then replayed (`repository.get`). Its append figure includes
    creating the events through the aggregate, which ours (prepared events) does not."""
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
    except ImportError:
        return {"error": "the eventsourcing package is not installed (pip install -e '.[dev]')"}

    class Sku(Aggregate):
        @event("Reserved")
        def reserve(self, reservation_id: str, user: str, sku: str, qty: int,
                    unit_prices: list[int], deadline: int) -> None:
            pass

    appends, reads = [], []
    with tempfile.TemporaryDirectory(prefix="saleday-bench-es-") as tmp:
        for run in range(repeat):
            app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                                   "SQLITE_DBNAME": os.path.join(tmp, f"es-{run}.db")})
            sku = Sku()
            app.save(sku)
            t0 = time.perf_counter()
            for start in range(0, events, batch):
                for i in range(start, min(events, start + batch)):
                    sku.reserve(f"r-{i:09d}", f"u-{i % 1_000_003:07d}", f"sku-{i % 1000:04d}",
                                1, [4950], 1_762_791_300_000 + i)
                app.save(sku)
            appends.append(events / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            assert app.repository.get(sku.id).version == events + 1
            reads.append(events / (time.perf_counter() - t0))
            app.close()
    return {"append_events_per_s": round(statistics.median(appends)),
            "read_events_per_s": round(statistics.median(reads)),
            "runs": {"append": [round(x) for x in appends], "read": [round(x) for x in reads]},
            "durability": "eventsourcing.sqlite defaults"}


def _contending_writer(url: str, stream: str, commits: int, go: Any, out: Any) -> None:
    events = make_events(commits, start=int(stream.rpartition("-")[2]) * 10**9)
    store = open_store(url)
    latencies = array("d")
    go.wait(60)
    started = time.perf_counter()
    version = 0
    for event in events:
        t0 = time.perf_counter()
        version = store.append(stream, [event], version).last_version
        latencies.append(time.perf_counter() - t0)
    out.put((time.perf_counter() - started, latencies.tobytes()))
    store.close()


def bench_contended(url: str, *, writers: int, commits: int) -> dict[str, Any]:
    """`writers` processes appending `commits` one-event commits each to the store at `url`
    at once: commits/s in all, and each commit's latency."""
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_contending_writer, args=(url, f"bench-{k}", commits, go, out))
             for k in range(writers)]
    for proc in procs:
        proc.start()
    try:
        time.sleep(0.5)   # the writers have imported and opened the store
        go.set()
        results = _results(out, procs, timeout_s=300)
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    latencies = array("d")
    for _, blob in results:
        latencies.frombytes(blob)
    ordered = sorted(latencies)
    wall = max(elapsed for elapsed, _ in results)
    return {"writers": writers, "commits_each": commits,
            "commits_per_s": round(writers * commits / wall),
            "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2)}


def _results(out: Any, procs: list[Any], *, timeout_s: float) -> list[Any]:
    """One result from each process, or an error as soon as one of them has died without
    giving its result (its traceback is on stderr), or after `timeout_s`."""
    results: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=0.5))
            continue
        except queue.Empty:
            pass
        died = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
        if died:
            raise RuntimeError(f"a contending writer died (exit code {died[0]}); its error is "
                               "above")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the contending writers gave {len(results)} of {len(procs)} "
                               f"results in {timeout_s:g} s")
    return results


def _dispose(store: EventStore) -> None:
    cleanup = getattr(store, "_bench_cleanup", None)
    if cleanup:
        cleanup()
    store.close()


def run(*, events: int = 200_000, batch: int = 1000, repeat: int = 3,
        redis_url: str = "redis://127.0.0.1:6379/0", sqlite_synchronous: str = "full",
        backends: tuple[str, ...] = ("sqlite", "redis"), baseline: bool = True,
        writers: int = 4, contended_commits: int = 2000) -> dict[str, Any]:
    """Benchmark each backend and return `{"sqlite": {...}, "redis": {...}, ...}`, with the
    `eventsourcing` library measured in the same run as the baseline."""
    from saleday.cluster.shard_actor import tune_gc

    tune_gc()  # the GC policy of saleday's shard processes, which do the reading
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="saleday-bench-") as tmp:
        if "sqlite" in backends:
            def fresh_sqlite() -> EventStore:
                path = os.path.join(tmp, f"{uuid.uuid4().hex}.db")
                return open_store(f"sqlite:///{path}?synchronous={sqlite_synchronous}")

            result["sqlite"] = bench_store(fresh_sqlite, events=events, batch=batch, repeat=repeat)
            result["sqlite"]["durability"] = f"WAL, synchronous={sqlite_synchronous}"
            if writers:
                path = os.path.join(tmp, f"{uuid.uuid4().hex}.db")
                result["sqlite"]["contended"] = bench_contended(
                    f"sqlite:///{path}?synchronous={sqlite_synchronous}", writers=writers,
                    commits=contended_commits)
    if "redis" in backends:
        def fresh_redis() -> EventStore:
            prefix = f"saleday-bench-{uuid.uuid4().hex[:12]}"
            sep = "&" if "?" in redis_url else "?"
            store = open_store(f"{redis_url}{sep}prefix={prefix}")
            store.ping()  # type: ignore[attr-defined]
            store._bench_cleanup = lambda: _drop_prefix(store, prefix)  # type: ignore[attr-defined]
            return store

        try:
            result["redis"] = bench_store(fresh_redis, events=events, batch=batch, repeat=repeat)
            result["redis"]["durability"] = _redis_durability(redis_url)
        except StoreUnavailable as exc:
            result["redis"] = {"error": str(exc)}
    if baseline:
        result["eventsourcing[sqlite]"] = bench_eventsourcing(
            events=min(events, 50_000), batch=batch, repeat=repeat)
        base = result["eventsourcing[sqlite]"]
        if "error" not in base:
            for name in backends:
                row = result.get(name, {})
                if "append_events_per_s" in row:
                    row["x_eventsourcing_append"] = round(row["append_events_per_s"] / base["append_events_per_s"], 2)
                    row["x_eventsourcing_read"] = round(row["read_events_per_s"] / base["read_events_per_s"], 2)
    result["params"] = {"events": events, "batch": batch, "repeat": repeat, "writers": writers,
                        "gc": "tuned as in shard processes (cluster.shard_actor.tune_gc)"}
    result["machine"] = machine_info()
    return result


def _drop_prefix(store: Any, prefix: str) -> None:
    client = store._r
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)


def _redis_durability(url: str) -> str:
    from saleday.events.redis_store import client_from_url

    try:
        client, _ = client_from_url(url)
        conf = client.config_get("appendonly") | client.config_get("appendfsync")
        info = client.info("server")
        client.close()
    except Exception as exc:  # durability is a label, never a reason to fail the bench
        return f"unknown ({type(exc).__name__})"
    return (f"redis {info.get('redis_version')}, appendonly={conf.get('appendonly')}, "
            f"appendfsync={conf.get('appendfsync')}")
