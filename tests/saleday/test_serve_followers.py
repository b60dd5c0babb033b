"""Plain `saleday serve` (no --http) runs the live followers its kinds call for: here the
presale stock follower sets a deposit's units aside on its SKU while serve runs, and the
follower stops when serve does. (In-process shards stand in for Ray's; the shell under test
is `saleday.cli.ops._start_followers`, which serve calls with its client and config.)"""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from saleday.actors.presale import OpenPresale, PayDeposit
from saleday.actors.sku import AddStock
from saleday.cli.ops import _start_followers, live_followers_called_for
from saleday.cluster.local import LocalShards
from saleday.events import open_store
from tests.projections.audit_logs import DAY, T0


def test_the_kinds_served_choose_the_followers():
    """Plain serve runs followers when it serves members, or presales with their SKUs, and not
    otherwise."""
    assert live_followers_called_for({"member": 1})
    assert live_followers_called_for({"sku": 2, "presale": 1})
    assert not live_followers_called_for({"sku": 2, "session": 1, "order": 1})
    assert not live_followers_called_for({"presale": 1})   # no SKU to set units aside on


def test_plain_serve_sets_deposit_units_aside_live_and_stops(tmp_path):
    """While plain serve runs, a paid deposit's units are set aside on its SKU, and the follower
    stops when serve does."""
    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    shards = LocalShards(store, {"sku": 1, "presale": 1, "member": 1}, partitions=8,
                         clock=lambda: T0 + 10, autoflush=True)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def on_loop(coro):   # the shards are driven from the client's loop only, as in serve
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)

    try:
        on_loop(shards.submit_many([
            AddStock(sku="pre-1", qty=5, now=T0),
            OpenPresale(sku="pre-1", units=3, deposit_cents=100, deposit_value_cents=300,
                        price_cents=1_000, deposits_from=T0, balance_from=T0 + DAY,
                        balance_until=T0 + 2 * DAY, now=T0)]))
        stop = _start_followers(SimpleNamespace(gateway=shards, _loop=loop),
                                SimpleNamespace(store_url=url, shards={"sku": 1, "presale": 1,
                                                                       "member": 1}))
        assert stop is not None
        on_loop(shards.submit(PayDeposit(sku="pre-1", deposit_id="d1", user="ann", qty=2,
                                         now=T0 + 10)))
        deadline = time.monotonic() + 5
        while on_loop(shards.query("sku", "pre-1")).set_aside != 2:
            assert time.monotonic() < deadline, "the follower never set the units aside"
            time.sleep(0.05)
        stop()
        sku = on_loop(shards.query("sku", "pre-1"))
        assert (sku.available, sku.set_aside) == (3, 2)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        store.close()
