"""A paid order whose holds ran out before its confirmations were decided (a shard that
could not commit for longer than the grace) is made good: its holds and coupon lock are
taken again and confirmed, or, when the stock is gone, the order is refunded."""

from __future__ import annotations

import asyncio
import uuid

from saleday.actors.host import Accepted
from saleday.actors.session import ReceiveCoupon
from saleday.actors.sku import AddStock, ConfigureSale, ReserveStock
from saleday.cluster.local import LocalShards
from saleday.events import open_store, registry
from saleday.events.memory_store import drop
from saleday.flows.checkout import Checkout

T0 = 1_762_790_400_000
WINDOW, GRACE = 60_000, 5_000
KINDS = {"sku": 1, "session": 1, "order": 1}


async def paid_after_the_holds_ran_out(*, stock: int, rival: bool):
    """Place an order for 1 x sku-a with coupon c-10, let every hold and the lock expire
    (the shards' clocks run past the grace before the confirms arrive), optionally let a
    rival take the last unit, then deliver the payment stamped before the deadline."""
    name = f"make-good-{uuid.uuid4().hex}"
    shards = LocalShards(open_store(f"memory://{name}"), KINDS, autoflush=True)
    shards.now_ms = T0
    setup = [AddStock(sku="sku-a", qty=stock, now=T0),
             ConfigureSale(sku="sku-a", tiers=((0, 5_000),), per_user_limit=0, start=T0,
                           end=T0 + 86_400_000, now=T0),
             ReceiveCoupon(user="u1", coupon_id="c-10", campaign="1111", value_cents=1_000,
                           min_spend_cents=0, valid_until=T0 + 86_400_000, now=T0)]
    assert all(isinstance(r, Accepted) for r in await shards.submit_many(setup))
    checkout = Checkout(shards, payment_window_ms=WINDOW, grace_ms=GRACE)
    placed = await checkout.place(order_id="o1", user="u1", lines=(("sku-a", 1),),
                                  coupon_id="c-10", now=T0 + 1)
    assert placed.status == "placed" and placed.total_cents == 4_000
    shards.now_ms = T0 + WINDOW + GRACE + 10   # the stalled shards' timers fire first
    expired = sum(lane.host.tick() for lane in shards.order if lane.kind != "order")
    assert expired == 2                        # the hold expired, the coupon lock too
    shards.now_ms = T0 + WINDOW - 1            # the payment and the order shard: in time
    if rival:
        taken = await shards.submit(ReserveStock(reservation_id="o2/0", user="u2", sku="sku-a",
                                                 qty=1, now=T0 + 2,
                                                 deadline=T0 + 2 * WINDOW))
        assert isinstance(taken, Accepted)
    result = await checkout.payment_succeeded(order_id="o1", payment_id="p1",
                                              amount_cents=4_000, now=T0 + WINDOW - 1)
    order = await shards.query("order", "o1")
    wallet = await shards.query("session", "u1")
    store = shards.store
    events = [type(registry.decode(e)).__name__ for s in store.streams() for e in store.read(s)]
    drop(name)
    return result, order, wallet, events


def test_a_paid_order_whose_hold_and_lock_ran_out_takes_them_again_and_is_settled():
    """Given an order paid in time whose hold and coupon lock expired first, the checkout
    reserves the unit again under the same id at the same price, re-locks the coupon, and
    confirms and redeems both: the order is paid and settled, nothing is refunded."""
    result, order, wallet, events = asyncio.run(paid_after_the_holds_ran_out(stock=1,
                                                                              rival=False))
    assert (result.status, order.status) == ("paid", "paid")
    assert events.count("ReservationConfirmed") == 1 and events.count("StockReserved") == 2
    assert wallet.coupons["c-10"].status == "redeemed"
    assert "OrderRefunded" not in events


def test_a_paid_order_whose_unit_was_sold_meanwhile_is_refunded_in_full():
    """Given the same, but a rival took the last unit after the hold expired, the order is
    refunded all it captured, its coupon goes back to the wallet, nothing is confirmed."""
    result, order, wallet, events = asyncio.run(paid_after_the_holds_ran_out(stock=1,
                                                                              rival=True))
    assert (result.status, order.status) == ("refunded", "refunded")
    assert "sold_out" in result.reason and dict(order.refunds) == {"p1": 4_000}
    assert events.count("OrderRefunded") == 1 and "ReservationConfirmed" not in events
    assert wallet.coupons["c-10"].status == "held"


async def two_lines_one_sold_meanwhile():
    """Place an order for 1 x sku-a and 1 x sku-b with coupon c-10, let the holds and the
    lock expire, let a rival take sku-b's last unit, then deliver the payment in time:
    sku-a is taken again and confirmed, sku-b cannot be, so the order is refunded."""
    name = f"make-good-{uuid.uuid4().hex}"
    shards = LocalShards(open_store(f"memory://{name}"), KINDS, autoflush=True)
    shards.now_ms = T0
    setup = [*(c for sku, qty in (("sku-a", 5), ("sku-b", 1)) for c in (
                 AddStock(sku=sku, qty=qty, now=T0),
                 ConfigureSale(sku=sku, tiers=((0, 5_000),), per_user_limit=1, start=T0,
                               end=T0 + 86_400_000, now=T0))),
             ReceiveCoupon(user="u1", coupon_id="c-10", campaign="1111", value_cents=1_000,
                           min_spend_cents=0, valid_until=T0 + 86_400_000, now=T0)]
    assert all(isinstance(r, Accepted) for r in await shards.submit_many(setup))
    checkout = Checkout(shards, payment_window_ms=WINDOW, grace_ms=GRACE)
    placed = await checkout.place(order_id="o1", user="u1", lines=(("sku-a", 1), ("sku-b", 1)),
                                  coupon_id="c-10", now=T0 + 1)
    assert placed.status == "placed" and placed.total_cents == 9_000
    shards.now_ms = T0 + WINDOW + GRACE + 10
    assert sum(lane.host.tick() for lane in shards.order if lane.kind != "order") == 3
    shards.now_ms = T0 + WINDOW - 1
    taken = await shards.submit(ReserveStock(reservation_id="o2/0", user="u2", sku="sku-b",
                                             qty=1, now=T0 + 2, deadline=T0 + 2 * WINDOW))
    assert isinstance(taken, Accepted)
    result = await checkout.payment_succeeded(order_id="o1", payment_id="p1",
                                              amount_cents=9_000, now=T0 + WINDOW - 1)
    again = await checkout._refund(await shards.query("order", "o1"), ["driven again"],
                                   T0 + WINDOW)
    sku_a = await shards.query("sku", "sku-a")
    store = shards.store
    events = [type(registry.decode(e)).__name__ for s in store.streams() for e in store.read(s)]
    drop(name)
    return result, again, sku_a, events


def test_a_refunded_order_returns_the_units_it_had_confirmed():
    """Given a refunded order one line of which was confirmed (taken again) before another
    turned out sold out, the confirmed line's unit goes back on the shelf and frees the
    user's limit, once, even when the refund is driven again."""
    result, again, sku_a, events = asyncio.run(two_lines_one_sold_meanwhile())
    assert result.status == "refunded" and "line 1: sold_out" in result.reason
    assert again.status == "refunded"   # driven again: every step answers as a repeat
    assert events.count("ReservationConfirmed") == 1
    assert events.count("SoldUnitsReturned") == 1
    assert (sku_a.available, sku_a.reserved, sku_a.sold) == (5, 0, 0)
    assert "u1" not in sku_a.per_user
