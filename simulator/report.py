"""A run, shown: a rich table in the terminal, PNG charts, and one self-contained HTML file.

The figures are laid out once (`sections`) and drawn twice: as rich tables by `render` and
as HTML tables by `write_html`, so the terminal and the file never disagree. Charts use
matplotlib's Agg backend (no display); a chart with no data to show is skipped, not faked.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import structlog
from rich.columns import Columns
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from saleday.simulator.results import RunReport, TimelinePoint

log = structlog.get_logger("saleday.simulator")

TOP_SELLOUTS = 5
TOP_STOCK_SERIES = 8
FIRST_FINDINGS = 5
SMOOTH_ABOVE = 300  # latency buckets drawn as they are up to this many, smoothed beyond
_ORDER_KEYS = ("started", "placed", "paid", "cancelled", "expired", "payment_failed", "refunded")
_COUPON_KEYS = ("granted", "locked", "redeemed", "lapsed")
_PACKET_KEYS = ("teams", "completed", "expired_unfilled", "shares", "cents_split")


@dataclass(frozen=True, slots=True)
class Section:
    """A titled table of already formatted cells; the first column names the row."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]


# ---- formatting -------------------------------------------------------------------------

def clock(t_s: float) -> str:
    """Simulated seconds after the window opened as mm:ss (h:mm:ss from an hour on)."""
    sign = "-" if t_s < 0 else ""
    whole = round(abs(t_s))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h}:{m:02d}:{s:02d}" if h else f"{sign}{m:02d}:{s:02d}"


