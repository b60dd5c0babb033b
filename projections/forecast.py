"""Presale demand forecasts from deposits over time: the built-in model and the naive ones.

A presale's deposit window has `days` days; `daily[i]` is the units deposited on day i.
Forecasting on day t (the first t days seen), the quantity wanted is the final demand: the
units whose balance will be paid. Models (all pure arithmetic):

- `naive_to_date`: the units deposited so far (stock what you have seen);
- `naive_linear`: the units so far scaled to the whole window, `to_date x days / t`;
- `pickup` (the built-in model, the booking-curve "pickup" method of revenue management):
  from finished presales (`History`), the mean share of its final deposits a presale has
  reached after each fraction of its window, `S(t / days)`, and the mean conversion
  (balance-paid units / deposited units); the forecast is
  `to_date / S(t / days) x conversion`. With no history it falls back to the recent rate:
  `to_date + mean(last 3 days) x (days - t)`, times a conversion of 0.9.

The stocking recommendation is `ceil(forecast x (1 + margin))` (margin 5 % by default).
Accuracy, as the seed quotes it: `1 - |forecast - actual| / actual` (floored at 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_CONVERSION = 0.9
RECENT_DAYS = 3
CURVE_POINTS = 20
"""The share curve is kept at this many fractions of the window (1/20 .. 20/20)."""


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished presale: its daily deposited units and the units paid through."""

    daily: tuple[int, ...]
    paid_units: int


@dataclass(frozen=True, slots=True)
class History:
    """What finished presales teach: the mean share curve and the mean conversion."""

    curve: tuple[float, ...]
    """`curve[k]` = mean share of final deposits reached after `(k + 1) / CURVE_POINTS` of
    the window."""
    conversion: float
    presales: int

    @classmethod
    def of(cls, finished: Sequence[Finished]) -> History | None:
        usable = [f for f in finished if sum(f.daily) > 0 and f.daily]
        if not usable:
            return None
        curve = [sum(_share(f.daily, (k + 1) / CURVE_POINTS) for f in usable) / len(usable)
                 for k in range(CURVE_POINTS)]
        conversion = sum(f.paid_units for f in usable) / sum(sum(f.daily) for f in usable)
        return cls(tuple(curve), conversion, len(usable))

    def share_at(self, fraction: float) -> float:
        """The mean share reached at `fraction` of the window (linear between points)."""
        x = max(0.0, min(1.0, fraction)) * CURVE_POINTS
        k = int(x)
        lo = 0.0 if k == 0 else self.curve[k - 1]
        hi = self.curve[min(k, CURVE_POINTS - 1)]
        return lo + (hi - lo) * (x - k)


def _share(daily: Sequence[int], fraction: float) -> float:
    """The share of `daily`'s total deposited after `fraction` of its days (linear within a day)."""
    x = fraction * len(daily)
    whole = int(x)
    seen = sum(daily[:whole]) + (daily[whole] * (x - whole) if whole < len(daily) else 0)
    return seen / sum(daily)


def naive_to_date(daily: Sequence[int], days: int) -> float:
    return float(sum(daily))


def naive_linear(daily: Sequence[int], days: int) -> float:
    return sum(daily) * days / len(daily) if daily else 0.0


def pickup(daily: Sequence[int], days: int, history: History | None) -> float:
    """The built-in model (see the module docstring)."""
    to_date = sum(daily)
    t = len(daily)
    if history is not None:
        share = history.share_at(t / days)
        if share > 0:
            return to_date / share * history.conversion
    recent = daily[-RECENT_DAYS:]
    rate = sum(recent) / len(recent) if recent else 0.0
    return (to_date + rate * (days - t)) * DEFAULT_CONVERSION


def recommend(forecast: float, margin: float = 0.05) -> int:
    """Units to stock for a forecast demand."""
    return math.ceil(forecast * (1 + margin) - 1e-9)


def accuracy(forecast: float, actual: int) -> float:
    """`1 - |forecast - actual| / actual`, floored at 0 (the seed's stocking accuracy)."""
    if actual <= 0:
        return 1.0 if forecast <= 0 else 0.0
    return max(0.0, 1 - abs(forecast - actual) / actual)
