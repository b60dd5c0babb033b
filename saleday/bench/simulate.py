"""`saleday bench simulate`: how fast each engine plays a sale day, against baselines
measured in the same run.

- `generator`: visits/s of the seeded generator alone (the traffic source's own cost);
- `inprocess[memory]` / `inprocess[sqlite]`: the in-process engine at `users`, commands/s
  over the whole run (no audit, no charts), on the memory store and on SQLite;
- `ray[sqlite]`: the Ray engine at `ray_users` with `compression`, paced open-loop:
  commands/s during the traffic phase, the gateway latency p50/p99 and how late visits
  started behind the schedule; raise the compression until the scheduled rate exceeds
  what the system serves (visits start late) to find its ceiling;
- `reserve[sqlite]`: the raw reservation path (`saleday bench reserve`'s
  `saleday[sqlite]`, closed loop), the ceiling one kind of command reaches on the same
  shards, for scale.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from saleday.simulator.generator import visits
from saleday.simulator.results import machine_info
from saleday.simulator.run import RunOptions, simulate
from saleday.simulator.scenario import Scenario

SYSTEMS = ("generator", "inprocess[memory]", "inprocess[sqlite]", "ray[sqlite]", "reserve[sqlite]")


def run(scenario: Scenario, *, users: int, ray_users: int, compression: float, seed: int = 11,
        systems: tuple[str, ...] = SYSTEMS, num_cpus: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"params": {"scenario": scenario.name, "users": users,
                                      "ray_users": ray_users, "compression": compression,
                                      "seed": seed}}
    with tempfile.TemporaryDirectory(prefix="saleday-bench-sim-") as tmp:
        for system in systems:
            try:
                out[system] = _one(system, scenario, users=users, ray_users=ray_users,
                                   compression=compression, seed=seed, tmp=Path(tmp),
                                   num_cpus=num_cpus)
            except Exception as exc:  # noqa: BLE001 - a failed system is reported, the others run
                out[system] = {"error": f"{type(exc).__name__}: {exc}"}
    goal = 10_000_000 / 90
    row = out.get("inprocess[memory]", {})
    if "commands_per_s" in row:
        row["x_goal_10M_in_90s"] = round(row["commands_per_s"] / goal, 3)
    out["machine"] = machine_info()
    return out


def _one(system: str, sc: Scenario, *, users: int, ray_users: int, compression: float,
         seed: int, tmp: Path, num_cpus: int | None) -> dict[str, Any]:
    if system == "generator":
        big = sc.with_overrides(users=users)
        started = time.perf_counter()
        n = sum(1 for _ in visits(big, seed))
        s = time.perf_counter() - started
        return {"visits": n, "seconds": round(s, 3), "visits_per_s": round(n / s)}
    if system.startswith("inprocess["):
        store = (f"memory://bench-{uuid.uuid4().hex}" if system == "inprocess[memory]"
                 else f"sqlite:///{tmp / uuid.uuid4().hex / 'events.db'}?synchronous=normal")
        opts = RunOptions(scenario=sc.with_overrides(users=users), seed=seed, engine="inprocess",
                          data_dir=tmp / "inprocess", store_url=store, progress=False,
                          charts=False, audit=False)
        return _row(simulate(opts))
    if system == "ray[sqlite]":
        opts = RunOptions(scenario=sc.with_overrides(users=ray_users, compression=compression),
                          seed=seed, engine="ray", data_dir=tmp / "ray", progress=False,
                          charts=False, audit=False, num_cpus=num_cpus)
        report = simulate(opts)
        row = _row(report)
        # Open loop: the scenario schedules its traffic over window / compression seconds;
        # a system that cannot keep up serves it later (visits start late).
        planned = opts.scenario.traffic.window_s / opts.scenario.compression
        row["scheduled_per_s"] = round(report.commands / planned)
        late = report.late_start_s
        row["late_start_p99_s"] = late.p99 if late else 0.0
        # What the traffic cost the driver, which binds the engine when it is saturated.
        lag = report.driver_loop_lag_ms
        row["driver_cpu"] = report.driver_cpu
        row["driver_loop_lag_p50_ms"] = lag.p50 if lag else None
        row["driver_loop_lag_p99_ms"] = lag.p99 if lag else None
        return row
    if system == "reserve[sqlite]":
        from saleday.bench import reserve as bench_reserve

        result = bench_reserve.run(skus=300, stock=100, users=100_000,
                                   systems=("saleday[sqlite]",))
        r = result["saleday[sqlite]"]
        return {"requests": result["params"]["requests"], "commands_per_s": r["req_per_s"],
                "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]}
    raise ValueError(f"unknown system {system!r}; known: {', '.join(SYSTEMS)}")


def _row(report: Any) -> dict[str, Any]:
    lat = report.latency_ms
    return {"commands": report.commands, "seconds": report.duration_s,
            "commands_per_s": round(report.throughput_per_s),
            "p50_ms": lat.p50 if lat else None, "p99_ms": lat.p99 if lat else None,
            "busy": report.busy, "unavailable": report.unavailable}
