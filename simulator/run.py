"""One simulated sale day, end to end: prepare the log, set the sale up, drive the traffic
with an engine, audit the log, and fill the report.

    report = simulate(RunOptions(scenario=preset("double11"), seed=11, engine="inprocess",
                                 data_dir=Path("saleday-data")))

Engines: `inprocess` (`simulator.inprocess`: every shard here, on a virtual clock,
deterministic, with optional fault injection), `ray` (`simulator.ray_engine`: the
running system through the gateway, paced by the wall clock) and `http`
(`simulator.http_engine`: the same visits as requests to the HTTP API, of a target or of a
local front door).
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from saleday.events import open_store
from saleday.events.store import check_url, redact
from saleday.simulator.datadir import prepare_log, run_lock
from saleday.simulator.driver import Driver, Recorder, SimClock
from saleday.simulator.engine import (
    EngineRun,
    RunOptions,
    bucket_s,
    check_setup,
    gc_for_large_heaps,
    setup_commands,
)
from saleday.simulator.errors import SimulationError
from saleday.simulator.experiments import Extras, extra_kinds, trigger_runner
from saleday.simulator.generator import Sku, Visit, catalog, visits
from saleday.simulator.members import MembersPlan, member_kinds
from saleday.simulator.reporting import fill_report
from saleday.simulator.results import RunReport
from saleday.simulator.scenario import Scenario, check_seed
from saleday.simulator.stopping import until_stopped
from saleday.simulator.thresholds import evaluate

log = structlog.get_logger("saleday.simulator")

MAX_ROUNDS = 100_000_000
"""In-process engine: the most rounds of the virtual clock a run may take (a bounded
scenario needs at most ~8 million at `tick_s=1`)."""
KINDS = ("sku", "session", "order", "campaign", "team")


def default_store_url(data_dir: Path, engine: str) -> str:
    path = (data_dir / "events.db").resolve()
    # The in-process engine is a simulation harness: it trades fsync per commit for speed
    # (WAL with synchronous=normal loses at most the last commits on a power cut).
    return f"sqlite:///{path}" + ("?synchronous=normal" if engine == "inprocess" else "")


def end_of_sale_s(sc: Scenario) -> float:
    """When the last hold of the sale has surely expired (simulated s)."""
    f = sc.funnel
    return (sc.traffic.window_s + f.payment_window_s + 90 * sc.compression / 120
            + f.payment_delay_s * 10)


def late_orders(seed: int, every: int = 101) -> Callable[[str], bool]:
    """The fault plan's rule for payments held back past their deadline."""
    return lambda order_id: zlib.crc32(f"{seed}/{order_id}".encode()) % every == 0


def simulate(opts: RunOptions, source: Iterator[Visit] | None = None) -> RunReport:
    """Run one sale day and return its report (charts and HTML written under the data dir)."""
    check_seed(opts.seed)
    if opts.engine not in ("ray", "inprocess", "http"):
        raise SimulationError(f"unknown engine {opts.engine!r}: use ray, inprocess or http")
    if opts.fault_mix is not None and not opts.faults:
        raise SimulationError("a fault mix needs faults on (RunOptions.faults)")
    if opts.scenario.members is not None and opts.engine == "http":
        raise SimulationError("a scenario with members (history, presales, points, price "
                              "protection) runs on --engine inprocess or ray, not http")
    if opts.faults and opts.engine != "inprocess":
        raise SimulationError("--faults needs --engine inprocess (deterministic fault "
                              "injection); the Ray engine's faults are real ones")
    if opts.engine == "http" and opts.http_target is not None:
        # A target's log is the operator's: never locked, moved or written here; audited
        # (read-only) only when `store_url` names it.
        if opts.store_url is not None:
            check_url(opts.store_url)
        return _simulate(opts, opts.store_url, source, previous_run=None)
    url = opts.store_url or default_store_url(opts.data_dir, opts.engine)
    check_url(url)   # a bad URL is refused before anything is locked or moved
    with run_lock(url):
        moved = prepare_log(url, data_dir=opts.data_dir, explicit=opts.store_url is not None,
                            overwrite=opts.overwrite)
        if moved is not None:
            log.info("previous_log_moved", to=str(moved))
        return _simulate(opts, url, source, previous_run=None if moved is None else str(moved))


