"""Points and price protection following the log live (`flows.member_follower`): a paid
order with an e-invoice earns double points, a later drop is refunded to a diamond
member, once; a follower started again from the start records nothing twice."""

from __future__ import annotations

import asyncio

from saleday.actors.member import DAY_MS, ChangeTier
from saleday.actors.price import SetPrice
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.cluster.local import LocalShards
from saleday.events import open_store
from saleday.flows.checkout import Checkout
from saleday.flows.member_follower import MemberFollower
from tests.projections.audit_logs import audit

T0 = 1_762_790_400_000


def opening(*, qty: int) -> list:
    """`qty` units of sku-1 on sale at ¥99 for 30 days, and ann a diamond member."""
    return [AddStock(sku="sku-1", qty=qty, now=T0),
            ConfigureSale(sku="sku-1", tiers=((0, 9_900),), per_user_limit=0, start=T0,
                          end=T0 + 30 * DAY_MS, now=T0),
            SetPrice(sku="sku-1", price_cents=9_900, now=T0),
            ChangeTier(user="ann", tier="diamond", rule="test", now=T0)]


def test_the_follower_earns_points_and_refunds_a_drop_once(tmp_path):
    """A paid order with an e-invoice earns double points, a later price drop is refunded
    to the diamond member once, and a follower started again records nothing twice."""
    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    clock = {"now": T0}
    shards = LocalShards(store, {"sku": 1, "order": 1, "session": 1, "member": 1, "price": 1},
                         partitions=8, clock=lambda: clock["now"], autoflush=True)

    async def day() -> tuple[int, int, int, int]:
        await shards.submit_many(opening(qty=5))
        co = Checkout(shards)
        placed = await co.place(order_id="o-1", user="ann", lines=(("sku-1", 2),), now=T0 + 1,
                                invoice=("electronic", "ACME", "9131"))
        await co.payment_succeeded(order_id="o-1", payment_id="p-1",
                                   amount_cents=placed.total_cents, now=T0 + 2)
        follower = MemberFollower(store, shards)
        first = await follower.run_once()        # the points of o-1
        clock["now"] = T0 + DAY_MS
        await shards.submit(SetPrice(sku="sku-1", price_cents=7_900, now=T0 + DAY_MS))
        second = await follower.run_once()       # the claim of the drop
        idle = await follower.run_once()
        heads = dict(store.streams())
        replayed = await MemberFollower(store, shards).run_once()
        assert dict(store.streams()) == heads    # a second follower records nothing twice
        return first, second, idle, replayed

    try:
        first, second, idle, replayed = asyncio.run(day())
        member = asyncio.run(shards.query("member", "ann"))
    finally:
        store.close()
    assert (first, second, idle, replayed) == (1, 1, 0, 2)
    assert member.earned == 396   # 198 yuan paid, 1 point per yuan, doubled for the e-invoice
    assert dict(member.protected) == {"o-1\x1fsku-1": 2 * (9_900 - 7_900)}
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings[:5]]


def test_a_refunded_order_earns_no_points_and_is_not_protected(tmp_path):
    """Of two paid orders, the one refunded (its unit sold to the other while its hold had
    run out) is closed on the member (`PointsTakenBack`) instead of earning, and a later
    drop is refunded on the other order's line only; every audit rule holds."""
    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    clock = {"now": T0}
    shards = LocalShards(store, {"sku": 1, "order": 1, "session": 1, "member": 1, "price": 1},
                         partitions=8, clock=lambda: clock["now"], autoflush=True)

    async def day() -> list[str]:
        await shards.submit_many(opening(qty=1))
        co = Checkout(shards)
        late = await co.place(order_id="o-1", user="ann", lines=(("sku-1", 1),), now=T0 + 1)
        clock["now"] = T0 + co.payment_window_ms + co.grace_ms + 10   # o-1's hold runs out
        assert sum(lane.host.tick() for lane in shards.order if lane.kind == "sku") == 1
        clock["now"] = T0 + co.payment_window_ms - 1
        paid = await co.place(order_id="o-2", user="ann", lines=(("sku-1", 1),), now=T0 + 2)
        statuses = [(await co.payment_succeeded(order_id="o-2", payment_id="p-2",
                                                amount_cents=paid.total_cents,
                                                now=T0 + 3)).status,
                    (await co.payment_succeeded(order_id="o-1", payment_id="p-1",
                                                amount_cents=late.total_cents,
                                                now=T0 + co.payment_window_ms - 1)).status]
        follower = MemberFollower(store, shards)
        await follower.run_once()
        clock["now"] = T0 + DAY_MS
        await shards.submit(SetPrice(sku="sku-1", price_cents=7_900, now=T0 + DAY_MS))
        await follower.run_once()
        return statuses

    try:
        statuses = asyncio.run(day())
        member = asyncio.run(shards.query("member", "ann"))
    finally:
        store.close()
    assert statuses == ["paid", "refunded"]
    assert dict(member.earnings) == {"o-2": 99} and dict(member.taken_back) == {"o-1": 0}
    assert dict(member.protected) == {"o-2\x1fsku-1": 9_900 - 7_900}
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings[:5]]
