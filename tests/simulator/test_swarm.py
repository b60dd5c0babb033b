"""Swarm testing: each seed draws its own fault mix, the new fault classes are injected
deterministically, and each class catches a bug planted for it (the net catches fish)."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
from typer.testing import CliRunner

from saleday.cli.common import faults_with_a_mix
from saleday.cli.main import app
from saleday.events.memory_store import drop
from saleday.simulator.run import RunOptions, simulate
from saleday.simulator.scenario import preset
from saleday.simulator.swarm import NEW, SWARM_CLASSES, FaultMixError, draw_mix, parse_spec
from saleday.simulator.swarm_shards import RecoveryFailed

SMALL = preset("double11").with_overrides(users=300)
MID = preset("double11").with_overrides(users=400)
SHORT_PAY = MID.model_copy(update={"funnel": MID.funnel.model_copy(
    update={"payment_window_s": 60, "payment_delay_s": 50})})
"""Payments come close to their deadline: a minute's window, 50 s on average to pay."""
ABANDON = MID.model_copy(update={"funnel": MID.funnel.model_copy(
    update={"payment_never_returns": 0.5, "payment_success": 0.5})})
"""Half the payments never come back: their holds are released by the shards' timers."""
TINY = preset("double11").with_overrides(users=150)
ONE_SKU_SHARD = preset("double11").with_overrides(users=80, sku_shards=1)
BASKETS = ONE_SKU_SHARD.model_copy(update={"funnel": ONE_SKU_SHARD.funnel.model_copy(
    update={"view_to_cart": 0.5, "cart_to_order": 0.9})})
"""Orders of up to three lines, every line's reservation on the one SKU shard (whose batch
answers them in the order they were asked)."""


def run(tmp_path, name, scenario=SMALL, *, seed, mix=None, skip_idle_rounds=True):
    opts = RunOptions(scenario=scenario, engine="inprocess", seed=seed, faults=mix is not None,
                      fault_mix=mix, data_dir=tmp_path / name, store_url=f"memory://swarm-{name}",
                      progress=False, charts=False, skip_idle_rounds=skip_idle_rounds)
    try:
        return simulate(opts)
    finally:
        drop(f"swarm-{name}")


def test_a_seed_draws_the_same_mix_every_time_and_named_classes_are_exactly_those_on():
    """The mix is a function of the seed; naming classes turns on exactly those."""
    assert draw_mix(7) == draw_mix(7)
    named = draw_mix(7, "clock_skew,torn_write")
    assert set(named.on) == {"clock_skew", "torn_write"}
    assert named.on["torn_write"] == draw_mix(7, "torn_write").on["torn_write"]


def test_the_swarm_turns_every_class_on_for_some_seeds_and_off_for_others():
    """Across seeds each class is sometimes on and sometimes off, and some class is always on."""
    mixes = [draw_mix(seed) for seed in range(200)]
    assert all(m.on for m in mixes)
    for kind in SWARM_CLASSES:
        on = sum(kind in m.on for m in mixes)
        assert 40 < on < 160, (kind, on)


def test_a_fault_spec_that_names_no_class_is_refused_in_words():
    """An unknown class or an empty spec is a FaultMixError listing the classes."""
    with pytest.raises(FaultMixError, match="unknown: tornado"):
        parse_spec("torn_write,tornado")
    with pytest.raises(FaultMixError, match="classes: crash"):
        parse_spec(" , ")
    result = CliRunner().invoke(app, ["simulate", "--engine", "inprocess", "--faults", "tornado"])
    assert result.exit_code == 2 and "error: --faults takes" in result.output


def test_faults_with_a_value_is_read_as_a_mix_and_a_bare_faults_stays_a_flag():
    """`--faults swarm` and `--faults=a,b` become `--faults --fault-mix ...`; `--faults` alone does not."""
    assert faults_with_a_mix(["simulate", "--faults", "swarm", "--seed", "3"]) == [
        "simulate", "--faults", "--fault-mix", "swarm", "--seed", "3"]
    assert faults_with_a_mix(["simulate", "--faults=crash,slow_store"]) == [
        "simulate", "--faults", "--fault-mix", "crash,slow_store"]
    assert faults_with_a_mix(["simulate", "--faults", "--seed", "3"]) == [
        "simulate", "--faults", "--seed", "3"]
    assert faults_with_a_mix(["replay", "--faults", "x"]) == ["replay", "--faults", "x"]


