"""`saleday bench failover`: the gap from killing a shard's process to its next answered
command, with and without a hot standby, and the standbys' cost in throughput
(`saleday.bench.failover`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from saleday.cli.common import console, fail, stdout_to_stderr


def register(bench_app: typer.Typer) -> None:
    bench_app.command("failover")(bench_failover)


def bench_failover(
    shards: Annotated[int, typer.Option(min=1, max=64, help="SKU shard actors.")] = 2,
    skus: Annotated[int, typer.Option(min=2, help="SKUs reserved (stock never runs out).")] = 200,
    window: Annotated[int, typer.Option(min=2, help="Reservations kept outstanding (the "
                                        "probe after a kill waits behind those of its "
                                        "shard).")] = 512,
    load_s: Annotated[float, typer.Option(min=0.2, help="Seconds per throughput run.")] = 3.0,
    repeat: Annotated[int, typer.Option(min=1, help="Kills (and throughput runs) per "
                                        "mode; the median is quoted.")] = 3,
    kill: Annotated[str, typer.Option(help="pid: SIGKILL the primary's worker process (a "
                                      "crash); ray: ray.kill the actor.")] = "pid",
    num_cpus: Annotated[int | None, typer.Option(min=1, help="CPUs of the local Ray "
                                                 "(default: the machine's).")] = None,
    ray_nodes: Annotated[int, typer.Option(
        min=0, max=8, help="Run on a multi-node Ray on this machine: a head and this many "
                           "one-CPU shard nodes, standbys placed apart from their primaries "
                           "(0: one local Ray). Its nodes listen on this machine's IP, not "
                           "loopback only: run it on a closed host.")] = 0,
    http: Annotated[bool, typer.Option(
        "--http", help="Through the HTTP API on Serve: orders placed over HTTP (at most "
                       "64 connections), the probe an order, the replica's gateway failing "
                       "the shard over; commands/s are orders placed per second.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Kill shard 0's primary mid-load, `repeat` times, without and then with a standby:
    milliseconds from the kill to the first answered command, commands/s of each mode, and
    a check that no acknowledged reservation was lost."""
    from rich.table import Table

    from saleday.bench.failover import KILLS, run

    if kill not in KILLS:
        fail(ValueError(f"--kill {kill!r}: use {' or '.join(KILLS)}"))
    with stdout_to_stderr(as_json):
        result = run(shards=shards, skus=skus, window=window, load_s=load_s, repeat=repeat,
                     kill=kill, num_cpus=num_cpus, ray_nodes=ray_nodes, http=http)
    if as_json:
        typer.echo(json.dumps(result))
        return
    m = result["machine"]
    over = "over HTTP (orders), " if http else ""
    table = Table(title=f"failover {over}shard 0 of {shards} killed ({kill}) mid-load, "
                        f"{repeat} times per mode; SQLite log ({m['cpu']}, {m['cores']} cores)")
    for col in ("standbys", "kill -> answer ms (median)", "each", "of which detect / promote",
                "orders/s" if http else "commands/s", "acknowledged",
                "lost (not checked over HTTP)" if http else "lost"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        parts = ", ".join(f"{d:,} / {p:,}" for d, p in zip(r["detect_ms"], r["promote_ms"]))
        table.add_row(str(r["standbys"]), f"{r['kill_to_answer_ms_median']:,}",
                      ", ".join(f"{g:,}" for g in r["kill_to_answer_ms"]), parts or "-",
                      f"{r['commands_per_s']:,}", f"{r['acknowledged']:,}",
                      "-" if r["lost"] is None else str(r["lost"]))
    out = console()
    out.print(table)
    if http:
        out.print("an order's own latency at that load, p50 / p99 ms (the probe is an order): "
                  + "; ".join(f"{r['standbys']} standby: " + ", ".join(
                      f"{a} / {b}" for a, b in zip(r["order_p50_ms"], r["order_p99_ms"]))
                      for r in result["rows"]))
    cpu = result["rows"][1]["standby_cpu_per_primary_cpu"]
    out.print(f"failover {result['failover_speedup']}x faster with a standby; throughput with "
              f"standbys {result['standby_throughput_ratio']}x of without; standbys' CPU per "
              f"primaries' CPU {', '.join(map(str, cpu)) or '-'}; load average "
              f"{result['loadavg_before']} -> {result['loadavg_after']}")
