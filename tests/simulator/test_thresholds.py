"""The seed's targets as k6-style thresholds: shown pass/fail on every run, and
`--fail-on` turns the chosen ones into exit status 99."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from saleday.cli.main import app
from saleday.simulator.results import LatencyMs
from saleday.simulator.thresholds import NAMES, evaluate, failed
from tests.simulator.test_report import a_report


def by_name(report):
    return {t.name: t for t in evaluate(report)}


def test_each_target_passes_or_fails_on_its_figure():
    """p99 < 500 ms, paid/placed > 99.5 %, redeemed/received > 40 %, each judged alone."""
    good = by_name(a_report(latency_ms=LatencyMs(p50=1, p95=2, p99=499.9, max=900),
                            orders={"placed": 1000, "paid": 996},
                            coupons={"received": 10, "redeemed": 5}))
    assert all(t.passed for t in good.values())
    bad = by_name(a_report(latency_ms=LatencyMs(p50=1, p95=2, p99=500.0, max=900),
                           orders={"placed": 1000, "paid": 995},
                           coupons={"received": 10, "redeemed": 4}))
    assert not any(t.passed for t in bad.values())
    assert bad["payment_success"].measured == 0.995


def test_a_figure_the_run_did_not_produce_is_not_measured_and_does_not_pass():
    """No latency, no placed order, no coupon: None, and `--fail-on` counts it as failed."""
    results = evaluate(a_report(latency_ms=None, orders={}, coupons={}))
    assert [t.passed for t in results] == [None, None, None]
    assert [t.name for t in failed(results, {"p99_ms"})] == ["p99_ms"]
    assert failed(results, set()) == []


def test_fail_on_exits_99_only_for_a_chosen_threshold_that_failed(tmp_path):
    """A small in-process run: thresholds in its JSON; exit 99 for a failed chosen one."""
    runner = CliRunner()
    args = ["simulate", "--engine", "inprocess", "--users", "300", "--no-charts", "--json"]
    first = runner.invoke(app, [*args, "--data", str(tmp_path / "a"), "--fail-on", "p99_ms"])
    assert first.exit_code == 0, first.output
    shown = {t["name"]: t for t in json.loads(first.stdout)["thresholds"]}
    assert set(shown) == set(NAMES) and shown["p99_ms"]["passed"] is True
    failing = [n for n, t in shown.items() if t["passed"] is not True]
    assert failing, "a 300-user run misses at least one of the seed's targets"
    second = runner.invoke(app, [*args, "--data", str(tmp_path / "b"), "--fail-on",
                                 f"p99_ms,{failing[0]}"])
    assert second.exit_code == 99
    unknown = runner.invoke(app, ["simulate", "--fail-on", "p95_ms"])
    assert unknown.exit_code == 2 and "not a threshold" in unknown.output