def test_every_class_at_once_breaks_no_invariant_and_replays_identically(tmp_path):
    """All thirteen classes on one seed: the audit passes, each new class struck, and the same
    seed writes the same log with the same faults, also when every round is run (the
    default passes over the rounds in which nothing is due)."""
    every = ",".join(SWARM_CLASSES)
    a = run(tmp_path, "a", seed=4, mix=every)
    assert a.audit_ok, [f.message for f in a.invariants.findings[:5]]
    assert set(NEW) <= set(a.faults_injected), a.faults_injected
    assert set(a.fault_mix["classes"]) == set(SWARM_CLASSES)
    b = run(tmp_path, "b", seed=4, mix=every, skip_idle_rounds=False)
    assert (b.log_digest, b.faults_injected) == (a.log_digest, a.faults_injected)


# -- the net catches fish: a bug planted for each class, found by a seed ------------------


def plant_no_grace(monkeypatch):
    """Holds end at the payment deadline itself (no grace for the way to the SKU shard), and
    a confirm refused because its hold ran out is left as it is (the checkout would
    otherwise take the hold again: `Checkout._make_good`)."""
    from saleday.flows import checkout

    monkeypatch.setattr(checkout, "_ran_out", lambda reply: False)

    honest = checkout.Checkout.__init__

    def no_grace(self, *args, **kwargs):
        honest(self, *args, **{**kwargs, "grace_ms": 0})

    monkeypatch.setattr(checkout.Checkout, "__init__", no_grace)


def test_clock_skew_finds_holds_that_end_with_the_payment_deadline(tmp_path, monkeypatch):
    """Without a grace past the deadline, a SKU shard whose clock runs ahead expires a hold
    the order has just been paid for; skewed clocks find it, true clocks do not."""
    plant_no_grace(monkeypatch)
    assert run(tmp_path, "true", SHORT_PAY, seed=1).audit_ok
    found = run(tmp_path, "skewed", SHORT_PAY, seed=1, mix="clock_skew")
    assert not found.audit_ok and found.faults_injected["clock_skew"] > 0
    assert any("is paid but its reservation" in f.message and "expired" in f.message
               for f in found.invariants.findings), found.invariants.findings[:3]


def test_a_full_disk_finds_a_refused_commit_that_forgets_its_timers(tmp_path, monkeypatch):
    """A shard that drops the timers it took for a commit the store refused leaks holds;
    a full disk refuses the timers' own commits and finds it."""
    from saleday.actors.host import timers

    monkeypatch.setattr(timers.Timers, "put_back", lambda self, due: None)
    assert run(tmp_path, "roomy", ABANDON, seed=3).audit_ok
    found = run(tmp_path, "full", ABANDON, seed=3, mix="full_disk")
    assert not found.audit_ok
    assert {f.rule for f in found.invariants.findings} == {"reservations.leak"}


def test_an_unreadable_snapshot_finds_a_recovery_that_trusts_its_snapshot(tmp_path, monkeypatch):
    """A recovery that decodes its snapshot unguarded dies on an unreadable one (instead of
    replaying the stream); a seed that hands it one ends the run with the failure."""
    from saleday.actors import state_codec
    from saleday.actors.host import snapshots

    def trusting(self):
        snap = self.store.load_snapshot(self.stream)
        if snap is None:
            return
        header, encoded = state_codec.unpack_snapshot(snap.data)
        codec = state_codec.for_decider(self.decider)
        self.states = {entity: codec.decode(state) for entity, state in encoded.items()}
        ids, versions = header["dedup"]
        self._dedup = OrderedDict(zip(ids, (tuple(v) for v in versions)))
        self.version = self.snapshot_version = snap.version

    monkeypatch.setattr(snapshots.Snapshots, "_load_snapshot", trusting)
    assert run(tmp_path, "crashes", seed=3, mix="crash").audit_ok
    with pytest.raises(RecoveryFailed, match="shard .* could not recover from the store"):
        run(tmp_path, "bad", seed=3, mix="bad_snapshot")


