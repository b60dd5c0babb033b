"""The shopper's routes over HTTP: sessions, coupon claims, team-ups, store visits, SKUs."""

from __future__ import annotations

import asyncio

from tests.http.conftest import now_ms

PROBLEM = "application/problem+json"


async def react(shards):
    shards.react()
    for _ in range(3):
        await asyncio.sleep(0)


def campaign(client, name="c-1", budget_cents=100_000, **terms):
    now = now_ms()
    r = client.http.post("/v1/admin/campaigns", headers=client.op(), json={
        "campaign": name, "value_cents": 300, "valid_from_ms": now - 1000,
        "valid_until_ms": now + 86_400_000, "budget_cents": budget_cents, **terms})
    assert r.status_code == 201, r.text


def test_a_session_records_the_utm_source_and_the_inviter(client):
    """A first session from an invite attributes the user to an inviter seen before."""
    assert client.as_user("POST", "/v1/sessions", "inviter", json={}).status_code == 201
    r = client.as_user("POST", "/v1/sessions", "newbie",
                       json={"utm_source": "wechat", "inviter": "inviter"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["user"] == "newbie" and body["invited_by"] == "inviter"
    assert body["first_seen_ms"] > 0 and body["session_id"].startswith("s-")


def test_a_session_key_starts_one_session(client):
    """The same Idempotency-Key starts the same session again; another body is a 409."""
    a = client.as_user("POST", "/v1/sessions", "u", json={}, headers={"Idempotency-Key": "k"})
    b = client.as_user("POST", "/v1/sessions", "u", json={}, headers={"Idempotency-Key": "k"})
    assert a.json()["session_id"] == b.json()["session_id"]
    c = client.as_user("POST", "/v1/sessions", "u", json={"utm_source": "x"},
                       headers={"Idempotency-Key": "k"})
    assert c.status_code == 409 and c.json()["type"].endswith(":idempotency_conflict")


def test_a_coupon_claim_reaches_the_wallet(client, shards):
    """Claiming a campaign's coupon grants it once; after the reaction it is in the wallet."""
    campaign(client)
    r = client.as_user("POST", "/v1/coupons/claims", "u", json={"campaign": "c-1"})
    assert r.status_code == 201, r.text
    assert r.json()["value_cents"] == 300
    again = client.as_user("POST", "/v1/coupons/claims", "u", json={"campaign": "c-1"})
    assert again.status_code == 201 and again.json()["coupon_id"] == r.json()["coupon_id"]
    client.http.portal.call(react, shards)   # what the Reactor does on a deployment
    wallet = client.as_user("GET", "/v1/coupons", "u").json()
    assert [c["coupon_id"] for c in wallet] == [r.json()["coupon_id"]]


def test_claiming_from_an_unknown_campaign_is_a_422(client):
    """A claim naming no campaign that exists is a 422 problem naming the refusal."""
    r = client.as_user("POST", "/v1/coupons/claims", "u", json={"campaign": "nope"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert r.json()["refusal"] == "UnknownCampaign" and r.json()["campaign"] == "nope"


def test_a_team_fills_up_and_splits_its_red_packet(client):
    """A team created by its leader completes when the last member joins; its shares add
    up to the pool; joining twice is a 409."""
    campaign(client)
    r = client.as_user("POST", "/v1/teams", "lead", json={"campaign": "c-1", "pool_cents": 1000,
                                                           "size": 2})
    assert r.status_code == 201, r.text
    team = r.json()["team"]
    joined = client.as_user("POST", f"/v1/teams/{team}/members", "friend")
    assert joined.status_code == 201 and joined.json()["completed"] is True
    assert sum(cents for _, cents in joined.json()["shares"]) == 1000
    again = client.as_user("POST", f"/v1/teams/{team}/members", "lead")
    assert again.status_code == 409
    assert client.as_user("GET", "/v1/teams/t-none", "lead").status_code == 404


def test_a_store_visit_inside_the_geofence_is_recorded_once(client):
    """A location inside a configured store's geofence records a visit, only the first time;
    one outside records nothing."""
    far = client.as_user("POST", "/v1/visits", "u", json={"lat": 0.0, "lon": 0.0})
    assert far.status_code == 200 and far.json() == {"visited": []}
    near = client.as_user("POST", "/v1/visits", "u", json={"lat": 31.2305, "lon": 121.4738})
    assert near.json() == {"visited": ["store-1"]}
    again = client.as_user("POST", "/v1/visits", "u", json={"lat": 31.2305, "lon": 121.4738})
    assert again.json() == {"visited": []}
    assert client.as_user("POST", "/v1/visits", "u", json={"lat": 91, "lon": 0}).status_code == 422


def test_a_sku_read_shows_stock_price_window_and_server_time(client):
    """Reading a SKU needs no token and shows its stock, the next unit's price (tier by tier),
    the sale window and the server's time."""
    client.sale(stock=4, tiers=((2, 500), (0, 1000)))
    before = now_ms()
    sku = client.http.get("/v1/skus/sku-1").json()
    assert (sku["available"], sku["price_cents"], sku["tier"], sku["tier_units_left"]) == (4, 500, 0, 2)
    assert sku["sale_open"] is True and sku["server_time_ms"] >= before
    client.as_user("POST", "/v1/orders", "u", json={"lines": [{"sku": "sku-1", "qty": 2}]})
    sku = client.http.get("/v1/skus/sku-1").json()
    assert (sku["available"], sku["reserved"], sku["price_cents"], sku["tier_units_left"]) == \
        (2, 2, 1000, None)
    r = client.http.get("/v1/skus/nothing")
    assert r.status_code == 404 and r.json()["type"].endswith(":unknown_sku")


def test_a_claimed_coupon_takes_its_value_off_an_order(client, shards):
    """A coupon claimed into the wallet lowers the order's total, is locked by it, and
    returns to the wallet when the order is cancelled."""
    campaign(client)
    client.sale(stock=5, tiers=((0, 500),))
    coupon = client.as_user("POST", "/v1/coupons/claims", "u", json={"campaign": "c-1"}).json()
    client.http.portal.call(react, shards)
    r = client.as_user("POST", "/v1/orders", "u", json={
        "lines": [{"sku": "sku-1", "qty": 2}], "coupon_id": coupon["coupon_id"]})
    assert r.status_code == 201, r.text
    order = r.json()
    assert (order["subtotal_cents"], order["discount_cents"], order["total_cents"]) == (1000, 300, 700)
    assert client.as_user("GET", "/v1/coupons", "u").json()[0]["status"] == "locked"
    client.as_user("POST", f"/v1/orders/{order['order_id']}/cancel", "u")
    assert client.as_user("GET", "/v1/coupons", "u").json()[0]["status"] == "held"
    r = client.as_user("POST", "/v1/orders", "u", json={
        "lines": [{"sku": "sku-1", "qty": 1}], "coupon_id": "not-mine"})
    assert r.status_code == 422 and r.json()["refusal"] == "CouponNotFound"
