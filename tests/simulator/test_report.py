"""The run report: the RunReport model, the rich table, PNG charts, HTML, and the progress line."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from rich.console import Console

from saleday.simulator.charts import write_charts
from saleday.simulator.progress import RunProgress, sale_clock
from saleday.simulator.report import clock, render
from saleday.simulator.report_html import write_html, write_outputs
from saleday.simulator.results import (
    Finding,
    Invariants,
    LatencyMs,
    RunReport,
    StockPoint,
    TimelinePoint,
    machine_info,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REQUIRED_JSON_KEYS = {"commands", "events", "duration_s", "throughput_per_s", "latency_ms",
                      "invariants", "faults_injected", "log_digest"}


def a_report(**changes: object) -> RunReport:
    """A small but complete run: a midnight spike over ten simulated minutes."""
    timeline = [TimelinePoint(t_s=60.0 * i, offered=6000 - 500 * i, served=min(6000 - 500 * i, 4000),
                              busy=max(0, 2000 - 500 * i), errors=i % 2,
                              p50_ms=1.5 + i / 10, p99_ms=12.0 + i) for i in range(10)]
    stock = {
        "sku-hot": [StockPoint(t_s=0, remaining=100), StockPoint(t_s=90, remaining=40),
                    StockPoint(t_s=205, remaining=0)],
        "sku-warm": [StockPoint(t_s=0, remaining=100), StockPoint(t_s=300, remaining=55)],
    }
    base = dict(  # noqa: C408  (keywords read as the fields they fill)
        scenario="midnight_spike", seed=11, engine="inprocess", users=20_000,
        store="sqlite:///tmp/run/events.db", data_dir="/tmp/run",
        started_at="2025-11-11T00:00:00+08:00", commands=12_345, events=23_456,
        duration_s=4.2, sim_duration_s=600.0, throughput_per_s=2939.3,
        latency_ms=LatencyMs(p50=1.75, p95=8.5, p99=17.25, max=48.0), busy=1_234, unavailable=7,
        rejections={"SoldOut": 3_210, "LimitReached": 45}, timeline=timeline,
        sellout_s={"sku-hot": 205.0, "sku-cold": 4000.0}, stock_depletion=stock,
        orders={"started": 900, "placed": 800, "paid": 700, "cancelled": 60, "expired": 40,
                "payment_failed": 25, "refunded": 3},
        coupons={"granted": 500, "locked": 300, "redeemed": 250, "lapsed": 20},
        red_packets={"teams": 80, "completed": 64, "expired_unfilled": 16, "shares": 192,
                     "cents_split": 123_456},
        funnel={"visits": 20_000, "views": 15_000, "carts": 6_000, "orders": 900, "paid": 700},
        referral={"invited": 1_500.0, "inviters": 600.0, "k_factor": 0.4321},
        invariants=Invariants(violations=0, findings=[]), audit_ok=True,
        views={"orders": "a" * 64}, faults_injected={"crash_shard": 2, "drop_reply": 5},
        log_digest="d" * 64, machine=machine_info())
    base.update(changes)
    return RunReport(**base)


def rendered(report: RunReport, *, styles: bool = False) -> str:
    console = Console(record=True, width=160, file=io.StringIO(), color_system="truecolor")
    render(report, console)
    return console.export_text(styles=styles)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---- RunReport --------------------------------------------------------------------------

def test_json_dict_has_the_required_keys_and_is_json():
    """Given a run, its JSON object carries the figures tools read, and survives a round trip."""
    report = a_report()
    data = json.loads(json.dumps(report.to_json_dict()))
    assert REQUIRED_JSON_KEYS <= data.keys()
    assert data["latency_ms"] == {"p50": 1.75, "p95": 8.5, "p99": 17.25, "max": 48.0}
    assert data["invariants"] == {"violations": 0, "findings": []}
    assert list(data["funnel"]) == ["visits", "views", "carts", "orders", "paid"]
    assert RunReport.from_json_dict(data) == report


def test_report_refuses_nonsense():
    """A negative count, an unknown engine, a misspelt field or a NaN is a validation error."""
    with pytest.raises(ValidationError, match="commands"):
        a_report(commands=-1)
    with pytest.raises(ValidationError, match="engine"):
        a_report(engine="threads")
    with pytest.raises(ValidationError, match="comands"):
        a_report(comands=3)
    with pytest.raises(ValidationError, match="throughput_per_s"):
        a_report(throughput_per_s=float("nan"))  # would make the --json output invalid JSON


def test_machine_info_names_the_cpu_cores_and_python():
    """machine_info says what the numbers were measured on."""
    info = machine_info()
    assert {"cpu", "cores", "python", "platform"} <= info.keys()
    assert info["cpu"] and info["cores"] >= 1


# ---- terminal ---------------------------------------------------------------------------

def test_clock_reads_minutes_and_seconds_of_simulated_time():
    """Simulated seconds read as mm:ss, with hours from the first hour on."""
    assert clock(205) == "03:25"
    assert clock(0.4) == "00:00"
    assert clock(3725) == "1:02:05"
    assert clock(-5) == "-00:05"


def test_render_shows_the_figures_people_look_for():
    """Given a passing run, the table shows volume, latency, Busy, sell-out, orders, funnel and PASS."""
    text = rendered(a_report())
    for figure in ("12,345", "23,456", "2,939 commands/s", "1.75 / 8.50 / 17.25 / 48.00 ms",
                   "1,234", "sku-hot", "03:25", "1:06:40", "700", "payment failed",
                   "redeemed", "1,234.56", "75.0%", "40.0%", "3.5%", "0.43", "crash_shard",
                   "SoldOut", "audit: PASS", "d" * 64, "cores"):
        assert figure in text, figure
    assert text.index("sku-hot") < text.index("sku-cold")  # hottest first
    assert "\x1b[1;32mPASS" in rendered(a_report(), styles=True)  # in bold green


def test_render_of_a_failing_audit_lists_the_first_findings_literally():
    """Given violations, the verdict is FAIL with the first findings, markup shown as text."""
    findings = [Finding(rule="no_oversell", stream="sku-000", version=v,
                        message=f"[red]sku-{v}[/red] sold 101 of 100") for v in range(8)]
    text = rendered(a_report(audit_ok=False, invariants=Invariants(violations=8, findings=findings)))
    assert "audit: FAIL (8 violations)" in text
    assert "\x1b[1;31mFAIL" in rendered(a_report(audit_ok=False), styles=True)  # in bold red
    assert "sku-000@4 [red]sku-4[/red] sold 101 of 100" in text
    assert "sku-000@5" not in text
    assert "and 3 more findings" in text


def test_render_of_an_empty_run_says_what_is_missing():
    """A run with no latency, no sell-out and no faults still renders, saying so."""
    text = rendered(a_report(latency_ms=None, timeline=[], sellout_s={}, faults_injected={},
                             funnel={}, audit_ok=False))
    assert "not measured" in text
    assert "none sold out" in text
    assert "audit: FAIL (0 violations, audit did not pass)" in text


# ---- charts -----------------------------------------------------------------------------

def test_charts_are_valid_pngs(tmp_path):
    """Given a full run, four PNG charts are written: traffic, latency, stock and funnel."""
    paths = write_charts(a_report(), tmp_path / "charts")
    assert [p.name for p in paths] == ["traffic.png", "latency.png", "stock.png", "funnel.png"]
    for path in paths:
        assert png_size(path) == (900, 420)
        assert path.stat().st_size > 10_000  # drawn, not blank


def test_charts_skip_what_has_no_data(tmp_path):
    """A run without latency skips the latency chart; an empty run draws nothing."""
    no_latency = [p.model_copy(update={"p50_ms": None, "p99_ms": None})
                  for p in a_report().timeline]
    paths = write_charts(a_report(timeline=no_latency, latency_ms=None), tmp_path / "a")
    assert [p.name for p in paths] == ["traffic.png", "stock.png", "funnel.png"]
    empty = a_report(timeline=[], stock_depletion={}, funnel={}, latency_ms=None)
    assert write_charts(empty, tmp_path / "b") == []


def test_charts_of_a_one_bucket_run(tmp_path):
    """A run of a single bucket, with odd SKU names, still draws every chart."""
    one = [TimelinePoint(t_s=0, offered=10, served=9, busy=1, errors=0, p50_ms=1.0, p99_ms=2.0)]
    report = a_report(timeline=one, sim_duration_s=0.0, funnel={"visits": 0, "paid": 0},
                      stock_depletion={"_$x$_": [StockPoint(t_s=0, remaining=0)]})
    assert len(write_charts(report, tmp_path)) == 4


def test_charts_of_a_day_long_run_take_a_couple_of_seconds(tmp_path):
    """A day of one-second buckets and ten SKUs of 2,000 steps charts in a couple of seconds."""
    day = [TimelinePoint(t_s=float(i), offered=100 + i % 50, served=100, busy=i % 50 // 10,
                         errors=0, p50_ms=1.0 + i % 7 / 10, p99_ms=None if i % 13 == 0 else 9.0)
           for i in range(86_400)]
    stock = {f"sku-{k}": [StockPoint(t_s=i * (k + 1.0), remaining=2000 - i) for i in range(2001)]
             for k in range(10)}
    report = a_report(timeline=day, stock_depletion=stock, sim_duration_s=86_400.0)
    write_charts(a_report(), tmp_path / "warm")  # matplotlib's import is not the run's cost
    started = time.process_time()   # this process's CPU, not the wall: other load can't fail it
    paths = write_charts(report, tmp_path / "day")
    elapsed = time.process_time() - started
    print(f"charts for 86,400 buckets: {elapsed:.2f} s")
    assert len(paths) == 4
    assert elapsed < 6.0  # ~1.5 s on the 2-core machine; bound loose for a shared box


# ---- HTML -------------------------------------------------------------------------------

def test_html_is_self_contained_and_escapes_every_string(tmp_path):
    """Given hostile names, the HTML escapes them and embeds each chart as a base64 PNG."""
    report = a_report(scenario="<script>alert(1)</script>",
                      sellout_s={"sku-<b>&": 10.0}, audit_ok=False,
                      invariants=Invariants(violations=1, findings=[Finding(
                          rule="tiers", stream="sku-001", version=3,
                          message='unit 7 sold at 4900 "not" <4500>')]),
                      faults_injected={"drop_reply<i>": 3})
    charts = write_charts(report, tmp_path)
    page = write_html(report, tmp_path, charts)
    text = page.read_text(encoding="utf-8")
    assert page.name == "report.html"
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "sku-&lt;b&gt;&amp;" in text and "drop_reply&lt;i&gt;" in text
    assert "unit 7 sold at 4900 &quot;not&quot; &lt;4500&gt;" in text
    assert 'class="fail">FAIL' in text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert [base64.b64decode(i) for i in images] == [p.read_bytes() for p in charts]
    assert not re.search(r'(src|href)="(https?:)?//', text)


def test_write_outputs_names_the_files_it_wrote(tmp_path):
    """write_outputs returns the report with its chart paths and HTML path filled in."""
    report = write_outputs(a_report(), tmp_path)
    assert len(report.charts) == 4 and all(Path(c).is_file() for c in report.charts)
    assert report.html is not None and "audit: <span class=\"pass\">PASS" in Path(
        report.html).read_text()
    assert report.html in rendered(report)


# ---- progress ---------------------------------------------------------------------------

def terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=150, color_system=None)


def test_sale_clock_reads_the_wall_clock_of_the_sale():
    """The sale clock shows HH:MM:SS after an opening at midnight, or at any time of day."""
    assert sale_clock(0) == "00:00:00"
    assert sale_clock(3661.9) == "01:01:01"
    assert sale_clock(-10) == "23:59:50"
    assert sale_clock(90, opens_at_s=20 * 3600) == "20:01:30"


def test_progress_shows_clock_commands_rate_errors_and_busy():
    """Forced onto a terminal, the progress line shows where the run is."""
    console = terminal()
    with RunProgress(planned=10_000, console=console, min_interval_s=0) as progress:
        progress.update(sim_t_s=100, commands=2_500, errors=3, busy=1_200)
    out = console.file.getvalue()
    assert "00:01:40" in out and "2,500/10,000 commands" in out and " 25%" in out
    assert "errors 3" in out and "busy 1,200" in out and "cmd/s" in out


def test_progress_shows_the_last_update_even_if_throttled():
    """An update swallowed by the throttle is still shown when the run ends."""
    console = terminal()
    with RunProgress(planned=None, console=console, min_interval_s=60) as progress:
        progress.update(sim_t_s=1, commands=1)
        progress.update(sim_t_s=7_200, commands=99_999)
    assert "02:00:00" in console.file.getvalue() and "99,999 commands" in console.file.getvalue()


def test_progress_without_a_plan_fills_the_bar_by_the_sale_clock():
    """With no planned count, the bar follows simulated time to the end of the sale."""
    console = terminal()
    with RunProgress(planned=None, sim_end_s=3600, console=console, min_interval_s=0) as progress:
        progress.update(sim_t_s=1800, commands=42_000)
    out = console.file.getvalue()
    assert "00:30:00" in out and "42,000 commands" in out and " 50%" in out


def test_progress_is_silent_when_disabled_or_not_on_a_terminal():
    """Disabled, or on a console that is not a terminal (unless forced), nothing is written."""
    disabled = terminal()
    with RunProgress(planned=10, console=disabled, enabled=False) as progress:
        progress.update(1, 5)
    piped = Console(file=io.StringIO(), force_terminal=False)
    with RunProgress(planned=10, console=piped) as progress:
        progress.update(1, 5)
    assert disabled.file.getvalue() == "" and piped.file.getvalue() == ""
    assert not progress.enabled


def test_progress_updates_cost_almost_nothing():
    """A run calling update 200,000 times spends well under a second in it."""
    console = terminal()
    with RunProgress(planned=200_000, console=console) as progress:
        started = time.process_time()   # CPU of this process: a loaded machine can't fail it
        for i in range(200_000):
            progress.update(i / 10, i, 0, 0)
        elapsed = time.process_time() - started
    assert elapsed < 1.0
