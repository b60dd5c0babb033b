"""Checkout over HTTP: placing, reading and cancelling orders, idempotency keys, refusals as
problems, and the signed payment callback."""

from __future__ import annotations

import json
import re
import time

from saleday.http.webhook import sign
from tests.http.conftest import SECRETS, make_client, now_ms

PROBLEM = "application/problem+json"


def place(client, user="u-1", lines=(("sku-1", 2),), key=None, coupon=None):
    headers = {"Idempotency-Key": key} if key else {}
    body = {"lines": [{"sku": s, "qty": q} for s, q in lines]}
    if coupon:
        body["coupon_id"] = coupon
    return client.as_user("POST", "/v1/orders", user, json=body, headers=headers)


def callback(client, body: dict, *, t: int | None = None, secret: str = SECRETS["webhook_secret"]):
    raw = json.dumps(body).encode()
    t = int(time.time()) if t is None else t
    return client.http.post("/v1/payments/callback", content=raw, headers={
        "Content-Type": "application/json", "Saleday-Signature": sign(secret, t, raw)})


def heads(shards) -> dict[str, int]:
    return dict(shards.store.streams())


def test_place_order_answers_prices_total_and_deadline(client):
    """Placing an order is a 201 with each unit's tier price, the total and the payment
    deadline, and a Location to read it back."""
    client.sale(tiers=((1, 500), (0, 1000)))
    before = now_ms()
    r = place(client, lines=(("sku-1", 2),))
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "placed"
    assert order["lines"] == [{"sku": "sku-1", "qty": 2, "unit_prices": [500, 1000]}]
    assert order["total_cents"] == 1500
    assert order["payment_deadline_ms"] >= before + 900_000
    assert r.headers["Location"] == f"/v1/orders/{order['order_id']}"
    again = client.as_user("GET", r.headers["Location"], "u-1")
    assert again.status_code == 200 and again.json() == order


def test_another_users_order_is_not_found(client):
    """A user cannot read or cancel someone else's order: 404, as for an order that does
    not exist, so order ids reveal nothing."""
    client.sale()
    order_id = place(client, user="alice").json()["order_id"]
    for method, url in (("GET", f"/v1/orders/{order_id}"), ("POST", f"/v1/orders/{order_id}/cancel")):
        r = client.as_user(method, url, "mallory")
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert client.as_user("GET", "/v1/orders/o-nothing", "alice").status_code == 404
    assert client.as_user("GET", f"/v1/orders/{order_id}", "alice").json()["status"] == "placed"


def test_cancel_releases_the_stock(client):
    """Cancelling an unpaid order answers it cancelled and puts its units back."""
    client.sale(stock=3)
    order_id = place(client, lines=(("sku-1", 3),)).json()["order_id"]
    assert client.http.get("/v1/skus/sku-1").json()["available"] == 0
    r = client.as_user("POST", f"/v1/orders/{order_id}/cancel", "u-1")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert client.http.get("/v1/skus/sku-1").json()["available"] == 3


def test_sold_out_is_a_409_problem_naming_the_refusal(client):
    """A refusal by the rules is a 409 problem+json with the refusal's type and fields."""
    client.sale(stock=1)
    r = place(client, lines=(("sku-1", 2),))
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    p = r.json()
    assert p["type"].endswith(":sold_out") and p["status"] == 409 and p["title"] == "Sold out"
    assert (p["refusal"], p["sku"], p["requested"], p["available"]) == ("SoldOut", "sku-1", 2, 1)
    assert p["instance"] == "/v1/orders" and p["order_id"].startswith("o-")


def test_the_same_key_and_body_place_one_order(client, shards):
    """A retry with the same Idempotency-Key and body answers the same order and holds the
    stock once."""
    client.sale(stock=5)
    first = place(client, key="k-1", lines=(("sku-1", 2),))
    second = place(client, key="k-1", lines=(("sku-1", 2),))
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert client.http.get("/v1/skus/sku-1").json()["available"] == 3


def test_a_refused_order_retried_with_its_key_is_refused_again(client):
    """Retrying a refused order under the same key does not place it, even once stock is
    back: it stays refused, naming the first refusal."""
    client.sale(stock=1)
    assert place(client, key="k-r", lines=(("sku-1", 2),)).status_code == 409
    client.http.post("/v1/admin/skus/sku-1/stock", json={"qty": 5}, headers=client.op())
    r = place(client, key="k-r", lines=(("sku-1", 2),))
    assert r.status_code == 409
    assert (r.json()["refusal"], r.json()["reason"]) == ("OrderCancelled", "sold_out")


def test_orders_without_a_key_get_ids_in_the_order_they_were_placed(client):
    """A key-less order's id is minted in time order (the millisecond, then 64 random bits),
    so the log's command-id index grows at its end; ids never repeat."""
    client.sale(stock=50)
    ids = []
    for _ in range(4):
        ids.append(place(client, lines=(("sku-1", 1),)).json()["order_id"])
        time.sleep(0.002)   # the next order is made in a later millisecond
    assert all(re.fullmatch(r"o-[0-9a-f]{28}", i) for i in ids), ids
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    made_ms = int(ids[0][2:14], 16)
    assert abs(made_ms - now_ms()) < 60_000


def test_two_users_keys_do_not_collide(client):
    """The same key sent by two users places two orders."""
    client.sale(stock=5)
    a = place(client, user="a", key="same").json()["order_id"]
    b = place(client, user="b", key="same").json()["order_id"]
    assert a != b


