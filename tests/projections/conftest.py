"""A sale day driven through the real gateway, checkout and flows, with the shards hosted
in this process (no Ray): the logs the projection tests fold."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from saleday.actors.campaign import CreateCampaign
from saleday.actors.host import Accepted, ShardHost
from saleday.actors.kinds import deciders
from saleday.actors.session import ReceiveCoupon
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.cluster.gateway import Gateway, GatewayConfig
from saleday.cluster.routing import ShardMap
from saleday.cluster.wire import Wire
from saleday.events import open_store
from saleday.flows.checkout import Checkout
from saleday.flows.reactor import Reactor
from saleday.flows.sale_day import SaleDayFlows

T0 = 1_762_790_400_000  # 2025-11-11T00:00:00+08:00


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class _Remote:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Any:
        async def call() -> Any:
            return self.fn(*args)
        return call()


class LocalShard:
    """What the gateway expects of a shard actor handle, over a ShardHost in this process."""

    def __init__(self, host: ShardHost, wire: Wire) -> None:
        self.host = host
        self.handle = _Remote(lambda blob: wire.encode_replies(
            host.handle(wire.decode_requests(blob))))
        self.state_of = _Remote(host.state_of)
        self.states_of = _Remote(lambda entities: [host.state_of(e) for e in entities])
        self.tick = _Remote(host.tick)


class Shop:
    """Shards of every kind on one store, a gateway over them, checkout and flows."""

    def __init__(self, store_url: str, *, shards: dict[str, int] | None = None) -> None:
        self.clock = Clock()
        self.store = open_store(store_url)
        kinds = deciders()
        shards = shards or {"sku": 2, "session": 2, "order": 2, "campaign": 1, "team": 1}
        self.maps = {k: ShardMap.uniform(k, n) for k, n in shards.items()}
        commands = [c for k in shards for c in kinds[k].commands]
        self.wire = Wire(commands)
        self.hosts = {k: [ShardHost(decider=kinds[k], store=self.store, stream=m.stream(i),
                                    clock=self.clock) for i in range(m.shards)]
                      for k, m in self.maps.items()}
        self.handles = {k: [LocalShard(h, self.wire) for h in hs] for k, hs in self.hosts.items()}
        kind_by_type = {c: k for k in shards for c in kinds[k].commands}
        self._entity_of = {k: kinds[k].entity_of for k in shards}
        self._kind_of = lambda command: kind_by_type.get(type(command), "?")

    def gateway(self) -> Gateway:
        return Gateway(self.maps, self.handles, GatewayConfig(max_wait_ms=0.2, tick_s=0),
                       entity_of=self._entity_of, kind_of=self._kind_of, wire=self.wire)

    def run(self, flow: Any) -> Any:
        """Run `flow(gateway, checkout, flows, reactor)` to completion."""
        async def go() -> Any:
            gateway = self.gateway()
            return await flow(gateway, Checkout(gateway), SaleDayFlows(gateway),
                              Reactor(self.store, gateway))
        return asyncio.run(go())

    def tick(self) -> int:
        """Expire whatever is due at the clock's time, on every shard."""
        return sum(h.tick() for hs in self.hosts.values() for h in hs)

    def close(self) -> None:
        self.store.close()


async def accepted(gateway: Gateway, commands: list[Any]) -> None:
    replies = await gateway.submit_many(commands)
    bad = [r for r in replies if not isinstance(r, Accepted)]
    assert not bad, bad


def sale_day(shop: Shop, *, users: int = 24, orders: int = 30) -> None:
    """A small but complete sale day: stocked SKUs with tiers, a coupon campaign, sessions
    with UTM and referral chains, a team-up that fills and one that expires, orders that
    are paid, fail, are abandoned, and one paid too late (refunded)."""
    clock = shop.clock

    async def flow(gateway: Gateway, co: Checkout, flows: SaleDayFlows, reactor: Reactor) -> None:
        now = clock.now
        await accepted(gateway, [c for sku, qty in (("sku-a", 20), ("sku-b", 5), ("sku-c", 3))
                                 for c in (AddStock(sku=sku, qty=qty, now=now),
                                           ConfigureSale(sku=sku, tiers=((2, 4950), (0, 9900)),
                                                         per_user_limit=0, start=now,
                                                         end=now + 86_400_000, now=now))])
        await accepted(gateway, [CreateCampaign(
            campaign="1111", value_cents=500, min_spend_cents=0, valid_from=now - 1000,
            valid_until=now + 86_400_000, budget_coupons=50, budget_cents=50_000, now=now)])
        for i in range(users):  # u0 is organic; u(i) invited by u((i-1)//2): a binary tree
            clock.now += 1000
            inviter = f"u{(i - 1) // 2}" if i else ""
            source = ("weibo", "social", "1111") if i % 3 == 0 else ("search", "cpc", "kw")
            await flows.start_session(user=f"u{i}", session_id=f"s{i}", utm_source=source[0],
                                      utm_medium=source[1], utm_campaign=source[2],
                                      inviter=inviter, now=clock.now)
        await flows.start_session(user="u1", session_id="s1-again", utm_source="email",
                                  utm_medium="mail", utm_campaign="late", now=clock.now)
        await accepted(gateway, [ReceiveCoupon(user="u3", coupon_id="c-3", campaign="1111",
                                               value_cents=700, min_spend_cents=0,
                                               valid_until=clock.now + 86_400_000, now=clock.now)])
        clock.now += 1000
        await flows.create_team(team="t1", leader="u1", campaign="1111", pool_cents=1000,
                                size=3, min_share_cents=100, expires=clock.now + 60_000,
                                seed=7, now=clock.now)
        await flows.create_team(team="t2", leader="u2", campaign="1111", pool_cents=900,
                                size=3, min_share_cents=100, expires=clock.now + 5_000,
                                seed=8, now=clock.now)
        for user in ("u5", "u6"):
            await flows.join_team(team="t1", user=user, now=clock.now)
        await flows.join_team(team="t2", user="u7", now=clock.now)
        await reactor.run_once()
        for i in range(orders):
            clock.now += 700
            user = f"u{i % users}"
            oid = f"o{i:03d}"
            lines = (("sku-a", 1 + i % 2),) if i % 3 else (("sku-a", 1), ("sku-b", 1))
            coupon = "c-3" if oid == "o003" else ""
            placed = await co.place(order_id=oid, user=user, lines=lines, coupon_id=coupon,
                                    now=clock.now)
            if placed.status != "placed":
                continue
            if i % 5 == 4:
                await co.payment_failed(order_id=oid, now=clock.now)
            elif i % 7 == 6:
                pass  # abandoned: expires at its deadline
            else:
                await co.payment_succeeded(order_id=oid, payment_id=f"p{i}",
                                           amount_cents=placed.total_cents, now=clock.now)
        await co.payment_succeeded(order_id="o000", payment_id="p-dup", amount_cents=1,
                                   now=clock.now)  # a second payment: refunded

    shop.run(flow)
    shop.clock.now += 2_000_000  # past every payment deadline and team expiry
    shop.tick()

    async def late(gateway: Gateway, co: Checkout, flows: SaleDayFlows, reactor: Reactor) -> None:
        await co.payment_succeeded(order_id="o006", payment_id="p-late", amount_cents=9900,
                                   now=shop.clock.now)
        await reactor.run_once()

    shop.run(late)


@pytest.fixture
def shop(tmp_path):
    s = Shop(f"sqlite:///{tmp_path}/events.db")
    yield s
    s.close()
