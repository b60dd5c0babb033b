"""The Ray engine: drive the running system through its gateway, paced by the wall clock.

Shard actors of every kind run on Ray (a local Ray started in this process with the SQLite
store under the data dir, or a cluster at `--address` with a `redis://` store). Visits
arrive open-loop at the scenario's rate, compressed by `compression` (a visit at
simulated second t is started at wall second t / compression), each played as a task
through the gateway's micro-batches; a `Reactor` follows the team and campaign streams to
deliver red-packet shares and coupon grants. When the last visit is done the engine waits
out the payment window, so abandoned holds expire on the shards' own timers before the
audit reads the log.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Iterator
from typing import Any

import structlog

from saleday.actors.host import wall_clock_ms
from saleday.cluster.runtime import Runtime, RuntimeConfig
from saleday.events import open_store
from saleday.flows.reactor import Reactor
from saleday.simulator.driver import Driver, Recorder, SimClock
from saleday.simulator.engine import EngineRun, RunOptions, bucket_s, check_setup, setup_commands
from saleday.simulator.errors import SimulationError
from saleday.simulator.generator import Sku, Visit

log = structlog.get_logger("saleday.simulator")


def run_ray(opts: RunOptions, url: str, skus: list[Sku], stream: Iterator[Visit],
            progress: Any) -> EngineRun:
    sc = opts.scenario
    config = RuntimeConfig(store_url=url, ray_address=opts.address, num_cpus=opts.num_cpus,
                           shards={"sku": sc.sku_shards, "session": 1, "order": 1,
                                   "campaign": 1, "team": 1},
                           tick_s=0.2)
    runtime = Runtime(config)
    try:
        runtime.start()
    except Exception as exc:
        raise SimulationError(f"the system could not start: {type(exc).__name__}: {exc}") from exc
    try:
        return asyncio.run(_drive(opts, runtime, url, skus, stream, progress))
    finally:
        # A local Ray started here goes with this process; a cluster's shards stay up.
        runtime.stop(kill_shards=opts.address is None, shutdown_ray=opts.address is None)


async def _drive(opts: RunOptions, runtime: Runtime, url: str, skus: list[Sku],
                 stream: Iterator[Visit], progress: Any) -> EngineRun:
    sc = opts.scenario
    loop = asyncio.get_running_loop()
    gateway = runtime.gateway()
    gateway.start_ticking()
    # Setup happens on the shards' own (wall) clock, just before the window opens.
    now = wall_clock_ms()
    pre = SimClock(now, sc.compression)
    # (The window is counted from when setup is done: the sale stays open a minute longer.)
    setup = setup_commands(sc, skus, pre, now, now, margin_ms=60_000)
    replies = await asyncio.gather(*(gateway.submit_retrying_busy(cmd, command_id=cid)
                                     for cid, cmd in setup))
    check_setup([(cid, r) for (cid, _), r in zip(setup, replies)])

    clock = SimClock(wall_clock_ms(), sc.compression)
    t0 = loop.time()

    def now_s() -> float:
        return (loop.time() - t0) * sc.compression

    async def wait_until(t_s: float) -> None:
        delay = t0 + t_s / sc.compression - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    recorder = Recorder(gateway, now_s, bucket_s=bucket_s(sc))
    driver = Driver(recorder, sc, clock, skus, wait_until,
                    stamp=lambda t_s: max(clock.ms(t_s), wall_clock_ms()))
    store = open_store(url)
    reactor = Reactor(store, gateway, kinds=("team", "campaign"))
    stop = asyncio.Event()
    reacting = loop.create_task(reactor.run(stop, poll_s=0.05))
    tasks: set[asyncio.Task] = set()
    failures: list[BaseException] = []
    # A slot per visit in flight: O(1) per visit (asyncio.wait over the whole set of tasks
    # was a fifth of the driver's CPU once saturated).
    slots = asyncio.Semaphore(opts.max_live_visits)

    def done(task: asyncio.Task) -> None:
        tasks.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())  # type: ignore[arg-type]

    started = time.perf_counter()
    last_shown = 0.0
    late_starts = array("f")
    try:
        for visit in stream:
            await wait_until(visit.t_s)
            await slots.acquire()
            late_starts.append(max(0.0, loop.time() - (t0 + visit.t_s / sc.compression)))
            task = loop.create_task(driver.visit(visit))
            tasks.add(task)
            task.add_done_callback(done)
            if loop.time() - last_shown > 0.2:
                last_shown = loop.time()
                progress.update(now_s(), recorder.commands, recorder.unavailable, recorder.busy)
        while tasks:
            await asyncio.wait(tasks, timeout=0.2)
            progress.update(now_s(), recorder.commands, recorder.unavailable, recorder.busy)
        traffic_wall = time.perf_counter() - started
        # Wait out the last holds (payment window + grace, in system time), so abandoned
        # checkouts are released by the shards' own timers before the audit.
        hold_s = (sc.funnel.payment_window_s + 90) / sc.compression
        drain_until = loop.time() + min(hold_s, 120.0)
        while loop.time() < drain_until:
            await asyncio.sleep(0.2)
            progress.update(now_s(), recorder.commands, recorder.unavailable, recorder.busy)
        for _ in range(2):   # expire what is due now, then react to it
            await asyncio.gather(*(asyncio.wrap_future(h.tick.remote().future())
                                   for hs in runtime.handles.values() for h in hs))
            await reactor.run_once()
    finally:
        stop.set()
        await reacting
        await gateway.close()
        store.close()
    if failures:
        raise SimulationError(f"{len(failures)} visits failed; the first: "
                              f"{type(failures[0]).__name__}: {failures[0]}") from failures[0]
    status = runtime.status()
    return EngineRun(recorder=recorder, driver=driver, clock=clock, wall_s=traffic_wall,
                     sim_end_s=now_s(),
                     extra={"gateway": dict(gateway.stats), "shards": status,
                            "late_starts": late_starts,
                            "drain_s": round(time.perf_counter() - started - traffic_wall, 2)})
