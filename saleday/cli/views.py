"""`saleday view orders|referrals|metrics|stock|experiments`, `saleday view windows NAME`
and `saleday bench projections`.

    saleday view stock --data ./saleday-data            # catch up, then a table
    saleday view orders --order o-17 --json             # one order, for machines
    saleday view referrals --top 20 --graphml refs.graphml
    saleday view metrics --store redis://127.0.0.1:6379/0?prefix=sale --rebuild
    saleday view windows browse-5m --user u0000042     # event-time windows (saleday.cli.outcomes)
    saleday view experiments --json

`view` catches the projection up from its checkpoint (`projections.db` next to a SQLite
log, or on the same Redis, under the same prefix, when the log is on Redis) before it
prints. A checkpoint folded from another log (a new run in the same folder, another
store) is noticed by the hashes it keeps and rebuilt from this log, with a note on
stderr. `bench projections` writes a log of reservation traffic with the real SKU decider
into a temporary SQLite store and times folding+checkpointing it per view, against the raw
read+decode rate of the same log.
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from saleday.cli.common import console, fail, opened
from saleday.cli.human import event_time, percent, yuan

DataOpt = Annotated[Path, typer.Option("--data", help="Data dir: the log is "
                                       "sqlite:///<data>/events.db unless --store says otherwise.")]
OptionalStore = Annotated[str | None, typer.Option(
    "--store", help="Event store URL (default sqlite:///<data>/events.db).")]


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the `saleday` app (and its `bench` group)."""
    from saleday.cli import outcomes

    app.command("view")(view)
    bench_app.command("projections")(bench_projections)
    outcomes.register(bench_app)


def checkpoint_url_for(store_url: str) -> str:
    """Where a log's projections keep their checkpoints: next to a SQLite log, or on the
    same Redis (same prefix) as a Redis log."""
    if store_url.startswith("sqlite:///"):
        path = Path(store_url[len("sqlite:///"):].split("?", 1)[0])
        return f"sqlite:///{path.parent / 'projections.db'}"
    return store_url


