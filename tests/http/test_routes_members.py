"""Members over HTTP: one's own member (tier, points), the invoice and points at order
placement, presale deposits and balances, and the operator's price change and presale
opening; refusals as problem+json. In-process shards on a memory log, on a clock the test
moves."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from saleday.actors.member import ChangeTier, EarnPoints, TakeBackPoints
from saleday.cluster.local import LocalShards
from saleday.events import open_store
from tests.http.conftest import KINDS, make_client
from tests.http.test_routes_orders import callback

PROBLEM = "application/problem+json"
T0 = 1_794_326_400_000


@pytest.fixture
def clock():
    return {"now": T0}


@pytest.fixture
def shards(clock) -> LocalShards:
    kinds = {**KINDS, "member": 1, "price": 1, "presale": 1}
    return LocalShards(open_store(f"memory://members-{uuid.uuid4().hex}"), kinds,
                       autoflush=True, clock=lambda: clock["now"])


@pytest.fixture
def client(shards, settings, clock):
    yield from make_client(shards, settings, clock=lambda: clock["now"])


def earn(shards, user: str, points: int) -> None:
    reply = asyncio.run(shards.submit(EarnPoints(
        user=user, order_ref=f"hist-{user}", amount_cents=points * 100, invoice="none",
        points_per_yuan=1, valid_days=365, now=T0 - 1)))
    assert type(reply).__name__ == "Accepted", reply


def open_sale(client) -> None:
    op = client.op()
    assert client.http.post("/v1/admin/skus/sku-1/stock", json={"qty": 10},
                            headers=op).status_code == 200
    r = client.http.put("/v1/admin/skus/sku-1/sale", headers=op, json={
        "tiers": [{"units": 0, "price_cents": 10_000}], "per_user_limit": 0,
        "start_ms": T0 - 1_000, "end_ms": T0 + 86_400_000})
    assert r.status_code == 200, r.text


def test_a_user_reads_their_own_member_tier_and_points(client, shards):
    """GET /v1/member is the caller's: tier history, balance and lots; another user sees
    only their own (empty) member."""
    earn(shards, "ann", 800)
    asyncio.run(shards.submit(ChangeTier(user="ann", tier="gold", rule="test", now=T0 - 1)))
    r = client.as_user("GET", "/v1/member", "ann")
    assert r.status_code == 200, r.text
    m = r.json()
    assert (m["user"], m["tier"], m["points_balance"], m["points_earned"]) == ("ann", "gold",
                                                                               800, 800)
    assert m["lots"] == [{"order_ref": "hist-ann", "points": 800,
                          "expires_at_ms": T0 - 1 + 365 * 86_400_000}]
    other = client.as_user("GET", "/v1/member", "bob").json()
    assert (other["user"], other["tier"], other["points_balance"], other["lots"]) == (
        "bob", "regular", 0, [])
    assert client.http.get("/v1/member").status_code == 401


def test_a_member_shows_what_a_refunded_order_took_back(client, shards):
    """Given 800 points earned by an order that was then refunded as a whole, the member
    shows the 800 taken back (by order), and a balance that no longer holds them."""
    earn(shards, "ann", 800)
    reply = asyncio.run(shards.submit(TakeBackPoints(user="ann", order_ref="hist-ann",
                                                     reason="test_refund", now=T0)))
    assert type(reply).__name__ == "Accepted", reply
    m = client.as_user("GET", "/v1/member", "ann").json()
    assert (m["points_earned"], m["points_taken_back"], m["points_balance"]) == (800, 800, 0)
    assert m["taken_back"] == [{"order_ref": "hist-ann", "points": 800}]
    assert client.as_user("GET", "/v1/member", "bob").json()["taken_back"] == []


def test_an_order_with_an_e_invoice_and_points_is_discounted_and_spends_them(client, shards):
    """Placing with 500 points takes 5.00 off; they are held, then spent when the order is
    paid; the e-invoice is recorded on the member."""
    open_sale(client)
    earn(shards, "ann", 800)
    r = client.as_user("POST", "/v1/orders", "ann", json={
        "lines": [{"sku": "sku-1", "qty": 1}], "points": 500,
        "invoice": {"kind": "electronic", "title": "ACME Ltd", "tax_id": "9131"}})
    assert r.status_code == 201, r.text
    order = r.json()
    assert (order["total_cents"], order["points"], order["points_cents"]) == (9_500, 500, 500)
    m = client.as_user("GET", "/v1/member", "ann").json()
    assert (m["points_balance"], m["points_held"]) == (300, 500)
    assert m["holds"][0]["order_id"] == order["order_id"]
    paid = callback(client, {"id": "evt-1", "type": "payment.succeeded",
                             "order_id": order["order_id"], "payment_id": "pay-1",
                             "amount_cents": 9_500}, t=T0 // 1000)
    assert paid.json()["status"] == "paid", paid.text
    m = client.as_user("GET", "/v1/member", "ann").json()
    assert (m["points_balance"], m["points_held"], m["points_redeemed"]) == (300, 0, 500)
    member = asyncio.run(shards.query("member", "ann"))
    assert member.invoices[order["order_id"]] == "electronic"


def test_points_above_the_balance_or_the_total_are_refused_as_problems(client, shards):
    """More points than the balance: 409 insufficient_points; worth more than the order:
    422 points_exceed_total; a negative amount or an unknown invoice kind: 422. Nothing
    stays held."""
    open_sale(client)
    earn(shards, "ann", 800)
    over = client.as_user("POST", "/v1/orders", "ann", json={
        "lines": [{"sku": "sku-1", "qty": 1}], "points": 801})
    assert over.status_code == 409 and over.headers["content-type"] == PROBLEM
    assert over.json()["refusal"] == "InsufficientPoints" and over.json()["balance"] == 800
    too_much = client.as_user("POST", "/v1/orders", "ann", json={
        "lines": [{"sku": "sku-1", "qty": 1}], "points": 10_001})
    assert too_much.status_code == 422 and too_much.json()["type"].endswith("points_exceed_total")
    for bad in ({"points": -1}, {"invoice": {"kind": "fax"}}):
        r = client.as_user("POST", "/v1/orders", "ann", json={
            "lines": [{"sku": "sku-1", "qty": 1}], **bad})
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    m = client.as_user("GET", "/v1/member", "ann").json()
    assert (m["points_balance"], m["points_held"]) == (800, 0)


def test_a_presale_takes_deposits_then_one_s_own_balance(client, clock):
    """The operator opens a presale; a deposit retried with its key is paid once and its
    units set aside on the SKU; in the balance window the holder pays it through, nobody
    else can; before it, 409."""
    op = client.op()
    assert client.http.post("/v1/admin/skus/pre-1/stock", json={"qty": 10},
                            headers=op).status_code == 200
    r = client.http.put("/v1/admin/presales/pre-1", headers=op, json={
        "units": 10, "deposit_cents": 5_000, "deposit_value_cents": 15_000,
        "price_cents": 39_900, "deposits_from_ms": T0 - 1_000, "balance_from_ms": T0 + 1_000,
        "balance_until_ms": T0 + 2_000})
    assert r.status_code == 200 and r.json()["units_left"] == 10, r.text
    first = client.as_user("POST", "/v1/presales/pre-1/deposits", "ann", json={"qty": 2},
                           headers={"Idempotency-Key": "dep-1"})
    again = client.as_user("POST", "/v1/presales/pre-1/deposits", "ann", json={"qty": 2},
                           headers={"Idempotency-Key": "dep-1"})
    assert first.status_code == again.status_code == 201, first.text
    dep = first.json()
    assert again.json() == dep and (dep["status"], dep["deposit_cents"],
                                    dep["balance_cents"]) == ("held", 10_000, 49_800)
    seen = client.as_user("GET", "/v1/presales/pre-1", "ann").json()
    assert seen["units_left"] == 8 and [d["deposit_id"] for d in seen["deposits"]] == [
        dep["deposit_id"]]
    assert client.as_user("GET", "/v1/presales/pre-1", "bob").json()["deposits"] == []
    sku = client.http.get("/v1/skus/pre-1").json()
    assert (sku["stocked"], sku["available"], sku["set_aside"], sku["reserved"],
            sku["sold"]) == (10, 8, 2, 0, 0)
    url = f"/v1/presales/pre-1/deposits/{dep['deposit_id']}/balance"
    body = {"payment_id": "bal-1", "amount_cents": 49_800}
    early = client.as_user("POST", url, "ann", json=body)
    assert early.status_code == 409 and early.json()["refusal"] == "PresaleClosed"
    clock["now"] = T0 + 1_500
    assert client.as_user("POST", url, "bob", json=body).status_code == 404
    paid = client.as_user("POST", url, "ann", json=body)
    assert paid.status_code == 200 and paid.json()["status"] == "paid", paid.text
    assert client.as_user("GET", "/v1/presales/nothing", "ann").status_code == 404


def test_a_deposit_the_sku_or_the_presale_refuses_is_a_problem_and_holds_nothing(client, clock):
    """A deposit for more units than the SKU has on the shelf is 409 sold_out; one the
    presale refuses (its window closed) is 409 too and its units are back on the shelf."""
    op = client.op()
    assert client.http.post("/v1/admin/skus/pre-2/stock", json={"qty": 3},
                            headers=op).status_code == 200
    r = client.http.put("/v1/admin/presales/pre-2", headers=op, json={
        "units": 10, "deposit_cents": 5_000, "deposit_value_cents": 15_000,
        "price_cents": 39_900, "deposits_from_ms": T0 - 1_000, "balance_from_ms": T0 + 1_000,
        "balance_until_ms": T0 + 2_000})
    assert r.status_code == 200, r.text
    short = client.as_user("POST", "/v1/presales/pre-2/deposits", "ann", json={"qty": 4})
    assert short.status_code == 409 and short.headers["content-type"] == PROBLEM
    assert (short.json()["refusal"], short.json()["available"]) == ("SoldOut", 3)
    clock["now"] = T0 + 1_000   # the deposit window has closed
    late = client.as_user("POST", "/v1/presales/pre-2/deposits", "ann", json={"qty": 2})
    assert late.status_code == 409 and late.json()["refusal"] == "PresaleClosed", late.text
    presale = client.as_user("GET", "/v1/presales/pre-2", "ann").json()
    assert (presale["units_left"], presale["deposits"]) == (10, [])
    sku = client.http.get("/v1/skus/pre-2").json()
    assert (sku["available"], sku["set_aside"]) == (3, 0)


def test_the_operator_changes_a_price_and_only_the_operator(client):
    """PUT /v1/admin/skus/{sku}/price records the list price; a user token is refused;
    a zero price is a 422."""
    r = client.http.put("/v1/admin/skus/sku-1/price", headers=client.op(),
                        json={"price_cents": 19_900})
    assert r.status_code == 200 and r.json() == {"sku": "sku-1", "price_cents": 19_900,
                                                 "since_ms": T0}
    assert client.as_user("PUT", "/v1/admin/skus/sku-1/price", "ann",
                          json={"price_cents": 1}).status_code in (401, 403)
    assert client.http.put("/v1/admin/skus/sku-1/price", headers=client.op(),
                           json={"price_cents": 0}).status_code == 422
