"""`saleday bench http`: reservations through the HTTP API against the seed's approach and
the floor of the HTTP stack (`saleday.bench.http`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from saleday.cli.common import console, fail, stdout_to_stderr
from saleday.cluster.settings import parse_shards


def register(bench_app: typer.Typer) -> None:
    bench_app.command("http")(bench_http)


def bench_http(
    duration: Annotated[float, typer.Option(min=0.5, help="Seconds of load per row.")] = 3.0,
    concurrency: Annotated[int, typer.Option(min=1, max=4096,
                                             help="Requests kept outstanding.")] = 64,
    skus: Annotated[int, typer.Option(min=1, max=10_000, help="SKUs on sale.")] = 50,
    stock: Annotated[int, typer.Option(min=1, max=10**6, help="Units per SKU.")] = 300,
    users: Annotated[int, typer.Option(min=1, max=10**6, help="Users (bearer tokens).")] = 5_000,
    seed: Annotated[int, typer.Option()] = 11,
    redis_url: Annotated[str, typer.Option(help="Redis of the seed's approach (keys under a "
                                           "fresh prefix, deleted afterwards).")] = "redis://127.0.0.1:6379/0",
    num_cpus: Annotated[int | None, typer.Option(min=1, help="CPUs of the local Ray.")] = None,
    system: Annotated[list[str] | None, typer.Option(
        help="floor, seed_decrby_rollback, saleday\\[uvicorn], saleday\\[uvicorn+redis], "
             "saleday\\[serve], saleday\\[serve+throughput] (default: these), "
             "saleday\\[serve+haproxy] (opt-in: binds every interface).")] = None,
    generator: Annotated[str, typer.Option(help="auto: wrk (C) for the closed-loop rows when "
                                           "installed, else python; or wrk, python.")] = "auto",
    shards: Annotated[str | None, typer.Option(
        help="saleday's shards, e.g. sku=2,session=2,order=2,campaign=1,team=1 (default, as "
             "`serve --http`: one sku, session and order shard per 4 CPUs, at least one; "
             "one campaign, one team).")] = None,
    worker_niceness: Annotated[int | None, typer.Option(
        min=-20, max=19, help="Nice level of the local Ray's workers, the shard actors "
                              "(default 0, as the seed's Redis and the uvicorn servers run; "
                              "Ray's own default is 15, behind every other process).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Orders through HTTP: saleday (uvicorn, Serve, Serve's high-throughput options) against
    the seed's FastAPI + Redis DECRBY and a FastAPI endpoint that does nothing."""
    from rich.markup import escape
    from rich.table import Table

    from saleday.bench import http as bh

    systems = tuple(system or bh.SYSTEMS)
    if generator not in ("auto", "wrk", "python"):
        fail(ValueError(f"--generator {generator!r}: use auto, wrk or python"))
    unknown = set(systems) - set(bh.SYSTEMS) - set(bh.OPT_IN)
    if unknown:
        fail(ValueError(f"unknown system(s) {sorted(unknown)}; known: "
                        f"{', '.join(bh.SYSTEMS + bh.OPT_IN)}"))
    try:
        chosen = parse_shards(shards) if shards is not None else None
    except ValueError as exc:
        fail(exc)
    with stdout_to_stderr(as_json):
        result = bh.run(shards=chosen, systems=systems, duration_s=duration, concurrency=concurrency,
                        skus=skus, stock=stock, users=users, seed=seed, redis_url=redis_url,
                        num_cpus=num_cpus, generator=generator,
                        worker_niceness=worker_niceness)
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"HTTP orders, {concurrency} connections, {duration:g} s per row "
                        f"({result['date']})")
    for col in ("system", "req/s", "p50 ms", "p99 ms", "errors", "oversold",
                "cpu ms/req http+shards", "note"):
        table.add_column(col, justify="left" if col in ("system", "note") else "right")
    for r in result["rows"]:
        if "error" in r:
            table.add_row(escape(r["system"]), "", "", "", "", "", "",
                          f"[red]{escape(r['error'])}[/red]")
            continue
        note = r.get("note", "")
        if "offered_per_s" in r:
            note = f"open loop at {r['offered_per_s']:,}/s"
        cpu = "+".join(str(r[k]) for k in ("cpu_ms_per_req_http", "cpu_ms_per_req_shards")
                       if k in r)
        table.add_row(escape(r["system"]), f"{r['req_per_s']:,}", str(r["p50_ms"]),
                      str(r["p99_ms"]), str(r["errors"]),
                      str(r["oversold"] + r.get("oversold_by_server", 0)), cpu, escape(note))
    out = console()
    out.print(table)
    out.print(f"stock_push_ms: {escape(json.dumps(result['stock_push_ms']))}")
    out.print(f"goals: {escape(json.dumps(result['goals']))}")
    m = result["machine"]
    out.print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; "
              f"load: {escape(result['load_generator'])}")
