"""`saleday forecast` (presale demand from the log) and `saleday bench forecast` (backtest).

    saleday forecast --data ./saleday-data [--at 2025-11-05T00:00:00] [--json]
    saleday bench forecast --presales 200 --seed 11 [--prophet 40] [--json]

`forecast` reads the presale streams (`presales.*`): a presale whose balance window has
closed is history (its daily deposits and its paid-through units); every presale still
taking deposits at `--at` (default now) gets the built-in pickup forecast of its final
demand learnt from that history (projections/forecast.py), next to the naive ones, and a
stocking recommendation. `--model prophet` uses Prophet when `saleday[forecast]` is
installed. `bench forecast` backtests the models on simulated presales with known demand
(simulator/presales.py) and reports each one's stocking accuracy, measured in the same run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from saleday.cli.common import console, fail, opened

DAY_MS = 86_400_000


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("forecast")(forecast)
    bench_app.command("forecast")(bench_forecast)


class ProphetMissing(RuntimeError):
    """`--model prophet` without the optional extra installed."""


def prophet_model(conversion: float) -> Any:
    """A model `(daily, days) -> forecast` fitting Prophet on the days seen (daily units,
    no seasonality), summing its forecast of the days left, times `conversion`."""
    try:
        import logging

        import pandas as pd
        from prophet import Prophet
    except ImportError as exc:
        raise ProphetMissing("Prophet is not installed: pip install 'saleday[forecast]'") from exc
    logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
    logging.getLogger("prophet").setLevel(logging.WARNING)

    def model(daily: Sequence[int], days: int) -> float:
        seen = len(daily)
        if seen < 2:
            return sum(daily) * days * conversion
        frame = pd.DataFrame({"ds": pd.date_range("2000-01-01", periods=seen), "y": list(daily)})
        fitted = Prophet(yearly_seasonality=False, weekly_seasonality=False,
                         daily_seasonality=False).fit(frame)
        future = fitted.predict(fitted.make_future_dataframe(periods=days - seen))
        ahead = future["yhat"].iloc[seen:].clip(lower=0).sum()
        return (sum(daily) + float(ahead)) * conversion

    return model


def _presales(store: Any) -> dict[str, dict[str, Any]]:
    """Per presale SKU from the log: terms, deposits (paid_at, qty), paid-through units."""
    from saleday.events import Tail

    out: dict[str, dict[str, Any]] = {}
    tail = Tail(store, include=lambda stream: stream.startswith("presale-"))
    while batch := tail.poll():
        for env in batch:
            d = env.data
            if env.type == "presales.presale_opened":
                out[d["sku"]] = {"terms": d, "deposits": [], "paid_units": 0, "forfeited": 0}
            elif env.type == "presales.deposit_paid":
                out[d["sku"]]["deposits"].append((d["paid_at"], d["qty"]))
            elif env.type == "presales.balance_paid":
                out[d["sku"]]["paid_units"] += d["qty"]
            elif env.type == "presales.deposit_forfeited":
                out[d["sku"]]["forfeited"] += d["qty"]
    return out


def _daily(p: dict[str, Any], until: int) -> tuple[list[int], int]:
    """The units deposited per day of the window up to `until`, and the window's days."""
    t = p["terms"]
    days = max(1, math.ceil((t["balance_from"] - t["deposits_from"]) / DAY_MS))
    seen = max(0, min(days, math.ceil((min(until, t["balance_from"]) - t["deposits_from"])
                                      / DAY_MS)))
    daily = [0] * seen
    for at, qty in p["deposits"]:
        day = (at - t["deposits_from"]) // DAY_MS
        if 0 <= day < seen and at < until:
            daily[day] += qty
    return daily, days


