"""The operator's routes and the views read from the projections."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from saleday.http.views import ViewReader
from saleday.projections.checkpoint import open_checkpoints
from tests.http.conftest import make_client, now_ms


@pytest.fixture
def viewing(shards, settings, tmp_path) -> Iterator:
    reader = ViewReader(shards.store, open_checkpoints(f"sqlite:///{tmp_path}/projections.db"))
    yield from make_client(shards, settings, views=reader)


def test_configuring_a_sale_and_adding_stock_show_the_sku(client):
    """Adding stock and configuring a sale answer the SKU as it now stands."""
    r = client.http.post("/v1/admin/skus/sku-9/stock", json={"qty": 7}, headers=client.op())
    assert r.status_code == 200 and r.json()["available"] == 7
    now = now_ms()
    r = client.http.put("/v1/admin/skus/sku-9/sale", headers=client.op(), json={
        "tiers": [{"units": 0, "price_cents": 990}], "per_user_limit": 1,
        "start_ms": now - 1, "end_ms": now + 60_000})
    assert r.status_code == 200
    assert (r.json()["price_cents"], r.json()["per_user_limit"], r.json()["sale_open"]) == (990, 1, True)


def test_an_admin_key_adds_stock_once(client):
    """Adding stock twice under one Idempotency-Key adds it once; the key with another
    quantity is a 409."""
    key = {"Idempotency-Key": "restock-1"}
    for _ in range(2):
        r = client.http.post("/v1/admin/skus/s/stock", json={"qty": 5}, headers=client.op(**key))
        assert r.status_code == 200
    assert r.json()["available"] == 5
    r = client.http.post("/v1/admin/skus/s/stock", json={"qty": 6}, headers=client.op(**key))
    assert r.status_code == 409


def test_a_sale_the_rules_refuse_is_a_problem(client):
    """A sale whose window ends before it starts is refused as a 422 problem."""
    r = client.http.put("/v1/admin/skus/s/sale", headers=client.op(), json={
        "tiers": [{"units": 0, "price_cents": 100}], "start_ms": 10, "end_ms": 5})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


def test_creating_a_campaign_records_it(client):
    """Creating a campaign answers 201 with the event recorded; one without a budget is a
    422 saying so."""
    now = now_ms()
    r = client.http.post("/v1/admin/campaigns", headers=client.op(), json={
        "campaign": "c", "value_cents": 100, "valid_from_ms": now, "valid_until_ms": now + 1000})
    assert r.status_code == 422 and r.json()["detail"].startswith("a campaign needs a budget")
    r = client.http.post("/v1/admin/campaigns", headers=client.op(), json={
        "campaign": "c", "value_cents": 100, "valid_from_ms": now, "valid_until_ms": now + 1000,
        "budget_coupons": 10})
    assert r.status_code == 201 and r.json() == {"accepted": True, "events": ["CampaignCreated"]}


def test_views_show_the_users_orders_and_the_operators_metrics(viewing):
    """/v1/views/orders shows the caller's own orders from the projection; /v1/views/metrics
    needs the operator token."""
    client = viewing
    client.sale(stock=5)
    mine = client.as_user("POST", "/v1/orders", "me", json={"lines": [{"sku": "sku-1", "qty": 1}]})
    client.as_user("POST", "/v1/orders", "you", json={"lines": [{"sku": "sku-1", "qty": 1}]})
    r = client.as_user("GET", "/v1/views/orders", "me")
    assert r.status_code == 200
    assert [o["order_id"] for o in r.json()["data"]] == [mine.json()["order_id"]]
    assert client.as_user("GET", "/v1/views/metrics", "me").status_code == 401
    r = client.http.get("/v1/views/metrics", headers=client.op())
    assert r.status_code == 200 and r.json()["data"]["oversold_units"] == 0


def test_views_without_a_reader_are_503(client):
    """A server given no projections answers its views 503."""
    assert client.as_user("GET", "/v1/views/orders", "me").status_code == 503
