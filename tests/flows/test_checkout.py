"""Checkout as a TCC flow on real Ray shards: every order ends paid with all its holds
confirmed, or cancelled with all released, and nothing happens twice.

One runtime per backend serves the module (four shard actors take seconds to start); each
test works on SKUs, a user, a coupon and orders of its own (named with a prefix of its own)
and reads back only its own events."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import uuid

import pytest
import ray

from saleday.actors.host import Accepted
from saleday.actors.order import RecordTry
from saleday.actors.session import ReceiveCoupon
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.cluster.runtime import Runtime, RuntimeConfig
from saleday.events import open_store, registry
from saleday.flows.checkout import Checkout
from tests.helpers import delete_prefix, eventually, with_query

pytestmark = pytest.mark.ray
T0 = 1_762_790_400_000
PREFIXES = itertools.count(1)


@pytest.fixture(scope="module", params=["sqlite"])
def backend(request, ray_instance, tmp_path_factory):
    """SKU, session and order shards on one log (SQLite, or a real Redis under a key prefix
    of its own), shared by the module's tests; at the end every order in the whole log is
    settled."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('checkout')}/events.db"
    else:
        url = with_query(request.getfixturevalue("redis_url"), prefix=f"t-{uuid.uuid4().hex}")
    rt = Runtime(RuntimeConfig(store_url=url, shards={"sku": 2, "session": 1, "order": 1},
                               tick_s=0.1)).start()
    try:
        yield rt, rt.client()
        assert_every_order_settled(log_of(rt.config.store_url))
    finally:
        rt.stop(kill_shards=True)
        if request.param == "redis":
            delete_prefix(url)


@dataclasses.dataclass(frozen=True)
class Shop:
    """One test's corner of the shared runtime: its ids all start with `prefix`."""

    rt: Runtime
    prefix: str

    def id(self, name: str) -> str:
        return self.prefix + name

    @property
    def lines(self) -> tuple[tuple[str, int], ...]:
        return tuple((self.id(sku), qty) for sku, qty in LINES)

    def log(self) -> list:
        """This test's events: those naming one of its ids."""
        return [e for e in log_of(self.rt.config.store_url) if mine(e, self.prefix)]

    def names(self) -> list[str]:
        return [type(e).__name__ for e in self.log()]

    def available(self, sku: str) -> int:
        async def go():
            return (await self.rt.gateway().query("sku", self.id(sku))).available
        return asyncio.run(go())


@pytest.fixture
def shop(backend):
    """Two SKUs of this test on sale (3 units each), and a coupon in its user u1's wallet;
    after the test, each of its orders is settled."""
    rt, client = backend
    shop = Shop(rt, f"k{next(PREFIXES)}-")
    now = now_ms()
    setup = [c for sku, price in (("sku-a", 5000), ("sku-b", 2000)) for c in (
        AddStock(sku=shop.id(sku), qty=3, now=T0),
        ConfigureSale(sku=shop.id(sku), tiers=((0, price),), per_user_limit=0, start=T0,
                      end=T0 + 10 * 365 * 86_400_000, now=T0))]
    setup.append(ReceiveCoupon(user=shop.id("u1"), coupon_id=shop.id("c-10"), campaign="1111",
                               value_cents=1000, min_spend_cents=5000,
                               valid_until=now + 86_400_000, now=now))
    assert all(isinstance(r, Accepted) for r in client.submit_many(setup))
    yield shop
    assert_every_order_settled(shop.log())


def mine(event, prefix: str) -> bool:
    """Whether one of `event`'s text fields is an id starting with `prefix`."""
    return any(isinstance(v := getattr(event, f.name), str) and v.startswith(prefix)
               for f in dataclasses.fields(event))


def assert_every_order_settled(events: list) -> None:
    """Each order is paid with all its reservations confirmed, or cancelled with none
    confirmed and none still held; no coupon is redeemed or received twice."""
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