def test_a_killed_projection_worker_finds_a_checkpoint_that_is_not_one_commit(tmp_path,
                                                                            monkeypatch):
    """A checkpoint that stores a batch's rows without its positions folds that batch twice
    after a kill; the restarted worker's views then differ from the views folded from zero."""
    from saleday.simulator import swarm_views

    def rows_without_positions(self, checkpoint, expected, positions, rows):
        self.inner.commit(checkpoint, expected, expected,
                          [r for r in rows if r[0] != "_log"])

    monkeypatch.setattr(swarm_views.KilledCheckpoints, "die", rows_without_positions)
    found = run(tmp_path, "killed", seed=2, mix="projection_kill")
    assert not found.audit_ok and found.faults_injected["projection_kill"] > 0
    assert {f.rule for f in found.invariants.findings} == {"projection_checkpoint"}


def test_a_slow_store_finds_a_checkout_that_leaves_a_refused_confirm_as_it_is(tmp_path,
                                                                            monkeypatch):
    """A checkout that only logs a confirm refused because the hold ran out (as it did
    before it made such orders good) leaves a paid order whose hold expired; a SKU shard
    stalled past the grace finds it, shards that keep up do not."""
    from saleday.flows import checkout

    monkeypatch.setattr(checkout, "_ran_out", lambda reply: False)
    assert run(tmp_path, "quick", SHORT_PAY, seed=5).audit_ok
    found = run(tmp_path, "slow", SHORT_PAY, seed=5, mix="slow_store")
    assert not found.audit_ok and found.faults_injected["slow_store"] > 0
    assert any("is paid but its reservation" in f.message and "expired" in f.message
               for f in found.invariants.findings), found.invariants.findings[:3]


def test_a_torn_write_finds_a_recovered_dedup_record_that_answers_with_a_bare_ack(tmp_path,
                                                                                monkeypatch):
    """A dedup record rebuilt from the log (it keeps no replies) that answers a retried id
    with a bare acknowledgement, without the events it recorded: only a retry that reaches
    a recovered host hits it, which is what a torn commit kept whole makes (the client got
    an error, the new host finds the commit in the log). The checkout's retried
    reservation then has no prices, and the run ends with the failed visit. Crashes, lost
    replies and duplicates (a retry to the host that remembers) do not find it."""
    from saleday.actors.host import dedup
    from saleday.actors.host.replies import Accepted
    from saleday.simulator.errors import SimulationError

    honest = dedup.DedupRecord._recorded

    def bare(self, command_id, command=None):
        recorded = self._dedup.get(command_id)
        if recorded is not None and len(recorded) < 3:   # rebuilt from the log
            return Accepted((), recorded[0], recorded[1], duplicate=True)
        return honest(self, command_id, command)

    monkeypatch.setattr(dedup.DedupRecord, "_recorded", bare)
    assert draw_mix(1, "torn_write").on["torn_write"]["kept"] == "all"
    assert run(tmp_path, "remembers", TINY, seed=1, mix="crash,lost_reply,duplicate").audit_ok
    with pytest.raises(SimulationError, match="visits failed; the first: IndexError"):
        run(tmp_path, "torn", TINY, seed=1, mix="torn_write")


def test_delayed_replies_find_a_checkout_that_prices_lines_in_the_order_replies_come(
        tmp_path, monkeypatch):
    """A checkout that takes its reservations' replies in the order they come back (as a
    gather over `asyncio.as_completed` does) prices its lines crosswise when a struck
    batch's replies come back shuffled. With one SKU shard a round answers the lines in
    the order asked, so the same seed without delayed replies passes. (With two SKU
    shards the lanes' order finds it without any fault: no plant for this class.)"""
    import asyncio
    import types

    from saleday.flows import checkout

    async def arrival_order(*aws, return_exceptions=False):
        futures = [asyncio.ensure_future(a) for a in aws]
        return [await f for f in asyncio.as_completed(futures)]

    monkeypatch.setattr(checkout, "asyncio",
                        types.SimpleNamespace(**{**vars(asyncio), "gather": arrival_order}))
    assert run(tmp_path, "in-order", BASKETS, seed=3).audit_ok
    found = run(tmp_path, "shuffled", BASKETS, seed=3, mix="delayed_reply")
    assert not found.audit_ok and found.faults_injected["delayed_reply"] > 0
    assert {f.rule for f in found.invariants.findings} == {"orders.money"}
    assert any("priced" in f.message and "but reservation" in f.message
               for f in found.invariants.findings), found.invariants.findings[:3]


