"""`saleday view windows NAME` and `saleday view experiments`: how `saleday view` finds and
shows the event-time window views and the experiments view.

    saleday view windows browse-5m                   # busiest users' 5-minute windows
    saleday view windows trail-30m --user u0000042   # one user's sliding trail
    saleday view experiments --json                  # lift, intervals, p-values, SRM
    saleday bench windows                            # behaviour's cost, window fold rates
    saleday bench experiments --runs 200             # interval coverage, false positives
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from saleday.cli.common import console, fail


def outcome_view_class(name: str, window: str | None) -> type:
    """The view class `saleday view NAME [WINDOW]` folds (NAME in `SHOW`)."""
    from saleday.projections.views.experiments import ExperimentsView
    from saleday.projections.views.windows import WINDOW_VIEWS, UnknownWindowView, window_view_class

    if name == "experiments":
        return ExperimentsView
    if window is None:
        raise typer.BadParameter(f"name the window view: {', '.join(WINDOW_VIEWS)}",
                                 param_hint="WINDOW")
    try:
        return window_view_class(window)
    except UnknownWindowView as exc:
        raise typer.BadParameter(str(exc), param_hint="WINDOW") from None


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    from rich.markup import escape

    table = Table(title=escape(title))
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(escape(str(c)) if c is not None else "-" for c in row))
    return table


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return ", ".join(str(x[1]) if isinstance(x, list) else str(x) for x in v)
    return v


def show_windows(v: Any, *, user: str | None, top: int, **_: Any) -> dict:
    totals = v.totals()
    names = [a.name for a in v.spec.aggs]
    if user is not None:
        keys = [user]
        if user not in v.t["win"]:
            fail(LookupError(f"key {user!r} is not in the {v.name} view"))
    else:  # the keys with the most windows, then by name
        keys = sorted(v.t["win"], key=lambda k: (-len(v.t["win"][k]), k))[:top]
    shown = {k: v.windows(k) for k in keys}
    rows = [[k, w["start"], w["end"], *(_cell(w[n]) for n in names)]
            for k in keys for w in shown[k][:top]]
    summary = _table(f"{v.name}: {v.spec.kind} windows by {v.spec.key}", ["what", "value"],
                     [[k, totals[k]] for k in ("events", "keys", "windows", "late", "dropped",
                                                "watermark")])
    table = _table(f"windows of {len(keys)} keys" + (" (first windows)" if user is None else ""),
                   [v.spec.key, "start", "end", *names], rows)
    return {"json": {"name": v.name, "spec": v.spec.to_json(), **totals, "windows": shown},
            "rich": [summary, table]}


def show_experiments(v: Any, **_: Any) -> dict:
    import time

    results = v.to_json(now_ms=int(time.time() * 1000))["experiments"]
    tables = []
    for e in results:
        rows = []
        for r in e["variants"]:
            ci = r.get("rel_ci")
            rows.append([r["variant"], r["weight"], r["exposures"], r["conversions"], r["rate"],
                         r.get("abs_lift"), r.get("rel_lift"),
                         None if not ci else json.dumps(ci), r.get("p_value"),
                         r.get("verdict") or ("control" if r["variant"] == e["control"]
                                              else "not readable yet")])
        srm = e["srm"]
        title = (f"{e['experiment']} ({e['conversion']}): {e['status']}, "
                 f"{'readable' if e['readable'] else 'NOT readable yet'}; SRM p = {srm['p_value']}"
                 + (" MISMATCH: assignment broken" if srm["mismatch"] else ""))
        tables.append(_table(title, ["variant", "weight", "exposed", "converted", "rate",
                                     "abs lift", "rel lift", "rel 95 % CI", "p", "verdict"], rows))
    if not results:
        tables.append("no experiment is defined in this log")
    return {"json": {"experiments": results}, "rich": tables}


SHOW = {"windows": show_windows, "experiments": show_experiments}


# -- benches ---------------------------------------------------------------------------------


def bench_windows(
    users: Annotated[int, typer.Option(min=100, help="Users of the countdown-ab sale day.")] = 3000,
    seed: Annotated[int, typer.Option(min=0)] = 11,
    repeat: Annotated[int, typer.Option(min=1, help="Folds per view (the median is shown).")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What recording behaviour costs per order, and how fast the window views fold
    against the metrics view on the same log."""
    from saleday.bench.outcomes import windows

    result = windows(users=users, seed=seed, repeat=repeat)
    if as_json:
        typer.echo(json.dumps(result))
        return
    out = console()
    runs = result["runs"]
    cols = ["events", "orders_placed", "events_per_order", "bytes_per_order", "wall_ms_per_order"]
    out.print(_table(f"the same sale day ({users:,} users, seed {seed}) with and without "
                     "recorded behaviour", ["run", *cols],
                     [[name, *(r[c] for c in cols)] for name, r in runs.items()]))
    out.print(_table("extra per placed order", ["what", "value"],
                     [[k, v] for k, v in result["extra_per_order"].items()]))
    p = result["params"]
    out.print(_table(f"fold+checkpoint of {p['events']:,} events, median of {repeat}",
                     ["view", "events/s", "of metrics", "seconds"],
                     [[n, f"{r['events_per_s']:,}", r["of_metrics"], r["seconds"]]
                      for n, r in result["folding"].items()]))
    m = result["machine"]
    out.print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}")


def bench_experiments(
    runs: Annotated[int, typer.Option(min=10, help="Seeded sale days per case.")] = 200,
    users: Annotated[int, typer.Option(min=100)] = 20_000,
    full_runs: Annotated[int, typer.Option(min=0, help="Also whole in-process simulations.")] = 0,
    full_users: Annotated[int, typer.Option(min=100)] = 3000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Calibrate the A/B statistics: interval coverage of the true lift, rejections with
    and without an effect, SRM flags, over many seeded sale days."""
    from saleday.bench.outcomes import experiments

    result = experiments(runs=runs, users=users, full_runs=full_runs, full_users=full_users)
    if as_json:
        typer.echo(json.dumps(result))
        return
    rows = [[case, r["rel_ci_covers_truth"], r["rejects_at_5pct"], r["srm_flags"],
             r.get("median_rel_lift", "-")]
            for case, r in (("true lift +17.3 %", result["effect"]),
                            ("no effect (A/A)", result["no_effect"]),
                            *((("full simulations", result["full"]),) if "full" in result else ()))]
    out = console()
    out.print(_table(f"{runs} seeded sale days of {users:,} users per case",
                     ["case", "95 % CI covers truth", "p < 0.05", "SRM flagged", "median lift"], rows))


def register(bench_app: typer.Typer) -> None:
    bench_app.command("windows")(bench_windows)
    bench_app.command("experiments")(bench_experiments)
