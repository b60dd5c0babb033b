"""Checkout as a TCC flow on real Ray shards: every order ends paid with all its holds
confirmed, or cancelled with all released, and nothing happens twice."""

from __future__ import annotations

import asyncio
import time

import pytest
import ray

from saleday.actors.host import Accepted
from saleday.actors.order import RecordTry
from saleday.actors.session import ReceiveCoupon
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.cluster.runtime import Runtime, RuntimeConfig
from saleday.events import open_store, registry
from saleday.flows.checkout import Checkout
from tests.helpers import eventually

pytestmark = pytest.mark.ray
T0 = 1_762_790_400_000



@pytest.fixture(params=["sqlite"])
def shop(request, ray_instance, tmp_path):
    """SKU, session and order shards on one log (SQLite, or a real Redis), two SKUs on sale,
    and a coupon in u1's wallet."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/events.db"
    else:
        url = request.getfixturevalue("redis_store_url")
    rt = Runtime(RuntimeConfig(store_url=url, shards={"sku": 2, "session": 1, "order": 1},
                               tick_s=0.1)).start()
    client = rt.client()
    now = now_ms()
    setup = [c for sku, price in (("sku-a", 5000), ("sku-b", 2000)) for c in (
        AddStock(sku=sku, qty=3, now=T0),
        ConfigureSale(sku=sku, tiers=((0, price),), per_user_limit=0, start=T0,
                      end=T0 + 10 * 365 * 86_400_000, now=T0))]
    setup.append(ReceiveCoupon(user="u1", coupon_id="c-10", campaign="1111", value_cents=1000,
                               min_spend_cents=5000, valid_until=now + 86_400_000, now=now))
    assert all(isinstance(r, Accepted) for r in client.submit_many(setup))
    yield rt, url
    try:
        assert_every_order_settled(url)
    finally:
        rt.stop(kill_shards=True)


def assert_every_order_settled(url: str) -> None:
    """After any test: each order is paid with all its reservations confirmed, or cancelled
    with none confirmed and none still held; no coupon is redeemed or received twice."""
    events = log_of(url)
    reservations: dict[str, list[str]] = {}
    for e in events:
        rid = getattr(e, "reservation_id", None)
        if rid is not None:
            reservations.setdefault(rid, []).append(type(e).__name__)
    for e in events:
        name = type(e).__name__
        if name == "CheckoutStarted":
            outcomes = [reservations.get(f"{e.order_id}/{i}", []) for i in range(len(e.lines))]
            captured = any(type(x).__name__ == "PaymentCaptured" and x.order_id == e.order_id
                           for x in events)
            cancelled = any(type(x).__name__ == "CheckoutCancelled" and x.order_id == e.order_id
                            for x in events)
            if captured and not cancelled:
                assert all("ReservationConfirmed" in o for o in outcomes), (e.order_id, outcomes)
            else:
                assert not any("ReservationConfirmed" in o for o in outcomes), (e.order_id, outcomes)
            if cancelled:
                ended = ("ReservationReleased", "ReservationExpired", "ReservationVoided")
                assert all(any(n in o for n in ended) or "StockReserved" not in o
                           for o in outcomes), (e.order_id, outcomes)
    for kind in ("CouponRedeemed", "CouponReceived"):
        ids = [e.coupon_id for e in events if type(e).__name__ == kind]
        assert len(ids) == len(set(ids)), f"{kind} twice: {ids}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def run(rt: Runtime, flow):
    async def go():
        return await flow(Checkout(rt.gateway()))
    return asyncio.run(go())


def log_of(url: str) -> list:
    store = open_store(url)
    events = [registry.decode(e) for s in store.streams() for e in store.read(s)]
    store.close()
    return events


def names(url: str) -> list[str]:
    return [type(e).__name__ for e in log_of(url)]


def available(rt: Runtime, sku: str) -> int:
    async def go():
        return (await rt.gateway().query("sku", sku)).available
    return asyncio.run(go())


LINES = (("sku-a", 1), ("sku-b", 2))


def test_a_paid_order_confirms_every_hold_and_redeems_its_coupon(shop):
    """Place then pay: tier prices minus the coupon, reservations confirmed, coupon redeemed."""
    rt, url = shop

    async def flow(co: Checkout):
        placed = await co.place(order_id="o1", user="u1", lines=LINES, coupon_id="c-10", now=now_ms())
        paid = await co.payment_succeeded(order_id="o1", payment_id="p1",
                                          amount_cents=placed.total_cents, now=now_ms())
        return placed, paid

    placed, paid = run(rt, flow)
    assert (placed.status, placed.total_cents) == ("placed", 5000 + 2 * 2000 - 1000)
    assert (paid.status, paid.total_cents) == ("paid", 8000)
    kinds = names(url)
    assert kinds.count("ReservationConfirmed") == 2 and kinds.count("CouponRedeemed") == 1
    assert kinds.count("PaymentCaptured") == 1
    assert available(rt, "sku-a") == 2 and available(rt, "sku-b") == 1


def test_a_failed_payment_releases_everything(shop):
    """Payment failure cancels the order, releases each line and unlocks the coupon."""
    rt, url = shop

    async def flow(co: Checkout):
        await co.place(order_id="o2", user="u1", lines=LINES, coupon_id="c-10", now=now_ms())
        return await co.payment_failed(order_id="o2", now=now_ms())

    assert run(rt, flow).status == "cancelled"
    kinds = names(url)
    assert kinds.count("ReservationReleased") == 2 and kinds.count("CouponUnlocked") == 1
    assert available(rt, "sku-a") == 3 and available(rt, "sku-b") == 3


@pytest.mark.parametrize("shop", ["sqlite", "redis"], indirect=True)
def test_duplicate_callbacks_and_retries_do_nothing_twice(shop):
    """A retried place and a repeated payment callback change nothing; a second payment is refunded."""
    rt, url = shop

    async def flow(co: Checkout):
        first = await co.place(order_id="o3", user="u1", lines=LINES, now=now_ms())
        again = await co.place(order_id="o3", user="u1", lines=LINES, now=now_ms())
        paid = await co.payment_succeeded(order_id="o3", payment_id="p1",
                                          amount_cents=first.total_cents, now=now_ms())
        dup = await co.payment_succeeded(order_id="o3", payment_id="p1",
                                         amount_cents=first.total_cents, now=now_ms())
        other = await co.payment_succeeded(order_id="o3", payment_id="p2",
                                           amount_cents=first.total_cents, now=now_ms())
        return first, again, paid, dup, other

    first, again, paid, dup, other = run(rt, flow)
    assert first.status == again.status == "placed" and first.total_cents == again.total_cents
    assert paid.status == dup.status == "paid" and other.status == "refunded"
    kinds = names(url)
    assert kinds.count("StockReserved") == 2 and kinds.count("ReservationConfirmed") == 2
    assert kinds.count("PaymentCaptured") == 1 and kinds.count("RefundIssued") == 1


def test_a_payment_after_cancel_is_refunded_not_resurrected(shop):
    """A payment landing after the order was cancelled records a refund; stock stays released."""
    rt, url = shop

    async def flow(co: Checkout):
        placed = await co.place(order_id="o4", user="u1", lines=LINES, now=now_ms())
        await co.payment_failed(order_id="o4", now=now_ms())
        return await co.payment_succeeded(order_id="o4", payment_id="late",
                                          amount_cents=placed.total_cents, now=now_ms())

    assert run(rt, flow).status == "refunded"
    assert "ReservationConfirmed" not in names(url) and available(rt, "sku-a") == 3


def test_a_cancel_that_overtakes_its_try_blocks_the_late_try(shop):
    """If the cancel arrives first, the later place is refused and nothing is held."""
    rt, url = shop

    async def flow(co: Checkout):
        await co.cancel(order_id="o5", reason="payment_failed", now=now_ms())
        return await co.place(order_id="o5", user="u1", lines=LINES, now=now_ms())

    late = run(rt, flow)
    assert late.status == "refused"
    assert "StockReserved" not in names(url)


def test_a_refused_line_cancels_what_was_tried(shop):
    """One line sold out: the other line's reservation is released and the order cancelled."""
    rt, url = shop

    async def flow(co: Checkout):
        return await co.place(order_id="o6", user="u1", lines=(("sku-a", 1), ("sku-b", 5)),
                              now=now_ms())

    result = run(rt, flow)
    assert (result.status, result.reason) == ("cancelled", "sold_out")
    assert available(rt, "sku-a") == 3 and available(rt, "sku-b") == 3