def plant_offset_dedup(monkeypatch):
    """Shards that take follow-ups exactly once "by offset", as a consumer that commits
    offsets does: per shard, the highest version of each causing stream it has taken, and a
    follow-up whose cause is older is answered as a repeat, with nothing decided. In log
    order that is a dedup; reordered, it drops a follow-up."""
    from saleday.actors.host import shard
    from saleday.actors.host.replies import Accepted
    from saleday.events import parse_event_ref

    honest = shard.ShardHost.handle
    marks: dict[str, dict[str, int]] = {}

    def by_offset(self, requests):
        seen = marks.setdefault(self.stream, {})
        taken, repeats = [], {}
        for i, request in enumerate(requests):
            cause = parse_event_ref(request.causation_id) if request.causation_id else None
            if cause is not None:
                if cause[1] < seen.get(cause[0], 0):
                    repeats[i] = Accepted((), 0, 0, duplicate=True)
                    continue
                seen[cause[0]] = cause[1]
            taken.append(request)
        if not repeats:
            return honest(self, requests)
        replies = iter(honest(self, taken))
        return [repeats[i] if i in repeats else next(replies) for i in range(len(requests))]

    monkeypatch.setattr(shard.ShardHost, "handle", by_offset)
    return marks


def test_delayed_follow_ups_find_shards_that_take_follow_ups_once_by_offset(tmp_path,
                                                                            monkeypatch):
    """Shards that drop a follow-up whose cause is older than one they took (an offset per
    causing stream instead of a dedup by command id) lose the grants and shares of a round
    that `delayed_follow_up` held and shuffled: followups.delivery names them. Every other
    class at once on the same seed sends the follow-ups in log order, and passes."""
    marks = plant_offset_dedup(monkeypatch)
    others = ",".join(k for k in SWARM_CLASSES if k != "delayed_follow_up")
    assert run(tmp_path, "in-order", TINY, seed=2).audit_ok
    marks.clear()
    assert run(tmp_path, "other-faults", TINY, seed=2, mix=others).audit_ok
    marks.clear()
    found = run(tmp_path, "held", TINY, seed=2, mix="delayed_follow_up")
    assert not found.audit_ok and found.faults_injected["delayed_follow_up"] > 0
    assert {f.rule for f in found.invariants.findings} == {"followups.delivery"}
    assert any("never reached the wallet" in f.message for f in found.invariants.findings)


# -- the command line ------------------------------------------------------------------------


def test_simulate_faults_swarm_reports_the_mix_and_how_to_reproduce_it(tmp_path):
    """`--faults swarm --json` names the classes the seed turned on and the command that
    runs it again."""
    result = CliRunner().invoke(app, [
        "simulate", "--engine", "inprocess", "--users", "200", "--seed", "5", "--faults",
        "swarm", "--store", "memory://swarm-cli", "--data", str(tmp_path), "--no-charts",
        "--json"])
    drop("swarm-cli")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["fault_mix"]["classes"]) == set(draw_mix(5).on)
    assert "--seed 5 --faults swarm" in out["fault_mix"]["reproduce"]


def test_a_failing_seed_prints_the_one_command_that_reproduces_it(tmp_path, monkeypatch):
    """A seed that breaks an invariant exits 1 and prints the command that replays it."""
    plant_no_grace(monkeypatch)
    scenario = tmp_path / "short-pay.json"
    scenario.write_text(json.dumps({"preset": "double11", "users": 400, "funnel": {
        "payment_window_s": 60, "payment_delay_s": 50}}))
    result = CliRunner().invoke(app, [
        "simulate", "--engine", "inprocess", "--scenario", str(scenario), "--seed", "1",
        "--faults", "clock_skew", "--store", "memory://swarm-fail", "--data", str(tmp_path),
        "--no-charts", "--no-progress"])
    drop("swarm-fail")
    assert result.exit_code == 1, result.output
    assert (f"reproduce: saleday simulate --engine inprocess --scenario {scenario} --users 400 "
            "--compression 120 --seed 1 --faults clock_skew --no-charts") in result.output


