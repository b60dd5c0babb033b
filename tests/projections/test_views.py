"""What each view says about a known sale day, and that it says it whatever the order in
which streams are read."""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET

import pytest

from saleday.events import NewEvent, open_store
from saleday.projections.view import MergeConflict, merged
from saleday.projections.views import (
    MetricsView,
    OrdersView,
    ReferralsView,
    StockView,
    UnknownView,
    all_views,
    graphml,
    view_class,
)
from saleday.projections.views.referrals import GRAPHML_NS
from tests.projections.conftest import T0, sale_day


@pytest.fixture
def log(shop):
    """The envelopes of a small complete sale day, per stream."""
    sale_day(shop)
    return {s: shop.store.read(s) for s in shop.store.streams()}


def folded(view, log, order=None):
    for env in order or [e for s in sorted(log) for e in log[s]]:
        view.apply(env)
    return view


def interleaved(log, seed):
    """Every event once, each stream in its own order, streams mixed at random."""
    rng = random.Random(seed)
    queues = {s: list(envs) for s, envs in log.items()}
    out = []
    while queues:
        s = rng.choice(sorted(queues))
        out.append(queues[s].pop(0))
        if not queues[s]:
            del queues[s]
    return out


# -- orders -------------------------------------------------------------------------------


def test_an_order_shows_its_timeline_tier_prices_and_payment(log):
    """A paid two-unit order shows one unit at the half-price tier and one at full price."""
    view = folded(OrdersView(), log)
    o = view.order("o001")
    assert o["status"] == "paid" and o["user"] == "u1"
    assert o["lines"] == [{"sku": "sku-a", "qty": 2, "unit_prices": [4950, 9900], "tiers": [0, 1],
                           "reservation": "confirmed"}]
    assert o["total_cents"] == o["paid_cents"] == 14850
    assert [s for s, _ in o["timeline"]] == ["trying", "placed", "paid"]


def test_orders_that_fail_expire_or_pay_late_end_as_they_should(log):
    """A failed payment cancels, an abandoned order expires and its late payment is refunded,
    a second payment on a paid order is refunded while the order stays paid."""
    view = folded(OrdersView(), log)
    failed = view.order("o004")
    assert failed["status"] == "cancelled" and failed["cancel_reason"] == "payment_failed"
    assert all(line["reservation"] == "released" for line in failed["lines"])
    late = view.order("o006")
    assert late["status"] == "refunded" and late["order_status"] == "cancelled"
    assert late["cancel_reason"] == "payment_timeout"
    assert late["refunds"] == [{"payment_id": "p-late", "cents": 9900, "reason": "order_cancelled"}]
    assert {line["reservation"] for line in late["lines"]} == {"expired"}
    first = view.order("o000")
    assert first["status"] == "paid" and first["refunded_cents"] == 1


def test_orders_are_found_by_user_and_the_coupon_is_discounted(log):
    """u3's orders are listed; the order that used u3's coupon is discounted by its value."""
    view = folded(OrdersView(), log)
    mine = view.by_user("u3")
    assert [o["order_id"] for o in mine] == ["o003", "o027"]
    with_coupon = view.order("o003")
    assert with_coupon["coupon"] == "c-3" and with_coupon["discount_cents"] == 700
    assert with_coupon["total_cents"] == with_coupon["subtotal_cents"] - 700
    assert view.order("nope") is None


# -- stock --------------------------------------------------------------------------------


def test_stock_per_sku_adds_up_and_matches_the_sales(log):
    """available + reserved + sold = stocked per SKU; sold units are those of paid orders."""
    stock = folded(StockView(), log).to_json()["skus"]
    orders = folded(OrdersView(), log)
    for sku, row in stock.items():
        assert row["available"] + row["reserved"] + row["sold"] == row["stocked"], sku
        paid = sum(line["qty"] for o in orders.to_json()["orders"].values() if o["status"] == "paid"
                   for line in o["lines"] if line["sku"] == sku)
        assert row["sold"] == paid
    assert stock["sku-c"] == {"stocked": 3, "available": 3, "reserved": 0, "sold": 0}