def _num(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _cents(cents: int) -> str:
    return f"{cents / 100:,.2f}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _ordered(figures: dict[str, Any], known: Sequence[str]) -> list[str]:
    """Known keys in their usual order, then any others in the order given."""
    return [k for k in known if k in figures] + [k for k in figures if k not in known]


def _label(key: str) -> str:
    return key.replace("_", " ")


def _money_row(key: str, cents: int) -> tuple[str, str]:
    """`cents_split` -> ("split (¥)", "12,345.67"): money shown in yuan, kept in cents."""
    name = "_".join(part for part in key.split("_") if part != "cents") or "amount"
    return f"{_label(name)} (¥)", _cents(cents)


# ---- the figures, laid out once -----------------------------------------------------------

def headline(report: RunReport) -> str:
    where = f"target {report.target}" if report.target else f"store {report.store}"
    if report.target and report.store:
        where += f", store {report.store}"
    return (f"sale day {report.scenario}: seed {report.seed}, engine {report.engine}, "
            f"{report.users:,} users, {where}")


def audit_verdict(report: RunReport) -> bool:
    """PASS only when the audit ran clean and found no violation."""
    return report.audit_ok and report.invariants.violations == 0


def sections(report: RunReport) -> list[Section]:
    """Every table of the report, formatted, in reading order."""
    out = [_run_section(report)]
    if report.sellout_s:
        out.append(Section("sell-out (sale clock)", ("SKU", "sold out at"),
                           [(sku, clock(t)) for sku, t in
                            list(report.sellout_s.items())[:TOP_SELLOUTS]]))
    else:
        out.append(Section("sell-out (sale clock)", ("SKU", "sold out at"),
                           [("none sold out", "-")]))
    for title, figures, known in (("orders", report.orders, _ORDER_KEYS),
                                  ("coupons", report.coupons, _COUPON_KEYS),
                                  ("red packets", report.red_packets, _PACKET_KEYS)):
        if figures:
            out.append(Section(title, ("", "value"), [
                _money_row(k, v) if "cents" in k else (_label(k), f"{v:,}")
                for k, v in ((k, figures[k]) for k in _ordered(figures, known))]))
    if report.funnel:
        out.append(_funnel_section(report.funnel))
    if report.referral:
        ref = report.referral
        rows = [(_label(k), f"{v:.2f}" if k == "k_factor" else _num(_intish(v)))
                for k, v in ref.items()]
        out.append(Section("referral", ("", "value"), rows))
    if report.rejections:
        out.append(Section("rejections", ("type", "count"), [
            (k, f"{v:,}") for k, v in sorted(report.rejections.items(), key=lambda kv: -kv[1])]))
    out.append(Section("faults injected", ("fault", "count"),
                       [(k, f"{v:,}") for k, v in report.faults_injected.items()]
                       or [("none", "0")]))
    if report.views:
        out.append(Section("view digests", ("view", "digest"),
                           [(k, v[:16]) for k, v in report.views.items()]))
    return out


def _intish(value: float) -> float:
    return int(value) if float(value).is_integer() else value


def _run_section(r: RunReport) -> Section:
    unit = "requests" if r.engine == "http" else "commands"   # HTTP: timed at the client
    rows: list[tuple[str, ...]] = [
        (unit, f"{r.commands:,}"),
        ("events", f"{r.events:,}" if not r.audit_skipped else "not read"),
        ("wall time", f"{r.duration_s:,.1f} s"),
        ("simulated time", clock(r.sim_duration_s)),
        ("throughput", f"{r.throughput_per_s:,.0f} {unit}/s"),
    ]
    if r.latency_ms is None:
        rows.append(("latency", "not measured"))
    else:
        lat = r.latency_ms
        rows.append(("latency p50 / p95 / p99 / max",
                     f"{lat.p50:.2f} / {lat.p95:.2f} / {lat.p99:.2f} / {lat.max:.2f} ms"))
    if r.late_start_s is not None and r.late_start_s.max > 0:
        late = r.late_start_s
        rows.append(("visits started late p50 / p99 / max",
                     f"{late.p50:.2f} / {late.p99:.2f} / {late.max:.2f} s"))
    rows += [("Busy refusals", f"{r.busy:,}"), ("unavailable", f"{r.unavailable:,}"),
             ("rejected by the rules", f"{sum(r.rejections.values()):,}")]
    return Section(f"run ({r.started_at})", ("", "value"), rows)


def _funnel_section(funnel: dict[str, int]) -> Section:
    rows = []
    stages = list(funnel.items())
    first = stages[0][1]
    prev: int | None = None
    for stage, count in stages:
        rows.append((stage, f"{count:,}", "-" if prev is None else _pct(count, prev),
                     _pct(count, first)))
        prev = count
    return Section("funnel", ("stage", "count", "from previous", "of first"), rows)


def findings_rows(report: RunReport, limit: int | None = FIRST_FINDINGS) -> list[tuple[str, str, str]]:
    chosen = report.invariants.findings if limit is None else report.invariants.findings[:limit]
    return [(f.rule, "" if f.stream is None else
             f.stream + ("" if f.version is None else f"@{f.version}"), f.message)
            for f in chosen]


# ---- terminal -----------------------------------------------------------------------------

def render(report: RunReport, console: Console) -> None:
    """Print the report as rich tables: figures, funnel, audit verdict, where files went."""
    console.print(f"[bold]{escape(headline(report))}[/bold]")
    tables = []
    for section in sections(report):
        table = Table(title=escape(section.title), title_justify="left")
        for i, col in enumerate(section.columns):
            table.add_column(escape(col), justify="left" if i == 0 else "right", no_wrap=True)
        for row in section.rows:
            table.add_row(*(escape(cell) for cell in row))
        tables.append(table)
    console.print(Columns(tables, padding=(0, 3)))
    if report.audit_skipped:
        console.print(f"audit: [bold yellow]not run[/bold yellow] ({escape(report.audit_skipped)})")
    elif audit_verdict(report):
        console.print("audit: [bold green]PASS[/bold green] (0 violations)")
    else:
        n = report.invariants.violations
        console.print(f"audit: [bold red]FAIL[/bold red] ({n:,} violation{'s' * (n != 1)}"
                      + ("" if report.audit_ok or n else ", audit did not pass") + ")")
        for rule, where, message in findings_rows(report):
            console.print(f"  [red]{escape(rule)}[/red] {escape(where)} {escape(message)}")
        more = len(report.invariants.findings) - FIRST_FINDINGS
        if more > 0:
            console.print(f"  ... and {more:,} more findings")
    console.print(f"log digest: {escape(report.log_digest or '-')}")
    if report.charts:
        console.print("charts: " + escape(", ".join(report.charts)))
    if report.html:
        console.print(f"html: {escape(report.html)}")
    m = report.machine
    if m:
        console.print(escape(f"machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
                             f"Python {m.get('python', '?')}"))


# ---- charts -------------------------------------------------------------------------------

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
        ("stock", _draw_stock), ("funnel", _draw_funnel))
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
    """An x axis of simulated time with ticks on round clock steps (1 s ... 1 day)."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    lo, hi = ax.get_xlim()
    span = max(hi - lo, 1.0)
    step = next((s for s in _TICK_STEPS_S if span / s <= 10), math.ceil(span / 864000) * 86400)
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: clock(v)))
    ax.set_xlabel("simulated time after the window opened")
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


def _widths(points: Sequence[TimelinePoint], sim_duration_s: float) -> list[float]:
    """Each bucket's length: the gap to the next start (the last one repeats the previous)."""
    ts = [p.t_s for p in points]
    widths = [b - a for a, b in pairwise(ts)]
    last = widths[-1] if widths else (sim_duration_s - ts[0] if sim_duration_s > ts[0] else 1.0)
    return [w if w > 0 else 1.0 for w in widths + [last]]


