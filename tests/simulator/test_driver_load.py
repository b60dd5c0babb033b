"""The wall-clock engines report what driving the traffic cost the driver itself: its CPU
and how late its event loop ran, and the report says when the driver, not the system,
limited the run (as a load generator must: its latencies then include its own queueing)."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time

from saleday.simulator.engine import RunOptions, play_paced
from saleday.simulator.generator import visits
from saleday.simulator.report import DRIVER_SATURATED, driver_saturated, sections
from saleday.simulator.results import LatencyMs, RunReport
from saleday.simulator.scenario import preset

SC = preset("double11").with_overrides(users=200)


class Counts:
    commands = unavailable = busy = 0


class Quiet:
    def update(self, *args: object) -> None:
        pass


class Driver:
    """Visits that either wait (as a visit waits for replies) or hold the loop's thread
    (as a saturated driver's own work does)."""

    def __init__(self, *, wait_s: float = 0.0, spin_s: float = 0.0, steps: int = 1) -> None:
        self.wait_s, self.spin_s, self.steps = wait_s, spin_s, steps

    async def visit(self, v: object) -> None:
        for _ in range(self.steps):
            end = time.process_time() + self.spin_s
            while time.process_time() < end:
                pass
            await asyncio.sleep(self.wait_s)


def play(driver: Driver, n: int):
    async def main():
        async def on_time(t_s: float) -> None:
            return None

        loop = asyncio.get_running_loop()
        return await play_paced(RunOptions(scenario=SC), driver, Counts(),
                                itertools.islice(visits(SC, 11), n), Quiet(), on_time,
                                lambda: 0.0, loop.time())

    return asyncio.run(main())


def test_a_driver_that_waits_on_its_visits_is_not_saturated():
    """Visits that only wait leave the loop on time and the process nearly idle."""
    wall, late, load = play(Driver(wait_s=0.45), 20)
    assert wall >= 0.45 and len(late) == 20
    assert len(load.lag_ms) >= 3, "the loop is timed every 100 ms"
    assert statistics.median(load.lag_ms) < 20.0
    assert 0.0 <= load.cpu < 0.5


def test_a_driver_whose_own_work_holds_its_loop_is_found_saturated():
    """Visits that keep the loop's thread busy make it run its timer late and take a core;
    the report then names the driver as the limit."""
    wall, _, load = play(Driver(spin_s=0.02, steps=12), 6)   # each turn of the loop: 0.12 s
    assert len(load.lag_ms) >= 3 and statistics.median(load.lag_ms) >= 20.0
    lag = LatencyMs(p50=statistics.median(load.lag_ms), p95=max(load.lag_ms),
                    p99=max(load.lag_ms), max=max(load.lag_ms))
    assert load.cpu > 0.3
    report = RunReport(scenario="x", seed=1, engine="ray", users=1, store="", data_dir="",
                       started_at="", commands=1, events=0, duration_s=wall,
                       sim_duration_s=1.0, throughput_per_s=1.0,
                       driver_cpu=round(load.cpu, 2), driver_loop_lag_ms=lag)
    assert driver_saturated(report)
    rows = dict(sections(report)[0].rows)
    assert DRIVER_SATURATED in rows["the driver: CPU, event-loop lag p50 / p99"]


def test_the_verdict_reads_either_sign():
    """A late loop alone, or a process at 0.8 of a core alone, is enough; the in-process
    engine, which reports neither, is never called saturated."""
    base = dict(scenario="x", seed=1, engine="ray", users=1, store="", data_dir="",
                started_at="", commands=1, events=0, duration_s=1.0, sim_duration_s=1.0,
                throughput_per_s=1.0)
    calm = LatencyMs(p50=1.0, p95=2.0, p99=3.0, max=4.0)
    late = LatencyMs(p50=8.0, p95=40.0, p99=60.0, max=90.0)
    assert not driver_saturated(RunReport(**base, driver_cpu=0.4, driver_loop_lag_ms=calm))
    assert driver_saturated(RunReport(**base, driver_cpu=0.4, driver_loop_lag_ms=late))
    assert driver_saturated(RunReport(**base, driver_cpu=0.85, driver_loop_lag_ms=calm))
    assert not driver_saturated(RunReport(**{**base, "engine": "inprocess"}))
