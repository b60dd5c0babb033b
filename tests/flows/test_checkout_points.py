"""Member points redeemed at checkout, on in-process shards over one SQLite log: held when
the order is placed, spent when it is paid, given back when it is cancelled or abandoned;
the order's total takes their value off; the audit holds on every log."""

from __future__ import annotations

import asyncio

import pytest

from saleday.actors.host import Accepted
from saleday.actors.member import DAY_MS, EarnPoints
from saleday.actors.session import ReceiveCoupon
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.cluster.local import LocalShards
from saleday.events import open_store
from saleday.flows.checkout import Checkout
from tests.projections.audit_logs import audit

T0 = 1_762_790_400_000
WINDOW = 900_000
GRACE = 60_000


@pytest.fixture
def shop(tmp_path):
    """One SKU at 99.00 on sale, and 1,000 points (10.00 yuan) in ann's ledger."""
    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    clock = {"now": T0}
    shards = LocalShards(store, {"sku": 1, "order": 1, "session": 1, "member": 1},
                         partitions=8, clock=lambda: clock["now"], autoflush=True)
    setup = [AddStock(sku="sku-1", qty=5, now=T0),
             ConfigureSale(sku="sku-1", tiers=((0, 9_900),), per_user_limit=0, start=T0,
                           end=T0 + 30 * DAY_MS, now=T0),
             EarnPoints(user="ann", order_ref="old", amount_cents=100_000, invoice="none",
                        points_per_yuan=1, valid_days=365, now=T0)]
    replies = asyncio.run(shards.submit_many(setup))
    assert all(isinstance(r, Accepted) for r in replies), replies
    yield shards, clock, url
    store.close()
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings[:10]]


def member(shards, user="ann"):
    return asyncio.run(shards.query("member", user))


def test_points_redeemed_at_checkout_are_held_then_spent_when_paid(shop):
    """600 points take 6.00 off a 99.00 order; held while it is placed, redeemed once paid."""
    shards, clock, _ = shop
    co = Checkout(shards, payment_window_ms=WINDOW, grace_ms=GRACE)
    placed = asyncio.run(co.place(order_id="o-1", user="ann", lines=(("sku-1", 1),),
                                  now=T0 + 1, points=600))
    assert (placed.status, placed.total_cents) == ("placed", 9_300)
    assert (placed.order.points, placed.order.points_cents) == (600, 600)
    m = member(shards)
    assert (m.balance, m.held, m.redeemed) == (400, 600, 0)
    paid = asyncio.run(co.payment_succeeded(order_id="o-1", payment_id="p-1",
                                            amount_cents=9_300, now=T0 + 2))
    assert (paid.status, paid.reason) == ("paid", "")
    m = member(shards)
    assert (m.balance, m.held, m.redeemed, m.redemptions["o-1"]) == (400, 0, 600, 600)


def test_a_cancelled_order_gives_its_points_back(shop):
    """A failed payment cancels the order; the held points return to the balance."""
    shards, _, _ = shop
    co = Checkout(shards, payment_window_ms=WINDOW, grace_ms=GRACE)
    asyncio.run(co.place(order_id="o-2", user="ann", lines=(("sku-1", 1),), now=T0 + 1,
                         points=1_000))
    assert member(shards).balance == 0
    cancelled = asyncio.run(co.payment_failed(order_id="o-2", now=T0 + 3))
    assert cancelled.status == "cancelled"
    m = member(shards)
    assert (m.balance, m.held, m.redeemed, m.released["o-2"]) == (1_000, 0, 0, 1_000)


def test_more_points_than_the_balance_or_the_total_cancel_the_order_and_hold_nothing(shop):
    """1,001 of 1,000 points is refused by the member; points worth more than the order
    are refused before anything is held; the stock is released either way."""
    shards, _, _ = shop
    co = Checkout(shards, payment_window_ms=WINDOW, grace_ms=GRACE)
    over = asyncio.run(co.place(order_id="o-3", user="ann", lines=(("sku-1", 1),),
                                now=T0 + 1, points=1_001))
    assert (over.status, over.reason) == ("cancelled", "insufficient_points")
    rich = Checkout(shards, payment_window_ms=WINDOW, grace_ms=GRACE, cents_per_point=10)
    too_much = asyncio.run(rich.place(order_id="o-4", user="ann", lines=(("sku-1", 1),),
                                      now=T0 + 1, points=991))
    assert (too_much.status, too_much.reason) == ("cancelled", "points_exceed_total")
    m = member(shards)
    assert (m.balance, m.held) == (1_000, 0)
    assert asyncio.run(shards.query("sku", "sku-1")).available == 5


def test_an_abandoned_order_gives_its_points_back_when_its_hold_ends(shop):
    """Nobody pays or cancels: the member's timer releases the hold after the payment
    deadline and its grace period, like the order's stock."""
    shards, clock, _ = shop
    co = Checkout(shards, payment_window_ms=WINDOW, grace_ms=GRACE)
    asyncio.run(co.place(order_id="o-5", user="ann", lines=(("sku-1", 1),), now=T0 + 1,
                         points=250))
    clock["now"] = T0 + 1 + WINDOW + GRACE
    shards.tick()
    m = member(shards)
    assert (m.balance, m.held, m.released["o-5"]) == (1_000, 0, 250)


def test_an_order_refunded_after_its_confirms_gives_back_units_coupon_and_points(shop):
    """The points' hold lapsed before the payment was handled, after the unit and coupon
    were confirmed: the order is refunded, its sold unit goes back on the shelf, its coupon
    back to the wallet (still valid), its points back to the balance; the audit holds."""
    shards, clock, _ = shop
    assert isinstance(asyncio.run(shards.submit(ReceiveCoupon(
        user="ann", coupon_id="c-5", campaign="1111", value_cents=500, min_spend_cents=0,
        valid_until=T0 + DAY_MS, now=T0))), Accepted)
    co = Checkout(shards, payment_window_ms=WINDOW, grace_ms=GRACE)
    placed = asyncio.run(co.place(order_id="o-6", user="ann", lines=(("sku-1", 2),),
                                  coupon_id="c-5", now=T0 + 1, points=250))
    assert placed.total_cents == 2 * 9_900 - 500 - 250
    clock["now"] = T0 + 1 + WINDOW + GRACE          # only the member's timer runs late
    assert sum(lane.host.tick() for lane in shards.order if lane.kind == "member") == 1
    clock["now"] = T0 + 2
    result = asyncio.run(co.payment_succeeded(order_id="o-6", payment_id="p-6",
                                              amount_cents=placed.total_cents, now=T0 + 2))
    assert (result.status, result.reason) == ("refunded", "hold_expired (points: hold_expired)")
    sku = asyncio.run(shards.query("sku", "sku-1"))
    assert (sku.available, sku.reserved, sku.sold, dict(sku.returned)) == (5, 0, 0, {"o-6/0": 2})
    wallet = asyncio.run(shards.query("session", "ann")).wallet
    assert (wallet.coupons["c-5"].status, wallet.closed_locks[("c-5", "o-6")]) == (
        "held", "returned")
    m = member(shards)
    assert (m.balance, m.held, m.redeemed) == (1_000, 0, 0)