def run(shop: Shop, flow):
    async def go():
        return await flow(Checkout(shop.rt.gateway()))
    return asyncio.run(go())


def log_of(url: str) -> list:
    store = open_store(url)
    events = [registry.decode(e) for s in store.streams() for e in store.read(s)]
    store.close()
    return events




LINES = (("sku-a", 1), ("sku-b", 2))


def test_a_paid_order_confirms_every_hold_and_redeems_its_coupon(shop):
    """Place then pay: tier prices minus the coupon, reservations confirmed, coupon redeemed."""

    async def flow(co: Checkout):
        placed = await co.place(order_id=shop.id("o1"), user=shop.id("u1"), lines=shop.lines,
                                coupon_id=shop.id("c-10"), now=now_ms())
        paid = await co.payment_succeeded(order_id=shop.id("o1"), payment_id="p1",
                                          amount_cents=placed.total_cents, now=now_ms())
        return placed, paid

    placed, paid = run(shop, flow)
    assert (placed.status, placed.total_cents) == ("placed", 5000 + 2 * 2000 - 1000)
    assert (paid.status, paid.total_cents) == ("paid", 8000)
    kinds = shop.names()
    assert kinds.count("ReservationConfirmed") == 2 and kinds.count("CouponRedeemed") == 1
    assert kinds.count("PaymentCaptured") == 1
    assert shop.available("sku-a") == 2 and shop.available("sku-b") == 1


def test_a_failed_payment_releases_everything(shop):
    """Payment failure cancels the order, releases each line and unlocks the coupon."""

    async def flow(co: Checkout):
        await co.place(order_id=shop.id("o2"), user=shop.id("u1"), lines=shop.lines,
                       coupon_id=shop.id("c-10"), now=now_ms())
        return await co.payment_failed(order_id=shop.id("o2"), now=now_ms())

    assert run(shop, flow).status == "cancelled"
    kinds = shop.names()
    assert kinds.count("ReservationReleased") == 2 and kinds.count("CouponUnlocked") == 1
    assert shop.available("sku-a") == 3 and shop.available("sku-b") == 3


@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)
def test_duplicate_callbacks_and_retries_do_nothing_twice(shop):
    """A retried place and a repeated payment callback change nothing; a second payment is refunded."""

    async def flow(co: Checkout):
        first = await co.place(order_id=shop.id("o3"), user=shop.id("u1"),
                               lines=shop.lines, now=now_ms())
        again = await co.place(order_id=shop.id("o3"), user=shop.id("u1"),
                               lines=shop.lines, now=now_ms())
        paid = await co.payment_succeeded(order_id=shop.id("o3"), payment_id="p1",
                                          amount_cents=first.total_cents, now=now_ms())
        dup = await co.payment_succeeded(order_id=shop.id("o3"), payment_id="p1",
                                         amount_cents=first.total_cents, now=now_ms())
        other = await co.payment_succeeded(order_id=shop.id("o3"), payment_id="p2",
                                           amount_cents=first.total_cents, now=now_ms())
        return first, again, paid, dup, other

    first, again, paid, dup, other = run(shop, flow)
    assert first.status == again.status == "placed" and first.total_cents == again.total_cents
    assert paid.status == dup.status == "paid" and other.status == "refunded"
    kinds = shop.names()
    assert kinds.count("StockReserved") == 2 and kinds.count("ReservationConfirmed") == 2
    assert kinds.count("PaymentCaptured") == 1 and kinds.count("RefundIssued") == 1


def test_a_payment_after_cancel_is_refunded_not_resurrected(shop):
    """A payment landing after the order was cancelled records a refund; stock stays released."""

    async def flow(co: Checkout):
        placed = await co.place(order_id=shop.id("o4"), user=shop.id("u1"),
                                lines=shop.lines, now=now_ms())
        await co.payment_failed(order_id=shop.id("o4"), now=now_ms())
        return await co.payment_succeeded(order_id=shop.id("o4"), payment_id="late",
                                          amount_cents=placed.total_cents, now=now_ms())

    assert run(shop, flow).status == "refunded"
    assert "ReservationConfirmed" not in shop.names() and shop.available("sku-a") == 3