def _draw_traffic(r: RunReport, ax: Any) -> bool:
    points = r.timeline
    if not points:
        return False
    widths = _widths(points, r.sim_duration_s)
    xs = [p.t_s for p in points] + [points[-1].t_s + widths[-1]]

    def rate(values: list[int]) -> list[float]:
        per_s = [v / w for v, w in zip(values, widths, strict=True)]
        return per_s + per_s[-1:]

    ax.fill_between(xs, rate([p.served for p in points]), step="post", alpha=0.45,
                    color="#2ca02c", label="served", linewidth=0)
    ax.step(xs, rate([p.offered for p in points]), where="post", label="offered", color="#1f77b4",
            linewidth=1.2)
    refused = [p.busy + p.errors for p in points]
    if any(refused):
        ax.fill_between(xs, rate(refused), step="post", alpha=0.35, color="#d62728",
                        label="busy + errors")
    ax.set_ylabel("commands per simulated second")
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
    p99 = [nan if p.p99_ms is None else p.p99_ms for p in points]
    if len(points) <= SMOOTH_ABOVE:
        style = {"marker": "o", "markersize": 3} if len(points) < 50 else {}
        ax.plot(xs, p50, label="p50", color="#1f77b4", **style)
        ax.plot(xs, p99, label="p99", color="#ff7f0e", **style)
    else:  # every bucket faint, a moving average on top
        k = len(points) // 100
        for values, name, color in ((p50, "p50", "#1f77b4"), (p99, "p99", "#ff7f0e")):
            ax.plot(xs, values, color=color, alpha=0.25, linewidth=0.6)
            ax.plot(xs, _moving_mean(values, k), color=color,
                    label=f"{name} (mean of {k} buckets)")
    if r.latency_ms is not None:
        ax.axhline(r.latency_ms.p99, color="#ff7f0e", linestyle="--", linewidth=0.8,
                   label=f"p99 of the run ({r.latency_ms.p99:.1f} ms)")
    shown = [v for v in p50 + p99 if not math.isnan(v) and v > 0]
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
    end = max(r.sim_duration_s, max(pts[-1].t_s for _, pts in series))
    for sku, pts in series:
        xs = [p.t_s for p in pts] + [end]
        ys = [p.remaining for p in pts] + [pts[-1].remaining]
        (line,) = ax.step(xs, ys, where="post", label=_text(sku))
        if sku in r.sellout_s:
            ax.plot([r.sellout_s[sku]], [0], marker="x", markersize=8, color=line.get_color())
    ax.set_ylabel("units remaining")
    top = max(p.remaining for _, pts in series for p in pts)
    ax.set_ylim(-0.03 * max(top, 1), max(top, 1) * 1.05)
    _thousands(ax)
    ax.set_title(_text(f"{r.scenario}: stock of the hottest SKUs (x: sold out)"))
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
    labels = [f"{counts[0]:,}"] + [f"{c:,}\n{_pct(c, p)} of {names[i]}"
                                   for i, (p, c) in enumerate(pairwise(counts))]
    ax.bar_label(bars, labels=labels, padding=2, fontsize="small")
    ax.set_xticks(range(len(stages)), names)
    ax.set_ylabel("users or commands")
    ax.set_ylim(0, max(max(counts), 1) * 1.25)
    _thousands(ax)
    ax.set_title(_text(f"{r.scenario}: funnel (conversion from the previous stage)"))
    return True


