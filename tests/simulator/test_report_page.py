"""The HTML page as a reader wants it: a short title, the audit's per-rule table, the
coupons' received-versus-granted explained, and no empty tables."""

from __future__ import annotations

import re

from saleday.simulator.report import sections
from saleday.simulator.report_html import write_html
from tests.simulator.test_report import a_report

RULES = {"log.chain": {"checks": 10, "passed": 10, "failed": 0, "about": "intact chains"},
         "stock.oversell": {"checks": 4, "passed": 3, "failed": 1, "about": "never negative"}}


def page(tmp_path, **changes) -> str:
    return write_html(a_report(**changes), tmp_path, []).read_text(encoding="utf-8")


def test_the_title_names_the_run_not_the_store(tmp_path):
    """The page title has scenario, seed, engine and users, and no store URL."""
    text = page(tmp_path, store="sqlite:////tmp/run/events.db")
    (title,) = re.findall(r"<title>(.*?)</title>", text)
    assert "sqlite:" not in title and "midnight_spike" in title and "seed 11" in title


def test_the_audit_rules_are_a_table_as_the_cli_prints_them(tmp_path):
    """Each rule is a row with its passed and failed checks and what it means."""
    text = page(tmp_path, audit_rules=RULES)
    assert "<h2>audit rules</h2>" in text
    assert "<td>stock.oversell</td><td>3</td><td>1</td><td>never negative</td>" in text


def test_no_fault_table_when_none_were_injected():
    """A run without faults has no 'faults injected' table; one with faults lists them."""
    titles = [s.title for s in sections(a_report(faults_injected={}))]
    assert "faults injected" not in titles
    assert "faults injected" in [s.title for s in sections(a_report())]


def test_coupons_received_say_they_include_the_red_packet_shares():
    """Received coupons outnumber grants because shares count too: the row says so."""
    coupons = next(s for s in sections(a_report(coupons={"granted": 5, "received": 8}))
                   if s.title == "coupons")
    assert coupons.rows == [("granted (campaign claims)", "5"),
                            ("received (claims + red-packet shares)", "8")]


def test_the_per_command_table_reads_as_locusts():
    """A row per command type: count, refusals by type, failures, percentiles, rate."""
    from saleday.simulator.results import CommandStats

    stats = CommandStats(name="ReserveStock", count=1200, rejected=300,
                         refusals={"sold_out": 250, "limit_exceeded": 40, "sale_not_open": 10},
                         busy=5, unavailable=2, p50_ms=1.25, p90_ms=4.0, p99_ms=9.5,
                         max_ms=40.0, per_s=120.0)
    table = next(s for s in sections(a_report(by_command=[stats]))
                 if s.title == "commands by type")
    assert table.columns == ("command", "count", "refused", "refusals", "failed", "p50 ms",
                             "p90 ms", "p99 ms", "max ms", "per wall s")
    assert table.rows == [("ReserveStock", "1,200", "300", "sold_out 250, limit_exceeded 40, …",
                           "7", "1.2", "4.0", "9.5", "40.0", "120.0")]
