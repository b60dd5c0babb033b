"""`saleday serve` and `saleday status`: running the shards on a Ray cluster and watching them.

    saleday --log-level info serve --address auto --store rediss://... --shards sku=8,session=4
    saleday status --address 127.0.0.1:6380 [--store URL] [--json]

Every option falls back to its `SALEDAY_*` variable (cluster/settings.py). `serve` joins
the cluster (or starts a local Ray), starts or finds the named shard actors, prints where
each runs, then stays up until Ctrl-C or SIGTERM: its gateway ticks the shards (so due
reservations expire with no traffic) and it logs each shard's health every
`--health-every-s`. With the member kind served it also runs the follower that earns
points and claims price protection as orders are paid and prices drop, and with the
presale and sku kinds the one that sets each deposit's units aside on its SKU, sells
them when the balance is paid and returns them when it is forfeited (flows/followers.py;
`--http` runs them too, next to the reactor). `status` reads the shards from Ray's GCS and asks each live one for its
stream version and epoch, and names the Redis master each shard's stream is written to
(on a Redis Cluster: the master owning its slot); it exits 1 unless every shard is
healthy. Given a store, `status` opens it read-only before anything else and exits 2 when
it is unreachable, refuses the credentials or holds no log. Store URLs are shown
redacted, never with a password.
"""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from typing import Annotated, Any

import structlog
import typer
from rich.markup import escape
from rich.table import Table

from saleday.cli.common import console, fail
from saleday.cli.interrupt import Signalled

log = structlog.get_logger("saleday.ops")

AddressOpt = Annotated[str | None, typer.Option(
    "--address", help="Ray cluster: auto, ray://head:10001 or host:6380 (env SALEDAY_RAY_ADDRESS).")]
StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="Event store URL (env SALEDAY_STORE_URL; credentials may come from "
                    "SALEDAY_REDIS_USERNAME / SALEDAY_REDIS_PASSWORD).")]

