"""The `saleday` command line (also `python -m saleday.cli.main`).

Commands today: `bench store` (event store throughput), `bench reserve` (a flash sale end
to end on Ray, against Redis baselines) and `log streams|verify` (inspect a store and check
its hash chains).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import structlog
import typer
from rich.markup import escape
from rich.table import Table

from saleday.cli import audit as cli_audit
from saleday.cli import bench_cluster as cli_bench_cluster
from saleday.cli import bench_failover as cli_bench_failover
from saleday.cli import bench_http as cli_bench_http
from saleday.cli import dst as cli_dst
from saleday.cli import forecast as cli_forecast
from saleday.cli import members as cli_members
from saleday.cli import ops as cli_ops
from saleday.cli import presale as cli_presale
from saleday.cli import simulate as cli_simulate
from saleday.cli import trace as cli_trace
from saleday.cli import views as cli_projections
from saleday.cli.common import (
    DEFAULT_REDIS,
    KnownErrorsExit2,
    ReadDataOpt,
    ReadStoreOpt,
    console,
    fail,
    log_url,
    opened,
)
from saleday.cluster import logs
from saleday.http import cli as http_cli

# Exit status everywhere: 0 ok, 1 the audit found violations, 2 bad input, usage or
# environment (a known error type, see cli_common.KNOWN_ERRORS: `error: ...`, no traceback).
app = typer.Typer(help="saleday: an event-sourced sale-day (11.11) system on Ray.",
                  no_args_is_help=True, add_completion=False, cls=KnownErrorsExit2)
bench_app = typer.Typer(help="Benchmarks: every performance figure comes from here.",
                        no_args_is_help=True)
log_app = typer.Typer(help="Inspect an event store and verify its hash chains.",
                      no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(log_app, name="log")



@app.callback()
def main_options(
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "warning",
) -> None:
    logs.configure(log_level)


@bench_app.command("store")
def bench_store(
    events: Annotated[int, typer.Option(min=1000, help="Events per run.")] = 200_000,
    batch: Annotated[int, typer.Option(min=1, help="Events per commit.")] = 1000,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per figure (the median is shown).")] = 3,
    redis_url: Annotated[str, typer.Option(help="Redis to measure (keys under a fresh prefix, "
                                           "deleted afterwards).")] = DEFAULT_REDIS,
    sqlite_sync: Annotated[str, typer.Option(help="SQLite synchronous: full (fsync per "
                                             "commit) or normal.")] = "full",
    backend: Annotated[list[str] | None, typer.Option(help="sqlite and/or redis (default: both).")] = None,
    baseline: Annotated[bool, typer.Option(help="Also measure the eventsourcing library "
                                           "(SQLite) in the same run.")] = True,
    writers: Annotated[int, typer.Option(min=0, help="SQLite: processes appending one-event "
                                         "commits to one file at once, as shards sharing a "
                                         "log do (0: skip).")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Append, read+decode and read+verify rates of the SQLite and Redis event stores."""
    from saleday.bench.store import run

    backends = tuple(backend or ("sqlite", "redis"))
    unknown = set(backends) - {"sqlite", "redis"}
    if unknown:
        raise typer.BadParameter(f"unknown backend(s) {sorted(unknown)}", param_hint="--backend")
    structlog.get_logger().info("bench_store_started", events=events, batch=batch, repeat=repeat)
    result = run(events=events, batch=batch, repeat=repeat, redis_url=redis_url,
                 sqlite_synchronous=sqlite_sync, backends=backends, baseline=baseline,
                 writers=writers)
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"event store, {events:,} events in commits of {batch:,}, "
                        f"median of {repeat}")
    for col in ("backend", "append ev/s", "append, ids in random order ev/s",
                "read+decode ev/s", "read+verify ev/s", "read+recompute ev/s", "durability"):
        table.add_column(col, justify="right" if "ev/s" in col else "left",
                         no_wrap=col == "backend")
    errors = []
    for name in (*backends, "eventsourcing[sqlite]"):
        row = result.get(name)
        if row is None:
            continue
        if "error" in row:
            table.add_row(escape(name), "-", "-", "-", "-", "-", "[red]failed[/red]")
            errors.append(f"{name}: {row['error']}")
            continue
        table.add_row(escape(name), f"{row['append_events_per_s']:,}",
                      f"{row['append_random_ids_events_per_s']:,}"
                      if "append_random_ids_events_per_s" in row else "-",
                      f"{row['read_events_per_s']:,}",
                      f"{row['verify_events_per_s']:,}" if "verify_events_per_s" in row else "-",
                      f"{row['verify_recompute_events_per_s']:,}"
                      if "verify_recompute_events_per_s" in row else "-", row["durability"])
    out = console()
    out.print(table)
    for line in errors:
        out.print(f"[red]{escape(line)}[/red]")
    contended = result.get("sqlite", {}).get("contended")
    if contended:
        out.print(f"sqlite, {contended['writers']} processes appending one-event commits to one "
                  f"file at once: {contended['commits_per_s']:,} commits/s, a commit p50 "
                  f"{contended['p50_ms']} ms, p99 {contended['p99_ms']} ms")
    m = result["machine"]
    out.print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}")


