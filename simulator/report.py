"""A run's figures, laid out once as tables, and shown in the terminal.

The figures are laid out once (`sections`) and drawn twice: as rich tables by `render`
here and as HTML tables by `simulator.report_html.write_html`, so the terminal and the
file never disagree. The charts are `simulator.charts`; the formatting helpers (`clock`,
`pct`) serve all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.columns import Columns
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from saleday.simulator.results import RunReport

TOP_SELLOUTS = 5
FIRST_FINDINGS = 5
_ORDER_KEYS = ("started", "placed", "paid", "cancelled", "expired", "payment_failed", "refunded")
_COUPON_KEYS = ("granted", "received", "locked", "redeemed", "lapsed")
_LABELS = {"granted": "granted (campaign claims)",
           "received": "received (claims + red-packet shares)"}
"""Row names that need more than the key: coupons received count the red-packet shares
too, which is why they outnumber the campaign's grants."""
_PACKET_KEYS = ("teams", "completed", "expired_unfilled", "shares", "cents_split")


@dataclass(frozen=True, slots=True)
class Section:
    """A titled table of already formatted cells; the first column names the row."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]


# ---- formatting -------------------------------------------------------------------------

def clock(t_s: float) -> str:
    """Seconds of the sale clock (0 = midnight) as mm:ss (h:mm:ss from an hour on), with a
    minus sign before midnight."""
    sign = "-" if t_s < 0 else ""
    whole = round(abs(t_s))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h}:{m:02d}:{s:02d}" if h else f"{sign}{m:02d}:{s:02d}"


def _num(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _cents(cents: int) -> str:
    return f"{cents / 100:,.2f}"


def pct(part: float, whole: float) -> str:
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


INTERRUPTED_NOTE = ("INTERRUPTED: a partial sale day. The traffic stopped at the signal; "
                    "the visits in flight finished and their holds ran out before the audit.")


def title(report: RunReport) -> str:
    """A short name of the run for a page title (no store URL)."""
    return f"saleday {report.scenario}: seed {report.seed}, {report.engine}, {report.users:,} users"


def audit_rules_section(report: RunReport) -> Section:
    """The audit's rules as `saleday audit` prints them: checks passed and failed."""
    return Section("audit rules", ("rule", "passed", "failed", "what it means"), [
        (rule, f"{row.get('passed', 0):,}", f"{row.get('failed', 0):,}", str(row.get("about", "")))
        for rule, row in report.audit_rules.items()])


def audit_verdict(report: RunReport) -> bool:
    """PASS only when the audit ran clean and found no violation."""
    return report.audit_ok and report.invariants.violations == 0


DRIVER_SATURATED = ("the driver is saturated: the throughput is its own and the latencies "
                    "include its queueing; run it with less traffic or on more cores")


def driver_saturated(report: RunReport) -> bool:
    """Whether the driver's own load limited the run: its event loop ran late by 5 ms or
    more at the median (each turn of the loop then takes some 10 ms of its own work, which
    every reply waits out before its visit sees it; an idle driver's loop is well under a
    millisecond late), or its process took 0.8 of a core or more (its loop is one thread,
    and the rest of the core goes to Ray's threads and the machine's other processes)."""
    lag = report.driver_loop_lag_ms
    return (lag is not None and lag.p50 >= 5.0) or (report.driver_cpu or 0.0) >= 0.8


