"""`saleday bench experiments` on a tiny budget: every case is measured over its seeded
sale days, and whole simulations report what their experiments view detected."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from saleday.cli.main import app


def test_bench_experiments_measures_both_cases_and_full_runs():
    """Coverage, rejections and SRM flags are shares of the runs; every user is exposed."""
    out = CliRunner().invoke(app, ["bench", "experiments", "--runs", "10", "--users", "300",
                                   "--full-runs", "1", "--full-users", "150", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    for case in ("effect", "no_effect"):
        r = result[case]
        assert 0 <= r["rel_ci_covers_truth"] <= 1 and 0 <= r["rejects_at_5pct"] <= 1
        assert r["median_exposed"] == 300
    assert result["full"]["runs"] == 1 and result["full"]["users"] == 150