@bench_app.command("reserve")
def bench_reserve(
    skus: Annotated[int, typer.Option(min=1, help="SKUs on sale.")] = 500,
    stock: Annotated[int, typer.Option(min=1, help="Units per SKU.")] = 100,
    demand: Annotated[float, typer.Option(min=0.1, help="Reservations per unit of supply.")] = 3.0,
    users: Annotated[int, typer.Option(min=1)] = 200_000,
    zipf: Annotated[float, typer.Option(help="Popularity exponent of SKUs.")] = 1.0,
    seed: Annotated[int, typer.Option()] = 11,
    shards: Annotated[int, typer.Option(min=1, help="SKU shard actors.")] = 2,
    window: Annotated[int, typer.Option(min=1, help="Requests kept outstanding.")] = 2048,
    max_batch: Annotated[int, typer.Option(min=1)] = 1024,
    max_wait_ms: Annotated[float, typer.Option(min=0)] = 2.0,
    redis_url: Annotated[str, typer.Option(help="Redis for saleday\\[redis] and the baselines "
                                           "(keys under a fresh prefix, deleted afterwards); "
                                           "a redis+cluster:// URL runs saleday\\[redis] on "
                                           "a Redis Cluster (no baselines).")] = DEFAULT_REDIS,
    system: Annotated[list[str] | None, typer.Option(
        help="saleday\\[sqlite], saleday\\[redis], seed_decrby_rollback, redis_lua_pipelined "
             "(default: all).")] = None,
    recovery_events: Annotated[int, typer.Option(
        min=0, help="Also time a restart of a shard whose stream holds this many events "
                    "(0: skip).")] = 0,
    redis_cluster: Annotated[int, typer.Option(
        min=0, max=16, help="Run saleday\\[redis] alone on a local Redis Cluster of this many "
                            "masters (each with a replica, SKU shard i on master i mod N) "
                            "started for the run instead of --redis-url (0: no).")] = 0,
    wait_replicas: Annotated[int, typer.Option(
        min=0, max=1, help="With --redis-cluster: acknowledge each commit only once WAIT "
                           "counts this many replicas.")] = 0,
    ray_nodes: Annotated[int, typer.Option(
        min=0, max=16, help="Run the shards on a multi-node Ray on this machine: a head "
                            "and this many one-CPU shard nodes (0: one local Ray). Unlike a "
                            "local Ray, its nodes listen on this machine's IP, not loopback "
                            "only (Ray's multi-node test cluster): run it on a closed host.")] = 0,
    client: Annotated[str, typer.Option(
        help="How saleday's rows are driven: 'requests', each request on its own with "
             "--window outstanding (earlier results' client); 'pipelined', chunks of 256 "
             "sent together and timed as one round trip, as the Lua peer's client does, "
             "--window requests outstanding.")] = "requests",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """A flash sale end to end (client -> gateway -> Ray shards -> durable log -> reply),
    with Zipf-popular SKUs and demand above supply, against two Redis baselines."""
    from saleday.bench import reserve as br
    from saleday.bench.workload import reservations

    if redis_cluster:
        from saleday.bench.redis_cluster import LocalCluster

        if system and set(system) != {"saleday[redis]"}:
            fail(ValueError("--redis-cluster runs saleday[redis] alone (the baselines need "
                            "one Redis)"))
        place = {f"sku-{i:03d}": i for i in range(shards)}
        try:
            with LocalCluster(redis_cluster, replicas=True, place=place) as cluster:
                wait = f"?wait_replicas={wait_replicas}&wait_timeout_ms=5000"
                bench_reserve(skus=skus, stock=stock, demand=demand, users=users, zipf=zipf,
                              seed=seed, shards=shards, window=window, max_batch=max_batch,
                              max_wait_ms=max_wait_ms, redis_url=cluster.url + wait,
                              system=["saleday[redis]"], recovery_events=recovery_events,
                              redis_cluster=0, wait_replicas=0, ray_nodes=ray_nodes,
                              client=client, as_json=as_json)
        except RuntimeError as exc:  # no redis-server, or the cluster did not come up
            fail(exc)
        return
    if client not in br.CLIENTS:
        fail(ValueError(f"unknown client {client!r}; known: {', '.join(br.CLIENTS)}"))
    systems = tuple(system or br.SYSTEMS)
    unknown = sorted(set(systems) - set(br.SYSTEMS))
    if unknown:
        fail(ValueError(f"unknown system(s) {unknown}; known: {', '.join(br.SYSTEMS)}"))
    if not reservations(skus=skus, stock=stock, demand=demand):
        fail(ValueError(f"{skus} SKU(s) x {stock} unit(s) x demand {demand} asks for no "
                        "reservations: raise --skus, --stock or --demand"))
    result = br.run(skus=skus, stock=stock, demand=demand, users=users, zipf=zipf, seed=seed,
                    shards=shards, window=window, max_batch=max_batch, max_wait_ms=max_wait_ms,
                    redis_url=redis_url, systems=systems, ray_nodes=ray_nodes, client_kind=client)
    if recovery_events:
        result["recovery"] = br.run_recovery(events=recovery_events)
    if as_json:
        typer.echo(json.dumps(result))
        return
    p = result["params"]
    table = Table(title=f"flash sale: {p['requests']:,} reservations for {p['skus']:,} SKUs x "
                        f"{p['stock']:,} units (Zipf {p['zipf']}), {p['shards']} shards")
    for col in ("system", "req/s", "x lua", "p50 ms", "p99 ms", "p99 ms at half load",
                "oversold", "granted"):
        table.add_column(col, justify="left" if col == "system" else "right",
                         no_wrap=col == "system")
    errors = []
    for name in systems:
        row = result[name]
        if "error" in row:
            table.add_row(escape(name), "[red]failed[/red]", "", "", "", "", "", "")
            errors.append(f"{name}: {row['error']}")
            continue
        table.add_row(escape(name), f"{row['req_per_s']:,}", str(row.get("x_redis_lua_pipelined", "")),
                      str(row["p50_ms"]), str(row["p99_ms"]), str(row.get("p99_ms_at_half_load", "")),
                      str(row["oversold"]),
                      f"{row['granted']:,}")
    out = console()
    out.print(table)
    for line in errors:
        out.print(f"[red]{escape(line)}[/red]")
    if "recovery" in result:
        r = result["recovery"]
        out.print(f"recovery: stream of {r['events']:,} events (snapshot every "
                      f"{r['snapshot_every']:,}): new host ready in {r['recover_in_process_ms']} ms "
                      f"(worst case, a full tail: {r['worst_case_tail_ms']} ms at "
                      f"{r['replay_events_per_s']:,} events/s replayed); Ray actor killed -> "
                      f"serving again in {r['ray_kill_to_serving_ms']} ms")
    m = result["machine"]
    out.print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}")


