"""`saleday view windows NAME` and `saleday view experiments`: how `saleday view` finds and
shows the event-time window views and the experiments view.

    saleday view windows browse-5m                   # busiest users' 5-minute windows
    saleday view windows trail-30m --user u0000042   # one user's sliding trail
    saleday view experiments --json                  # lift, intervals, p-values, SRM
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from saleday.cli.common import fail


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