@pytest.mark.parametrize("shop", ["sqlite", "redis"], indirect=True)
def test_a_shard_killed_between_try_and_confirm_still_confirms(shop):
    """Killing a SKU shard after the try: the confirm is retried until the shard is back."""
    rt, url = shop

    async def place(co: Checkout):
        return await co.place(order_id="o7", user="u1", lines=LINES, now=now_ms())

    placed = run(rt, place)
    for handle in rt.handles["sku"]:
        ray.kill(handle, no_restart=False)

    async def pay(co: Checkout):
        return await co.payment_succeeded(order_id="o7", payment_id="p7",
                                          amount_cents=placed.total_cents, now=now_ms())

    assert run(rt, pay).status == "paid"
    assert names(url).count("ReservationConfirmed") == 2


class StopsBefore:
    """A gateway that passes every call on, except that the flow stops for good (until
    cancelled) at the first command of type `kind`, and `stopped` is set."""

    def __init__(self, kind: type, gateway) -> None:
        self.kind, self.gateway, self.stopped = kind, gateway, asyncio.Event()

    async def submit_retrying_busy(self, command, **kw):
        if isinstance(command, self.kind):
            self.stopped.set()
            await asyncio.Event().wait()
        return await self.gateway.submit_retrying_busy(command, **kw)

    def __getattr__(self, name):
        return getattr(self.gateway, name)