@log_app.command("streams")
def log_streams(store: ReadStoreOpt = None, data: ReadDataOpt = None,
                as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the streams of a store with their versions and writer epochs."""

    with opened(log_url(store, data), read_only=True) as s:
        rows = [(name, version, s.head(name).epoch) for name, version in s.streams().items()]
    if as_json:
        typer.echo(json.dumps([{"stream": n, "version": v, "epoch": e} for n, v, e in rows]))
        return
    table = Table()
    for col in ("stream", "version", "epoch"):
        table.add_column(col)
    for n, v, e in rows:
        table.add_row(n, str(v), str(e))
    console().print(table)


@log_app.command("verify")
def log_verify(store: ReadStoreOpt = None, data: ReadDataOpt = None,
               stream: Annotated[list[str] | None, typer.Option(help="Only these streams.")] = None,
               recompute: Annotated[bool, typer.Option(
                   help="Recompute each hash from the decoded fields (the auditor's rule in "
                        "docs/LOG_FORMAT.md) instead of over the stored bytes.")] = False,
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Re-read streams and check gapless versions and the hash chain; exit 1 on a break
    (or on a stream missing from the store's list of streams); exit 2 on no log or no events."""
    from saleday.events import ChainVerifier, CorruptRecordError, verify_commits

    results = []
    with opened(log_url(store, data), read_only=True) as s:
        logged = s.logged_streams()  # from the commits themselves: nothing is hidden
        listed = s.streams()
        names = stream or sorted(set(logged) | set(listed))
        if not names:
            fail(ValueError(f"no events to verify in {s.url}: an empty log proves nothing"))
        for name in names:
            try:
                if recompute:
                    verifier = ChainVerifier(name)
                    pos = 1
                    while batch := s.read(name, pos, 50_000):
                        verifier.feed(batch)
                        pos = batch[-1].version + 1
                    version, head_hash = verifier.version, verifier.head_hash
                else:
                    version, head_hash = verify_commits(name, s.read_commits(name))
                head = s.head(name)
                ok = head.version == version and head.hash == head_hash
                error = None if ok else "the stream's head does not match its last event"
                if not stream and name not in listed:
                    ok, error = False, ("the store's list of streams does not name it (its head "
                                        "record is missing): it was hidden")
                results.append({"stream": name, "version": version, "ok": ok,
                                "head_hash": head_hash.hex(), "error": error})
            except CorruptRecordError as exc:
                results.append({"stream": name, "version": exc.version, "ok": False,
                                "head_hash": None, "error": str(exc)})
    if as_json:
        typer.echo(json.dumps(results))
    else:
        for r in results:
            mark = (f"ok, head {r['head_hash']}" if r["ok"]
                    else f"BROKEN at version {r['version']}: {r['error']}")
            typer.echo(f"{r['stream']}: {r['version']} events, {mark}")
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)


# Commands that live in their own modules: projections (view, audit, export), the
# simulator (simulate, replay) and operations (serve, status).
cli_projections.register(app, bench_app)
cli_simulate.register(app, bench_app)
cli_ops.register(app, bench_app)
cli_audit.register(app, bench_app)
cli_trace.register(app)
cli_members.register(app)
cli_forecast.register(app, bench_app)
cli_presale.register(app)
cli_bench_http.register(bench_app)
cli_bench_cluster.register(bench_app)
cli_bench_failover.register(bench_app)
cli_dst.register(bench_app)
http_cli.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