_STARTING = {"PENDING_CREATION", "DEPENDENCIES_UNREADY", "RESTARTING"}


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the `saleday` app (and its `bench` group)."""
    app.command("serve")(serve)
    app.command("status")(status)


def _settings(**overrides: Any):  # type: ignore[no-untyped-def]
    from pydantic import ValidationError

    from saleday.cluster.settings import load_settings

    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        fail(ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                  for e in exc.errors())))


def serve(
    address: AddressOpt = None,
    store: StoreOpt = None,
    shards: Annotated[str | None, typer.Option(
        help="Shards per kind: sku=8,session=4 (default: SALEDAY_SHARDS, else sku=2; with "
             "--http every kind, one sku/session/order shard per 4 CPUs).")] = None,
    shard_resource: Annotated[str | None, typer.Option(
        help="Place shards only on nodes with this custom resource (e.g. saleday_shard).")] = None,
    partitions: Annotated[int | None, typer.Option(min=1)] = None,
    max_batch: Annotated[int | None, typer.Option(min=1)] = None,
    max_wait_ms: Annotated[float | None, typer.Option(min=0)] = None,
    snapshot_every: Annotated[int | None, typer.Option(min=1)] = None,
    tick_s: Annotated[float | None, typer.Option(min=0, help="Seconds between ticks.")] = None,
    num_cpus: Annotated[int | None, typer.Option(min=1, help="CPUs of a local Ray.")] = None,
    health_every_s: Annotated[float | None, typer.Option(min=0.1)] = None,
    standbys: Annotated[int | None, typer.Option(
        min=0, max=1, help="1: a hot standby per shard, promoted within ~200 ms when its "
                           "primary dies (env SALEDAY_STANDBYS; default 0: Ray restarts a dead "
                           "shard). With --http the replicas fail over through the same "
                           "failover actor.")] = None,
    stop_shards: Annotated[bool, typer.Option(
        help="Kill the shard actors on exit (default: leave them to the next serve).")] = False,
    http: Annotated[bool, typer.Option(
        "--http", help="Also serve the HTTP API (Ray Serve; docs/API.md).")] = False,
    host: Annotated[str | None, typer.Option(
        help="--http: address to listen on (env SALEDAY_HTTP_HOST, default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="--http: port (env SALEDAY_HTTP_PORT, default 8000).")] = None,
    replicas: Annotated[int, typer.Option(min=1, help="--http: Serve replicas.")] = 1,
    dev_secrets: Annotated[bool, typer.Option(
        help="--http: generate random secrets under the data dir when none are set.")] = False,
) -> None:
    """Start or find the shard actors on Ray and keep them ticked and watched.

    Prints where each shard runs, then stays up until Ctrl-C or SIGTERM
    (a second one quits at once, exit 130).

    On a local Ray it holds the log's run lock while it runs: a second
    serve or a simulate on the same log is refused.

    Member kind served: follows the log to earn points and claim price protection.

    Presale and sku kinds served: sets each deposit's units aside on its SKU (docs/MEMBERS.md)."""
    from saleday.events import EventLogError

    settings = _settings(ray_address=address, store_url=store, shards=shards,
                         shard_resource=shard_resource, partitions=partitions,
                         max_batch=max_batch, max_wait_ms=max_wait_ms,
                         snapshot_every=snapshot_every, tick_s=tick_s, num_cpus=num_cpus,
                         health_every_s=health_every_s, standbys=standbys)
    _check_reachable(settings.ray_address)
    if http:
        from saleday.http import cli as http_cli

        http_settings = http_cli.prepare(host=host, port=port, dev_secrets=dev_secrets,
                                         data_dir=settings.data_dir)
        if shards is None and "SALEDAY_SHARDS" not in os.environ:
            settings = settings.model_copy(update={"shards": http_cli.http_shards(num_cpus)})
    config = settings.runtime_config().model_copy(
        update={"detached": settings.ray_address is not None})
    from saleday.cluster import ray_api
    from saleday.cluster.runtime import Runtime

    held = ExitStack()
    if settings.ray_address is None:
        # A local Ray's shards must be the log's only writers: a second `serve` (or a
        # `simulate`, which would move the log aside) on the same log is refused here,
        # rather than left to fence this one's shards at its first write.
        from saleday.simulator.datadir import DataDirError, run_lock

        try:
            held.enter_context(run_lock(config.store_url))
        except (DataDirError, EventLogError) as exc:
            fail(exc)
    try:
        runtime = Runtime(config)
        runtime.start()
    except EventLogError as exc:
        held.close()
        fail(exc)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        held.close()
        fail(RuntimeError(f"cannot start the shards: {exc}"))
    signals = Signalled("stopping")
    client = runtime.client()  # its gateway ticks every shard every tick_s; runtime.stop closes it
    followers = None
    if http:
        http_cli.start(runtime, http_settings, replicas=replicas)
    else:
        followers = _start_followers(client, config)
    gcs = ray_api.gcs_address()
    safe = settings.safe()
    log.info("serve_started", ray=gcs, store=safe["store_url"], shards=settings.shards,
             shard_resource=settings.shard_resource)
    rows = shard_rows(config.store_url)
    out = console()
    out.print(f"ray address: {gcs}")
    out.print(f"store: {escape(safe['store_url'])}")
    out.print(_table(rows, title="shards"))
    typer.echo("serving; Ctrl-C or SIGTERM to stop", err=True)
    try:
        while not signals.wait(settings.health_every_s):
            runtime.check_standbys()   # a dead standby is replaced (with --standbys 1)
            for row in shard_rows(config.store_url):
                event = log.info if row["health"] == "ok" else log.warning
                event("shard_health", **{k: row[k] for k in (
                    "stream", "health", "state", "node_ip", "version", "lag", "epoch", "restarts")})
    finally:
        log.info("serve_stopping", stop_shards=stop_shards)
        # A local Ray ends with this process, Serve and the shards on it: ending it is
        # quicker than Serve's graceful shutdown, whose controller kills itself (Ray's
        # raylet then printed that `graceful_shutdown` failed and would be retried).
        local = settings.ray_address is None
        if http:
            http_cli.stop(shutdown_serve=not local)
        if followers is not None:
            followers()
        runtime.stop(kill_shards=stop_shards, shutdown_ray=local)  # closes the client too
        held.close()
        if http and local:
            from saleday.http.local import forget_serve

            forget_serve()