def test_stock_subscribers_get_the_changed_skus_after_each_commit(log):
    """A subscriber is called once per committed batch with the new available of each SKU
    the batch touched, and not before the commit."""
    view = StockView()
    seen = []
    unsubscribe = view.subscribe(seen.append)
    sku_stream = [e for e in log["sku-000"]]
    view.apply_batch(sku_stream[:2])  # stock_added, sale_configured for sku-a
    assert seen == []
    view.committed()
    assert seen == [{"sku-a": 20}]
    view.apply_batch(sku_stream[2:])
    view.committed()
    assert seen[-1] == {sku: row["available"] for sku, row in view.to_json()["skus"].items()}
    unsubscribe()
    view.committed()
    assert len(seen) == 2


# -- metrics ------------------------------------------------------------------------------


def test_metrics_give_the_funnel_rates_and_sell_out_times(log):
    """Funnel counts, payment success (paid / placed), redemption, and the time sku-b sold out."""
    m = folded(MetricsView(), log).to_json()
    assert m["funnel"] == {"sessions": 25, "reservations": m["totals"]["reservations"],
                           "orders_placed": 18, "orders_paid": 12}
    assert m["payment_success_rate"] == round(12 / 18, 6)
    assert m["coupon_redemption_rate"] == round(1 / m["totals"]["coupons_received"], 6)
    assert m["oversold_units"] == 0
    sku_b = m["skus"]["sku-b"]
    assert sku_b["sold_out_at"] is not None
    assert sku_b["sold_out_after_s"] == (sku_b["sold_out_at"] - T0) / 1000
    assert m["skus"]["sku-c"]["sold_out_at"] is None
    assert sum(r["reservations"] for r in m["per_second"]) == m["totals"]["reservations"]
    assert sum(r["payments"] for r in m["per_second"]) == 12


def test_units_reserved_beyond_stock_are_counted_as_oversold(tmp_path):
    """A log that reserves 3 units of a SKU stocked with 2 shows 1 oversold unit."""
    store = open_store(f"sqlite:///{tmp_path}/bad.db")

    def ev(i, type, **data):
        return NewEvent(type=type, data=data, command_id=f"c{i}", recorded_at=T0 + i * 1000)

    res = {"user": "u", "unit_prices": [1], "tiers": [0], "deadline": T0 + 10**6, "reserved_at": T0}
    store.append("sku-000", [ev(0, "inventory.stock_added", sku="x", qty=2),
                             ev(1, "inventory.stock_reserved", reservation_id="r1", sku="x", qty=2, **res),
                             ev(2, "inventory.stock_reserved", reservation_id="r2", sku="x", qty=1, **res)], 0)
    m = folded(MetricsView(), {"sku-000": store.read("sku-000")}).to_json()
    store.close()
    assert m["oversold_units"] == 1 and m["skus"]["x"]["oversold_units"] == 1
    assert m["skus"]["x"]["sold_out_at"] == T0 + 1000


def test_a_refunded_order_is_no_purchase_and_its_points_taken_back_leave_the_balance():
    """The members view counts a paid order for RFM until it is refunded, and points taken
    back for a refunded order leave the member's balance."""
    from saleday.projections.views.members import MembersView

    store = open_store("memory://members-view-refund")

    def ev(i, type, **data):
        return NewEvent(type=type, data=data, command_id=f"c{i}", recorded_at=T0 + i * 1000)

    for oid in ("o1", "o2"):
        store.append(f"order-{oid}", [
            ev(0, "orders.order_placed", order_id=oid, user="ann", total_cents=5000),
            ev(1, "orders.payment_captured", order_id=oid, payment_id="p", amount_cents=5000)], 0)
    store.append("order-o2", [ev(2, "orders.order_refunded", order_id="o2", payment_id="p",
                                 amount_cents=5000, reason="hold_expired")], 2)
    store.append("member-ann", [
        ev(3, "members.points_earned", user="ann", points=50),
        ev(4, "members.points_earned", user="ann", points=50),
        ev(5, "members.points_taken_back", user="ann", points=50)], 0)
    view = folded(MembersView(), {s: store.read(s) for s in store.streams()})
    store.close()
    assert view.orders_by_user() == {"ann": [(T0 + 1000, 5000)]}
    points = view.points_of("ann")
    assert (points["earned"], points["taken_back"], points["balance"]) == (100, 50, 50)


