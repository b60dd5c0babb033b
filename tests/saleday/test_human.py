"""One clock and one currency wherever a person reads: event times on the sale's clock
(Beijing time), ratios as percentages, money in yuan; `--json` keeps the raw values."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from saleday.cli.human import event_time, percent, yuan
from saleday.cli.main import app
from tests.projections.audit_logs import real_sale

MIDNIGHT_11_11 = 1_794_326_400_000   # 2026-11-11 00:00 Beijing time


def test_event_times_read_on_the_sales_clock():
    """Midnight of 11.11 in Beijing is 00:00:00; 27 min 54.123 s later reads so."""
    assert event_time(MIDNIGHT_11_11) == "00:00:00.000"
    assert event_time(MIDNIGHT_11_11 + 1_674_123) == "00:27:54.123"
    assert event_time(MIDNIGHT_11_11 + 1_674_123, millis=False) == "00:27:54"
    assert event_time(None) == "-"


def test_ratios_are_percentages_and_cents_are_yuan():
    """0.994955 is 99.5%; 123456 cents are ¥1,234.56, negative amounts keep their sign."""
    assert percent(0.994955) == "99.5%" and percent(None) == "-"
    assert yuan(123_456) == "¥1,234.56" and yuan(5) == "¥0.05" and yuan(-250) == "-¥2.50"


def test_the_views_print_yuan_percent_and_the_clock_but_json_stays_raw(tmp_path):
    """`view orders` and `view metrics` print ¥ and %, with --json the cents and ratios."""
    url = f"sqlite:///{tmp_path}/events.db"
    real_sale(url, orders=30)
    runner = CliRunner()
    orders = runner.invoke(app, ["view", "orders", "--store", url])
    assert orders.exit_code == 0 and "¥" in orders.output and " cents" not in orders.output
    metrics = runner.invoke(app, ["view", "metrics", "--store", url])
    assert metrics.exit_code == 0 and "%" in metrics.output and "UTC+8" in metrics.output
    raw = json.loads(runner.invoke(app, ["view", "metrics", "--store", url, "--json"]).stdout)
    assert 0 <= raw["payment_success_rate"] <= 1