def test_the_same_key_with_another_body_is_a_409(client, shards, settings):
    """Reusing a key with a different body is a 409 idempotency conflict, caught at the edge
    and, on another replica that never saw the key, from the order the shard holds."""
    client.sale(stock=5)
    assert place(client, key="k-2", lines=(("sku-1", 1),)).status_code == 201
    r = place(client, key="k-2", lines=(("sku-1", 2),))
    assert r.status_code == 409 and r.json()["type"].endswith(":idempotency_conflict")
    for other in make_client(shards, settings):   # a second replica over the same shards
        r = place(other, key="k-2", lines=(("sku-1", 2),))
        assert r.status_code == 409 and r.json()["refusal"] == "IdempotencyConflict"
    assert client.http.get("/v1/skus/sku-1").json()["available"] == 4


def test_malformed_orders_are_422_problems(client):
    """Malformed input is a 422 problem+json: bad JSON or bytes, a missing or unknown field, a
    quantity out of range, a bad Idempotency-Key, an id that is not one."""
    client.sale()
    bad = [b"{not json", b'\xff"', json.dumps({"lines": []}).encode(),
           json.dumps({"lines": [{"sku": "sku-1", "qty": 0}]}).encode(),
           json.dumps({"lines": [{"sku": "sku-1", "qty": 1}], "colour": "red"}).encode(),
           json.dumps({"lines": [{"sku": "a/b", "qty": 1}]}).encode()]
    for body in bad:
        r = client.as_user("POST", "/v1/orders", "u-1", content=body,
                           headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, body
        assert r.json()["errors"]
    r = place(client, key="has space")
    assert r.status_code == 422 and r.json()["type"].endswith(":invalid_idempotency_key")
    r = place(client, lines=(("sku-1", 1), ("sku-1", 1)))   # the order decider's own check
    assert r.status_code == 422 and r.json()["refusal"] == "InvalidCommand"


def test_a_signed_callback_pays_the_order(client):
    """A correctly signed payment callback pays the order and confirms its units."""
    client.sale(stock=5)
    order = place(client).json()
    r = callback(client, {"id": "evt-1", "type": "payment.succeeded", "order_id": order["order_id"],
                          "payment_id": "pay-1", "amount_cents": order["total_cents"]})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "paid"
    assert client.as_user("GET", f"/v1/orders/{order['order_id']}", "u-1").json()["paid_cents"] == \
        order["total_cents"]
    assert client.http.get("/v1/skus/sku-1").json()["sold"] == 2


def test_a_paid_order_cannot_be_cancelled(client):
    """Cancelling a paid order is a 409 naming the refusal."""
    client.sale(stock=5)
    order = place(client).json()
    callback(client, {"id": "evt-9", "type": "payment.succeeded", "order_id": order["order_id"],
                      "payment_id": "pay-9", "amount_cents": order["total_cents"]})
    r = client.as_user("POST", f"/v1/orders/{order['order_id']}/cancel", "u-1")
    assert r.status_code == 409 and r.json()["refusal"] == "OrderAlreadyPaid"
    assert r.json()["order_id"] == order["order_id"]


def test_a_failed_payment_cancels_the_order(client):
    """A signed payment.failed callback cancels the order and releases its stock."""
    client.sale(stock=5)
    order = place(client).json()
    r = callback(client, {"id": "evt-2", "type": "payment.failed", "order_id": order["order_id"],
                          "payment_id": "pay-2"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert client.http.get("/v1/skus/sku-1").json()["available"] == 5


def test_forged_stale_or_replayed_callbacks_change_nothing(client, shards):
    """A callback signed with another secret, one whose timestamp is out of the window, one
    without a signature, and a replay of an accepted one change nothing in the log."""
    client.sale(stock=5)
    order = place(client).json()
    body = {"id": "evt-3", "type": "payment.succeeded", "order_id": order["order_id"],
            "payment_id": "pay-3", "amount_cents": order["total_cents"]}
    before = heads(shards)
    forged = callback(client, body, secret="x" * 40)
    stale = callback(client, body, t=int(time.time()) - 301)
    future = callback(client, body, t=int(time.time()) + 301)
    unsigned = client.http.post("/v1/payments/callback", json=body)
    for r in (forged, stale, future, unsigned):
        assert r.status_code == 401 and r.json()["type"].endswith(":bad_signature")
    assert heads(shards) == before
    t = int(time.time())
    assert callback(client, body, t=t).json()["status"] == "paid"
    paid = heads(shards)
    replay = callback(client, body, t=t)
    assert replay.status_code == 200 and replay.json()["status"] == "replayed"
    resent = callback(client, body, t=t - 1)   # the provider sends it again, signed anew
    assert resent.status_code == 200 and resent.json()["status"] == "paid"
    assert heads(shards) == paid


def test_a_callback_with_the_wrong_amount_is_refused_but_acknowledged(client):
    """A payment whose amount is not the order's total is acknowledged 200 as refused and
    leaves the order unpaid."""
    client.sale(stock=5)
    order = place(client).json()
    r = callback(client, {"id": "evt-4", "type": "payment.succeeded", "order_id": order["order_id"],
                          "payment_id": "pay-4", "amount_cents": 1})
    assert r.status_code == 200 and r.json() == {"order_id": order["order_id"],
                                                 "status": "refused", "reason": "payment_mismatch"}
    assert client.as_user("GET", f"/v1/orders/{order['order_id']}", "u-1").json()["status"] == "placed"


def test_a_signed_but_malformed_callback_is_a_422(client):
    """A correctly signed body that is not a payment event is a 422 problem."""
    r = callback(client, {"id": "evt-5", "type": "payment.refunded", "order_id": "o-1",
                          "payment_id": "p"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
