"""The deposit flow (flows/presale.py) on in-process shards: a deposit's units are set
aside on the SKU before the deposit is recorded, so a flash buyer who comes in between
cannot take them; a deposit the SKU or the presale refuses leaves no hold; a retry does
nothing twice; the follower's own set-aside is a repeat; the audit passes."""

from __future__ import annotations

import asyncio

from saleday.actors.presale import OpenPresale, PayDeposit
from saleday.actors.sku import AddStock, ConfigureSale, ReserveStock, SoldOut
from saleday.cluster.local import LocalShards
from saleday.events import open_store
from saleday.flows.presale import Presales, deposit_in_rounds
from saleday.flows.presale_stock import PresaleStockFollower
from tests.projections.audit_logs import DAY, T0, audit

SKU = "pre-1"


class FlashBuyerBetween:
    """The shards as the flow sees them, with a flash buyer who reserves as many units as
    are on the shelf just before each deposit is recorded (after its set-aside)."""

    def __init__(self, shards: LocalShards) -> None:
        self.shards = shards
        self.flash: list[object] = []

    async def submit_retrying_busy(self, command, *, command_id, busy_retries=50,
                                   correlation_id="", causation_id=""):
        if isinstance(command, PayDeposit):
            left = (await self.shards.query("sku", command.sku)).available
            self.flash.append(await self.shards.submit(ReserveStock(
                reservation_id=f"flash-{len(self.flash)}", user="bob", sku=command.sku,
                qty=left + 1, deadline=command.now + 60_000, now=command.now)))
            if left:
                self.flash.append(await self.shards.submit(ReserveStock(
                    reservation_id=f"flash-{len(self.flash)}", user="bob", sku=command.sku,
                    qty=left, deadline=command.now + 60_000, now=command.now)))
        return await self.shards.submit_retrying_busy(command, command_id=command_id,
                                                      correlation_id=correlation_id)


def presale_day(url: str, stock: int = 10, units: int = 6) -> LocalShards:
    store = open_store(url)
    shards = LocalShards(store, {"sku": 1, "presale": 1}, partitions=8, clock=lambda: T0 + 5,
                         autoflush=True)
    replies = asyncio.run(shards.submit_many([
        AddStock(sku=SKU, qty=stock, now=T0),
        ConfigureSale(sku=SKU, tiers=((0, 39_900),), per_user_limit=0, start=T0,
                      end=T0 + 10 * DAY, now=T0),   # a flash sale on while deposits are taken
        OpenPresale(sku=SKU, units=units, deposit_cents=5_000, deposit_value_cents=15_000,
                    price_cents=39_900, deposits_from=T0, balance_from=T0 + 2 * DAY,
                    balance_until=T0 + 3 * DAY, now=T0)]))
    assert all(type(r).__name__ == "Accepted" for r in replies), replies
    return shards


def test_a_flash_buyer_between_the_set_aside_and_the_deposit_cannot_take_its_units(tmp_path):
    """A flash buyer who reserves between a deposit's set-aside and its recording finds only the
    rest of the shelf; a retry and the follower record nothing more, and the audit passes."""
    url = f"sqlite:///{tmp_path}/events.db"
    shards = presale_day(url)

    async def run() -> dict:
        between = FlashBuyerBetween(shards)
        flow = Presales(between)  # type: ignore[arg-type]
        first = await flow.deposit(sku=SKU, deposit_id="d1", user="ann", qty=3, now=T0 + 5)
        sku = await shards.query("sku", SKU)
        versions = dict(shards.store.streams())
        again = await Presales(shards).deposit(sku=SKU, deposit_id="d1", user="ann", qty=3,
                                               now=T0 + 5)
        unchanged = versions == dict(shards.store.streams())
        follower = PresaleStockFollower(shards.store, shards)
        await follower.run_once()
        return {"first": first, "again": again, "flash": between.flash, "unchanged": unchanged,
                "sku": (sku.available, sku.reserved, sku.set_aside), "follower": follower,
                "after": (await shards.query("sku", SKU)).set_aside,
                "presale": (await shards.query("presale", SKU)).deposits.get("d1")}

    try:
        seen = asyncio.run(run())
    finally:
        shards.store.close()
    assert seen["first"].status == seen["again"].status == "held"
    too_many, rest = seen["flash"]
    # the buyer came after the set-aside: 7 units on the shelf, not 10
    assert isinstance(too_many, SoldOut) and too_many.available == 7
    assert type(rest).__name__ == "Accepted"
    assert seen["sku"] == (0, 7, 3) and seen["presale"] == ("ann", 3, "held")
    assert seen["unchanged"]   # the retry recorded nothing
    assert seen["follower"].refused == 0 and seen["after"] == 3   # its set-aside a repeat
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings[:5]]


