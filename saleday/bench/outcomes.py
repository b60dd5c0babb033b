"""Two measurements behind issue 16's claims, each against a baseline of the same run.

`windows`: the cost of recording behaviour and of the event-time window views. Two
in-process simulations of the same scenario and seed, with and without recorded browsing,
give the extra events, log bytes and wall time per placed order; then the recorded log is
folded and checkpointed by each view alone (median of `repeat`), against the metrics view
and the raw read+decode rate of the same log.

`experiments`: calibration of the A/B statistics over many seeded sale days. Each run
draws a sale day's visits with the real generator, assigns users with the real
`assign` (a salt of its own per run, as each real experiment has), applies the scenario's true effect with the simulator's own rule
(`simulator.experiments.Extras`: a user keeps their orders with probability
(1 + lift) / (1 + max lift)), counts a user converted when a kept order's payment
succeeds, and computes the view's statistics (`projections.stats`). No shards run, so
hundreds of sale days take seconds; `full_runs` adds whole in-process simulations, whose
experiments view is read from the audited log.
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from saleday.actors.experiment import assign
from saleday.projections.stats import srm, two_proportion
from saleday.simulator.experiments import unit
from saleday.simulator.generator import visits
from saleday.simulator.scenario import Scenario, preset


def _simulate(sc: Scenario, seed: int, data: Path) -> Any:
    from saleday.simulator.run import RunOptions, simulate

    return simulate(RunOptions(scenario=sc, seed=seed, engine="inprocess", data_dir=data,
                               progress=False, charts=False))


def windows(*, users: int = 3000, seed: int = 11, repeat: int = 3) -> dict[str, Any]:
    from saleday.events import Tail, open_store
    from saleday.projections.checkpoint import open_checkpoints
    from saleday.projections.runner import Projection
    from saleday.projections.views.experiments import ExperimentsView
    from saleday.projections.views.metrics import MetricsView
    from saleday.projections.views.windows import WINDOW_VIEWS
    from saleday.simulator.results import machine_info

    base = preset("countdown-ab").with_overrides(users=users)
    off = base.with_overrides(behaviour={"record": False})
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="saleday-bench-windows-") as tmp:
        for name, sc in (("without behaviour", off), ("with behaviour", base)):
            started = time.perf_counter()
            report = _simulate(sc, seed, Path(tmp) / name.replace(" ", "-"))
            wall = time.perf_counter() - started
            placed = max(1, report.orders.get("placed", 0))
            size = os.path.getsize(Path(tmp) / name.replace(" ", "-") / "events.db")
            runs[name] = {"events": report.events, "orders_placed": placed, "wall_s": round(wall, 2),
                          "log_bytes": size, "events_per_order": round(report.events / placed, 2),
                          "bytes_per_order": round(size / placed),
                          "wall_ms_per_order": round(wall * 1000 / placed, 2)}
        a, b = runs["without behaviour"], runs["with behaviour"]
        extra = {k: round(b[k] - a[k], 2) for k in ("events_per_order", "bytes_per_order",
                                                     "wall_ms_per_order")}
        behaviour_events = b["events"] - a["events"]
        extra["bytes_per_behaviour_event"] = round((b["log_bytes"] - a["log_bytes"])
                                                   / max(1, behaviour_events))
        url = f"sqlite:///{tmp}/with-behaviour/events.db"
        store = open_store(url)
        fresh = itertools.count()
        times: dict[str, list[float]] = {}

        def read_all() -> int:
            tail, n = Tail(store, batch_size=10_000), 0
            while got := tail.poll():
                n += len(got)
            return n

        def fold(cls: Any) -> int:
            cps = open_checkpoints(f"sqlite:///{tmp}/cp-{next(fresh)}.db")
            try:
                return Projection([cls()], store, cps, batch_size=10_000).catch_up()
            finally:
                cps.close()

        try:
            events = read_all()
            figures = {"read+decode (baseline)": read_all, "metrics": lambda: fold(MetricsView),
                       "experiments": lambda: fold(ExperimentsView),
                       **{name: (lambda c=cls: fold(c)) for name, cls in WINDOW_VIEWS.items()}}
            for _ in range(repeat):
                for name, fn in figures.items():
                    t0 = time.perf_counter()
                    n = fn()
                    times.setdefault(name, []).append(time.perf_counter() - t0)
                    if n != events:
                        raise RuntimeError(f"{name}: folded {n} of {events} events")
        finally:
            store.close()
    rows = {}
    for name, runs_s in times.items():
        s = statistics.median(runs_s)
        rows[name] = {"events_per_s": round(events / s), "seconds": round(s, 3)}
    metrics = rows["metrics"]["events_per_s"]
    for row in rows.values():
        row["of_metrics"] = round(row["events_per_s"] / metrics, 3)
    return {"params": {"users": users, "seed": seed, "repeat": repeat, "scenario": "countdown-ab",
                       "events": events},
            "runs": runs, "extra_per_order": extra, "folding": rows, "machine": machine_info()}


def _one(sc: Scenario, seed: int) -> dict[str, Any]:
    """One sale day's experiment outcome, by the simulator's rules, without the shards."""
    e = sc.experiments[0]
    variants = tuple(e.variants.items())
    salt = f"{e.salt or e.name}-{seed}"  # each sale day is a new experiment: its own salt
    top = 1 + max([0.0, *e.true_lift.values()])
    keeps = {v: (1 + e.true_lift.get(v, 0.0)) / top for v in e.variants}
    seen: dict[str, str] = {}
    converted: set[str] = set()
    for v in visits(sc, seed):
        variant = seen.setdefault(v.user, assign(v.user, salt, variants))
        o = v.order
        if (o is not None and o.payment == "success"
                and unit(seed, "effect", e.name, v.user) < keeps[variant]):
            converted.add(v.user)
    counts = {name: [0, 0] for name, _ in variants}
    for user, variant in seen.items():
        counts[variant][0] += 1
        counts[variant][1] += user in converted
    control, treated = variants[0][0], variants[1][0]
    t = two_proportion(counts[treated][1], counts[treated][0], counts[control][1], counts[control][0])
    check = srm([counts[n][0] for n, _ in variants], [w for _, w in variants])
    return {"counts": counts, "lift": e.true_lift.get(treated, 0.0), **t,
            "srm_mismatch": check["mismatch"]}


def experiments(*, runs: int = 200, users: int = 20_000, full_runs: int = 0,
                full_users: int = 3000, seed0: int = 1000) -> dict[str, Any]:
    from saleday.simulator.results import machine_info

    base = preset("countdown-ab").with_overrides(users=users)
    null = base.with_overrides(experiments=[{"true_lift": {}}])
    started = time.perf_counter()
    out: dict[str, Any] = {"params": {"runs": runs, "users": users, "seeds": [seed0, seed0 + runs - 1],
                                      "true_lift": 0.173}}
    for name, sc in (("effect", base), ("no_effect", null)):
        results = [_one(sc, seed0 + i) for i in range(runs)]
        lift = results[0]["lift"]
        out[name] = {
            "rel_ci_covers_truth": _share(r["rel_ci"] is not None and r["rel_ci"][0] <= lift <= r["rel_ci"][1]
                                          for r in results),
            "rejects_at_5pct": _share(r["p_value"] is not None and r["p_value"] < 0.05 for r in results),
            "srm_flags": _share(r["srm_mismatch"] for r in results),
            "median_rel_lift": round(statistics.median(r["rel_lift"] for r in results), 4),
            "median_exposed": statistics.median(sum(c[0] for c in r["counts"].values()) for r in results)}
    out["model_seconds"] = round(time.perf_counter() - started, 1)
    if full_runs:
        out["full"] = _full(base.with_overrides(users=full_users), full_runs, seed0)
    out["machine"] = machine_info()
    return out


def _full(sc: Scenario, runs: int, seed0: int) -> dict[str, Any]:
    """Whole in-process simulations: what their reports' experiments view detected."""
    covered, rejected, flagged = [], [], []
    with tempfile.TemporaryDirectory(prefix="saleday-bench-exp-") as tmp:
        for i in range(runs):
            report = _simulate(sc, seed0 + i, Path(tmp) / f"r{i}")
            row = report.experiments[0]["variants"][1]
            covered.append(bool(row["covered"]))
            rejected.append(row["p_value"] is not None and row["p_value"] < 0.05)
            flagged.append(report.experiments[0]["srm"]["mismatch"])
    return {"runs": runs, "users": sc.users, "rel_ci_covers_truth": _share(covered),
            "rejects_at_5pct": _share(rejected), "srm_flags": _share(flagged)}


def _share(flags: Any) -> float:
    flags = list(flags)
    return round(sum(map(bool, flags)) / max(1, len(flags)), 4)
