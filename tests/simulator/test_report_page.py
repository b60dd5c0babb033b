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


def test_team_ups_get_a_chart_and_flash_tiers_a_mark(tmp_path):
    """A run with teams draws teams.png; a SKU with a flash tier gets its boundary drawn."""
    from saleday.simulator.charts import write_charts
    from saleday.simulator.results import TeamPoint

    teams = [TeamPoint(t_s=60.0 * i, formed=3 * i, completed=2 * i, expired=i // 3,
                       shares=6 * i) for i in range(10)]
    paths = write_charts(a_report(teams_timeline=teams, tier_marks={"sku-hot": [80]}), tmp_path)
    assert [p.name for p in paths] == ["traffic.png", "latency.png", "stock.png", "funnel.png",
                                       "teams.png"]


def test_the_tally_times_team_ups_from_the_log():
    """Teams formed, completed and expired, and each share, are timed from their events."""
    from saleday.events import Envelope
    from saleday.simulator.tally import SaleTally

    def env(kind, at, data):
        return Envelope("team-000", 1, kind, 1, at, "c", "", "", data, b"", b"")

    tally = SaleTally([])
    for e in (env("teams.team_created", 10, {"team": "t"}),
              env("teams.team_completed", 20, {"team": "t"}),
              env("teams.red_packet_split", 20, {"team": "t", "shares": [["a", 5], ["b", 5]]}),
              env("teams.team_expired_unfilled", 30, {"team": "u"})):
        tally.apply(e)
    assert tally.team_times == {"formed": [10], "completed": [20], "expired": [30],
                                "shares": [20, 20]}