def test_a_deposit_the_sku_or_the_presale_refuses_leaves_no_hold(tmp_path):
    """A deposit beyond the presale's units has its set-aside returned and one beyond the SKU's
    shelf is sold out, so neither leaves a hold; a deposit that fits is held."""
    url = f"sqlite:///{tmp_path}/events.db"
    shards = presale_day(url, stock=10, units=4)

    async def run() -> dict:
        flow = Presales(shards)
        # the presale has 4 units for deposits: 5 is refused by it, after the set-aside
        over_cap = await flow.deposit(sku=SKU, deposit_id="d1", user="ann", qty=5, now=T0 + 5)
        after_cap = await shards.query("sku", SKU)
        # a flash buyer takes 8 of the 10 units: a deposit for 3 is refused by the SKU
        await shards.submit(ReserveStock(reservation_id="flash", user="bob", sku=SKU, qty=8,
                                         deadline=T0 + 60_000, now=T0 + 5))
        short = await flow.deposit(sku=SKU, deposit_id="d2", user="cat", qty=3, now=T0 + 5)
        ok = await flow.deposit(sku=SKU, deposit_id="d3", user="dan", qty=2, now=T0 + 5)
        sku = await shards.query("sku", SKU)
        presale = await shards.query("presale", SKU)
        return {"over_cap": over_cap, "short": short, "ok": ok,
                "after_cap": (after_cap.available, after_cap.set_aside),
                "sku": (sku.available, sku.reserved, sku.set_aside, sorted(sku.set_asides)),
                "deposits": sorted(presale.deposits), "left": presale.left}

    try:
        seen = asyncio.run(run())
    finally:
        shards.store.close()
    assert (seen["over_cap"].status, seen["over_cap"].reason) == ("refused", "presale_sold_out")
    assert seen["after_cap"] == (10, 0)   # set aside, then returned
    assert (seen["short"].status, seen["short"].reason) == ("refused", "sold_out")
    assert seen["short"].refusal.available == 2
    assert seen["ok"].status == "held"
    assert seen["sku"] == (0, 8, 2, ["presale/d3"])
    assert seen["deposits"] == ["d3"] and seen["left"] == 2
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings[:5]]


def test_deposits_in_rounds_answer_as_the_flow_one_by_one(tmp_path):
    """The simulator's batch form: every set-aside, then the deposits, then the returns."""
    url = f"sqlite:///{tmp_path}/events.db"
    shards = presale_day(url, stock=5, units=4)

    async def submit_many(steps):
        return await asyncio.gather(*(shards.submit(c, command_id=cid) for cid, c in steps))

    async def run() -> tuple:
        results = await deposit_in_rounds(submit_many, [
            (SKU, "d1", "ann", 3, T0 + 5),    # held
            (SKU, "d2", "bob", 3, T0 + 5),    # the SKU has 2 left: sold out
            (SKU, "d3", "cat", 2, T0 + 5)])   # set aside, but the presale has 1 left
        sku = await shards.query("sku", SKU)
        presale = await shards.query("presale", SKU)
        return results, (sku.available, sku.set_aside), sorted(presale.deposits)

    try:
        results, sku, deposits = asyncio.run(run())
    finally:
        shards.store.close()
    assert [(r.status, r.reason) for r in results] == [
        ("held", ""), ("refused", "sold_out"), ("refused", "presale_sold_out")]
    assert sku == (2, 3) and deposits == ["d1"]
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings[:5]]