def _start_followers(client: Any, config: Any) -> Any:
    """Run the live followers the served kinds call for (flows/followers.py: points and
    price protection with the member kind, the deposits' units with presale and sku) on
    the client's loop; return a function that stops them, or None when none is called for.
    (The reactor runs with `--http` only.)"""
    import asyncio

    from saleday.events import open_store
    from saleday.flows.followers import live_followers

    if not live_followers_called_for(config.shards):
        return None
    store = open_store(config.store_url)
    stop_box: dict[str, asyncio.Event] = {}

    async def follow() -> None:
        stop_box["stop"] = asyncio.Event()
        running = live_followers(store, client.gateway, config.shards, stop_box["stop"],
                                 reactor=False)
        log.info("followers_started", followers=sorted(running))
        await asyncio.gather(*running.values())

    future = asyncio.run_coroutine_threadsafe(follow(), client._loop)

    def stop() -> None:
        if "stop" in stop_box:
            client._loop.call_soon_threadsafe(stop_box["stop"].set)
        try:
            future.result(timeout=5)
        except Exception:  # noqa: BLE001 - stopping: whatever it ended with is moot
            log.warning("followers_stop", error="did not stop cleanly")
        store.close()
    return stop


def live_followers_called_for(shards: Any) -> bool:
    """Whether the served kinds call for a follower in plain `serve` (member; presale+sku)."""
    kinds = set(shards)
    return "member" in kinds or {"presale", "sku"} <= kinds


