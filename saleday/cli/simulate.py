"""`saleday simulate` (the main job) and `saleday replay`: a sale day, seeded or replayed.

`saleday simulate` with no arguments runs the `double11` preset on the embedded defaults
(a local Ray started in this process, the SQLite log under ./saleday-data) and ends with
the report and the audit's verdict. Exit status: 0 when every invariant held, 1 when the
audit found a violation, 2 when the run could not start or finish (bad scenario,
unreachable or non-empty store, a log another run is writing), 130 when Ctrl-C or SIGTERM
stopped it: the traffic stops, the log is audited and a partial report written
(`saleday.cli.interrupt`; a second Ctrl-C quits at once), 99 when a threshold chosen with
`--fail-on` failed (`simulator.thresholds`).

Run again in the same data dir, it moves the earlier run's log aside to
`<data>/previous-runs/` and writes a new one (`simulator.datadir`): nothing is deleted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from saleday.cli.common import console, stdout_to_stderr

ENGINES = ("ray", "inprocess", "http")
THRESHOLDS_EXIT = 99
"""The exit status when a threshold chosen by `--fail-on` failed (as k6 exits)."""


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add `simulate` and `replay` to the `saleday` app."""
    app.command("simulate")(simulate)
    app.command("replay")(replay)
    bench_app.command("simulate")(bench_simulate)


DataOpt = Annotated[Path, typer.Option("--data", help="Data dir: the SQLite log "
                                       "(events.db) and the report (report/) go here.")]
StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="Store URL instead of <data>/events.db: sqlite:///path.db or "
                    "redis://host:port/db?prefix=<fresh prefix>. It must be empty (see "
                    "--overwrite).")]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="A --store SQLite log that already holds events is moved aside "
                        "(to previous-runs/ next to it) instead of refused. (The data dir's "
                        "own log is always moved aside to <data>/previous-runs/.)")]
StoreGiveUpOpt = Annotated[float, typer.Option(
    "--store-give-up", min=0.0, help="In-process: seconds an unreachable store is retried "
                                     "(with backoff) before the run gives up.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="ray: the running system through "
                                        "its gateway (local Ray, or --address); inprocess: "
                                        "deciders and store in this process, deterministic; "
                                        "http: a local Serve app (as `serve --http`) driven "
                                        "over HTTP (--target: a running one).")]