# -- referrals ----------------------------------------------------------------------------


def test_referrals_give_reach_depth_k_factor_and_first_touch_utm(log):
    """u0 invited (through others) every other user; u1 keeps its first session's UTM."""
    r = folded(ReferralsView(), log)
    j = r.to_json()
    assert j["users_seen"] == 24 and j["invited"] == 23
    assert j["k_factor"] == round(23 / 24, 6)
    u0 = j["users"]["u0"]
    assert (u0["reach"], u0["depth"], u0["level"], u0["invited_by"]) == (23, 4, 0, None)
    u1 = j["users"]["u1"]
    assert u1["invited_by"] == "u0" and u1["level"] == 1 and u1["sessions"] == 2
    assert u1["utm"] == {"source": "search", "medium": "cpc", "campaign": "kw"}
    assert j["users"]["u23"]["level"] == 4 and j["users"]["u23"]["reach"] == 0
    assert j["top_inviters"][0] == {"user": "u0", "invited": 2, "reach": 23, "depth": 4}
    assert j["cycles"] == []


def test_team_formations_are_recorded_with_their_outcome(log):
    """The full team completed with three members and a split pool; the other expired."""
    teams = folded(ReferralsView(), log).to_json()["teams"]["teams"]
    assert teams["t1"]["status"] == "completed" and teams["t1"]["members"] == ["u1", "u5", "u6"]
    assert sum(c for _, c in teams["t1"]["shares"]) == 1000
    assert teams["t2"]["status"] == "expired" and teams["t2"]["members"] == ["u2", "u7"]


def test_the_graphml_export_declares_its_keys_and_has_one_directed_edge_per_invite(log):
    """GraphML: every data key declared, one node per user, edges inviter -> invitee."""
    doc = ET.fromstring(graphml(folded(ReferralsView(), log)))
    ns = {"g": GRAPHML_NS}
    assert doc.tag == f"{{{GRAPHML_NS}}}graphml"
    declared = {k.get("id") for k in doc.findall("g:key", ns)}
    used = {d.get("key") for d in doc.iter(f"{{{GRAPHML_NS}}}data")}
    assert used <= declared
    graph = doc.find("g:graph", ns)
    assert graph.get("edgedefault") == "directed"
    nodes = {n.get("id") for n in graph.findall("g:node", ns)}
    edges = {(e.get("source"), e.get("target")) for e in graph.findall("g:edge", ns)}
    assert len(nodes) == 24 and len(edges) == 23
    assert ("u0", "u1") in edges and ("u1", "u3") in edges
    assert all(s in nodes and t in nodes for s, t in edges)


# -- every view ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_view_is_the_same_whatever_the_interleaving_of_streams(log, seed):
    """Folding the streams mixed in a random order gives the same digest as stream by stream."""
    for view in all_views():
        expected = folded(type(view)(), log).digest()
        assert folded(view, log, interleaved(log, seed)).digest() == expected, view.name


def test_parts_folded_from_disjoint_streams_merge_into_the_whole_view(log):
    """Split the streams in two, fold each part, merge: the digest of the whole."""
    streams = sorted(log)
    for view in all_views():
        parts = [folded(type(view)(), {s: log[s] for s in streams[i::2]}) for i in range(2)]
        assert merged(parts).digest() == folded(type(view)(), log).digest(), view.name


