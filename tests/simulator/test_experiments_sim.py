"""A simulated sale with the countdown experiment and recorded browsing: exposures for
every visitor, a balanced assignment, the report's tables, rebuilt views equal to the
report's, and `saleday view windows|experiments` over its log."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from saleday.cli.main import app
from saleday.events import open_store
from saleday.projections.checkpoint import open_checkpoints
from saleday.projections.runner import Projection
from saleday.projections.views.experiments import ExperimentsView
from saleday.projections.views.windows import Browse5m
from saleday.simulator.report import sections
from saleday.simulator.run import RunOptions, simulate
from saleday.simulator.scenario import ScenarioError, preset

SMALL = preset("countdown-ab").with_overrides(users=200, compression=20.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = tmp_path_factory.mktemp("countdown")
    report = simulate(RunOptions(scenario=SMALL, engine="inprocess", data_dir=data,
                                 progress=False, charts=False))
    return data, report


def test_every_visitor_is_exposed_once_and_the_split_is_balanced(run):
    """Each user who visited is exposed once, the SRM check passes, the audit holds."""
    _, report = run
    assert report.audit_ok
    [exp] = report.experiments
    exposed = sum(v["exposures"] for v in exp["variants"])
    assert 170 <= exposed <= 200
    assert not exp["srm"]["mismatch"] and exp["status"] == "ended" and exp["readable"]
    assert exp["variants"][1]["true_rel_lift"] == pytest.approx(0.173)
    titles = [s.title for s in sections(report)]
    assert any(t.startswith("experiment countdown") for t in titles) and "behaviour" in titles


def test_browsing_is_recorded_and_rebuilt_windows_equal_the_reports(run):
    """Views become events the window views fold; rebuilt from zero they equal the digests
    the run's report holds."""
    data, report = run
    assert report.behaviour["events"] > 500 and report.behaviour["browse-5m"]["windows"] > 100
    store = open_store(f"sqlite:///{data}/events.db")
    try:
        proj = Projection([Browse5m(), ExperimentsView()], store,
                          open_checkpoints(f"sqlite:///{data}/rebuilt.db"))
        proj.rebuild()
    finally:
        store.close()
    assert proj.views[0].digest() == report.views["browse-5m"]
    assert proj.views[1].digest() == report.views["experiments"]


def test_the_cli_shows_windows_and_experiments(run):
    """`saleday view windows browse-5m --json` and `saleday view experiments --json` print
    the views; an unknown window view exits 2 in words."""
    data, _ = run
    runner = CliRunner()
    out = runner.invoke(app, ["view", "windows", "browse-5m", "--data", str(data), "--json"])
    assert out.exit_code == 0, out.output
    shown = json.loads(out.stdout)
    assert shown["name"] == "browse-5m" and shown["windows"]
    first = next(iter(shown["windows"].values()))[0]
    assert set(first) == {"start", "end", "products", "views", "last_category"}
    out = runner.invoke(app, ["view", "experiments", "--data", str(data), "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["experiments"][0]["experiment"] == "countdown"
    bad = runner.invoke(app, ["view", "windows", "weekly", "--data", str(data)])
    assert bad.exit_code == 2 and "unknown window view" in bad.output


def test_a_scenario_with_a_lift_for_no_variant_is_refused():
    """true_lift naming no variant is a scenario error, not a silent no-effect run."""
    with pytest.raises(ScenarioError, match="true_lift"):
        preset("countdown-ab").with_overrides(experiments=[{"true_lift": {"blink": 0.1}}])


def test_the_same_seed_writes_the_same_log_with_experiments_and_triggers(run, tmp_path):
    """Exposures, browsing and trigger pushes are drawn from the seed: a second run of the
    same scenario and seed writes the same log."""
    _, first = run
    again = simulate(RunOptions(scenario=SMALL, engine="inprocess", data_dir=tmp_path / "again",
                                progress=False, charts=False))
    assert again.log_digest == first.log_digest and again.views == first.views
    assert first.behaviour["triggers"]["firings"] == again.behaviour["triggers"]["firings"] > 0
