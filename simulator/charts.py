"""A run's charts: traffic, latency, stock, funnel and team-ups, drawn as PNG files.

matplotlib's Agg backend (no display), imported only when charts are drawn; a chart with
no data to show is skipped, not faked. Times on the x axis read as the report's clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import structlog

from saleday.simulator.progress import sale_clock
from saleday.simulator.report import pct
from saleday.simulator.results import RunReport, TimelinePoint

log = structlog.get_logger("saleday.simulator")

TOP_STOCK_SERIES = 8
SMOOTH_ABOVE = 300  # latency buckets drawn as they are up to this many, smoothed beyond


def write_charts(report: RunReport, out_dir: str | Path) -> list[Path]:
    """Draw the traffic, latency, stock and funnel charts as PNGs; return the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    drawers: tuple[tuple[str, Callable[[RunReport, Any], bool]], ...] = (
        ("traffic", _draw_traffic), ("latency", _draw_latency),
        ("stock", _draw_stock), ("funnel", _draw_funnel), ("teams", _draw_teams))
    for name, draw in drawers:
        fig = Figure(figsize=(9, 4.2), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        if not draw(report, ax):
            log.info("chart_skipped", chart=name, reason="no data")
            continue
        path = out / f"{name}.png"
        fig.savefig(path, format="png")
        written.append(path)
    log.info("charts_written", charts=len(written), out_dir=str(out))
    return written


def _text(s: str) -> str:
    """A label matplotlib shows as written (no mathtext, not hidden from the legend)."""
    s = s.replace("$", r"\$")
    return "\u200b" + s if s.startswith("_") else s


_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                 21600, 43200, 86400)


def _clock_axis(ax: Any) -> None:
    """An x axis of the sale clock (00:00:00 = midnight, 23:55:00 before it) with ticks on
    round clock steps (1 s ... 1 day)."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    lo, hi = ax.get_xlim()
    span = max(hi - lo, 1.0)
    step = next((s for s in _TICK_STEPS_S if span / s <= 10), math.ceil(span / 864000) * 86400)
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: sale_clock(v)))
    ax.set_xlabel("sale clock (simulated; the sale opens at 00:00:00)")
    ax.grid(True, alpha=0.3)


def _thousands(ax: Any) -> None:
    """Thousands separators on the y axis, once its ticks are whole numbers."""
    from matplotlib.ticker import FuncFormatter

    ticks = ax.get_yticks()
    if len(ticks) > 1 and min(abs(b - a) for a, b in pairwise(ticks)) >= 1:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


def _legend(ax: Any) -> None:
    """The legend beside the plot, where it hides no data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def _end_s(r: RunReport) -> float:
    """When the run ended on the sale clock."""
    return r.window_start_s + r.sim_duration_s


def _widths(points: Sequence[TimelinePoint], end_s: float) -> list[float]:
    """Each bucket's length: the gap to the next start (the last one repeats the previous)."""
    ts = [p.t_s for p in points]
    widths = [b - a for a, b in pairwise(ts)]
    last = widths[-1] if widths else (end_s - ts[0] if end_s > ts[0] else 1.0)
    return [w if w > 0 else 1.0 for w in widths + [last]]


def _draw_traffic(r: RunReport, ax: Any) -> bool:
    points = r.timeline
    if not points:
        return False
    widths = _widths(points, _end_s(r))
    xs = [p.t_s for p in points] + [points[-1].t_s + widths[-1]]

    def rate(values: list[int]) -> list[float]:
        per_s = [v / w for v, w in zip(values, widths, strict=True)]
        return per_s + per_s[-1:]

    ax.fill_between(xs, rate([p.served for p in points]), step="post", alpha=0.45,
                    color="#2ca02c", label="served", linewidth=0)
    ax.step(xs, rate([p.offered for p in points]), where="post", label="offered", color="#1f77b4",
            linewidth=1.2)
    for values, name, color in (([p.rejected for p in points], "refused by the rules", "#9467bd"),
                                ([p.busy for p in points], "Busy (shed)", "#d62728"),
                                ([p.errors for p in points], "unavailable", "#8c564b")):
        if any(values):
            ax.step(xs, rate(values), where="post", color=color, linewidth=1.0, label=name)
    if xs[0] < 0 < xs[-1]:
        ax.axvline(0, color="#555", linestyle="--", linewidth=0.9, label="the sale opens")
    ax.set_ylabel("commands per simulated second\n(the tables: per wall-clock second)")
    ax.set_ylim(bottom=0)
    _thousands(ax)
    ax.set_title(_text(f"{r.scenario}: offered load against served throughput"))
    _clock_axis(ax)
    _legend(ax)
    return True


