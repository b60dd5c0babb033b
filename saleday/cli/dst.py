"""`saleday bench dst`: many seeds of the in-process engine with swarm faults, across the
cores (`saleday.bench.dst`). Exit status: 0 when every seed held every invariant, 1 when
a seed failed (each is listed with the command that reproduces it), 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from saleday.cli.common import console


def register(bench_app: typer.Typer) -> None:
    bench_app.command("dst")(bench_dst)


def bench_dst(
    seeds: Annotated[int, typer.Option(min=1, max=1_000_000, help="Seeds to run.")] = 100,
    first_seed: Annotated[int, typer.Option(min=0, help="The first seed (then the next ones).")] = 0,
    users: Annotated[int, typer.Option(min=1, max=1_000_000, help="Users per seed.")] = 3_000,
    scenario: Annotated[str, typer.Option(help="A preset or a scenario file.")] = "double11",
    faults: Annotated[str, typer.Option(help="swarm (each seed picks its mix), or fault "
                                        "classes separated by commas.")] = "swarm",
    workers: Annotated[int | None, typer.Option(min=1, max=256, help="Worker processes "
                                                "(default: one per core).")] = None,
    rows: Annotated[Path | None, typer.Option(help="Also write each seed's result here as a "
                                              "JSON line as soon as it is done.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Deterministic simulation testing as a swarm: seeds/s, faults by class, failing seeds."""
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from saleday.bench import dst
    from saleday.simulator.scenario import ScenarioError, check_seed, load
    from saleday.simulator.swarm import FaultMixError, parse_spec

    try:
        sc = load(scenario).with_overrides(users=users)
        check_seed(first_seed + seeds - 1)
        parse_spec(faults)
    except (ScenarioError, FaultMixError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    err = Console(stderr=True)
    with Progress(console=err, disable=as_json, transient=True) as progress:
        task = progress.add_task(f"{seeds:,} seeds", total=seeds)
        failed = 0

        def on_seed(row: dict[str, Any]) -> None:
            nonlocal failed
            failed += not row["ok"]
            progress.update(task, advance=1, description=f"{seeds:,} seeds, {failed} failed")

        result = dst.run(sc, seeds=seeds, first_seed=first_seed, spec=faults, workers=workers,
                         scenario_ref=scenario, on_seed=on_seed, rows_to=rows)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        out = console()
        p = result["params"]
        out.print(f"{p['seeds']:,} seeds of {p['users']:,} users ({p['scenario']}, --faults "
                  f"{escape(p['faults'])}) in {result['seconds']} s on {p['workers']} workers: "
                  f"{result['seeds_per_s']} seeds/s, median {result['seed_seconds_median']} s "
                  f"a seed; {result['commands']:,} commands; {result['cpu_seconds']} CPU s "
                  f"({result['seconds_on_idle_cores']} s on {p['workers']} idle cores)")
        table = Table(title="faults by class")
        for col in ("class", "seeds on", "injected"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for cls, n in result["seeds_with_class_on"].items():
            table.add_row(cls, f"{n:,}", f"{result['faults_by_class'].get(cls, 0):,}")
        out.print(table)
        for f in result["failures"]:
            why = f.get("error") or "; ".join(f.get("findings", []))
            out.print(f"[red]seed {f['seed']} failed[/red]: {escape(why)}")
            out.print(f"  reproduce: {escape(f['reproduce'])}")
        m = result["machine"]
        out.print(f"{result['violations']} violations, {result['failed_seeds']} failed seeds; "
                  f"machine: {m.get('cpu')}, {m.get('cores')} cores, Python {m.get('python')}")
    if result["interrupted"]:
        typer.echo(f"interrupted: {result['params']['seeds']:,} of {seeds:,} seeds had finished"
                   + (f"; their rows are in {rows}" if rows is not None else ""), err=True)
        raise typer.Exit(130)
    if result["failed_seeds"]:
        raise typer.Exit(1)
