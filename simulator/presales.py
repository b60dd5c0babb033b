"""Simulated presales with known demand, for backtesting the forecast (seeded, numpy).

Each presale has a deposit window of `days` days. Its popularity is lognormal; deposits
arrive each day as Poisson counts around popularity x a U-shaped profile (a rush when the
presale opens and another before the balance window, of random strengths per presale:
`1 + a * exp(-x / 0.12) + b * exp(-(1 - x) / 0.1)`, x the fraction of the window, a in
[1, 5], b in [2, 8]); each deposited unit is paid through with a per-presale conversion
drawn in [0.70, 0.97]. The actual demand is the units paid through.

`backtest` forecasts each presale of a test half on day `at x days` with every model of
`projections/forecast.py`, the pickup model learning from the other half (and Prophet,
when given, fitted on the days seen), and reports the stocking accuracy of each.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from saleday.projections.forecast import (
    Finished,
    History,
    accuracy,
    naive_linear,
    naive_to_date,
    pickup,
)


@dataclass(frozen=True, slots=True)
class SimulatedPresale:
    daily: tuple[int, ...]
    paid_units: int


def simulate(count: int, *, days: int = 20, seed: int = 11) -> list[SimulatedPresale]:
    """`count` presales with their daily deposits and their paid-through units."""
    rng = np.random.default_rng(seed)
    x = (np.arange(days) + 0.5) / days
    out = []
    for _ in range(count):
        popularity = rng.lognormal(mean=3.0, sigma=0.8)
        a, b = rng.uniform(1, 5), rng.uniform(2, 8)
        profile = 1 + a * np.exp(-x / 0.12) + b * np.exp(-(1 - x) / 0.1)
        daily = rng.poisson(popularity * profile)
        conversion = rng.uniform(0.70, 0.97)
        paid = int(rng.binomial(int(daily.sum()), conversion))
        out.append(SimulatedPresale(tuple(int(d) for d in daily), paid))
    return out


Model = Callable[[Sequence[int], int], float]


def backtest(presales: Sequence[SimulatedPresale], *, at: float = 0.6,
             extra: dict[str, Model] | None = None, train: int | None = None) -> dict[str, Any]:
    """Train on the first `train` presales (default half), forecast the rest on day
    `at x days`; the mean and median stocking accuracy of each model, and the mean
    absolute error in units."""
    half = len(presales) // 2 if train is None else train
    train, test = presales[:half], presales[half:]
    history = History.of([Finished(p.daily, p.paid_units) for p in train])
    models: dict[str, Model] = {
        "pickup": lambda daily, days: pickup(daily, days, history),
        "pickup_no_history": lambda daily, days: pickup(daily, days, None),
        "naive_linear": naive_linear,
        "naive_to_date": naive_to_date,
        **(extra or {}),
    }
    scores: dict[str, list[float]] = {name: [] for name in models}
    errors: dict[str, list[float]] = {name: [] for name in models}
    for p in test:
        days = len(p.daily)
        seen = p.daily[:max(1, round(at * days))]
        for name, model in models.items():
            f = model(seen, days)
            scores[name].append(accuracy(f, p.paid_units))
            errors[name].append(abs(f - p.paid_units))
    return {"presales": {"train": len(train), "test": len(test)}, "forecast_at": at,
            "models": {name: {"mean_accuracy": round(statistics.fmean(s), 4),
                              "median_accuracy": round(statistics.median(s), 4),
                              "mean_abs_error_units": round(statistics.fmean(errors[name]), 1)}
                       for name, s in scores.items() if s}}