def test_a_cancel_that_overtakes_its_try_blocks_the_late_try(shop):
    """If the cancel arrives first, the later place is refused and nothing is held."""

    async def flow(co: Checkout):
        await co.cancel(order_id=shop.id("o5"), reason="payment_failed", now=now_ms())
        return await co.place(order_id=shop.id("o5"), user=shop.id("u1"),
                              lines=shop.lines, now=now_ms())

    late = run(shop, flow)
    assert late.status == "refused"
    assert "StockReserved" not in shop.names()


def test_a_refused_line_cancels_what_was_tried(shop):
    """One line sold out: the other line's reservation is released and the order cancelled."""

    async def flow(co: Checkout):
        return await co.place(order_id=shop.id("o6"), user=shop.id("u1"),
                              lines=((shop.id("sku-a"), 1), (shop.id("sku-b"), 5)), now=now_ms())

    result = run(shop, flow)
    assert (result.status, result.reason) == ("cancelled", "sold_out")
    assert shop.available("sku-a") == 3 and shop.available("sku-b") == 3


@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)
def test_a_shard_killed_between_try_and_confirm_still_confirms(shop):
    """Killing a SKU shard after the try: the confirm is retried until the shard is back."""

    async def place(co: Checkout):
        return await co.place(order_id=shop.id("o7"), user=shop.id("u1"),
                              lines=shop.lines, now=now_ms())

    placed = run(shop, place)
    for handle in shop.rt.handles["sku"]:
        ray.kill(handle, no_restart=False)

    async def pay(co: Checkout):
        return await co.payment_succeeded(order_id=shop.id("o7"), payment_id="p7",
                                          amount_cents=placed.total_cents, now=now_ms())

    assert run(shop, pay).status == "paid"
    assert shop.names().count("ReservationConfirmed") == 2


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


@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)
def test_a_checkout_interrupted_mid_flow_is_finished_by_driving_it_again(shop):
    """If the gateway dies mid-checkout, placing the same order again completes it, once."""

    async def crash():
        # The try is under way: both lines are held, and the flow is stopped at its next step.
        gateway = StopsBefore(RecordTry, shop.rt.gateway())
        co = Checkout(gateway)
        task = asyncio.ensure_future(co.place(order_id=shop.id("o8"), user=shop.id("u1"),
                                              lines=shop.lines, now=now_ms()))
        await asyncio.wait_for(gateway.stopped.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(crash())

    async def again(co: Checkout):
        return await co.place(order_id=shop.id("o8"), user=shop.id("u1"),
                              lines=shop.lines, now=now_ms())

    assert run(shop, again).status == "placed"
    assert shop.names().count("StockReserved") == 2 and shop.names().count("OrderPlaced") == 1


def test_a_payment_after_the_deadline_is_refunded_and_holds_are_released(shop):
    """A payment that comes after the payment window cancels the order and refunds it."""

    async def flow(co: Checkout):
        co.payment_window_ms, co.grace_ms = 300, 0
        placed = await co.place(order_id=shop.id("o9"), user=shop.id("u1"),
                                lines=shop.lines, now=now_ms())

        async def holds_released() -> bool:
            """the shards' ticks to expire both holds once the deadline has passed"""
            stock = [await co.gateway.query("sku", sku) for sku, _ in shop.lines]
            return [s.available for s in stock] == [3, 3]

        await eventually(holds_released)
        return await co.payment_succeeded(order_id=shop.id("o9"), payment_id="p9",
                                          amount_cents=placed.total_cents, now=now_ms())

    assert run(shop, flow).status == "refunded"
    assert "ReservationConfirmed" not in shop.names()
    assert shop.available("sku-a") == 3 and shop.available("sku-b") == 3
