"""A simulated sale day with members: history and tiers, a presale before midnight, the
invoice choice and points redeemed at checkout, price drops after the sale refunded by
protection; the report's members tables add up, and the audit holds on the log."""

from __future__ import annotations

import pytest

from saleday.simulator.errors import SimulationError
from saleday.simulator.report import sections
from saleday.simulator.run import RunOptions, simulate
from saleday.simulator.scenario import preset

SMALL = preset("members").with_overrides(
    users=200, traffic={"window_s": 900, "lead_s": 120, "lead_x": 2.0},
    funnel={"payment_window_s": 300},
    members={"presales": 2, "presale_deposits": 40, "balance_window_s": 600,
             "history_orders_max": 4, "redeem_share": 0.8, "drop_share": 0.6})


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    data = tmp_path_factory.mktemp("members")
    return simulate(RunOptions(scenario=SMALL, seed=11, engine="inprocess", data_dir=data,
                               progress=False, charts=False))


def test_the_members_day_passes_the_audit_with_the_member_rules_exercised(report):
    """Every member, price and presale rule examined events of the run, none failed."""
    assert report.audit_ok, [f.message for f in report.invariants.findings[:5]]
    for rule in ("members.history", "members.tiers", "members.points", "members.protection",
                 "prices.history", "presales.windows", "presales.money", "presales.stock",
                 "presales.sku_holds"):
        assert report.audit_rules[rule]["checks"] > 0 and not report.audit_rules[rule]["failed"]


def test_the_report_shows_tiers_points_refunds_and_presale_conversion(report):
    """The members figures add up: tiers cover the members with history; the points ledger
    is earned - redeemed - expired, with points earned, redeemed at checkout and lapsed;
    refunds only for protected tiers; every deposit is paid through or forfeited."""
    m = report.members
    assert sum(m["tiers"].values()) == m["members_with_history"] > 0
    assert m["tiers"]["diamond"] > 0 and m["tiers"]["regular"] > 0
    p = m["points"]
    assert min(p["earned"], p["redeemed"], p["expired"], p["orders_redeeming"]) > 0
    assert p["balance"] == p["earned"] - p["redeemed"] - p["expired"] - p["taken_back"] >= 0
    assert p["earned_by_invoice"]["electronic"] > 0
    pr = m["protection"]
    assert pr["price_drops"] > 0 and pr["lines_refunded"] > 0 and pr["refund_cents"] > 0
    assert set(pr["refunded_by_tier"]) <= {"diamond", "gold", "silver"}
    assert pr["lines_refunded"] + sum(pr["refused"].values()) == pr["claims"]
    ps = m["presale"]
    assert ps["deposits"] == ps["balances_paid"] + ps["forfeited"] > 0
    assert 0 < ps["forfeited"] < ps["deposits"]
    # the deposits' units came off their SKUs' shelves, then were sold or returned
    st = ps["stock"]
    assert st["set_aside"] == ps["units_deposited"] == st["sold"] + st["returned"]
    assert st["sold"] > 0 and st["returned"] > 0
    titles = [s.title for s in sections(report)]
    assert {"member points", "price protection", "presale (定金)"} <= set(titles)


def test_members_are_refused_on_the_http_engine(tmp_path):
    """The HTTP engine does not play members; it is refused in words, before anything runs."""
    with pytest.raises(SimulationError, match="inprocess or ray"):
        simulate(RunOptions(scenario=SMALL, seed=11, engine="http", data_dir=tmp_path,
                            progress=False, charts=False))


@pytest.mark.ray
@pytest.mark.slow
def test_the_members_day_on_ray_passes_the_audit_with_presales_points_and_protection(tmp_path):
    """On the Ray engine (a local Ray of its own) the members day plays its presale,
    points and price drops through the real shards, and the log passes every member rule."""
    # the preset's own windows (SMALL's short ones are shorter than a paced round at this
    # compression), two simulated hours in about two seconds
    sc = preset("members").with_overrides(users=200, compression=3_600.0)
    report = simulate(RunOptions(scenario=sc, seed=11, engine="ray", data_dir=tmp_path,
                                 progress=False, charts=False, num_cpus=2))
    assert report.engine == "ray"
    assert report.audit_ok, [f.message for f in report.invariants.findings[:5]]
    for rule in ("members.points", "members.protection", "presales.money", "presales.stock"):
        assert report.audit_rules[rule]["checks"] > 0 and not report.audit_rules[rule]["failed"]
    m = report.members
    assert m["points"]["earned"] > 0 and m["protection"]["claims"] > 0
    ps = m["presale"]
    assert ps["deposits"] == ps["balances_paid"] + ps["forfeited"] > 0
    assert ps["stock"]["set_aside"] == ps["stock"]["sold"] + ps["stock"]["returned"] > 0
