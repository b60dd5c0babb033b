"""`saleday bench cluster`: the log's append rate on local Redis Clusters of 1, 2, 4 ...
masters (each with a replica), one shard process per master, with and without WAIT
(`saleday.bench.cluster_store`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from saleday.cli.common import console, fail, stdout_to_stderr


def register(bench_app: typer.Typer) -> None:
    bench_app.command("cluster")(bench_cluster)


def _counts(text: str, what: str, low: int, high: int) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v < low or v > high for v in values):
        fail(ValueError(f"--{what} {text!r}: a comma-separated list of numbers "
                        f"from {low} to {high}, e.g. {'1,2,4' if low else '0,1'}"))
    return values


def bench_cluster(
    masters: Annotated[str, typer.Option(help="Master counts to measure, e.g. 1,2,4 (one "
                                         "shard process per master).")] = "1,2,4",
    wait: Annotated[str, typer.Option(help="wait_replicas values to measure: 0 (no WAIT), "
                                      "1 (the one replica has each commit).")] = "0,1",
    events: Annotated[int, typer.Option(min=100, help="Events per shard per run.")] = 20_000,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Events per commit.")] = 100,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per figure (the median).")] = 3,
    appendfsync: Annotated[str, typer.Option(help="Every node's AOF: no-aof, always, "
                                             "everysec or no.")] = "no-aof",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Append rates of the log on Redis Cluster by master count and WAIT, with each
    master's and each shard's events per CPU second (the capacity model's figures)."""
    from rich.table import Table

    from saleday.bench.cluster_store import run

    counts, waits = _counts(masters, "masters", 1, 16), _counts(wait, "wait", 0, 1)
    if appendfsync not in ("no-aof", "always", "everysec", "no"):
        fail(ValueError(f"--appendfsync {appendfsync!r}: use no-aof, always, everysec or no"))
    with stdout_to_stderr(as_json):
        try:
            result = run(masters=counts, waits=waits, events=events, batch=batch, repeat=repeat,
                         appendfsync=appendfsync)
        except RuntimeError as exc:  # no redis-server, or a cluster that did not come up
            fail(exc)
    if as_json:
        typer.echo(json.dumps(result))
        return
    m = result["machine"]
    table = Table(title=f"log on Redis Cluster: {events:,} events per shard in commits of "
                        f"{batch}, AOF {appendfsync}, median of {repeat} "
                        f"({m['cpu']}, {m['cores']} cores)")
    for col in ("masters", "shards", "wait", "events/s", "x first", "x no wait",
                "ev per master CPU-s", "ev per shard CPU-s"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        table.add_row(str(r["masters"]), str(r["shards"]), str(r["wait_replicas"]),
                      f"{r['events_per_s']:,}", f"{r['x_first']:.2f}",
                      f"{r['x_no_wait']:.2f}" if "x_no_wait" in r else "-",
                      f"{r['events_per_master_cpu_s']:,}", f"{r['events_per_writer_cpu_s']:,}")
    console().print(table)