@gc_for_large_heaps()
def _simulate(opts: RunOptions, url: str | None, source: Iterator[Visit] | None, *,
              previous_run: str | None) -> RunReport:
    sc = opts.scenario
    skus = catalog(sc, opts.seed)
    stream = until_stopped(source if source is not None else visits(sc, opts.seed), opts.stop)
    if opts.record is not None:
        from saleday.simulator.recording import Recorder as Tape

        stream = Tape(opts.record, scenario=sc, seed=opts.seed, faults=opts.faults).tee(stream)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    log.info("simulation_started", scenario=sc.name, seed=opts.seed, engine=opts.engine,
             store=redact(url) if url else None, users=sc.users)
    from saleday.simulator.progress import RunProgress

    with RunProgress(planned=None, enabled=opts.progress, sim_end_s=end_of_sale_s(sc),
                     sim_start_s=sc.traffic.start_s) as progress:
        if opts.engine == "inprocess":
            assert url is not None
            run = _run_inprocess(opts, url, skus, stream, progress)
        elif opts.engine == "http":
            from saleday.simulator.http_engine import run_http

            if sc.experiments or sc.behaviour.record:
                raise SimulationError("the HTTP engine does not play experiments or record "
                                      "behaviour yet: use --engine inprocess or ray")

            run = run_http(opts, url, skus, stream, progress)
            if opts.http_target is not None and opts.audit and url is not None:
                from saleday.simulator.settle import wait_for_quiet_log

                progress.phase("settling")
                run.extra["log_settled"] = wait_for_quiet_log(url)
        else:
            assert url is not None
            from saleday.simulator.ray_engine import run_ray

            run = run_ray(opts, url, skus, stream, progress)
        progress.phase("auditing" if opts.audit and url is not None else "reporting")
        report = fill_report(opts, url, run, skus, started_at)
        report.previous_run = previous_run
        report.interrupted = opts.stop is not None and opts.stop.is_set()
        report.thresholds = evaluate(report)
        if opts.charts:
            from saleday.simulator.report_html import write_outputs

            progress.phase("charts")
            report = write_outputs(report, opts.data_dir / "report")
    from saleday.simulator.files import write_files

    report.files = [str(p) for p in write_files(report, opts.data_dir / "report")]
    log.info("simulation_finished", commands=report.commands, events=report.events,
             audit_ok=report.audit_ok, log_digest=report.log_digest)
    return report


