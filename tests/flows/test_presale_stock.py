"""A presale's units come from its SKU's stock (flows/presale_stock.py) on in-process shards:
deposits set their units aside so flash buyers cannot take them, a paid balance sells
them, a forfeit returns them; the follower again from the start records nothing; the
audit ties the presale to the SKU."""

from __future__ import annotations

import asyncio

from saleday.actors.presale import OpenPresale, PayBalance, PayDeposit
from saleday.actors.sku import AddStock, ConfigureSale, ReserveStock, SoldOut
from saleday.cluster.local import LocalShards
from saleday.events import open_store
from saleday.flows.presale_stock import PresaleStockFollower
from saleday.projections.views.stock import StockView
from tests.projections.audit_logs import DAY, T0, audit

SKU = "pre-1"


def test_deposits_take_their_units_from_the_sku_and_give_them_back_when_forfeited(tmp_path):
    """Deposits set their units aside on the SKU, paid balances sell them and a forfeit returns
    them; the follower run again records nothing and the audit and stock view agree."""
    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    clock = {"now": T0}
    shards = LocalShards(store, {"sku": 1, "presale": 1}, partitions=8,
                         clock=lambda: clock["now"], autoflush=True)
    sale_from, until = T0 + 2 * DAY, T0 + 3 * DAY

    async def run() -> dict:
        seen = {}
        await shards.submit_many([
            AddStock(sku=SKU, qty=10, now=T0),
            ConfigureSale(sku=SKU, tiers=((0, 39_900),), per_user_limit=0, start=sale_from,
                          end=T0 + 10 * DAY, now=T0),
            OpenPresale(sku=SKU, units=6, deposit_cents=5_000, deposit_value_cents=15_000,
                        price_cents=39_900, deposits_from=T0, balance_from=sale_from,
                        balance_until=until, now=T0)])
        await shards.submit_many([PayDeposit(sku=SKU, deposit_id=f"d{i}", user=f"u{i}", qty=q,
                                             now=T0 + 10 + i) for i, q in enumerate((2, 2, 1))])
        follower = PresaleStockFollower(store, shards)
        assert await follower.run_once() == 3 and follower.refused == 0
        sku = await shards.query("sku", SKU)
        seen["after_deposits"] = (sku.available, sku.set_aside, sku.sold)
        # a flash buyer at the sale's start finds only what no deposit holds
        clock["now"] = sale_from + 1
        seen["flash"] = await shards.submit(ReserveStock(
            reservation_id="r-1", user="bob", sku=SKU, qty=6, deadline=sale_from + 60_000,
            now=sale_from + 1))
        for did, qty in (("d0", 2), ("d1", 2)):
            await shards.submit(PayBalance(sku=SKU, deposit_id=did, payment_id=f"b-{did}",
                                           amount_cents=(39_900 - 15_000) * qty,
                                           now=sale_from + 2))
        clock["now"] = until
        shards.tick()   # d2 is forfeited by the presale's timer
        assert await follower.run_once() == 3 and follower.refused == 0
        sku = await shards.query("sku", SKU)
        seen["after_window"] = (sku.available, sku.set_aside, sku.sold)
        versions = dict(store.streams())
        again = PresaleStockFollower(store, shards)
        seen["again"] = (await again.run_once(), again.refused)
        seen["unchanged"] = versions == dict(store.streams())
        return seen

    try:
        seen = asyncio.run(run())
    finally:
        store.close()
    assert seen["after_deposits"] == (5, 5, 0)
    assert isinstance(seen["flash"], SoldOut) and seen["flash"].available == 5
    assert seen["after_window"] == (6, 0, 4)
    assert seen["again"] == (6, 0) and seen["unchanged"]
    view = StockView()
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings[:5]]
    # 6 presale events examined + one end check per deposit; 6 SKU hold events
    assert report.rules["presales.stock"]["checks"] == 9
    assert report.rules["presales.sku_holds"]["checks"] == 6
    src = open_store(url)
    try:
        for stream in src.streams():
            for env in src.read(stream):
                view.apply(env)
    finally:
        src.close()
    assert view.of(SKU) == {"stocked": 10, "available": 6, "reserved": 0, "sold": 4,
                            "set_aside": 0}
