"""A run as files: one self-contained HTML page (the report's tables, the charts embedded
as base64 PNGs, the findings, the machine) and `write_outputs`, which writes charts and page.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import structlog

from saleday.simulator.charts import write_charts
from saleday.simulator.report import (
    INTERRUPTED_NOTE,
    Section,
    audit_rules_section,
    audit_verdict,
    findings_rows,
    headline,
    sections,
    title,
)
from saleday.simulator.results import RunReport

log = structlog.get_logger("saleday.simulator")


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
             f"<title>{_h(title(report))}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_h(title(report))}</h1>", f"<p>{_h(headline(report))}</p>"]
    if report.interrupted:
        parts.append(f'<p class="fail">{_h(INTERRUPTED_NOTE)}</p>')
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
    if report.audit_rules:
        parts.append(_html_table(audit_rules_section(report)))
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
