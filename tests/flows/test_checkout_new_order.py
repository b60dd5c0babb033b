"""Checkout's `new_order` place (the HTTP route's, for an order id it has just made): the
order's start travels with its reservations, and the answer is folded from the replies.
In-process shards on a memory log (no Ray), so these run in milliseconds."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from saleday.actors.host import Accepted
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.cluster.local import LocalShards
from saleday.events import open_store, registry
from saleday.flows.checkout import Checkout

T0 = 1_762_790_400_000
NOW = T0 + 60_000
LINES = (("sku-a", 1), ("sku-b", 2))


@pytest.fixture
def shop() -> LocalShards:
    """Two SKUs of 3 units on sale (sku-a at 5000, sku-b at 2000), one shard per kind."""
    shards = LocalShards(open_store(f"memory://checkout-new-{uuid.uuid4().hex}"),
                         {"sku": 2, "session": 1, "order": 1}, autoflush=True, clock=lambda: NOW)

    async def setup() -> list:
        return await shards.submit_many([c for sku, price in (("sku-a", 5000), ("sku-b", 2000))
                                         for c in (AddStock(sku=sku, qty=3, now=T0),
                                                   ConfigureSale(sku=sku, tiers=((0, price),),
                                                                 per_user_limit=0, start=T0,
                                                                 end=T0 + 86_400_000, now=T0))])

    assert all(isinstance(r, Accepted) for r in asyncio.run(setup()))
    return shards


def available(shards: LocalShards, sku: str) -> int:
    return asyncio.run(shards.query("sku", sku)).available


def names(shards: LocalShards) -> list[str]:
    store = shards.store
    return [type(registry.decode(e)).__name__ for s in store.streams() for e in store.read(s)]


def test_a_new_order_is_placed_and_answered_as_its_shard_holds_it(shop):
    """Given an open sale, when a new order is placed, then it is placed at the tier prices,
    the stock is held, and the order it answers is the order its shard holds."""
    async def go():
        placed = await Checkout(shop).place(order_id="o1", user="u1", lines=LINES, now=NOW,
                                            new_order=True)
        return placed, await shop.query("order", "o1")

    placed, held = asyncio.run(go())
    assert (placed.status, placed.total_cents) == ("placed", 5000 + 2 * 2000)
    assert placed.order == held
    assert (available(shop, "sku-a"), available(shop, "sku-b")) == (2, 1)
    assert names(shop).count("OrderStatusChanged") == 1   # the user's record of it


def test_a_new_order_with_a_sold_out_line_holds_nothing(shop):
    """Given a line beyond the stock, when a new order is placed, then it is cancelled as
    sold out and the other line's units are back."""
    result = asyncio.run(Checkout(shop).place(order_id="o2", user="u1",
                                              lines=(("sku-a", 1), ("sku-b", 5)), now=NOW,
                                              new_order=True))
    assert (result.status, result.reason) == ("cancelled", "sold_out")
    assert (available(shop, "sku-a"), available(shop, "sku-b")) == (3, 3)


def test_a_new_order_whose_start_is_refused_releases_what_it_reserved(shop):
    """Given an order id a cancel already voided (a caller wrongly claiming it new), when it
    is placed as new, then it is refused and the units it reserved alongside are released."""
    async def go():
        co = Checkout(shop)
        await co.cancel(order_id="o3", reason="payment_failed", now=NOW)
        return await co.place(order_id="o3", user="u1", lines=LINES, now=NOW, new_order=True)

    result = asyncio.run(go())
    assert (result.status, result.reason) == ("refused", "order_cancelled")
    assert (available(shop, "sku-a"), available(shop, "sku-b")) == (3, 3)
    kinds = names(shop)
    assert kinds.count("ReservationReleased") == kinds.count("StockReserved") == 2
    assert "OrderPlaced" not in kinds and "OrderStatusChanged" not in kinds


def test_placing_the_same_order_again_answers_it_as_it_stands(shop):
    """Given a placed order, when the same place is driven again (not new), then it answers
    the order as its shard holds it, and nothing is reserved twice."""
    async def go():
        co = Checkout(shop)
        first = await co.place(order_id="o4", user="u1", lines=LINES, now=NOW, new_order=True)
        again = await co.place(order_id="o4", user="u1", lines=LINES, now=NOW)
        return first, again, await shop.query("order", "o4")

    first, again, held = asyncio.run(go())
    assert first.status == again.status == "placed"
    assert first.order == again.order == held
    assert names(shop).count("StockReserved") == 2


class Counting:
    """A gateway that counts the orders it is asked to read back."""

    def __init__(self, shards: LocalShards) -> None:
        self.shards, self.order_reads = shards, 0

    def __getattr__(self, name: str):
        return getattr(self.shards, name)

    async def query(self, kind: str, entity_id: str):
        self.order_reads += kind == "order"
        return await self.shards.query(kind, entity_id)


@pytest.mark.parametrize("new_order", [True, False])
def test_a_sold_out_order_is_cancelled_and_released_alike_new_or_not(shop, new_order):
    """Given a line beyond the stock, when the order is placed (new, or driven again), then
    it is cancelled as sold out with the same events either way; a new one is released from
    what its start and cancel recorded, without reading the order back from its shard."""
    gateway = Counting(shop)
    result = asyncio.run(Checkout(gateway).place(order_id="o5", user="u1",
                                                 lines=(("sku-a", 1), ("sku-b", 5)), now=NOW,
                                                 new_order=new_order))
    assert (result.status, result.reason) == ("cancelled", "sold_out")
    assert (available(shop, "sku-a"), available(shop, "sku-b")) == (3, 3)
    assert sorted(names(shop)) == sorted(
        ["StockAdded", "SaleConfigured"] * 2 + ["CheckoutStarted", "StockReserved",
                                                "CheckoutCancelled", "ReservationReleased",
                                                "ReservationVoided"])
    assert gateway.order_reads == (0 if new_order else 1)


def test_a_new_order_cancelled_by_its_user_meanwhile_is_read_back(shop):
    """Given a new order whose user cancels it while its try is refused, when its flow
    cancels it too, then that cancel records nothing and the order is read back (not
    folded) before releasing, so nothing is released twice or missed."""
    from saleday.actors.order import CheckoutCancelled

    gateway = Counting(shop)
    co = Checkout(gateway)
    real_submit = co._submit

    async def submit(command, order_id, step):
        if step == "cancel":   # the user's cancel lands first
            await real_submit(type(command)(order_id=order_id, reason="user", now=NOW),
                              order_id, "user-cancel")
        return await real_submit(command, order_id, step)

    co._submit = submit
    result = asyncio.run(co.place(order_id="o6", user="u1", lines=(("sku-a", 1), ("sku-b", 5)),
                                  now=NOW, new_order=True))
    assert (result.status, result.reason) == ("cancelled", "sold_out")
    assert gateway.order_reads == 1   # its cancel recorded nothing: the order is read back
    assert (available(shop, "sku-a"), available(shop, "sku-b")) == (3, 3)
    assert names(shop).count(CheckoutCancelled.__name__) == 1
