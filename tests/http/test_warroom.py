"""The war room: its page and static files, and the summary it polls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from saleday.cluster.local import LocalShards
from saleday.http import HttpSettings
from saleday.http.metrics import RecentRequests
from saleday.http.views import ViewReader
from saleday.http.warroom import STATIC, target
from saleday.projections.checkpoint import open_checkpoints
from tests.http.conftest import SECRETS, Client, make_client


@pytest.fixture
def room(shards: LocalShards, settings: HttpSettings, tmp_path: Path) -> Iterator[Client]:
    reader = ViewReader(shards.store, open_checkpoints(f"sqlite:///{tmp_path}/projections.db"))
    yield from make_client(shards, settings, views=reader)


def test_the_page_and_its_assets_are_served_from_the_package(client):
    """`/` is the war room page under a strict content security policy, and its script and
    style come from the installed package (no build step, nothing from elsewhere)."""
    r = client.http.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert '<script src="/static/warroom.js"' in r.text and "<main" in r.text
    for name, kind in (("warroom.js", "javascript"), ("warroom.css", "text/css")):
        asset = client.http.get(f"/static/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"]
        assert asset.text == (STATIC / name).read_text()
    assert "/static/{path}" not in client.http.get("/openapi.json").json()["paths"]


def test_the_summary_needs_the_operator_token_unless_the_room_is_public(shards, settings):
    """/v1/warroom is a 401 problem without the operator token, a 200 with it, and open to
    all when SALEDAY_HTTP_WARROOM_PUBLIC is set."""
    for client in make_client(shards, settings):
        r = client.http.get("/v1/warroom")
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert client.as_user("GET", "/v1/warroom", "u1").status_code == 401
        assert client.http.get("/v1/warroom", headers=client.op()).status_code == 200
    public = HttpSettings(**SECRETS, warroom_public=True)
    for client in make_client(shards, public):
        assert client.http.get("/v1/warroom").status_code == 200


def test_the_summary_shows_orders_stock_targets_and_the_apps_own_latency(room):
    """After orders and a payment, the summary counts them from the projections, ranks the
    SKU with its live stock, judges each target and reports the requests' latency."""
    room.sale("sku-1", stock=10)
    for user in ("u1", "u2"):
        r = room.as_user("POST", "/v1/orders", user, json={"lines": [{"sku": "sku-1", "qty": 2}]})
        assert r.status_code == 201, r.text
    d = room.http.get("/v1/warroom", headers=room.op()).json()
    assert d["views"] == "ok"
    assert d["orders"]["orders_placed"] == 2 and d["orders"]["orders_paid"] == 0
    targets = {t["name"]: t for t in d["targets"]}
    assert targets["payment_success"]["value"] == 0.0 and targets["payment_success"]["ok"] is False
    assert targets["oversold_units"]["ok"] is True
    assert targets["latency_p99_ms"]["ok"] is True and d["latency"]["p99_ms"] > 0
    assert targets["coupon_redemption"]["ok"] is None          # no coupon received yet
    assert d["latency"]["sampled"] >= 4                       # the admin calls and orders
    assert d["referrals"]["k_factor"] is None and d["red_packets"]["created"] == 0
    rows = {s["sku"]: s for s in d["skus"]}
    assert rows == {} or rows["sku-1"]["stocked"] == 10    # the feed may not have folded it


def test_a_target_is_met_missed_or_without_data():
    """Targets compare against the seed's wall: p99 <= 500 ms, payments >= 99.5 %,
    coupons >= 40 %, nothing oversold; no value yet is neither met nor missed."""
    assert target("latency_p99_ms", "p99", 499.9, "ms")["ok"] is True
    assert target("latency_p99_ms", "p99", 500.1, "ms")["ok"] is False
    assert target("payment_success", "pay", 0.995, "ratio")["ok"] is True
    assert target("payment_success", "pay", 0.99, "ratio")["ok"] is False
    assert target("coupon_redemption", "c", 0.39, "ratio")["ok"] is False
    assert target("oversold_units", "o", 1, "units")["ok"] is False
    assert target("oversold_units", "o", None, "units")["ok"] is None


def test_recent_requests_give_rates_and_percentiles_of_sale_traffic_only():
    """The window counts /v1 requests a second by kind and their latency percentiles,
    leaving out the war room's own polling and requests older than the window."""
    now = [1000.0]
    recent = RecentRequests(window_s=10, clock=lambda: now[0])
    recent.add("/v1/orders", "POST", 201, 0.5)          # leaves the window below
    now[0] = 1005.0
    for i in range(100):
        recent.add("/v1/orders", "POST", 201, (i + 1) / 1000)
    for _ in range(10):
        recent.add("/v1/orders", "POST", 429, 0.001)
        recent.add("/v1/orders", "POST", 503, 0.001)
        recent.add("/v1/warroom", "GET", 200, 5.0)
        recent.add("/metrics", "GET", 200, 5.0)
    now[0] = 1012.5
    s = recent.stats()
    assert s["requests_per_s"] == round(120 / 9, 2) and s["writes_per_s"] == round(100 / 9, 2)
    assert s["rate_limited_ratio"] == round(10 / 120, 4) and s["busy_ratio"] == round(10 / 120, 4)
    assert s["p50_ms"] == 41.0 and s["p99_ms"] == 99.0 and s["sampled"] == 120