def test_bench_dst_sums_up_seeds_and_lists_failing_ones_with_their_reproducer(monkeypatch):
    """`bench dst` counts faults by class over its seeds, and a failing seed is listed with
    the command that reproduces it."""
    from saleday.bench import dst

    ok = dst.run(preset("double11").with_overrides(users=150), seeds=2, workers=1)
    assert ok["params"]["seeds"] == 2 and ok["failed_seeds"] == 0 and ok["violations"] == 0
    assert ok["faults_total"] == sum(ok["faults_by_class"].values()) > 0
    plant_no_grace(monkeypatch)
    bad = dst.run(SHORT_PAY, seeds=1, first_seed=1, spec="clock_skew", workers=1,
                  scenario_ref="short-pay.json")
    assert bad["failed_seeds"] == 1
    assert bad["failures"][0]["seed"] == 1 and "--scenario short-pay.json" in bad[
        "failures"][0]["reproduce"]


def test_a_stopped_bench_dst_sums_up_the_seeds_that_finished_and_exits_130(tmp_path):
    """SIGTERM (as Ctrl-C) stops `bench dst` on two workers: it sums up the seeds done,
    says so, exits 130, and no worker prints a traceback or is left running."""
    import json
    import signal
    import subprocess
    import sys
    import time

    rows = tmp_path / "rows.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "saleday", "bench", "dst", "--seeds", "500",
                             "--users", "60", "--workers", "2", "--rows", str(rows), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (not rows.exists() or not rows.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    result = json.loads(out)
    assert result["interrupted"] and 1 <= result["params"]["seeds"] < 500
    assert "interrupted:" in err and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert len(rows.read_text().splitlines()) >= result["params"]["seeds"]


# -- what the swarm found ----------------------------------------------------------------------


def test_a_shard_the_full_disk_refused_last_in_a_round_takes_its_queue_in_the_next(tmp_path):
    """A shard refused by the full disk in the last batch of a round is not held back for
    ever (seed 12 once stranded 1,233 session commands and spun the clock without end)."""
    report = run(tmp_path, "refused", preset("double11").with_overrides(users=1_000), seed=12,
                 mix="swarm")
    assert report.audit_ok and report.faults_injected["full_disk"] > 0


def orders_by_step(url: str) -> dict[str, set[str]]:
    """The orders each checkout step (`<order>/<step>/...`) wrote events for, in the log;
    `refunded`: the orders refunded as a whole."""
    from saleday.events.memory_store import MemoryEventStore

    store = MemoryEventStore.from_url(url)
    out: dict[str, set[str]] = {}
    for stream in store.streams():
        for e in store.read(stream):
            order, _, step = e.command_id.partition("/")
            if e.type == "orders.order_refunded":
                step = "refunded"
            out.setdefault(step.split("/")[0], set()).add(order)
    return out


def test_a_stalled_sku_shard_confirms_the_holds_of_orders_paid_in_time(tmp_path):
    """A SKU shard whose append stalls past a hold's deadline expires the hold before the
    confirm of an order paid in time is decided; the checkout takes the hold again under
    its reservation id and confirms it (or refunds the order), so every paid order is
    settled."""
    opts = RunOptions(scenario=SHORT_PAY, engine="inprocess", seed=5, faults=True,
                      fault_mix="slow_store", data_dir=tmp_path,
                      store_url="memory://swarm-stalled", progress=False, charts=False)
    try:
        report = simulate(opts)
        steps = orders_by_step("memory://swarm-stalled")
    finally:
        drop("swarm-stalled")
    assert report.audit_ok, [f.message for f in report.invariants.findings[:3]]
    taken_again = steps.get("rehold", set())
    assert taken_again and taken_again == steps.get("reconfirm", set()) | steps.get(
        "refunded", set()), steps
