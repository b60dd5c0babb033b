"""Team-ups, referrals, grants and geofenced coupons across real Ray shards, finished by the
reactor; each fact's follow-up happens exactly once, however often it is replayed."""

from __future__ import annotations

import asyncio
import time

import pytest

from saleday.actors.campaign import CreateCampaign
from saleday.actors.host import Accepted
from saleday.actors.session import ReportLocation
from saleday.cluster.runtime import Runtime, RuntimeConfig
from saleday.events import open_store, registry
from saleday.flows.reactor import Reactor
from saleday.flows.sale_day import SaleDayFlows
from tests.helpers import eventually

pytestmark = pytest.mark.ray



def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(params=["sqlite"])
def sale(request, ray_instance, tmp_path):
    """Session, campaign and team shards (on SQLite, or a real Redis); campaign `1111` with a
    budget of 10 coupons / ¥100."""
    url = (f"sqlite:///{tmp_path}/events.db" if request.param == "sqlite"
           else request.getfixturevalue("redis_store_url"))
    rt = Runtime(RuntimeConfig(store_url=url, shards={"session": 1, "campaign": 1, "team": 1},
                               tick_s=0.1)).start()
    now = now_ms()
    (created,) = rt.client().submit_many([CreateCampaign(
        campaign="1111", value_cents=500, min_spend_cents=0, valid_from=now - 1000,
        valid_until=now + 86_400_000, budget_coupons=10, budget_cents=10_000, now=now)])
    assert isinstance(created, Accepted)
    yield rt, url
    rt.stop(kill_shards=True)


def run(rt: Runtime, flow):
    async def go():
        gateway = rt.gateway()
        store = open_store(rt.config.store_url)
        try:
            return await flow(SaleDayFlows(gateway), Reactor(store, gateway), gateway)
        finally:
            store.close()
    return asyncio.run(go())


def count(url: str, name: str) -> int:
    store = open_store(url)
    n = sum(1 for s in store.streams() for e in store.read(s) if type(registry.decode(e)).__name__ == name)
    store.close()
    return n


@pytest.mark.parametrize("sale", ["sqlite", "redis"], indirect=True)
def test_a_full_team_splits_its_pool_into_member_coupons_exactly_once(sale):
    """Four members complete the team; each gets one share coupon and the shares sum to the pool."""
    rt, url = sale

    async def flow(flows: SaleDayFlows, reactor: Reactor, gateway):
        now = now_ms()
        created = await flows.create_team(team="t1", leader="u1", campaign="1111", pool_cents=1000,
                                          size=4, min_share_cents=100, expires=now + 60_000,
                                          seed=20251111, now=now)
        assert isinstance(created, Accepted)
        for user in ("u2", "u3", "u3", "u4"):  # u3's join is retried (same command id)
            await flows.join_team(team="t1", user=user, now=now_ms())
        await reactor.run_once()
        await Reactor(reactor.tail.store, gateway).run_once()  # a reactor replaying from zero
        wallets = [await gateway.query("session", u) for u in ("u1", "u2", "u3", "u4")]
        campaign = await gateway.query("campaign", "1111")
        return wallets, campaign

    wallets, campaign = run(rt, flow)
    shares = [c.value_cents for w in wallets for c in w.coupons.values()]
    assert len(shares) == 4 and sum(shares) == 1000 and min(shares) >= 100
    assert (campaign.remaining_cents, campaign.remaining_coupons) == (9000, 6)
    assert count(url, "MemberJoined") == 3 and count(url, "CouponReceived") == 4


def test_an_expired_team_returns_its_pool_to_the_campaign(sale):
    """A team that does not fill by its deadline gives its pool back to the budget."""
    rt, url = sale

    async def flow(flows: SaleDayFlows, reactor: Reactor, gateway):
        now = now_ms()
        await flows.create_team(team="t2", leader="u1", campaign="1111", pool_cents=2000, size=4,
                                min_share_cents=100, expires=now + 300, seed=1, now=now)
        await flows.join_team(team="t2", user="u2", now=now_ms())
        drawn = await gateway.query("campaign", "1111")

        async def team_expired() -> bool:
            """the team's deadline to pass and a tick to expire it"""
            return (await gateway.query("team", "t2")).expired

        await eventually(team_expired)
        await reactor.run_once()
        return drawn, await gateway.query("campaign", "1111")

    drawn, returned = run(rt, flow)
    assert drawn.remaining_cents == 8000 and returned.remaining_cents == 10_000
    assert count(url, "TeamExpiredUnfilled") == 1 and count(url, "PoolReturned") == 1


def test_referrals_follow_first_touch_and_never_cycle(sale):
    """An inviter seen earlier is credited; a later attempt to invite back is not."""
    rt, url = sale

    async def flow(flows: SaleDayFlows, reactor: Reactor, gateway):
        now = now_ms()  # alice is seen strictly before bob, by the clock the commands carry
        await flows.start_session(user="alice", session_id="s1", utm_source="wechat", now=now)
        await flows.start_session(user="bob", session_id="s1", utm_source="share", inviter="alice",
                                  now=now + 10)
        await flows.start_session(user="alice", session_id="s2", inviter="bob", now=now + 20)
        return await gateway.query("session", "bob"), await gateway.query("session", "alice")

    bob, alice = run(rt, flow)
    assert bob.inviter == "alice" and alice.inviter == ""
    assert count(url, "ReferralAttributed") == 1


@pytest.mark.parametrize("sale", ["sqlite", "redis"], indirect=True)
def test_a_grant_reaches_the_wallet_once_and_the_budget_holds(sale):
    """Granted coupons are delivered once each; past the budget, grants are refused."""
    rt, url = sale

    async def flow(flows: SaleDayFlows, reactor: Reactor, gateway):
        replies = [await flows.grant_coupon(campaign="1111", grant_id=f"g{i}", user="carol",
                                            now=now_ms()) for i in range(12)]
        await reactor.run_once()
        await reactor.run_once()
        return replies, await gateway.query("session", "carol")

    replies, wallet = run(rt, flow)
    assert sum(isinstance(r, Accepted) for r in replies) == 10
    assert {r.code for r in replies if not isinstance(r, Accepted)} == {"budget_exhausted"}
    assert len(wallet.coupons) == 10 and count(url, "CouponReceived") == 10


def test_a_visit_near_a_store_earns_its_coupon_once(sale):
    """Within 500 m of a store the user gets that store's coupon, once however often reported."""
    rt, url = sale
    stores = (("store-7", 31_230_400, 121_473_700, "1111", 500),)

    async def flow(flows: SaleDayFlows, reactor: Reactor, gateway):
        for i in range(3):
            reply = await gateway.submit(ReportLocation(user="dan", lat_e6=31_230_500,
                                                        lon_e6=121_473_700, now=now_ms(),
                                                        stores=stores), command_id=f"loc-{i}")
            assert isinstance(reply, Accepted)
        for _ in range(3):  # the visit -> a grant -> the delivery
            await reactor.run_once()
        return await gateway.query("session", "dan")

    wallet = run(rt, flow)
    assert list(wallet.coupons) == ["geo/store-7/dan"]
    assert count(url, "StoreVisited") == 1 and count(url, "CouponGranted") == 1
