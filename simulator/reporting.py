"""The report of a simulated sale day: the engine's client-side figures (latency, the
timeline, commands by type) and the audit of the log it wrote, with every view and the
report's tally folded in the same pass (`simulator.run` drives the run, this fills in
what it found)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from saleday.events.store import redact
from saleday.simulator.driver import Recorder, SimClock
from saleday.simulator.engine import EngineRun, RunOptions
from saleday.simulator.errors import SimulationError
from saleday.simulator.experiments import (
    fill_outcomes,
    outcome_views,
)
from saleday.simulator.generator import Sku
from saleday.simulator.results import (
    CommandStats,
    Finding,
    Invariants,
    LatencyMs,
    RunReport,
    StockPoint,
    TeamPoint,
    TimelinePoint,
    machine_info,
)

TOP_SKUS = 5


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[k])


def _spread(values: Any) -> LatencyMs | None:
    """p50/p95/p99/max of `values` (rounded), or None when there are none."""
    v = sorted(values)
    if not v:
        return None
    return LatencyMs(p50=round(percentile(v, 0.50), 3), p95=round(percentile(v, 0.95), 3),
                     p99=round(percentile(v, 0.99), 3), max=round(v[-1], 3))


def fill_report(opts: RunOptions, url: str | None, run: EngineRun, skus: list[Sku],
            started_at: str) -> RunReport:
    sc = opts.scenario
    rec, out, clock = run.recorder, run.driver.out, run.clock
    latency = _spread(rec.latencies)
    timeline = []
    for key in sorted(rec.buckets):
        b = rec.buckets[key]
        bl = sorted(b.latencies)
        timeline.append(TimelinePoint(
            t_s=key * rec.bucket_s, offered=b.offered, served=b.served, busy=b.busy,
            errors=b.errors, rejected=b.rejected,
            p50_ms=round(percentile(bl, 0.5), 3) if bl else None,
            p95_ms=round(percentile(bl, 0.95), 3) if bl else None,
            p99_ms=round(percentile(bl, 0.99), 3) if bl else None,
            max_ms=round(bl[-1], 3) if bl else None))
    audit = None
    skipped = None
    if not opts.audit:
        skipped = "not asked for"
    elif url is None:
        skipped = ("the target's log was not named: give --store with the target's store URL "
                   "(read-only) to audit it")
    else:
        audit = _audit(url, [s.sku for s in skus[:TOP_SKUS]], target=opts.http_target is not None,
                       clock_skew_ms=int(run.extra.get("clock_skew_ms", 0)),
                       extra_views=outcome_views(sc))
    late_start = _spread(run.extra.get("late_starts", ()))
    load = run.extra.get("driver_load")
    report = RunReport(
        scenario=sc.name, seed=opts.seed, engine=opts.engine, users=sc.users,
        store=redact(url) if url else "",
        data_dir=str(opts.data_dir), started_at=started_at, commands=rec.commands,
        events=audit["events"] if audit else 0, duration_s=round(run.wall_s, 3),
        sim_duration_s=round(run.sim_end_s - sc.traffic.start_s, 3),
        window_start_s=sc.traffic.start_s,
        throughput_per_s=round(rec.commands / run.wall_s, 1) if run.wall_s else 0.0,
        latency_ms=latency, late_start_s=late_start,
        driver_cpu=round(load.cpu, 2) if load is not None else None,
        driver_loop_lag_ms=_spread(load.lag_ms) if load is not None else None,
        busy=rec.busy, unavailable=rec.unavailable,
        rejections=dict(rec.rejections.most_common()), timeline=timeline,
        bucket_s=rec.bucket_s,
        faults_injected=run.faults_injected, machine=machine_info(),
        target=run.extra.get("target"), audit_skipped=skipped,
        http={k: run.extra[k] for k in ("requests_by_route", "http_retries", "http_statuses")
              if k in run.extra}, fault_mix=run.extra.get("fault_mix"))
    funnel = {"views": out.views, "carts": out.carts,
              "orders": out.orders_started, "paid": out.orders.get("after_payment:paid", 0)}
    report.funnel = funnel
    report.by_command = _by_command(rec, run.wall_s)
    report.members = run.extra.get("members", {})
    if audit is None:
        report.orders = _client_orders(out)
        return report
    m = audit["totals"]
    tally = audit["tally"]
    report.orders = {
        "started": m.get("checkouts_started", out.orders_started),
        "placed": m.get("orders_placed", 0), "paid": m.get("orders_paid", 0),
        "cancelled": m.get("orders_cancelled", 0), "expired": audit["orders_expired"],
        "voided": m.get("orders_voided", 0),
        "payment_failed": m.get("payments_failed", 0), "refunded": m.get("refunds", 0)}
    report.funnel["paid"] = m.get("orders_paid", funnel["paid"])
    report.coupons = {"granted": audit["coupons_granted"], "received": m.get("coupons_received", 0),
                      "locked": m.get("coupons_locked", 0),
                      "redeemed": m.get("coupons_redeemed", 0), "lapsed": audit["coupons_lapsed"]}
    report.red_packets = {"teams": m.get("teams_created", 0),
                          "completed": m.get("teams_completed", 0),
                          "expired_unfilled": m.get("teams_expired", 0),
                          "shares": audit["shares"], "cents_split": audit["cents_split"]}
    ref = audit["referrals"]
    report.referral = {"invited": float(ref.get("invited", 0)),
                       "inviters": float(ref.get("inviters", 0)),
                       "k_factor": float(ref.get("k_factor", 0.0))}
    report.sellout_s = {sku: round(max(0.0, clock.sim_s(at)), 1) for sku, at in sorted(
        tally.sold_out_at.items(), key=lambda kv: (kv[1], kv[0]))[:10]}
    report.stock_depletion = {
        sku: [StockPoint(t_s=round(max(sc.traffic.start_s, clock.sim_s(at)), 1),
                         remaining=max(0, left))
              for at, left in series]
        for sku, series in tally.depletion().items()}
    report.tier_marks = _tier_marks(skus, set(report.stock_depletion))
    report.teams_timeline = _teams_timeline(tally.team_times, clock, rec.bucket_s,
                                            sc.traffic.start_s, run.sim_end_s)
    findings = [Finding(rule=f.rule, stream=f.stream, version=f.version, message=f.message)
                for f in audit["findings"]]
    if "live_views" in run.extra:   # projection_kill: the restarted worker's views
        from saleday.simulator.swarm_views import compare

        findings += [Finding(rule="projection_checkpoint", message=m)
                     for m in compare(run.extra["live_views"], audit["views"])]
    report.invariants = Invariants(violations=len(findings), findings=findings[:200])
    report.audit_ok = audit["ok"] and not findings
    report.audit_rules = audit["rules"]
    report.views = audit["views"]
    report.log_digest = audit["log_digest"]
    fill_outcomes(report, sc, run.driver.extras, audit["extra_views"], clock.ms(run.sim_end_s))
    return report


def _tier_marks(skus: list[Sku], shown: set[str]) -> dict[str, list[int]]:
    """Per SKU charted: the units left at which each price tier but the last runs out."""
    marks = {}
    for s in skus:
        if s.sku in shown and len(s.tiers) > 1:
            left, at = s.stock, []
            for units, _ in s.tiers[:-1]:
                left -= units
                if 0 < left < s.stock:
                    at.append(left)
            marks[s.sku] = at
    return marks


def _teams_timeline(times: dict[str, list[int]], clock: SimClock, bucket_s: float,
                    start_s: float, end_s: float) -> list[TeamPoint]:
    """Cumulative team-ups at the end of each bucket from the window's opening; empty when
    no team formed."""
    if not times.get("formed"):
        return []
    sims = {k: sorted(clock.sim_s(at) for at in v) for k, v in times.items()}
    points = []
    n = max(1, math.ceil((end_s - start_s) / bucket_s))
    for i in range(n + 1):
        t = start_s + i * bucket_s
        points.append(TeamPoint(t_s=t, **{k: bisect.bisect_right(v, t) for k, v in sims.items()}))
    return points


def _by_command(rec: Recorder, wall_s: float) -> list[CommandStats]:
    """The per-type table: count, refusals, failures, latency percentiles, rate per wall s."""
    rows = []
    for name, k in sorted(rec.kinds.items(), key=lambda kv: (-kv[1].count, kv[0])):
        lat = sorted(k.latencies)
        rows.append(CommandStats(
            name=name, count=k.count, rejected=sum(k.rejections.values()),
            refusals=dict(k.rejections.most_common()), busy=k.busy, unavailable=k.unavailable,
            p50_ms=round(percentile(lat, 0.50), 3) if lat else None,
            p90_ms=round(percentile(lat, 0.90), 3) if lat else None,
            p99_ms=round(percentile(lat, 0.99), 3) if lat else None,
            max_ms=round(lat[-1], 3) if lat else None,
            per_s=round(k.count / wall_s, 1) if wall_s > 0 else 0.0))
    return rows


def _client_orders(out: Any) -> dict[str, int]:
    return {"started": out.orders_started, "placed": out.orders.get("placed", 0),
            "paid": out.orders.get("after_payment:paid", 0),
            "cancelled": out.orders.get("cancelled", 0)
            + out.orders.get("after_payment:cancelled", 0),
            "payment_failed": out.orders.get("payment_failed", 0)}


def _audit(url: str, top: list[str], *, target: bool = False,
           clock_skew_ms: int = 0, extra_views: Sequence[Any] = ()) -> dict[str, Any]:
    """Audit the run's log and fold every view (and the report's tally) in the same pass.
    (A target's log may hold more than this run: the audit covers all of it.)"""
    from saleday.projections.audit import run_audit
    from saleday.projections.source import SourceError
    from saleday.projections.store_source import StoreSource
    from saleday.projections.views import all_views
    from saleday.simulator.tally import SaleTally

    tally = SaleTally(top)
    views = all_views()
    try:
        source = StoreSource(url)
    except SourceError as exc:
        if not target:
            raise
        raise SimulationError(f"the target's log could not be read for the audit: {exc}") from exc
    try:
        result = run_audit(source, views=[*views, *extra_views, tally],
                           clock_skew_ms=clock_skew_ms)
    finally:
        source.close()
    by_name = {v.name: v for v in views}
    # The report's figures are read off the folded views directly: their to_json() is a
    # whole view (every user of the referral graph), already paid for once by the digest.
    totals = by_name["metrics"].totals() if "metrics" in by_name else {}
    referrals: dict[str, Any] = {}
    if "referrals" in by_name:
        from saleday.projections.views.referrals import INVITER

        invites = by_name["referrals"].t["invite"]
        referrals = {"invited": len(invites),
                     "inviters": len({row[INVITER] for row in invites.values()}),
                     "k_factor": by_name["referrals"].k_factor() or 0.0}
    return {
        "ok": bool(result.ok), "events": int(result.events), "findings": list(result.findings),
        "rules": dict(result.rules),
        "views": {name: d for name, d in result.views.items() if name != SaleTally.name},
        "log_digest": result.log_digest, "totals": totals, "referrals": referrals,
        "tally": tally,
        "orders_expired": tally.cancelled.get("payment_timeout", 0),
        "coupons_granted": int(totals.get("coupons_granted", 0)),
        "coupons_lapsed": int(totals.get("coupons_lapsed", 0)),
        "shares": tally.shares,
        "cents_split": tally.cents_split,
        "extra_views": list(extra_views),
    }