def test_parts_that_disagree_on_a_row_do_not_merge(log):
    """Two parts holding the same order with different contents is an error, not a guess."""
    a, b = folded(OrdersView(), log), OrdersView()
    b.t["order"]["o001"] = {"status": "forged"}
    with pytest.raises(MergeConflict, match="o001"):
        merged([a, b])


def test_all_views_are_fresh_and_named_views_are_found():
    """all_views gives a new instance of each view; an unknown name is a readable error."""
    first, second = all_views(), all_views()
    assert [v.name for v in first] == ["orders", "referrals", "metrics", "stock",
                                       "members"]
    assert all(a is not b and a.digest() == b.digest() for a, b in zip(first, second))
    assert view_class("stock") is StockView
    with pytest.raises(UnknownView, match="use one of orders"):
        view_class("inventory")


# -- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def data_dir(shop, tmp_path):
    """A data dir whose events.db holds the sale day."""
    sale_day(shop)
    return tmp_path


def cli(*args):
    from typer.testing import CliRunner

    from saleday.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_saleday_view_catches_up_and_prints_json_for_machines(data_dir):
    """`view stock --json` folds the log and prints the stock; a second call folds nothing
    new and prints the same, restored from the checkpoint next to the log."""
    first = cli("view", "stock", "--data", str(data_dir), "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["skus"]["sku-c"] == {"stocked": 3, "available": 3,
                                                         "reserved": 0, "sold": 0}
    assert (data_dir / "projections.db").exists()
    again = cli("view", "stock", "--data", str(data_dir), "--json", "--sku", "sku-c")
    assert json.loads(again.stdout) == {"skus": {"sku-c": json.loads(first.stdout)["skus"]["sku-c"]}}


def test_saleday_view_filters_orders_and_users_and_prints_tables(data_dir):
    """--order shows one order, --user one user's; the human output is a table."""
    one = cli("view", "orders", "--data", str(data_dir), "--order", "o001", "--json")
    assert json.loads(one.stdout)["lines"][0]["tiers"] == [0, 1]
    mine = cli("view", "orders", "--data", str(data_dir), "--user", "u3", "--json")
    assert [o["order_id"] for o in json.loads(mine.stdout)["orders"]] == ["o003", "o027"]
    table = cli("view", "orders", "--data", str(data_dir), "--top", "5")
    assert table.exit_code == 0 and "o004" in table.output and "o005" not in table.output
    missing = cli("view", "orders", "--data", str(data_dir), "--order", "nope")
    assert missing.exit_code == 2 and "order 'nope' is not in the view" in missing.output


def test_saleday_view_referrals_writes_graphml_and_metrics_rebuilds(data_dir):
    """--graphml writes the graph; --rebuild folds everything again with the same result."""
    out = data_dir / "refs.graphml"
    shown = cli("view", "referrals", "--data", str(data_dir), "--graphml", str(out), "--top", "3")
    assert shown.exit_code == 0, shown.output
    assert "K-factor" in shown.output and ET.parse(out).getroot().tag.endswith("graphml")
    first = json.loads(cli("view", "metrics", "--data", str(data_dir), "--json").stdout)
    rebuilt = json.loads(cli("view", "metrics", "--data", str(data_dir), "--json", "--rebuild").stdout)
    assert first == rebuilt and first["oversold_units"] == 0


def test_saleday_view_refuses_unknown_views_and_missing_logs(tmp_path):
    """A view name that does not exist, or a data dir with no log, is one readable error."""
    bad = cli("view", "inventory", "--data", str(tmp_path))
    assert bad.exit_code == 2 and "unknown view" in bad.output
    empty = cli("view", "stock", "--data", str(tmp_path / "none"))
    assert empty.exit_code == 2 and "no event log" in empty.output