@pytest.mark.parametrize("shop", ["sqlite", "redis"], indirect=True)
def test_a_checkout_interrupted_mid_flow_is_finished_by_driving_it_again(shop):
    """If the gateway dies mid-checkout, placing the same order again completes it, once."""
    rt, url = shop

    async def crash():
        # The try is under way: both lines are held, and the flow is stopped at its next step.
        gateway = StopsBefore(RecordTry, rt.gateway())
        co = Checkout(gateway)
        task = asyncio.ensure_future(co.place(order_id="o8", user="u1", lines=LINES, now=now_ms()))
        await asyncio.wait_for(gateway.stopped.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(crash())

    async def again(co: Checkout):
        return await co.place(order_id="o8", user="u1", lines=LINES, now=now_ms())

    assert run(rt, again).status == "placed"
    assert names(url).count("StockReserved") == 2 and names(url).count("OrderPlaced") == 1


def test_a_payment_after_the_deadline_is_refunded_and_holds_are_released(shop):
    """A payment that comes after the payment window cancels the order and refunds it."""
    rt, url = shop

    async def flow(co: Checkout):
        co.payment_window_ms, co.grace_ms = 300, 0
        placed = await co.place(order_id="o9", user="u1", lines=LINES, now=now_ms())

        async def holds_released() -> bool:
            """the shards' ticks to expire both holds once the deadline has passed"""
            stock = [await co.gateway.query("sku", sku) for sku in ("sku-a", "sku-b")]
            return [s.available for s in stock] == [3, 3]

        await eventually(holds_released)
        return await co.payment_succeeded(order_id="o9", payment_id="p9",
                                          amount_cents=placed.total_cents, now=now_ms())

    assert run(rt, flow).status == "refunded"
    assert "ReservationConfirmed" not in names(url)
    assert available(rt, "sku-a") == 3 and available(rt, "sku-b") == 3