def forecast(
    data: Annotated[Path, typer.Option("--data", help="Data dir (its events.db).")] = Path(
        "./saleday-data"),
    store: Annotated[str | None, typer.Option("--store", help="Event store URL.")] = None,
    at: Annotated[str | None, typer.Option(
        "--at", help="Forecast as of this ISO 8601 date-time (UTC unless an offset; "
                     "default now).")] = None,
    model: Annotated[str, typer.Option("--model", help="pickup (built in) or prophet "
                                       "(needs saleday[forecast]).")] = "pickup",
    margin: Annotated[float, typer.Option("--margin", min=0, max=1,
                                          help="Safety margin of the recommendation.")] = 0.05,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Forecast each open presale's final demand from its deposits, with a stock to hold."""
    from saleday.actors.host import wall_clock_ms
    from saleday.flows.history import parse_ordered_at
    from saleday.projections.forecast import (
        Finished,
        History,
        naive_linear,
        naive_to_date,
        pickup,
        recommend,
    )

    if model not in ("pickup", "prophet"):
        raise typer.BadParameter("use pickup or prophet", param_hint="--model")
    now = wall_clock_ms() if at is None else parse_ordered_at(at)
    if now is None:
        raise typer.BadParameter(f"{at!r} is not an ISO 8601 date-time", param_hint="--at")
    url = store or f"sqlite:///{data / 'events.db'}"
    if url.startswith("sqlite:///") and not Path(url[10:].split("?")[0]).exists():
        fail(FileNotFoundError(f"no event log at {url[10:]}: pass --data or --store"))
    with opened(url, read_only=True) as s:
        presales = _presales(s)
    finished, open_ = [], {}
    for sku, p in presales.items():
        if now >= p["terms"]["balance_until"]:
            daily, _ = _daily(p, p["terms"]["balance_from"])
            finished.append(Finished(tuple(daily), p["paid_units"]))
        elif now > p["terms"]["deposits_from"]:
            open_[sku] = p
    history = History.of(finished)
    fit = None
    if model == "prophet":
        try:
            fit = prophet_model(history.conversion if history else 0.9)
        except ProphetMissing as exc:
            fail(exc)
    rows = []
    for sku in sorted(open_):
        daily, days = _daily(open_[sku], now)
        expected = fit(daily, days) if fit is not None else pickup(daily, days, history)
        rows.append({"sku": sku, "days_seen": len(daily), "days": days,
                     "deposited_units": sum(daily), "model": model,
                     "expected_demand": round(expected, 1),
                     "recommended_stock": recommend(expected, margin),
                     "naive_to_date": naive_to_date(daily, days),
                     "naive_linear": round(naive_linear(daily, days), 1),
                     "units_held_for_deposits": open_[sku]["terms"]["units"]})
    result = {"at": now, "history_presales": history.presales if history else 0,
              "conversion": round(history.conversion, 4) if history else None,
              "presales": rows}
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"presale demand forecast ({model}; history: "
                        f"{result['history_presales']} finished presales)")
    for col in ("sku", "days seen", "deposited", "expected demand", "stock", "naive to date",
                "naive linear"):
        table.add_column(col, justify="left" if col == "sku" else "right")
    for r in rows:
        table.add_row(escape(r["sku"]), f"{r['days_seen']}/{r['days']}",
                      f"{r['deposited_units']:,}", f"{r['expected_demand']:,.1f}",
                      f"{r['recommended_stock']:,}", f"{r['naive_to_date']:,.0f}",
                      f"{r['naive_linear']:,.1f}")
    console().print(table)


def bench_forecast(
    presales: Annotated[int, typer.Option(
        "--presales", min=4, max=100_000,
        help="Simulated presales (half train, half test).")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated presales.")] = 11,
    at: Annotated[float, typer.Option("--at", min=0.05, max=1.0,
                                      help="Forecast after this fraction of the window.")] = 0.6,
    prophet: Annotated[int, typer.Option(
        "--prophet", min=0, help="Also backtest Prophet on this many of the test presales "
                                 "(needs saleday[forecast]; ~0.3 s a fit).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Backtest the forecast models on simulated presales with known demand."""
    from saleday.projections.forecast import Finished, History
    from saleday.simulator.presales import backtest, simulate

    sims = simulate(presales, seed=seed)
    result = backtest(sims, at=at)
    if prophet:
        half = len(sims) // 2
        history = History.of([Finished(p.daily, p.paid_units) for p in sims[:half]])
        try:
            fit = prophet_model(history.conversion if history else 0.9)
        except ProphetMissing as exc:
            fail(exc)
        subset = sims[:half] + sims[half:half + prophet]
        result["prophet"] = backtest(subset, at=at, extra={"prophet": fit}, train=half)
    result["seed"] = seed
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"stocking accuracy 1 - |forecast - actual| / actual, forecast after "
                        f"{at:.0%} of the deposit window, {result['presales']['test']} test "
                        f"presales (seed {seed})")
    for col in ("model", "mean accuracy", "median accuracy", "mean abs error (units)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    blocks = [("", result["models"])]
    if "prophet" in result:
        blocks.append((f" (on {prophet})", result["prophet"]["models"]))
    for suffix, models in blocks:
        for name, m in models.items():
            table.add_row(name + suffix, f"{m['mean_accuracy']:.1%}", f"{m['median_accuracy']:.1%}",
                          f"{m['mean_abs_error_units']:,.1f}")
    console().print(table)
