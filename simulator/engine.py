"""What the simulator's engines share: the run's options, what an engine hands back, the
sale's setup commands, the timeline's bucket size, and the wall-clock pacing of the Ray
and HTTP engines (visits started at their compressed times, then the last holds waited
out). `simulator.run` drives an engine; the engines import only this.
"""

from __future__ import annotations

import asyncio
import gc
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saleday.actors.campaign import CreateCampaign
from saleday.actors.host import Accepted
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.simulator.driver import Driver, Recorder, SimClock
from saleday.simulator.errors import SimulationError
from saleday.simulator.experiments import define_commands
from saleday.simulator.generator import Sku, Visit
from saleday.simulator.scenario import Scenario


@dataclass
class RunOptions:
    scenario: Scenario
    seed: int = 11
    engine: str = "ray"
    data_dir: Path = Path("saleday-data")
    store_url: str | None = None
    address: str | None = None
    faults: bool = False
    fault_mix: str | None = None
    """In-process, with `faults`: `swarm` (the seed picks which fault classes are on, and
    how often) or classes separated by commas (`simulator.swarm`); None: today's five."""
    scenario_ref: str | None = None
    """How the scenario was named (a preset or a file), for the command that reproduces a
    run (default: the scenario's name)."""
    record: Path | None = None
    progress: bool = True
    num_cpus: int | None = None
    charts: bool = True
    tick_s: float = 1.0
    """In-process engine: simulated seconds per round of the virtual clock."""
    skip_idle_rounds: bool = True
    """In-process engine: pass over the rounds in which nothing is due (the same log;
    `simulator.inprocess.run_rounds`). Off: run every round, as a check of that."""
    max_live_visits: int = 2_000
    """Ray engine: visits in flight at once before new arrivals wait. Past what the system
    serves, arrivals then start late (reported as `late_start_s`) instead of piling up
    retries: 20,000 in flight on 2 cores turned Busy retries into a storm that starved the
    shards (throughput fell from ~5,300 to ~2,200 commands/s, p99 from 0.5 s to 26 s)."""
    audit: bool = True
    overwrite: bool = False
    """An explicit `store_url` that already holds a SQLite log: move it aside instead of
    refusing (`simulator.datadir`)."""
    store_give_up_s: float = 30.0
    """In-process engine: how long an unreachable store is retried (with backoff) before
    the run gives up."""
    http_target: Any = None
    """HTTP engine: the front door to drive (a `simulator.http_client.HttpTarget`). Its log
    is the operator's: the run never prepares it, and audits it (read-only) only when
    `store_url` names it."""
    http_server: Any = None
    """HTTP engine without a target: (store URL, scenario) -> a context manager running a
    local front door over that store and yielding its `HttpTarget` (the composition root's
    `saleday.http.local`)."""
    stop: Any = None
    """Set (a `threading.Event`) to stop the traffic early: no visit starts after it, the
    ones in flight finish, and the run is audited and reported as interrupted
    (`simulator.stopping`)."""
    run_tag: str | None = None
    """HTTP engine: prefix of every idempotency key (default: from the start time), so runs
    against the same target do not collide while each request's retries stay safe."""


@dataclass
class EngineRun:
    """What an engine hands back: the counters, the clock, and its own figures."""

    recorder: Recorder
    driver: Driver
    clock: SimClock
    wall_s: float
    sim_end_s: float
    faults_injected: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def setup_commands(sc: Scenario, skus: list[Sku], clock: SimClock, now: int,
                   opens_ms: int, *, margin_ms: int = 1) -> list[tuple[str, Any]]:
    """The catalogue and campaigns, as commands with their (deterministic) ids. The SKUs'
    sale opens at `opens_ms` (midnight); campaigns and experiments from the window's start
    (before midnight with a lead), so early visitors can claim; all close `margin_ms` after
    the window's last second."""
    end = clock.ms(sc.traffic.window_s) + margin_ms
    starts = clock.ms(sc.traffic.start_s)
    out: list[tuple[str, Any]] = []
    for s in skus:
        out.append((f"setup/{s.sku}/stock", AddStock(sku=s.sku, qty=s.stock, now=now)))
        out.append((f"setup/{s.sku}/sale", ConfigureSale(
            sku=s.sku, tiers=s.tiers, per_user_limit=sc.skus.per_user_limit, start=opens_ms,
            end=end, now=now)))
    for c in sc.campaigns:
        out.append((f"setup/campaign/{c.name}", CreateCampaign(
            campaign=c.name, value_cents=c.value_cents, min_spend_cents=c.min_spend_cents,
            valid_from=starts, valid_until=end + clock.span_ms(c.valid_s),
            budget_coupons=c.budget_coupons, budget_cents=c.budget_cents, now=now)))
    out += define_commands(sc, starts, end, now)
    tu = sc.team_up
    if tu.create_rate > 0:
        out.append((f"setup/campaign/{tu.campaign}", CreateCampaign(
            campaign=tu.campaign, value_cents=tu.pool_cents, min_spend_cents=0,
            valid_from=starts, valid_until=end + clock.span_ms(tu.expires_s),
            budget_coupons=0, budget_cents=tu.pool_cents * tu.budget_teams, now=now)))
    return out


def clock_opening_at(now_ms: int, sc: Scenario) -> SimClock:
    """The sale clock of a run whose window opens at `now_ms`: midnight is `lead_s`
    (compressed) later."""
    return SimClock(now_ms - round(sc.traffic.start_s * 1000 / sc.compression), sc.compression)