def view(
    name: Annotated[str, typer.Argument(help="orders, referrals, metrics, stock, experiments "
                                        "or windows.")],
    window: Annotated[str | None, typer.Argument(
        help="windows: browse-5m, trail-30m or sessions-30m.", show_default=False)] = None,
    store: OptionalStore = None,
    data: DataOpt = Path("./saleday-data"),
    checkpoints: Annotated[str | None, typer.Option(
        help="Checkpoint store URL (default: projections.db next to a SQLite log, or the "
             "log's own Redis and prefix).")] = None,
    order: Annotated[str | None, typer.Option("--order", help="orders: just this order.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="orders: this user's orders; "
                                             "referrals: this user; windows: this key.")] = None,
    sku: Annotated[list[str] | None, typer.Option("--sku", help="stock, metrics: only these SKUs.")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows shown in lists.")] = 20,
    graphml_file: Annotated[Path | None, typer.Option(
        "--graphml", help="referrals: also write the graph as GraphML to this file.")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Forget the checkpoint and fold the "
                                          "whole log again from zero.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Catch a view up with the log and show it."""
    from saleday.cli.outcomes import SHOW, outcome_view_class
    from saleday.projections.checkpoint import open_checkpoints
    from saleday.projections.runner import ForeignCheckpoint, Projection, ProjectionError
    from saleday.projections.views import UnknownView, view_class

    try:
        cls = outcome_view_class(name, window) if name in SHOW else view_class(name)
    except UnknownView as exc:
        raise typer.BadParameter(str(exc) + ", experiments, windows", param_hint="NAME") from None
    if window is not None and name != "windows":
        raise typer.BadParameter(f"only `view windows` takes a second name, not {name!r}",
                                 param_hint="WINDOW")
    store_url = store or f"sqlite:///{data / 'events.db'}"
    if store_url.startswith("sqlite:///") and not Path(store_url[10:].split("?")[0]).exists():
        fail(FileNotFoundError(f"no event log at {store_url[10:]}: pass --data or --store"))
    with opened(store_url, read_only=True) as s:
        cps = open_checkpoints(checkpoints or checkpoint_url_for(store_url))
        try:
            started = time.perf_counter()
            try:
                proj = Projection(cls(), s, cps, fresh=rebuild)
            except ForeignCheckpoint as exc:
                # Views are derived data: one folded from another log is worth nothing here.
                typer.echo(f"note: the {cls.name} view's checkpoint was made from another log "
                           f"({exc.reason}); rebuilding it from this one", err=True)
                proj = Projection(cls(), s, cps, fresh=True)
            folded = proj.catch_up()
            seconds = time.perf_counter() - started
        except ProjectionError as exc:
            fail(exc)
        finally:
            cps.close()
    v = proj.view
    if graphml_file is not None:
        if name != "referrals":
            raise typer.BadParameter("only the referrals view exports GraphML", param_hint="--graphml")
        from saleday.projections.views import graphml

        graphml_file.write_bytes(graphml(v))  # type: ignore[arg-type]
    shown = (SHOW.get(name) or _SHOW[name])(v, order=order, user=user, skus=sku, top=top)
    if as_json:
        typer.echo(json.dumps(shown["json"], ensure_ascii=False))
        return
    out = console()
    for item in shown["rich"]:
        out.print(item)
    out.print(f"[dim]{cls.name}: folded {folded:,} new events in {seconds:.2f} s; positions "
              f"{sum(proj.positions.values()):,} events"
              + (f"; GraphML written to {escape(str(graphml_file))}" if graphml_file else "")
              + "[/dim]")


# -- showing each view ---------------------------------------------------------------------


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in ("sku", "order", "user", "status",
                                                        "what", "reason", "team") else "right")
    for row in rows:
        table.add_row(*(escape(str(c)) if c is not None else "-" for c in row))
    return table


def _missing(what: str) -> None:
    fail(LookupError(f"{what} is not in the view"))


def _show_orders(v: Any, *, order: str | None, user: str | None, top: int, **_: Any) -> dict:
    if order is not None:
        o = v.order(order)
        if o is None:
            _missing(f"order {order!r}")
        lines = _table(f"order {order} ({o['status']}) of {o['user']}, total "
                       f"{yuan(o['total_cents'])}, paid {yuan(o['paid_cents'])}, refunded "
                       f"{yuan(o['refunded_cents'])}",
                       ["sku", "qty", "unit prices", "tiers", "reservation"],
                       [[ln["sku"], ln["qty"], ", ".join(map(yuan, ln["unit_prices"])),
                         ln["tiers"], ln["reservation"]]
                        for ln in o["lines"]])
        timeline = _table("timeline", ["status", "at (UTC+8)"],
                          [[status, event_time(at)] for status, at in o["timeline"]])
        return {"json": o, "rich": [lines, timeline]}
    orders = v.by_user(user) if user is not None else list(v.to_json()["orders"].values())
    rows = [[o["order_id"], o["user"], o["status"], len(o["lines"]), yuan(o["total_cents"]),
             yuan(o["paid_cents"]), yuan(o["refunded_cents"]), o["coupon"] or "",
             o["cancel_reason"] or ""]
            for o in orders[:top]]
    table = _table(f"{len(orders):,} orders" + (f" of {user}" if user else "")
                   + (f" (first {top})" if len(orders) > top else ""),
                   ["order", "user", "status", "lines", "total", "paid", "refunded", "coupon",
                    "reason"], rows)
    by_status: dict[str, int] = {}
    for o in orders:
        by_status[o["status"]] = by_status.get(o["status"], 0) + 1
    summary = _table("by status", ["status", "orders"], sorted(by_status.items()))
    return {"json": {"count": len(orders), "by_status": dict(sorted(by_status.items())),
                     "orders": orders[:top]}, "rich": [table, summary]}


def _show_referrals(v: Any, *, user: str | None, top: int, **_: Any) -> dict:
    g = v.graph()
    if user is not None:
        u = v.user(user, g)
        if u is None:
            _missing(f"user {user!r}")
        rows = [[k, json.dumps(val) if isinstance(val, (list, dict)) else val] for k, val in u.items()]
        return {"json": u, "rich": [_table(f"user {user}", ["what", "value"], rows)]}
    j = v.to_json()
    top_rows = v.top_inviters(top, g)
    summary = _table("referrals", ["what", "value"], [
        ["users seen", j["users_seen"]], ["invited", j["invited"]], ["inviters", j["inviters"]],
        ["K-factor (invited / users seen)", j["k_factor"]], ["max depth", j["max_depth"]],
        ["teams", j["teams"]["count"]],
        *[[f"teams {s}", n] for s, n in j["teams"]["by_status"].items()],
        *[[f"utm source {s}", n] for s, n in j["utm_sources"].items()]])
    inviters = _table(f"top {top} inviters", ["user", "invited", "reach", "depth"],
                      [[r["user"], r["invited"], r["reach"], r["depth"]] for r in top_rows])
    out = {k: j[k] for k in ("users_seen", "invited", "inviters", "k_factor", "max_depth",
                             "cycles", "utm_sources")}
    out["top_inviters"] = top_rows
    out["teams"] = {"count": j["teams"]["count"], "by_status": j["teams"]["by_status"]}
    return {"json": out, "rich": [summary, inviters]}


def _show_metrics(v: Any, *, skus: list[str] | None, top: int, **_: Any) -> dict:
    j = v.to_json()
    sku_rows = {s: r for s, r in j["skus"].items() if not skus or s in skus}
    busiest = sorted(j["per_second"], key=lambda r: (-r["reservations"], r["second"]))[:top]
    summary = _table("metrics", ["what", "value"], [
        *[[f"funnel: {k}", n] for k, n in j["funnel"].items()],
        ["payment success (paid / placed)", percent(j["payment_success_rate"])],
        ["coupon redemption (redeemed / received)", percent(j["coupon_redemption_rate"])],
        ["reservations released", j["reservations_released"]],
        ["reservations expired", j["reservations_expired"]],
        ["oversold units (must be 0)", j["oversold_units"]],
        ["SKUs sold out", j["skus_sold_out"]],
        ["peak second (reservations)", j["peak_second"]["reservations"] if j["peak_second"] else 0]])
    seconds = _table(f"busiest {len(busiest)} seconds", ["second (UTC+8)", "reservations",
                                                        "units", "orders placed", "payments"],
                     [[event_time(r["second"] * 1000, millis=False), r["reservations"],
                       r["units_reserved"], r["orders_placed"], r["payments"]] for r in busiest])
    sold = sorted(sku_rows.items(), key=lambda kv: (kv[1]["sold_out_at"] is None,
                                                    kv[1]["sold_out_after_s"] or 0, kv[0]))[:top]
    sellout = _table("sell-out", ["sku", "stocked", "available", "sold out at (UTC+8)",
                                  "oversold"],
                     [[s, r["stocked"], r["available"], event_time(r["sold_out_at"]),
                       r["oversold_units"]] for s, r in sold])
    out = {k: v_ for k, v_ in j.items() if k not in ("per_second", "skus")}
    out["busiest_seconds"] = busiest
    out["skus"] = sku_rows
    return {"json": out, "rich": [summary, seconds, sellout]}


def _show_stock(v: Any, *, skus: list[str] | None, top: int, **_: Any) -> dict:
    rows = {s: r for s, r in v.to_json()["skus"].items() if not skus or s in skus}
    if skus and not rows:
        _missing(f"SKU {', '.join(skus)}")
    shown = sorted(rows.items(), key=lambda kv: (kv[1]["available"], kv[0]))[:top]
    table = _table(f"stock of {len(rows):,} SKUs" + (f" (the {top} lowest)" if len(rows) > top else ""),
                   ["sku", "stocked", "available", "reserved", "sold"],
                   [[s, r["stocked"], r["available"], r["reserved"], r["sold"]] for s, r in shown])
    return {"json": {"skus": rows}, "rich": [table]}


_SHOW = {"orders": _show_orders, "referrals": _show_referrals, "metrics": _show_metrics,
         "stock": _show_stock}


# -- bench ---------------------------------------------------------------------------------


T0 = 1_762_790_400_000  # 2025-11-11T00:00:00+08:00


def write_reservation_log(store: Any, *, reservations: int, skus: int = 200, shards: int = 2,
                          seed: int = 11, batch: int = 1000, confirm: float = 0.3,
                          release: float = 0.1) -> int:
    """Write reservation traffic with the real SKU decider through ShardHost: SKUs stocked and
    on sale with two price tiers, `reservations` one-unit reservations, a share of them then
    confirmed or released. Returns the events written."""
    from saleday.actors.host import Request, ShardHost
    from saleday.actors.sku import (
        AddStock,
        ConfigureSale,
        ConfirmReservation,
        ReleaseReservation,
        ReserveStock,
        sku_decider,
    )
    from saleday.cluster.routing import ShardMap

    rng = random.Random(seed)
    clock = [T0]
    shard_map = ShardMap.uniform("sku", shards, max(shards, 64))
    hosts = [ShardHost(decider=sku_decider, store=store, stream=shard_map.stream(i),
                       clock=lambda: clock[0], snapshot_every=10**9) for i in range(shards)]
    names = [f"sku-{i:05d}" for i in range(skus)]
    stock = reservations // skus + 10
    queues: list[list[Request]] = [[] for _ in hosts]

    def send(force: bool = False) -> None:
        for host, q in zip(hosts, queues):
            if q and (force or len(q) >= batch):
                host.handle(q)
                q.clear()

    for name in names:
        queues[shard_map.shard_of(name)] += [
            Request(f"add/{name}", AddStock(sku=name, qty=stock, now=T0)),
            Request(f"sale/{name}", ConfigureSale(sku=name, tiers=((stock // 3, 4950), (0, 9900)),
                                                  per_user_limit=0, start=T0,
                                                  end=T0 + 86_400_000, now=T0))]
    send(force=True)
    for i in range(reservations):
        clock[0] = T0 + i // 50  # ~50k reservations per second of event time
        sku = names[rng.randrange(skus)]
        q = queues[shard_map.shard_of(sku)]
        user = f"u-{rng.randrange(10**6)}"
        q.append(Request(f"r/{i}", ReserveStock(reservation_id=f"r-{i}", user=user,
                                                sku=sku, qty=1, now=clock[0],
                                                deadline=T0 + 3_600_000)))
        roll = rng.random()
        if roll < confirm:
            q.append(Request(f"c/{i}", ConfirmReservation(reservation_id=f"r-{i}", sku=sku, now=clock[0])))
        elif roll < confirm + release:
            q.append(Request(f"x/{i}", ReleaseReservation(reservation_id=f"r-{i}", sku=sku, user=user,
                                                          reason="payment_failed", now=clock[0])))
        send()
    send(force=True)
    return sum(store.streams().values())


def bench_projections(
    reservations: Annotated[int, typer.Option(min=1000, help="Reservations in the log.")] = 300_000,
    skus: Annotated[int, typer.Option(min=1)] = 200,
    shards: Annotated[int, typer.Option(min=1, help="SKU streams.")] = 2,
    batch: Annotated[int, typer.Option(min=100, help="Events per projection batch (one commit).")] = 10_000,
    seed: Annotated[int, typer.Option()] = 11,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per figure (the median is shown).")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Fold+checkpoint rates of each view and of all views together, on a log of reservation
    traffic, against the raw read+decode rate of the same log."""
    result = run_bench(reservations=reservations, skus=skus, shards=shards, batch=batch, seed=seed,
                       repeat=repeat)
    if as_json:
        typer.echo(json.dumps(result))
        return
    p = result["params"]
    table = Table(title=f"projections over {p['events']:,} events ({p['reservations']:,} "
                        f"reservations, {p['skus']} SKUs, {p['shards']} streams), batches of {p['batch']:,}, "
                        f"median of {p['repeat']}")
    for col in ("what", "events/s", "of read+decode", "seconds"):
        table.add_column(col, justify="left" if col == "what" else "right")
    for name, row in result["rows"].items():
        table.add_row(escape(name), f"{row['events_per_s']:,}", f"{row['of_baseline']:.0%}",
                      f"{row['seconds']:.2f}")
    out = console()
    out.print(table)
    m = result["machine"]
    out.print(f"log written in {p['write_s']:.1f} s; machine: {m['cpu']}, {m['cores']} cores, "
              f"Python {m['python']}")


def run_bench(*, reservations: int, skus: int, shards: int, batch: int, seed: int,
              repeat: int = 3) -> dict[str, Any]:
    from saleday.events import Tail, open_store
    from saleday.projections.checkpoint import open_checkpoints
    from saleday.projections.runner import Projection
    from saleday.projections.views import VIEWS, all_views
    from saleday.simulator.results import machine_info as machine

    with tempfile.TemporaryDirectory(prefix="saleday-bench-proj-") as tmp:
        store = open_store(f"sqlite:///{tmp}/events.db?synchronous=normal")
        try:
            started = time.perf_counter()
            events = write_reservation_log(store, reservations=reservations, skus=skus,
                                           shards=shards, seed=seed)
            write_s = time.perf_counter() - started
            times: dict[str, list[float]] = {}

            def timed(name: str, fn: Any) -> None:
                t0 = time.perf_counter()
                n = fn()
                seconds = time.perf_counter() - t0
                if n != events:
                    raise RuntimeError(f"{name}: folded {n} events of {events}")
                times.setdefault(name, []).append(seconds)

            def read_all() -> int:
                tail, n = Tail(store, batch_size=batch), 0
                while got := tail.poll():
                    n += len(got)
                return n

            def fold(name: str, views: list[Any]) -> Any:
                def go() -> int:
                    cps = open_checkpoints(f"sqlite:///{tmp}/{name}-{next(fresh)}.db")
                    try:
                        return Projection(views, store, cps, batch_size=batch).catch_up()
                    finally:
                        cps.close()
                return go

            fresh = itertools.count()
            read_all()  # warm the page cache, as the projections will find it
            for _ in range(repeat):  # rounds interleave the figures, so noise hits all alike
                timed("read+decode (baseline)", read_all)
                for name, cls in VIEWS.items():
                    timed(name, fold(name, [cls()]))
                timed("all four views", fold("all", all_views()))
            rows = {}
            for name, runs in times.items():
                seconds = statistics.median(runs)
                rows[name] = {"events_per_s": round(events / seconds), "seconds": round(seconds, 3)}
        finally:
            store.close()
    base = rows["read+decode (baseline)"]["events_per_s"]
    for row in rows.values():
        row["of_baseline"] = round(row["events_per_s"] / base, 3)
    return {"params": {"reservations": reservations, "events": events, "skus": skus,
                       "shards": shards, "batch": batch, "seed": seed, "repeat": repeat,
                       "write_s": round(write_s, 2)},
            "rows": rows, "machine": machine()}