def status(
    address: AddressOpt = None,
    store: StoreOpt = None,
    timeout_s: Annotated[float, typer.Option(min=0.1, help="Wait this long for each shard.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """Show each shard: node, state, the Redis master it writes to, version, epoch, lag,
    restarts and health (standbys too, named `<stream>.standby-…`; a primary that failed
    over to its standby shows as `replaced`).

    Exit 1 unless every shard is healthy; exit 2 when the store (given) cannot be read."""
    from saleday.cluster import ray_api

    settings = _settings(ray_address=address, store_url=store)
    store_url = settings.resolved_store_url() if settings.store_url else None
    if store_url is not None:
        _check_store(store_url)
    _check_reachable(settings.ray_address)
    try:
        ray_api.start_ray(settings.ray_address or "auto")
    except (ConnectionError, ValueError, RuntimeError) as exc:
        fail(RuntimeError(f"no Ray cluster at {settings.ray_address or 'auto'}: {exc}"))
    rows = shard_rows(store_url, timeout_s=timeout_s)
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        console().print(_table(rows, title=f"saleday shards on {ray_api.gcs_address()}"))
        if not rows:
            typer.echo("no shard actors found (is `saleday serve` running on this cluster?)",
                       err=True)
    if any(r["health"] == "store_unavailable" for r in rows):
        typer.echo("error: the event store became unavailable while reading it (see the log)",
                   err=True)
        raise typer.Exit(2)
    if not rows or any(r["health"] not in ("ok", "replaced") for r in rows):
        raise typer.Exit(1)


def _check_store(store_url: str) -> None:
    """Exit 2, readably and with the URL redacted, unless the store answers (with these
    credentials) and holds a log. Opened read-only: status never writes to the log."""
    from saleday.events import EventLogError, open_store

    try:
        open_store(store_url, read_only=True).close()
    except EventLogError as exc:
        fail(exc)


def _check_reachable(address: str | None, timeout_s: float = 3.0) -> None:
    """Fail at once, readably, when a `host:port` or `ray://host:port` address does not
    accept connections (Ray itself would retry for minutes). `auto` is left to Ray."""
    import socket

    if not address or address == "auto":
        return
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        fail(ValueError(f"Ray address {address!r}: expected auto, host:port or ray://host:port"))
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        fail(ConnectionError(f"no Ray cluster answers at {address}: {exc}"))


def shard_rows(store_url: str | None, *, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """One row per shard actor Ray knows, with what the live ones say about themselves and,
    given the store, how far each is behind its stream in the log."""
    from saleday.cluster import ray_api

    placed = {name: row for name, row in ray_api.where().items() if row["class"] == "ShardActor"}
    refs: dict[str, Any] = {}
    for name, row in placed.items():
        if row["state"] == "ALIVE" and (handle := ray_api.find_actor(name)) is not None:
            refs[name] = handle.status.remote()
    ready_set = set(ray_api.wait(list(refs.values()), timeout=timeout_s))
    answered: dict[str, dict[str, Any]] = {}
    for name, ref in refs.items():
        if ref in ready_set:
            try:
                answered[name] = ray_api.get(ref)
            except Exception as exc:  # noqa: BLE001 - the actor died answering: report it
                log.info("shard_status_failed", stream=name, error=type(exc).__name__)
    # A standby (or a primary it became) is named `<stream>.standby-…` (cluster/failover.py).
    stream_of = {name: str(answered.get(name, {}).get("stream", name.split(".", 1)[0]))
                 for name in placed}
    found = log_heads(store_url, sorted(set(stream_of.values()))) if store_url else {}
    unavailable = found is None
    heads = found or {}
    serving = {stream_of[n] for n, said in answered.items()
               if placed[n]["state"] == "ALIVE" and not said.get("standby")}
    rows = []
    for name in sorted(placed):
        where, said = placed[name], answered.get(name, {})
        stream = stream_of[name]
        row = {"stream": name, "kind": said.get("kind", stream.rsplit("-", 1)[0]),
               "state": where["state"], "node_ip": where["node_ip"], "node_id": where["node_id"],
               "pid": said.get("pid", where["pid"]), "restarts": where["restarts"],
               "version": said.get("version"), "epoch": said.get("epoch"),
               "snapshot_version": said.get("snapshot_version"),
               "entities": said.get("entities"), "timers": said.get("timers"),
               "log_version": heads.get(stream, (None, None))[0],
               "master": heads.get(stream, (None, None))[1], "lag": None,
               "store": said.get("store"),
               "role": "standby" if said.get("standby") or ".standby-" in name and not said
                       else "primary"}
        if row["version"] is not None and row["log_version"] is not None:
            row["lag"] = row["log_version"] - row["version"]
        row["health"] = "store_unavailable" if unavailable else _health(row, said)
        if row["health"] == "dead" and stream in serving:
            row["health"] = "replaced"   # failed over: another actor serves its stream
        elif said.get("standby") and row["health"] == "behind":
            row["health"] = "ok"   # a standby follows a few ms behind by design
        rows.append(row)
    return rows


def _health(row: dict[str, Any], said: dict[str, Any]) -> str:
    state = row["state"]
    if state == "DEAD":
        return "dead"
    if state in _STARTING:
        return "restarting"
    if not said:
        return "unresponsive"
    if said.get("fenced"):
        return "fenced"
    if row["lag"] is not None and row["lag"] < 0:
        return "log_behind"  # the log lost commits the shard acknowledged (docs/OPERATIONS.md)
    if row["lag"]:
        return "behind"
    return "ok"


def log_heads(store_url: str, streams: list[str]) -> dict[str, tuple[int, str | None]] | None:
    """Each stream's version in the log and the Redis master it is written to (`host:port`:
    on a Redis Cluster the master owning the slot of the stream's keys; None for a file),
    or None when the store cannot be read. The store is opened read-only."""
    from saleday.events import EventLogError, open_store

    try:
        store = open_store(store_url, read_only=True)
    except EventLogError as exc:
        log.warning("status_store_unavailable", error=str(exc))
        return None
    master_of = getattr(store, "master_of", lambda stream: None)
    try:
        return {s: (store.head(s).version, master_of(s)) for s in streams}
    except EventLogError as exc:
        log.warning("status_store_unavailable", error=str(exc))
        return None
    finally:
        store.close()


def _table(rows: list[dict[str, Any]], *, title: str) -> Table:
    # Thirteen columns: one space between them, no outer edge, so 132 columns hold a row.
    table = Table(title=title, show_edge=False, collapse_padding=True)
    columns = ("stream", "kind", "health", "state", "node_ip", "node_id", "pid", "master",
               "version", "epoch", "lag", "timers", "restarts")
    cells = [["-" if row[c] is None else str(row[c])[:12] if c == "node_id" else str(row[c])
              for c in columns] for row in rows]
    for i, col in enumerate(columns):
        # What names a shard, says how it is and where it writes never shrinks; the rest
        # may, with an ellipsis, in a narrow terminal.
        whole = max([len(col), *(len(r[i]) for r in cells)]) if col in _WHOLE else None
        table.add_column(col, no_wrap=True, min_width=whole,
                         justify="right" if col in ("version", "epoch", "lag", "timers",
                                                    "restarts", "pid") else "left")
    for r in cells:
        table.add_row(*(escape(c) for c in r))
    return table


_WHOLE = ("stream", "health", "master", "version", "lag")