TargetOpt = Annotated[str | None, typer.Option(
    "--target", help="Drive the HTTP API at this base URL (http://HOST:PORT; implies --engine "
                     "http). Secrets from SALEDAY_HTTP_* or the --data dir's development "
                     "secrets. Its log is audited only if --store names it (read-only).")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="Ray cluster address "
                                                "(default: start Ray in this process).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def simulate(
    scenario: Annotated[str, typer.Option(help="A preset (double11, flash-half-price, "
                                          "team-up, countdown-ab, members: not on http) or a "
                                          ".yaml/.toml/.json file.")] = "double11",
    users: Annotated[int | None, typer.Option(min=1, help="Override the scenario's users.")] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same traffic (and, in-process, "
                                      "the same log).")] = 11,
    data: DataOpt = Path("saleday-data"),
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
    engine: EngineOpt = "ray",
    target: TargetOpt = None,
    address: AddressOpt = None,
    store_give_up: StoreGiveUpOpt = 30.0,
    faults: Annotated[bool, typer.Option(help="In-process only: inject, from the seed, "
                                         "shard crashes, lost replies, duplicate "
                                         "deliveries, failed appends and late payment "
                                         "callbacks, then check every invariant. "
                                         "`--faults swarm`: the seed picks which fault "
                                         "classes are on and how often (thirteen classes, "
                                         "docs/SIMULATOR.md); `--faults CLASS,CLASS`: those "
                                         "classes.")] = False,
    fault_mix: Annotated[str | None, typer.Option(
        "--fault-mix", help="The mix of `--faults MIX` (swarm, or classes separated by "
                            "commas); implies --faults.")] = None,
    record: Annotated[Path | None, typer.Option(help="Write the command stream (visits, "
                                                "JSON lines; .gz to compress) here.")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs for a local Ray.")] = None,
    compression: Annotated[float | None, typer.Option(
        help="Simulated seconds per system second (default: the scenario's).")] = None,
    charts: Annotated[bool, typer.Option(help="Write PNG charts and report.html under "
                                         "<data>/report.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    fail_on: Annotated[list[str] | None, typer.Option(
        "--fail-on", help="Exit 99 when this threshold of the seed's targets fails: p99_ms "
                          "(< 500 ms), payment_success (> 99.5%), coupon_redemption (> 40%), "
                          "or all. Repeat it, or separate names by commas. Every threshold "
                          "is shown pass/fail either way.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a seeded, time-compressed sale day against saleday and audit the log it wrote."""
    from saleday.simulator.scenario import ScenarioError, load

    chosen = _thresholds(fail_on)
    try:
        sc = load(scenario).with_overrides(users=users, compression=compression)
    except ScenarioError as exc:
        _fail(str(exc))
    if fault_mix is not None:
        from saleday.simulator.swarm import FaultMixError, parse_spec

        try:
            parse_spec(fault_mix)
        except FaultMixError as exc:
            _fail(str(exc))
        if record is not None:
            _fail("--record with a swarm mix is not supported yet: the recording's header "
                  "keeps only whether faults were on")
    _run(sc, seed=seed, data=data, store=store, engine=engine, address=address,
         faults=faults or fault_mix is not None, record=record, num_cpus=num_cpus,
         charts=charts, progress=progress and not as_json, as_json=as_json,
         overwrite=overwrite, store_give_up=store_give_up, target=target, fail_on=chosen,
         fault_mix=fault_mix, scenario_ref=scenario)


def _thresholds(fail_on: list[str] | None) -> set[str]:
    """The threshold names `--fail-on` chose (`all`: every one); exit 2 on an unknown one."""
    from saleday.simulator.thresholds import NAMES

    chosen = {name.strip() for value in fail_on or () for name in value.split(",") if name.strip()}
    if "all" in chosen:
        return set(NAMES)
    unknown = sorted(chosen - set(NAMES))
    if unknown:
        _fail(f"--fail-on {', '.join(unknown)}: not a threshold; use {', '.join(NAMES)} or all")
    return chosen


def replay(
    recording: Annotated[Path | None, typer.Argument(help="A recording written by "
                                                     "`simulate --record`.")] = None,
    clickstream: Annotated[Path | None, typer.Option(help="A public behaviour log (.csv or "
                                                     ".csv.gz) to turn into traffic.")] = None,
    layout: Annotated[str | None, typer.Option(help="taobao (UserBehavior.csv) or "
                                               "retailrocket (events.csv); default: "
                                               "detected from the file.")] = None,
    scenario: Annotated[str, typer.Option(help="With --clickstream: the scenario that sets "
                                          "stock, prices and payments.")] = "double11",
    limit: Annotated[int | None, typer.Option(min=1, help="With --clickstream: read at "
                                              "most this many rows.")] = None,
    seed: Annotated[int | None, typer.Option(help="Default: the recording's seed.")] = None,
    data: DataOpt = Path("saleday-data"),
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
    engine: EngineOpt = "inprocess",
    target: TargetOpt = None,
    address: AddressOpt = None,
    store_give_up: StoreGiveUpOpt = 30.0,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs for a local Ray.")] = None,
    charts: Annotated[bool, typer.Option(help="Write PNG charts and report.html.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Feed a recorded command stream (or a public clickstream) to saleday again.

    A recording replayed with the in-process engine on a fresh store writes the same log
    as the run that recorded it (the same log digest), faults included.
    """
    from saleday.simulator.recording import Recording, RecordingError

    if (recording is None) == (clickstream is None):
        _fail("give either a RECORDING or --clickstream FILE")
    if recording is not None:
        try:
            rec = Recording(recording)
        except RecordingError as exc:
            _fail(str(exc))
        _run(rec.scenario, seed=rec.seed if seed is None else seed, data=data, store=store,
             engine=engine, address=address, faults=rec.faults and engine == "inprocess",
             record=None, num_cpus=num_cpus, charts=charts,
             progress=progress and not as_json, as_json=as_json, source=rec.visits(),
             overwrite=overwrite, store_give_up=store_give_up, target=target)
        return
    from saleday.simulator.clicks import ClickstreamError
    from saleday.simulator.scenario import ScenarioError, load
    from saleday.simulator.sessions import clickstream_visits

    try:
        sc = load(scenario)
        source, stats, sc = clickstream_visits(clickstream, layout=layout, scenario=sc,
                                               seed=11 if seed is None else seed, limit=limit)
    except (ScenarioError, ClickstreamError) as exc:
        _fail(str(exc))
    _run(sc, seed=11 if seed is None else seed, data=data, store=store, engine=engine,
         address=address, faults=False, record=None, num_cpus=num_cpus, charts=charts,
         progress=progress and not as_json, as_json=as_json, source=source, click_stats=stats,
         overwrite=overwrite, store_give_up=store_give_up, target=target)


def bench_simulate(
    scenario: Annotated[str, typer.Option(help="Preset or scenario file.")] = "double11",
    users: Annotated[int, typer.Option(min=1, help="Users for the in-process engine.")] = 100_000,
    ray_users: Annotated[int, typer.Option(min=1, help="Users for the Ray engine.")] = 50_000,
    compression: Annotated[float, typer.Option(help="The Ray engine's compression (higher: "
                                               "more offered load). The engine plays the "
                                               "scenario at its pace: while commands/s is "
                                               "close to the scheduled rate it measures the "
                                               "schedule; raise this (e.g. 2400) to find what "
                                               "the engine sustains.")] = 600.0,
    seed: Annotated[int, typer.Option()] = 11,
    system: Annotated[list[str] | None, typer.Option(
        help="generator, inprocess\\[memory], inprocess\\[sqlite], ray\\[sqlite], reserve\\[sqlite] "
             "(default: all).")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs for the local Ray.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Commands/s of each engine playing a sale day, with the generator and the raw
    reservation path measured in the same run."""
    from rich.markup import escape
    from rich.table import Table

    from saleday.bench import simulate as bench
    from saleday.simulator.scenario import ScenarioError, check_seed, load

    try:
        sc = load(scenario)
        check_seed(seed)
    except ScenarioError as exc:
        _fail(str(exc))
    systems = tuple(system or bench.SYSTEMS)
    unknown = set(systems) - set(bench.SYSTEMS)
    if unknown:
        _fail(f"unknown system(s) {sorted(unknown)}; known: {', '.join(bench.SYSTEMS)}")
    result = bench.run(sc, users=users, ray_users=ray_users, compression=compression, seed=seed,
                       systems=systems, num_cpus=num_cpus)
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"sale day {sc.name}: in-process at {users:,} users, Ray at "
                        f"{ray_users:,} users x{compression:g}")
    for col in ("system", "commands", "seconds", "commands/s", "p50 ms", "p99 ms", "note"):
        table.add_column(col, justify="left" if col in ("system", "note") else "right")
    for name in systems:
        row = result[name]
        if "error" in row:
            table.add_row(escape(name), "", "", "", "", "", f"[red]failed: {escape(row['error'])}[/red]")
            continue
        if name == "generator":
            table.add_row(escape(name), f"{row['visits']:,} visits", str(row["seconds"]),
                          f"{row['visits_per_s']:,} visits/s", "", "", "")
            continue
        note = ""
        if "x_goal_10M_in_90s" in row:
            note = f"{row['x_goal_10M_in_90s']}x the goal (10M commands in 90 s)"
        if "scheduled_per_s" in row:
            note = (f"scheduled {row['scheduled_per_s']:,}/s; visits started up to "
                    f"{row['late_start_p99_s']} s late (p99); busy {row['busy']:,}")
            if row.get("driver_cpu") is not None:
                note += (f"; the driver {row['driver_cpu']} cores, its loop "
                         f"{row['driver_loop_lag_p50_ms']} ms late (p50)")
        table.add_row(escape(name), f"{row.get('commands', row.get('requests', 0)):,}",
                      str(row.get("seconds", "")), f"{row['commands_per_s']:,}",
                      str(row.get("p50_ms", "")), str(row.get("p99_ms", "")), note)
    out = console()
    out.print(table)
    m = result["machine"]
    out.print(f"machine: {m.get('cpu')}, {m.get('cores')} cores, Python {m.get('python')}")


def _run(sc, *, seed, data, store, engine, address, faults, record, num_cpus, charts,  # type: ignore[no-untyped-def]
         progress, as_json, source=None, click_stats=None, overwrite=False,
         store_give_up=30.0, target=None, fail_on=frozenset(), fault_mix=None,
         scenario_ref=None) -> None:
    from saleday.cli.interrupt import INTERRUPTED_EXIT, stop_on_signals
    from saleday.events import EventLogError
    from saleday.simulator.report import render
    from saleday.simulator.run import RunOptions, SimulationError, simulate

    if target is not None:
        engine = "http"   # --target drives the HTTP API, whatever the engine's default
    if engine not in ENGINES:
        _fail(f"unknown engine {engine!r}: use {', '.join(ENGINES)}")
    http_target, http_server = _http_wiring(engine, target, data=data, address=address,
                                            num_cpus=num_cpus)
    opts = RunOptions(scenario=sc, seed=seed, engine=engine, data_dir=data, store_url=store,
                      address=address, faults=faults, record=record, progress=progress,
                      num_cpus=num_cpus, charts=charts, overwrite=overwrite,
                      store_give_up_s=store_give_up, http_target=http_target,
                      http_server=http_server, fault_mix=fault_mix, scenario_ref=scenario_ref)
    log_file = data / "simulate.log"
    logged_before = log_file.stat().st_size if log_file.exists() else 0
    try:
        with (stop_on_signals() as opts.stop, stdout_to_stderr(as_json and engine == "http"),
              _logs_to_file(log_file, enabled=progress and sys.stdout.isatty())):
            report = simulate(opts, source=source)
    except (SimulationError, EventLogError) as exc:
        _fail(str(exc))
    if log_file.exists() and log_file.stat().st_size > logged_before:
        typer.echo(f"note: the run logged warnings to {log_file}", err=True)
    if report.previous_run is not None:
        typer.echo(f"note: the previous run's log was moved to {report.previous_run}", err=True)
    if as_json:
        out = report.to_json_dict()
        if click_stats is not None:
            out["clickstream"] = click_stats.as_dict()
        typer.echo(json.dumps(out))
    else:
        render(report, console())
        if click_stats is not None:
            console().print(f"clickstream: {click_stats.summary()}")
        if record is not None:
            console().print(f"command stream recorded in {record}")
    if report.interrupted:
        typer.echo("interrupted: the report above covers the traffic up to the signal",
                   err=True)
        raise typer.Exit(INTERRUPTED_EXIT)
    if not report.audit_ok and report.audit_skipped is None:
        if report.fault_mix is not None:
            typer.echo(f"reproduce: {report.fault_mix['reproduce']}", err=True)
        raise typer.Exit(1)
    from saleday.simulator.thresholds import failed

    missed = failed(report.thresholds, set(fail_on))
    if missed:
        typer.echo("thresholds failed (--fail-on): " + ", ".join(
            f"{t.name} {t.target}" for t in missed), err=True)
        raise typer.Exit(THRESHOLDS_EXIT)


@contextmanager
def _logs_to_file(path: Path, *, enabled: bool) -> Iterator[None]:
    """While the progress bar is shown, log events go to `path` (the data dir's
    simulate.log), not under the bar."""
    if not enabled:
        yield
        return
    from saleday.cluster import logs

    with logs.to_file(path):
        yield


def _http_wiring(engine: str, target: str | None, *, data: Path, address: str | None,
                 num_cpus: int | None):  # type: ignore[no-untyped-def]
    """The HTTP engine's target (--target, with the operator's secrets) or the local front
    door it starts (--engine http); (None, None) for the other engines."""
    if engine != "http":
        return None, None
    if target is not None:
        from urllib.parse import urlsplit

        from saleday.events.store import redact
        from saleday.http.local import target_from_settings
        from saleday.http.settings import MissingSecrets

        parts = urlsplit(target)
        if parts.username is not None or parts.password is not None:
            # The API takes bearer tokens; never echo what was given as a password.
            _fail(f"--target {redact(target)!r}: credentials in the URL are not used (the "
                  "API authenticates each user with a bearer token, and the operator with "
                  "SALEDAY_HTTP_OPERATOR_TOKEN): give http://HOST:PORT")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            _fail(f"--target {target!r}: expected http://HOST:PORT (or https://)")
        from pydantic import ValidationError

        try:
            return target_from_settings(target, data_dir=data), None
        except ValidationError as exc:
            _fail("; ".join(f"SALEDAY_HTTP_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                            for e in exc.errors(include_input=False)))
        except (MissingSecrets, ValueError) as exc:
            _fail(f"--target needs the front door's secrets (SALEDAY_HTTP_*, or the development "
                  f"secrets of `serve --http --dev-secrets` under --data): {exc}")
    from saleday.http.local import local_front_door

    def server(url: str, sc):  # type: ignore[no-untyped-def]
        shards = {"sku": sc.sku_shards, "session": 1, "order": 1, "campaign": 1, "team": 1}
        window_ms = round(sc.funnel.payment_window_s * 1000 / sc.compression)
        return local_front_door(url, shards=shards, address=address, num_cpus=num_cpus,
                                payment_window_ms=window_ms)

    return None, server


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
