"""`saleday bench dst`: deterministic simulation testing as a swarm, many seeds a run.

Each seed is one in-process sale day (`simulator.run.simulate`, `engine="inprocess"`)
with the fault mix the seed draws (`--faults swarm`, `simulator.swarm`), on an in-memory
log, audited at its end. Seeds are dealt to worker processes (one per core by default,
`multiprocessing`, no Ray); each worker runs its seeds one after the other and forgets
each log once it is audited. The result: seeds/s, the faults injected by class, how many
seeds had each class on, and every failing seed with the one command that reproduces it
(a violation found by the audit, or a run that raised).
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import signal
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from saleday.simulator.results import machine_info
from saleday.simulator.scenario import Scenario
from saleday.simulator.swarm import draw_mix

_TMP: Path | None = None


def _quiet() -> None:
    """Workers log errors only (to stderr): a swarm run injects thousands of faults, each
    logged."""
    from saleday.cluster import logs

    logs.configure("error")


def one_seed(scenario: Scenario, seed: int, spec: str, tmp: Path,
             scenario_ref: str | None = None) -> dict[str, Any]:
    """Run `seed` with the swarm and return what the bench keeps of it."""
    from saleday.events.memory_store import drop
    from saleday.simulator.run import RunOptions, simulate

    name = f"dst-{os.getpid()}-{seed}"
    opts = RunOptions(scenario=scenario, seed=seed, engine="inprocess", faults=True,
                      fault_mix=spec, data_dir=tmp / str(seed), store_url=f"memory://{name}",
                      progress=False, charts=False, scenario_ref=scenario_ref)
    mix = draw_mix(seed, spec)
    row: dict[str, Any] = {"seed": seed, "classes": sorted(mix.on),
                           "reproduce": mix.reproduce(scenario=scenario_ref or scenario.name,
                                                      users=scenario.users,
                                                      compression=scenario.compression)}
    started, cpu = time.perf_counter(), time.process_time()
    try:
        report = simulate(opts)
    except Exception as exc:  # noqa: BLE001 - a seed whose run raised is a failing seed
        row.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:500], faults={})
    else:
        row.update(ok=report.audit_ok, violations=report.invariants.violations,
                   findings=[f"{f.rule}: {f.message}"[:300] for f in report.invariants.findings[:3]],
                   faults=dict(report.faults_injected), commands=report.commands,
                   events=report.events)
    finally:
        drop(name)
    row["seconds"] = round(time.perf_counter() - started, 3)
    row["cpu_seconds"] = round(time.process_time() - cpu, 3)
    return row


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _init(tmp: str) -> None:
    global _TMP
    _TMP = Path(tmp)
    _quiet()


def _init_worker(tmp: str) -> None:
    """A pool worker: as `_init`, and it leaves stopping to the parent. Ctrl-C reaches the
    whole process group, so a worker ignores SIGINT (the parent stops the pool), and the
    parent's SIGTERM handler, inherited by the fork, is undone: the pool ends its workers
    with SIGTERM, which should end them quietly, not print a KeyboardInterrupt each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _init(tmp)


def _job(args: tuple[Scenario, int, str, str | None]) -> dict[str, Any]:
    global _FROZEN
    scenario, seed, spec, ref = args
    assert _TMP is not None
    row = one_seed(scenario, seed, spec, _TMP, ref)
    if not _FROZEN:
        _freeze()
        _FROZEN = True
    return row


_FROZEN = False


def _freeze() -> None:
    """After a worker's first seed (which imported everything a seed uses), move what is
    left (modules, classes, caches) out of the cyclic GC's sight: each seed's full
    collections then walk that seed's objects only, not the ~60,000 of the imports
    (they cost a seed ~0.05-0.2 CPU s at 2,000 users)."""
    gc.collect()
    gc.freeze()