def _run_inprocess(opts: RunOptions, url: str, skus: list[Sku], stream: Iterator[Visit],
                   progress: Any) -> EngineRun:
    from saleday.simulator.inprocess import FaultPlan, FaultyShards, VirtualTime, run_rounds

    sc = opts.scenario
    clock = SimClock(sc.sale_start_ms, sc.compression)
    store = open_store(url)
    shard_counts = {"sku": sc.sku_shards, "session": 1, "order": 1, "campaign": 1, "team": 1,
                    **extra_kinds(sc), **member_kinds(sc)}
    members = MembersPlan(sc, opts.seed, skus, clock) if sc.members is not None else None
    mix = None
    if opts.faults and opts.fault_mix is not None:   # the swarm (simulator.swarm)
        from saleday.simulator.swarm import draw_mix
        from saleday.simulator.swarm_shards import swarm_shards

        mix = draw_mix(opts.seed, opts.fault_mix)
        shards: FaultyShards = swarm_shards(
            store, shard_counts, mix=mix, window_s=sc.traffic.window_s, to_ms=clock.ms,
            data_dir=opts.data_dir, give_up_s=opts.store_give_up_s)
        plan = shards.faults
    else:
        plan = FaultPlan.draw(opts.seed, window_s=sc.traffic.window_s,
                              lanes=sum(shard_counts.values())) if opts.faults else FaultPlan()
        # Snapshots only speed up recovery; without faults nothing recovers in this process,
        # and pickling a million sessions every 50,000 events would cost the run ~10%.
        shards = FaultyShards(store, shard_counts, faults=plan, give_up_s=opts.store_give_up_s,
                              snapshot_every=50_000 if opts.faults else 2**62)
    start_s = float(sc.traffic.start_s)   # the window opens (before midnight with a lead)
    vt = VirtualTime(start_s)
    recorder = Recorder(shards, lambda: vt.now_s, bucket_s=bucket_s(sc))
    driver = Driver(recorder, sc, clock, skus, vt.wait_until)
    driver.extras = Extras(sc, opts.seed)
    driver.members = members
    if members is not None:   # presale balances come in the stream, in time order
        stream = members.merged(stream)
    trigger = trigger_runner(sc, store, shards.submit_nowait)
    if mix is not None:
        if "late_payment" in mix.on:
            driver.is_late = late_orders(opts.seed, int(mix.param("late_payment", "every")))
    elif opts.faults:
        driver.is_late = late_orders(opts.seed)

    def on_tick(t: float) -> None:
        progress.update(t, recorder.commands, recorder.unavailable, recorder.busy)
        if trigger is not None:
            trigger.poll(clock.ms(t))

    async def main() -> None:
        now = clock.ms(start_s) - 1
        shards.now_ms = now
        setup = setup_commands(sc, skus, clock, now, clock.ms(0))
        if members is not None:
            setup += members.setup_commands(now)
        futures = [(cid, shards.submit_nowait(cmd, cid, "setup")) for cid, cmd in setup]
        while shards.pending():
            shards.flush(start_s)
        check_setup([(cid, f.result()) for cid, f in futures])
        if members is not None:   # the deposits, through the deposit flow
            check_setup(await members.pay_deposits(_local_submitter(shards)))
        end_s = end_of_sale_s(sc)
        if not (opts.tick_s > 0 and math.isfinite(end_s)
                and (end_s - start_s) / opts.tick_s <= MAX_ROUNDS):
            # The scenario's bounds keep this far off; a scenario built around them
            # (model_construct) must not spin the virtual clock for ever.
            raise SimulationError(f"the sale would run {end_s:g} simulated s in rounds of "
                                  f"{opts.tick_s:g} s; at most {MAX_ROUNDS:,} rounds")
        failures = await run_rounds(shards, vt, stream, driver.visit, tick_s=opts.tick_s,
                                    end_s=end_s, to_ms=clock.ms, on_tick=on_tick,
                                    start_s=start_s,
                                    # a trigger runner polls the log every round
                                    skip_idle=opts.skip_idle_rounds and trigger is None)
        if failures:
            raise SimulationError(f"{len(failures)} visits failed; the first: "
                                  f"{type(failures[0]).__name__}: {failures[0]}") from failures[0]
        if trigger is not None:  # the last round's firings
            trigger.poll(clock.ms(vt.now_s))
            while shards.pending():
                shards.flush(vt.now_s)
            driver.extras.triggers = trigger.summary()
        if members is not None:
            await members.after_sale(_local_submitter(shards), store,
                                     lambda at: _tick_local(shards, at))

    started = time.perf_counter()
    try:
        asyncio.run(main())
        members_summary = members.summary(store) if members is not None else None
    finally:
        store.close()
    wall = time.perf_counter() - started
    plan.injected["late_payment"] = driver.out.late_payments
    injected = {k: v for k, v in plan.injected.items() if v} if opts.faults else {}
    extra: dict[str, Any] = {"batches": shards.batches, "reactions": shards.reactions}
    if members_summary is not None:
        extra["members"] = members_summary
    if mix is not None:
        extra["fault_mix"] = mix.as_json(scenario=opts.scenario_ref or sc.name, users=sc.users,
                                         compression=sc.compression)
        if "clock_skew" in mix.on:   # two shards' clocks are at most twice the bound apart
            bound_s = float(mix.param("clock_skew", "max_s", 0.0))
            extra["clock_skew_ms"] = 2 * (clock.ms(bound_s) - clock.ms(0.0))
        watch = getattr(shards, "watch", None)
        if watch is not None:
            extra["live_views"] = watch.finish()
    return EngineRun(recorder=recorder, driver=driver, clock=clock, wall_s=wall,
                     sim_end_s=vt.now_s, faults_injected=injected, extra=extra)


def _local_submitter(shards: Any) -> Any:
    """`submit_many` over the in-process shards: queue, then decide in rounds."""
    async def submit_many(commands: list[tuple[str, Any]]) -> list[Any]:
        futures = [shards.submit_nowait(cmd, cid, "members") for cid, cmd in commands]
        while shards.pending():
            shards.flush()
        return [f.result() for f in futures]
    return submit_many


def _tick_local(shards: Any, at_ms: int) -> None:
    """Move the shards' clock to `at_ms` (never back) and run every timer due."""
    shards.now_ms = max(shards.now_ms, at_ms)
    shards.tick()
    while shards.pending():
        shards.flush()