def check_setup(replies: list[tuple[str, Any]]) -> None:
    refused = [(cid, r) for cid, r in replies if not isinstance(r, Accepted)]
    if refused:
        cid, reply = refused[0]
        raise SimulationError(f"the sale could not be set up: {cid} was refused "
                              f"({getattr(reply, 'code', type(reply).__name__)}: {reply}); "
                              f"{len(refused)} setup commands refused in all")


def bucket_s(sc: Scenario) -> float:
    """Timeline buckets: about 120 over the window, in whole seconds."""
    return float(max(1, round(sc.traffic.window_s / 120)))


LAG_EVERY_S = 0.1
"""How often the driver's event loop is timed (`DriverLoad.lag_ms`)."""


@dataclass
class DriverLoad:
    """What driving the traffic cost the driver itself, which a load generator must report
    (Locust warns of its own CPU): when the driver is saturated, the latencies it measures
    include its own queueing and the throughput is its own, not the system's."""

    cpu: float
    """The driver process's CPU over the traffic, in cores (every thread of it)."""
    lag_ms: array
    """How late its event loop ran a timer due every `LAG_EVERY_S`: the wait that the
    loop's other work adds to each reply before the visit that sent it sees it."""


async def _time_the_loop(into: array) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + LAG_EVERY_S
        await asyncio.sleep(LAG_EVERY_S)
        into.append(max(0.0, (loop.time() - due) * 1000))


async def play_paced(opts: RunOptions, driver: Driver, recorder: Recorder, stream: Iterator[Visit],
                progress: Any, wait_until: Callable[[float], Any], now_s: Callable[[], float],
                t0: float) -> tuple[float, array, DriverLoad]:
    """Start each visit at its (compressed) time, at most `max_live_visits` at once; return
    the traffic's wall time, how late each visit started, and the driver's own load."""
    lag_ms = array("f")
    timing = asyncio.get_running_loop().create_task(_time_the_loop(lag_ms))
    cpu_started, started = time.process_time(), time.perf_counter()
    try:
        late_starts = await _play(opts, driver, recorder, stream, progress, wait_until, now_s, t0)
    finally:
        timing.cancel()
    wall = time.perf_counter() - started
    cpu = (time.process_time() - cpu_started) / wall if wall > 0 else 0.0
    return wall, late_starts, DriverLoad(cpu=cpu, lag_ms=lag_ms)


async def _play(opts: RunOptions, driver: Driver, recorder: Recorder, stream: Iterator[Visit],
                progress: Any, wait_until: Callable[[float], Any], now_s: Callable[[], float],
                t0: float) -> array:
    sc = opts.scenario
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task] = set()
    failures: list[BaseException] = []
    # A slot per visit in flight: O(1) per visit (asyncio.wait over the whole set of tasks
    # was a fifth of the driver's CPU once saturated).
    slots = asyncio.Semaphore(opts.max_live_visits)
    late_starts = array("f")

    def done(task: asyncio.Task) -> None:
        tasks.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())  # type: ignore[arg-type]

    last_shown = 0.0
    for visit in stream:
        await wait_until(visit.t_s)
        await slots.acquire()
        due = t0 + (visit.t_s - sc.traffic.start_s) / sc.compression
        late_starts.append(max(0.0, loop.time() - due))
        task = loop.create_task(driver.visit(visit))
        tasks.add(task)
        task.add_done_callback(done)
        if loop.time() - last_shown > 0.2:
            last_shown = loop.time()
            progress.update(now_s(), recorder.commands, recorder.unavailable, recorder.busy)
    while tasks:
        await asyncio.wait(tasks, timeout=0.2)
        progress.update(now_s(), recorder.commands, recorder.unavailable, recorder.busy)
    if failures:
        raise SimulationError(f"{len(failures)} visits failed; the first: "
                              f"{type(failures[0]).__name__}: {failures[0]}") from failures[0]
    return late_starts


async def wait_out_holds(sc: Scenario, progress: Any, recorder: Recorder,
                         now_s: Callable[[], float]) -> None:
    """Wait out the last holds (the payment window and a grace, in system time, at most
    two minutes), so abandoned checkouts are released by the shards' own timers before
    the audit."""
    loop = asyncio.get_running_loop()
    progress.phase("draining")
    hold_s = (sc.funnel.payment_window_s + 90) / sc.compression
    drain_until = loop.time() + min(hold_s, 120.0)
    while loop.time() < drain_until:
        await asyncio.sleep(0.2)
        progress.update(now_s(), recorder.commands, recorder.unavailable, recorder.busy)


def wall_pace(compression: float, start_s: float = 0.0) -> tuple[
        float, Callable[[], float], Callable[[float], Awaitable[None]]]:
    """The wall-clock pace of a run from now, whose window opens at simulated second
    `start_s` (before midnight with a lead): the loop time it started, the simulated time
    (`now_s`), and a sleep until a simulated second (`wait_until`)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    def now_s() -> float:
        return start_s + (loop.time() - t0) * compression

    async def wait_until(t_s: float) -> None:
        delay = t0 + (t_s - start_s) / compression - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    return t0, now_s, wait_until


LARGE_HEAP_GC = (50_000, 50, 100)
"""The cyclic GC's thresholds for a run: the young generation collected every 50,000
allocations instead of 700 (as the shard actors run, `cluster.shard_actor.tune_gc`)."""


@contextmanager
def gc_for_large_heaps() -> Iterator[None]:
    """Collect the young generation less often while a run builds millions of long-lived
    objects (shard states, the recorder's figures, the views): with the default 700, the
    GC rescans them so often that it took about a third of an in-process run's CPU (the
    200,000-user double11 day: 32.4 -> 22.7 CPU s, the same log). Put back afterwards."""
    saved = gc.get_threshold()
    gc.set_threshold(*LARGE_HEAP_GC)
    try:
        yield
    finally:
        gc.set_threshold(*saved)