def sections(report: RunReport) -> list[Section]:
    """Every table of the report, formatted, in reading order."""
    out = [_run_section(report)]
    if report.by_command:
        out.append(_by_command_section(report))
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
                _money_row(k, v) if "cents" in k else (_LABELS.get(k, _label(k)), f"{v:,}")
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
    if report.faults_injected:
        out.append(Section("faults injected", ("fault", "count"),
                           [(k, f"{v:,}") for k, v in report.faults_injected.items()]))
    if report.thresholds:
        out.append(_thresholds_section(report))
    if report.fault_mix is not None:   # --faults swarm: which classes the seed turned on
        out.append(Section(f"fault mix ({report.fault_mix['spec']})", ("class", "drawn"), [
            (k, ", ".join(f"{n}={v}" for n, v in params.items()))
            for k, params in report.fault_mix["classes"].items()]))
    from saleday.simulator.report_experiments import outcome_sections

    out += outcome_sections(report)
    from saleday.simulator.report_members import member_sections

    out += member_sections(report)
    if report.views:
        out.append(Section("view digests", ("view", "digest"),
                           [(k, v[:16]) for k, v in report.views.items()]))
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _by_command_section(report: RunReport) -> Section:
    unit = "route" if report.engine == "http" else "command"
    rows = []
    for c in report.by_command:
        refusals = ", ".join(f"{code} {n:,}" for code, n in list(c.refusals.items())[:2])
        if len(c.refusals) > 2:
            refusals += ", …"
        rows.append((c.name, f"{c.count:,}", f"{c.rejected:,}", refusals or "-",
                     f"{c.busy + c.unavailable:,}", _ms(c.p50_ms), _ms(c.p90_ms), _ms(c.p99_ms),
                     _ms(c.max_ms), f"{c.per_s:,.1f}"))
    return Section(f"{unit}s by type", (unit, "count", "refused", "refusals", "failed",
                                        "p50 ms", "p90 ms", "p99 ms", "max ms", "per wall s"),
                   rows)


def _thresholds_section(report: RunReport) -> Section:
    rows = []
    for t in report.thresholds:
        if t.measured is None:
            measured = "-"
        elif t.unit == "ms":
            measured = f"{t.measured:,.1f} ms"
        else:   # three decimals: 99.496% must not read as the 99.5% it misses
            measured = f"{t.measured * 100:.3f}%"
        verdict = {True: "pass", False: "FAIL", None: "not measured"}[t.passed]
        rows.append((t.what, t.target, measured, verdict))
    return Section("thresholds (the seed's targets)", ("", "target", "measured", "result"), rows)


def _intish(value: float) -> float:
    return int(value) if float(value).is_integer() else value


def _run_section(r: RunReport) -> Section:
    unit = "requests" if r.engine == "http" else "commands"   # HTTP: timed at the client
    rows: list[tuple[str, ...]] = [
        (unit, f"{r.commands:,}"),
        ("events", f"{r.events:,}" if not r.audit_skipped else "not read"),
        ("wall time", f"{r.duration_s:,.1f} s"),
        ("simulated time", clock(r.sim_duration_s)),
        ("throughput (per wall-clock s)", f"{r.throughput_per_s:,.0f} {unit}/s"),
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
    if r.driver_cpu is not None and r.driver_loop_lag_ms is not None:
        lag = r.driver_loop_lag_ms
        rows.append(("the driver: CPU, event-loop lag p50 / p99",
                     f"{r.driver_cpu:.2f} cores, {lag.p50:.1f} / {lag.p99:.1f} ms"
                     + (f" [{DRIVER_SATURATED}]" if driver_saturated(r) else "")))
    rows += [("Busy refusals", f"{r.busy:,}"), ("unavailable", f"{r.unavailable:,}"),
             ("rejected by the rules", f"{sum(r.rejections.values()):,}")]
    return Section(f"run ({r.started_at})", ("", "value"), rows)


def _funnel_section(funnel: dict[str, int]) -> Section:
    rows = []
    stages = list(funnel.items())
    first = stages[0][1]
    prev: int | None = None
    for stage, count in stages:
        rows.append((stage, f"{count:,}", "-" if prev is None else pct(count, prev),
                     pct(count, first)))
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
    if report.interrupted:
        console.print(f"[bold yellow]{escape(INTERRUPTED_NOTE)}[/bold yellow]")
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
    if report.files:
        console.print("data: " + escape(", ".join(report.files)))
    m = report.machine
    if m:
        console.print(escape(f"machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
                             f"Python {m.get('python', '?')}"))