# ---- HTML ---------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:72rem;
color:#222;padding:0 1rem}h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.4rem 0 1rem}th,td{padding:.25rem .7rem;
border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:0 2.5rem}.pass{color:#fff;background:#2a8a3e;
padding:.1rem .5rem;border-radius:3px}.fail{color:#fff;background:#c62828;padding:.1rem .5rem;
border-radius:3px}figure{margin:1rem 0}img{max-width:100%}code{font-size:.9em}
"""


def _h(value: object) -> str:
    return html.escape(str(value), quote=True)


def _html_table(section: Section) -> str:
    head = "".join(f"<th>{_h(c)}</th>" for c in section.columns)
    body = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in row) + "</tr>"
                   for row in section.rows)
    return (f"<div><h2>{_h(section.title)}</h2><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def write_html(report: RunReport, out_dir: str | Path, charts: Sequence[str | Path]) -> Path:
    """Write `report.html`: the tables, the charts embedded as base64 PNGs, findings, faults."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{_h(headline(report))}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_h(headline(report))}</h1>"]
    ok = audit_verdict(report)
    n = report.invariants.violations
    if report.audit_skipped:
        parts.append(f"<p>audit: not run ({_h(report.audit_skipped)})</p>")
    else:
        parts.append(f'<p>audit: <span class="{"pass" if ok else "fail"}">'
                     f'{"PASS" if ok else "FAIL"}</span> {n:,} violation{"s" * (n != 1)}; '
                     f"log digest <code>{_h(report.log_digest or '-')}</code></p>")
    parts.append('<div class="grid">' + "".join(_html_table(s) for s in sections(report))
                 + "</div>")
    for chart in charts:
        path = Path(chart)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f'<figure><img alt="{_h(path.stem)} chart" '
                     f'src="data:image/png;base64,{data}"><figcaption>{_h(path.stem)}'
                     f"</figcaption></figure>")
    if report.invariants.findings:
        parts.append(_html_table(Section(f"findings ({len(report.invariants.findings):,})",
                                         ("rule", "where", "message"),
                                         [tuple(row) for row in findings_rows(report, None)])))
    m = report.machine
    if m:
        parts.append(f"<p>machine: {_h(m.get('cpu', '?'))}, {_h(m.get('cores', '?'))} cores, "
                     f"Python {_h(m.get('python', '?'))}, {_h(m.get('platform', ''))}; "
                     f"data dir <code>{_h(report.data_dir)}</code></p>")
    parts.append("</body></html>\n")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    log.info("html_written", path=str(path), charts=len(charts))
    return path


def write_outputs(report: RunReport, out_dir: str | Path) -> RunReport:
    """Charts and HTML for a report; the returned copy names where they were written."""
    charts = write_charts(report, out_dir)
    page = write_html(report, out_dir, charts)
    return report.model_copy(update={"charts": [str(p) for p in charts], "html": str(page)})
