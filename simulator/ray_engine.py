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
from collections.abc import Iterator
from typing import Any

import structlog

from saleday.actors.host import wall_clock_ms
from saleday.cluster.runtime import Runtime, RuntimeConfig
from saleday.events import open_store
from saleday.flows.reactor import Reactor
from saleday.simulator.driver import Driver, Recorder
from saleday.simulator.engine import (
    EngineRun,
    RunOptions,
    bucket_s,
    check_setup,
    clock_opening_at,
    play_paced,
    setup_commands,
    wait_out_holds,
    wall_pace,
)
from saleday.simulator.errors import SimulationError
from saleday.simulator.experiments import Extras, extra_kinds, trigger_runner
from saleday.simulator.generator import Sku, Visit
from saleday.simulator.members import MembersPlan, member_kinds

log = structlog.get_logger("saleday.simulator")


def run_ray(opts: RunOptions, url: str, skus: list[Sku], stream: Iterator[Visit],
            progress: Any) -> EngineRun:
    sc = opts.scenario
    config = RuntimeConfig(store_url=url, ray_address=opts.address, num_cpus=opts.num_cpus,
                           shards={"sku": sc.sku_shards, "session": 1, "order": 1,
                                   "campaign": 1, "team": 1, **extra_kinds(sc),
                                   **member_kinds(sc)},
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
    async def set_up(commands: list[tuple[str, Any]]) -> None:
        replies = await asyncio.gather(*(gateway.submit_retrying_busy(cmd, command_id=cid,
                                                                      correlation_id="setup")
                                         for cid, cmd in commands))
        check_setup([(cid, r) for (cid, _), r in zip(commands, replies)])

    if sc.members is not None:   # the members' history first: it takes the longest
        early = clock_opening_at(wall_clock_ms(), sc)
        await set_up(MembersPlan(sc, opts.seed, skus, early).history_commands(
            wall_clock_ms()))
    # Setup happens on the shards' own (wall) clock, just before the window opens.
    now = wall_clock_ms()
    pre = clock_opening_at(now, sc)
    members = MembersPlan(sc, opts.seed, skus, pre) if sc.members is not None else None
    # (The window is counted from when setup is done: the sale stays open a minute longer.)
    setup = setup_commands(sc, skus, pre, now, pre.ms(0), margin_ms=60_000)
    if members is not None:
        setup += members.sale_commands(now)
    replies = await asyncio.gather(*(gateway.submit_retrying_busy(cmd, command_id=cid,
                                                                  correlation_id="setup")
                                     for cid, cmd in setup))
    check_setup([(cid, r) for (cid, _), r in zip(setup, replies)])
    if members is not None:   # the deposits, through the deposit flow
        async def submit_setup(commands: list[tuple[str, Any]]) -> list[Any]:
            return list(await asyncio.gather(*(
                gateway.submit_retrying_busy(cmd, command_id=cid, correlation_id="setup")
                for cid, cmd in commands)))

        check_setup(await members.pay_deposits(submit_setup))

    clock = clock_opening_at(wall_clock_ms(), sc)
    t0, now_s, wait_until = wall_pace(sc.compression, sc.traffic.start_s)

    recorder = Recorder(gateway, now_s, bucket_s=bucket_s(sc))
    driver = Driver(recorder, sc, clock, skus, wait_until,
                    stamp=lambda t_s: max(clock.ms(t_s), wall_clock_ms()))
    driver.extras = Extras(sc, opts.seed)
    if members is not None:
        driver.members = members
        stream = members.merged(stream)
    store = open_store(url)
    reactor = Reactor(store, gateway, kinds=("team", "campaign"))
    stop = asyncio.Event()
    reacting = loop.create_task(reactor.run(stop, poll_s=0.05))
    trigger = trigger_runner(sc, store, lambda command, cid, correlation: gateway.submit_nowait(
        command, command_id=cid, correlation_id=correlation))

    def stamp() -> int:
        return max(clock.ms(now_s()), wall_clock_ms())

    triggering = loop.create_task(trigger.run(stop, stamp)) if trigger is not None else None
    started = time.perf_counter()
    try:
        traffic_wall, late_starts, load = await play_paced(opts, driver, recorder, stream,
                                                           progress, wait_until, now_s, t0)
        await wait_out_holds(sc, progress, recorder, now_s)
        for _ in range(2):   # expire what is due now, then react to it
            await asyncio.gather(*(asyncio.wrap_future(h.tick.remote().future())
                                   for hs in runtime.handles.values() for h in hs))
            await reactor.run_once()
        if trigger is not None:   # the last firings, and every push's answer
            driver.extras.triggers = await trigger.settle(stamp())
        if members is not None:   # points, drops and protection; the shards tick on their own
            async def submit_many(commands: list[tuple[str, Any]]) -> list[Any]:
                return list(await asyncio.gather(*(
                    gateway.submit_retrying_busy(cmd, command_id=cid, correlation_id="members")
                    for cid, cmd in commands)))

            await members.after_sale(submit_many, store, lambda at_ms: None)
            extra_members = members.summary(store)
    finally:
        stop.set()
        await reacting
        if triggering is not None:
            await triggering
        await gateway.close()
        store.close()
    status = runtime.status()
    return EngineRun(recorder=recorder, driver=driver, clock=clock, wall_s=traffic_wall,
                     sim_end_s=now_s(),
                     extra={"gateway": dict(gateway.stats), "shards": status,
                            "late_starts": late_starts, "driver_load": load,
                            "drain_s": round(time.perf_counter() - started - traffic_wall, 2),
                            **({"members": extra_members} if members is not None else {})})