def run(scenario: Scenario, *, seeds: int, first_seed: int = 0, spec: str = "swarm",
        workers: int | None = None, scenario_ref: str | None = None,
        on_seed: Callable[[dict[str, Any]], None] | None = None,
        rows_to: Path | None = None) -> dict[str, Any]:
    """Run `seeds` seeds from `first_seed` across `workers` processes (default: the
    cores) and sum them up. `scenario_ref`: the preset or file the scenario came from, for
    the commands that reproduce failing seeds; `rows_to`: a file that gets each seed's row
    as a JSON line the moment it is done (what a long run leaves if it is stopped)."""
    if rows_to is not None:
        rows_to.write_text("")
        user_hook = on_seed

        def on_seed(row: dict[str, Any]) -> None:
            with rows_to.open("a") as f:
                f.write(json.dumps(row) + "\n")
            if user_hook is not None:
                user_hook(row)

    workers = max(1, min(workers or os.cpu_count() or 1, seeds))
    jobs = [(scenario, seed, spec, scenario_ref)
            for seed in range(first_seed, first_seed + seeds)]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    interrupted = False
    # SIGTERM ends the run as Ctrl-C does (the pool's workers are stopped too), and the
    # seeds that finished are summed up all the same.
    before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _run_jobs(jobs, workers, rows, on_seed)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, before)
    wall = time.perf_counter() - started
    return {**summary(rows, scenario=scenario, spec=spec, workers=workers, wall_s=wall),
            "interrupted": interrupted}


def _run_jobs(jobs: list[tuple[Scenario, int, str, str | None]], workers: int,
              rows: list[dict[str, Any]],
              on_seed: Callable[[dict[str, Any]], None] | None) -> None:
    """Run the seeds' jobs on `workers` processes (this one if 1), adding each row to
    `rows` as it comes."""
    with tempfile.TemporaryDirectory(prefix="saleday-dst-") as tmp:
        if workers == 1:
            _init(tmp)
            results = map(_job, jobs)
            for row in results:
                rows.append(row)
                if on_seed is not None:
                    on_seed(row)
        else:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(workers, initializer=_init_worker, initargs=(tmp,)) as pool:
                for row in pool.imap_unordered(_job, jobs):
                    rows.append(row)
                    if on_seed is not None:
                        on_seed(row)


def summary(rows: list[dict[str, Any]], *, scenario: Scenario, spec: str, workers: int,
            wall_s: float) -> dict[str, Any]:
    rows = sorted(rows, key=lambda r: r["seed"])
    faults: Counter = Counter()
    classes_on: Counter = Counter()
    for row in rows:
        faults.update(row.get("faults", {}))
        classes_on.update(row["classes"])
    failures = [{k: row[k] for k in ("seed", "reproduce", "classes", "error", "violations",
                                     "findings") if k in row}
                for row in rows if not row["ok"]]
    per_seed = [row["seconds"] for row in rows]
    cpu = [row["cpu_seconds"] for row in rows]
    return {
        "params": {"scenario": scenario.name, "users": scenario.users, "faults": spec,
                   "seeds": len(rows), "first_seed": rows[0]["seed"] if rows else None,
                   "workers": workers},
        "seconds": round(wall_s, 1),
        "seeds_per_s": round(len(rows) / wall_s, 3) if wall_s else 0.0,
        "seed_seconds_median": round(statistics.median(per_seed), 3) if per_seed else None,
        "cpu_seconds": round(sum(cpu), 1),
        "cpu_seconds_median": round(statistics.median(cpu), 3) if cpu else None,
        "seconds_on_idle_cores": round(sum(cpu) / workers, 1),
        # what the run would take if each worker had a core to itself (the CPU time it used,
        # spread over the workers): the figure to compare when the cores were shared
        "commands": sum(row.get("commands", 0) for row in rows),
        "events": sum(row.get("events", 0) for row in rows),
        "faults_by_class": dict(sorted(faults.items())),
        "faults_total": sum(faults.values()),
        "seeds_with_class_on": dict(sorted(classes_on.items())),
        "violations": sum(row.get("violations", 0) for row in rows),
        "failed_seeds": len(failures),
        "failures": failures,
        "machine": machine_info(),
    }