def _draw_latency(r: RunReport, ax: Any) -> bool:
    points = [p for p in r.timeline if p.p50_ms is not None or p.p99_ms is not None]
    if not points:
        return False
    xs = [p.t_s for p in points]
    nan = math.nan
    p50 = [nan if p.p50_ms is None else p.p50_ms for p in points]
    p95 = [nan if p.p95_ms is None else p.p95_ms for p in points]
    p99 = [nan if p.p99_ms is None else p.p99_ms for p in points]
    top = [nan if p.max_ms is None else p.max_ms for p in points]
    series = [(values, name, color) for values, name, color in (
        (p50, "p50", "#1f77b4"), (p95, "p95", "#2ca02c"), (p99, "p99", "#ff7f0e"),
        (top, "max", "#7f7f7f")) if not all(math.isnan(v) for v in values)]
    if len(points) <= SMOOTH_ABOVE:
        style = {"marker": "o", "markersize": 3} if len(points) < 50 else {}
        for values, name, color in series:
            ax.plot(xs, values, label=name, color=color, **style)
    else:  # every bucket faint, a moving average on top
        k = len(points) // 100
        for values, name, color in series:
            ax.plot(xs, values, color=color, alpha=0.25, linewidth=0.6)
            ax.plot(xs, _moving_mean(values, k), color=color,
                    label=f"{name} (mean of {k} buckets)")
    if r.latency_ms is not None:
        ax.axhline(r.latency_ms.p99, color="#ff7f0e", linestyle="--", linewidth=0.8,
                   label=f"p99 of the run ({r.latency_ms.p99:.1f} ms)")
    shown = [v for values, _, _ in series for v in values if not math.isnan(v) and v > 0]
    if shown and max(shown) / min(shown) > 50:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_ylabel("latency (ms)")
    ax.set_title(_text(f"{r.scenario}: command latency"))
    _clock_axis(ax)
    _legend(ax)
    return True


def _moving_mean(values: list[float], k: int) -> list[float]:
    """Centered mean over `k` buckets, ignoring gaps (NaN where a window has no value)."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    known = ~np.isnan(v)
    sums = np.concatenate(([0.0], np.cumsum(np.where(known, v, 0.0))))
    counts = np.concatenate(([0], np.cumsum(known)))
    lo = np.clip(np.arange(len(v)) - k // 2, 0, len(v))
    hi = np.clip(lo + k, 0, len(v))
    n = counts[hi] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return list(np.where(n > 0, (sums[hi] - sums[lo]) / n, np.nan))


def _draw_stock(r: RunReport, ax: Any) -> bool:
    series = [(sku, pts) for sku, pts in r.stock_depletion.items() if pts][:TOP_STOCK_SERIES]
    if not series:
        return False
    end = max(_end_s(r), max(pts[-1].t_s for _, pts in series))
    for sku, pts in series:
        xs = [p.t_s for p in pts] + [end]
        ys = [p.remaining for p in pts] + [pts[-1].remaining]
        (line,) = ax.step(xs, ys, where="post", label=_text(sku))
        if sku in r.sellout_s:
            ax.plot([r.sellout_s[sku]], [0], marker="x", markersize=8, color=line.get_color())
        for left in r.tier_marks.get(sku, ()):
            ax.axhline(left, color=line.get_color(), linestyle=":", linewidth=0.9)
    if any(r.tier_marks.get(sku) for sku, _ in series):
        ax.plot([], [], color="#555", linestyle=":", label="price tier ends")
    ax.set_ylabel("units remaining")
    top = max(p.remaining for _, pts in series for p in pts)
    ax.set_ylim(-0.03 * max(top, 1), max(top, 1) * 1.05)
    _thousands(ax)
    ax.set_title(_text(f"{r.scenario}: stock of the hottest SKUs (x: sold out; dotted: a "
                       f"flash tier ends)"))
    _clock_axis(ax)
    _legend(ax)
    return True


def _draw_teams(r: RunReport, ax: Any) -> bool:
    points = r.teams_timeline
    if not points:
        return False
    xs = [p.t_s for p in points]
    for key, name, color in (("formed", "teams formed", "#1f77b4"),
                             ("completed", "completed", "#2ca02c"),
                             ("expired", "expired unfilled", "#d62728"),
                             ("shares", "red-packet shares paid", "#ff7f0e")):
        ax.step(xs, [getattr(p, key) for p in points], where="post", label=name, color=color)
    ax.set_ylabel("so far (cumulative)")
    ax.set_ylim(bottom=0)
    _thousands(ax)
    ax.set_title(_text(f"{r.scenario}: team-ups over time"))
    _clock_axis(ax)
    _legend(ax)
    return True


def _draw_funnel(r: RunReport, ax: Any) -> bool:
    if not r.funnel:
        return False
    stages = list(r.funnel.items())
    names = [_text(s) for s, _ in stages]
    counts = [c for _, c in stages]
    bars = ax.bar(range(len(stages)), counts, color="#1f77b4")
    labels = [f"{counts[0]:,}"] + [f"{c:,}\n{pct(c, p)} of {names[i]}"
                                   for i, (p, c) in enumerate(pairwise(counts))]
    ax.bar_label(bars, labels=labels, padding=2, fontsize="small")
    ax.set_xticks(range(len(stages)), names)
    positive = [c for c in counts if c > 0]
    if positive and max(positive) / min(positive) > 20:
        # views outnumber paid orders ~100 to 1: a log scale keeps carts, orders and paid visible
        ax.set_yscale("log")
        ax.set_ylim(max(min(positive) / 3, 0.5), max(positive) * 8)
        ax.set_ylabel("users or commands (log scale)")
    else:
        ax.set_ylim(0, max(max(counts), 1) * 1.25)
        ax.set_ylabel("users or commands")
        _thousands(ax)
    ax.set_title(_text(f"{r.scenario}: funnel (conversion from the previous stage)"))
    return True
