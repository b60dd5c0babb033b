"""The engines end to end: a sale day runs, the audit passes, and the in-process engine
is deterministic — faults included — so a failing seed replays to the same failure."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from saleday.cli.main import app
from saleday.simulator.recording import Recording
from saleday.simulator.run import RunOptions, simulate
from saleday.simulator.scenario import preset

SMALL = preset("double11").with_overrides(users=1_500)
FLASH = preset("flash-half-price").with_overrides(users=1_500)


def run(tmp_path, name, scenario=SMALL, **kw):
    opts = RunOptions(scenario=scenario, engine="inprocess", data_dir=tmp_path / name,
                      progress=False, charts=False, **kw)
    return simulate(opts)


def test_a_sale_day_in_process_passes_the_audit_and_fills_the_report(tmp_path):
    """A flash sale played in process passes the audit, sells its hottest SKUs out and fills
    every part of the report: orders, views, stock depletion, timeline and latency."""
    report = run(tmp_path, "a", FLASH)
    assert report.audit_ok and report.invariants.violations == 0
    assert report.commands > 1_000 and report.events > report.commands / 2
    assert report.orders["paid"] > 0 and report.orders["placed"] >= report.orders["paid"]
    assert report.sellout_s, "a flash sale sells its hottest SKUs out"
    top = next(iter(report.stock_depletion.values()))
    assert top[0].remaining >= top[-1].remaining
    assert set(report.views) == {"orders", "referrals", "metrics", "stock", "members"}
    assert report.timeline and sum(p.offered for p in report.timeline) == report.commands
    assert report.latency_ms is not None


def test_the_same_seed_writes_the_same_log_and_another_seed_does_not(tmp_path):
    """Two runs of one seed write the same log and views; another seed writes another log."""
    a = run(tmp_path, "a", seed=5)
    b = run(tmp_path, "b", seed=5)
    c = run(tmp_path, "c", seed=6)
    assert a.log_digest == b.log_digest and a.views == b.views
    assert c.log_digest != a.log_digest


def test_injected_faults_break_no_invariant_and_replay_identically(tmp_path):
    """With crashes, lost replies, duplicates and failed appends injected the audit still
    passes, and the same seed, or its recording fed again, writes the very same log."""
    a = run(tmp_path, "a", faults=True, seed=3, record=tmp_path / "a.jsonl.gz")
    assert a.audit_ok, [f.message for f in a.invariants.findings[:5]]
    assert {"crash", "lost_reply", "duplicate", "failed_append"} <= set(a.faults_injected)
    assert all(n > 0 for n in a.faults_injected.values())
    b = run(tmp_path, "b", faults=True, seed=3)
    assert b.log_digest == a.log_digest and b.faults_injected == a.faults_injected
    # The recording fed again on a fresh store writes the same log.
    rec = Recording(tmp_path / "a.jsonl.gz")
    assert rec.seed == 3 and rec.faults and rec.scenario == SMALL
    opts = RunOptions(scenario=rec.scenario, seed=rec.seed, engine="inprocess", faults=True,
                      data_dir=tmp_path / "replayed", progress=False, charts=False)
    replayed = simulate(opts, source=rec.visits())
    assert replayed.log_digest == a.log_digest


def test_a_failing_seed_replays_to_the_same_failure(tmp_path, monkeypatch):
    """A bug planted in the SKU decider (stock is not checked) oversells; the audit names
    the SKUs, and the same seed finds the very same violations again."""
    from saleday.actors import kinds, sku

    honest = sku.sku_decider

    def careless(command, state):
        if isinstance(command, sku.ReserveStock) and state.known:
            state = dataclasses.replace(state, available=max(state.available, command.qty))
        return honest.decide(command, state)

    broken = dataclasses.replace(honest, decide=careless)
    real = kinds.deciders
    monkeypatch.setattr(kinds, "deciders", lambda: {**real(), "sku": broken})
    monkeypatch.setattr("saleday.cluster.local.deciders", lambda: {**real(), "sku": broken})
    a = run(tmp_path, "a", FLASH, seed=9)
    b = run(tmp_path, "b", FLASH, seed=9)
    assert not a.audit_ok and a.invariants.violations > 0
    messages = [f.message for f in a.invariants.findings]
    assert any("oversold" in m or "negative" in m for m in messages), messages[:5]
    assert any("P000" in m for m in messages)
    assert [f.model_dump() for f in a.invariants.findings] == [
        f.model_dump() for f in b.invariants.findings]


def test_cli_simulate_in_process_prints_one_json_object(tmp_path):
    """`saleday simulate --json` prints one JSON object with the run's figures and writes
    the report page and its charts."""
    result = CliRunner().invoke(app, [
        "simulate", "--engine", "inprocess", "--users", "800", "--data", str(tmp_path / "d"),
        "--json", "--no-progress", "--seed", "4"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in ("commands", "events", "duration_s", "throughput_per_s", "latency_ms",
                "invariants", "faults_injected", "log_digest"):
        assert key in out
    assert set(out["latency_ms"]) >= {"p50", "p95", "p99"}
    assert out["invariants"] == {"violations": 0, "findings": []}
    report_dir = tmp_path / "d" / "report"
    assert (report_dir / "report.html").exists()
    assert sorted(p.name for p in report_dir.glob("*.png"))


def test_cli_refuses_bad_input_with_exit_status_2(tmp_path):
    """A bad scenario, an unknown preset or engine, faults on Ray, or a missing recording is
    refused in words with exit status 2."""
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("users: 0\n")
    for args in (["simulate", "--scenario", str(bad)],
                 ["simulate", "--scenario", "no-such-preset"],
                 ["simulate", "--engine", "warp"],
                 ["simulate", "--engine", "ray", "--faults"],
                 ["replay", str(tmp_path / "missing.jsonl")],
                 ["replay"]):
        result = runner.invoke(app, args + ["--data", str(tmp_path / "d"), "--no-progress"])
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output


def test_a_public_clickstream_replays_as_traffic(tmp_path):
    """A sample of the public Taobao log replays as traffic that passes the audit, its
    malformed rows counted rather than fatal."""
    data = "tests/simulator/data/taobao_sample.csv"
    result = CliRunner().invoke(app, [
        "replay", "--clickstream", data, "--layout", "taobao", "--data", str(tmp_path / "d"),
        "--json", "--no-progress", "--no-charts"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["clickstream"]["rows"] > 0 and out["clickstream"]["sessions"] > 0
    assert out["commands"] > 0 and out["invariants"]["violations"] == 0
    assert out["clickstream"]["malformed"], "the fixture carries malformed rows, counted"


@pytest.mark.ray
@pytest.mark.slow
def test_the_ray_engine_drives_the_real_system_and_passes_the_audit(tmp_path):
    """The Ray engine plays a sale day through the shards on a local Ray of its own, paced
    by the wall clock (two simulated hours in about two seconds), and the log passes the
    audit."""
    sc = preset("double11").with_overrides(users=1_000, compression=3_600.0)
    opts = RunOptions(scenario=sc, engine="ray", data_dir=tmp_path / "ray", progress=False,
                      charts=False, num_cpus=2)
    report = simulate(opts)
    assert report.audit_ok, [f.message for f in report.invariants.findings[:5]]
    assert report.engine == "ray" and report.commands > 1_000
    assert report.latency_ms is not None and report.latency_ms.p99 > 0
    assert report.orders["paid"] > 0
    # What driving it cost the driver: its CPU, and how late its loop ran (timed each 0.1 s).
    assert report.driver_cpu is not None and report.driver_cpu > 0
    assert report.driver_loop_lag_ms is not None


def test_a_visit_that_raises_fails_the_run_in_words(tmp_path, monkeypatch):
    """Flows answer refusals with values; an exception in one is a bug, and the run says so
    instead of reporting a sale day without that visit."""
    from saleday.simulator.driver import Driver
    from saleday.simulator.run import SimulationError

    real = Driver.visit

    async def broken(self, v):
        if v.seq == 7:
            raise KeyError("planted")
        return await real(self, v)

    monkeypatch.setattr(Driver, "visit", broken)
    with pytest.raises(SimulationError, match="1 visits failed; the first: KeyError"):
        run(tmp_path, "a", SMALL.with_overrides(users=200))



def test_a_run_hands_the_collector_back_as_it_found_it(tmp_path):
    """The in-process engine freezes what each round leaves alive, so the cyclic GC walks
    only the round's own objects; when the run ends, all it froze is the collector's
    again, and a heap its caller had frozen stays frozen."""
    import gc

    gc.unfreeze()
    report = run(tmp_path, "thawed", seed=3)
    assert report.audit_ok
    assert gc.get_freeze_count() == 0

    gc.freeze()
    try:
        before = gc.get_freeze_count()
        run(tmp_path, "frozen", seed=3)
        assert gc.get_freeze_count() >= before > 0
    finally:
        gc.unfreeze()
