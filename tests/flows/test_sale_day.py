"""Team-ups, referrals, grants and geofenced coupons across real Ray shards, finished by the
reactor; each fact's follow-up happens exactly once, however often it is replayed.

One runtime per backend serves the module; each test has a campaign, teams and users of its
own (named with a prefix of its own) and counts only its own events. The reactors replay the
whole shared log, so each test also replays the facts of the tests before it."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import uuid

import pytest

from saleday.actors.campaign import CreateCampaign
from saleday.actors.host import Accepted
from saleday.actors.session import ReportLocation
from saleday.cluster.runtime import Runtime, RuntimeConfig
from saleday.events import open_store, registry
from saleday.flows.reactor import Reactor
from saleday.flows.sale_day import SaleDayFlows
from tests.helpers import delete_prefix, eventually, with_query

pytestmark = pytest.mark.ray
PREFIXES = itertools.count(1)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module", params=["sqlite"])
def backend(request, ray_instance, tmp_path_factory):
    """Session, campaign and team shards (on SQLite, or a real Redis under a key prefix of
    its own), shared by the module's tests."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sale-day')}/events.db"
    else:
        url = with_query(request.getfixturevalue("redis_url"), prefix=f"t-{uuid.uuid4().hex}")
    rt = Runtime(RuntimeConfig(store_url=url, shards={"session": 1, "campaign": 1, "team": 1},
                               tick_s=0.1)).start()
    try:
        yield rt, rt.client()
    finally:
        rt.stop(kill_shards=True)
        if request.param == "redis":
            delete_prefix(url)


@dataclasses.dataclass(frozen=True)
class Sale:
    """One test's corner of the shared runtime: its ids all start with `prefix`, and its
    campaign is `campaign`."""

    rt: Runtime
    prefix: str

    def id(self, name: str) -> str:
        return self.prefix + name

    @property
    def campaign(self) -> str:
        return self.id("1111")

    def count(self, name: str) -> int:
        """How many events of type `name` this test's ids appear in."""
        store = open_store(self.rt.config.store_url)
        try:
            return sum(1 for s in store.streams() for e in store.read(s)
                       if type(ev := registry.decode(e)).__name__ == name and mine(ev, self.prefix))
        finally:
            store.close()


@pytest.fixture
def sale(backend):
    """This test's campaign with a budget of 10 coupons / ¥100."""
    rt, client = backend
    sale = Sale(rt, f"s{next(PREFIXES)}-")
    now = now_ms()
    (created,) = client.submit_many([CreateCampaign(
        campaign=sale.campaign, value_cents=500, min_spend_cents=0, valid_from=now - 1000,
        valid_until=now + 86_400_000, budget_coupons=10, budget_cents=10_000, now=now)])
    assert isinstance(created, Accepted)
    return sale


def mine(event, prefix: str) -> bool:
    """Whether one of `event`'s text fields is an id starting with `prefix`."""
    return any(isinstance(v := getattr(event, f.name), str) and v.startswith(prefix)
               for f in dataclasses.fields(event))


def run(sale: Sale, flow):
    async def go():
        gateway = sale.rt.gateway()
        store = open_store(sale.rt.config.store_url)
        try:
            return await flow(SaleDayFlows(gateway), Reactor(store, gateway), gateway)
        finally:
            store.close()
    return asyncio.run(go())


@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)
def test_a_full_team_splits_its_pool_into_member_coupons_exactly_once(sale):
    """Four members complete the team; each gets one share coupon and the shares sum to the pool."""
    team, users = sale.id("t1"), [sale.id(u) for u in ("u1", "u2", "u3", "u4")]

    async def flow(flows: SaleDayFlows, reactor: Reactor, gateway):
        now = now_ms()
        created = await flows.create_team(team=team, leader=users[0], campaign=sale.campaign,
                                          pool_cents=1000, size=4, min_share_cents=100,
                                          expires=now + 60_000, seed=20251111, now=now)
        assert isinstance(created, Accepted)
        for user in (users[1], users[2], users[2], users[3]):  # u3's join is retried (same id)
            await flows.join_team(team=team, user=user, now=now_ms())
        await reactor.run_once()
        await Reactor(reactor.tail.store, gateway).run_once()  # a reactor replaying from zero
        wallets = [await gateway.query("session", u) for u in users]
        campaign = await gateway.query("campaign", sale.campaign)
        return wallets, campaign

    wallets, campaign = run(sale, flow)
    shares = [c.value_cents for w in wallets for c in w.coupons.values()]
    assert len(shares) == 4 and sum(shares) == 1000 and min(shares) >= 100
    assert (campaign.remaining_cents, campaign.remaining_coupons) == (9000, 6)
    assert sale.count("MemberJoined") == 3 and sale.count("CouponReceived") == 4


def test_an_expired_team_returns_its_pool_to_the_campaign(sale):
    """A team that does not fill by its deadline gives its pool back to the budget."""
    team = sale.id("t2")

    async def flow(flows: SaleDayFlows, reactor: Reactor, gateway):
        now = now_ms()
        await flows.create_team(team=team, leader=sale.id("u1"), campaign=sale.campaign,
                                pool_cents=2000, size=4, min_share_cents=100, expires=now + 300,
                                seed=1, now=now)
        await flows.join_team(team=team, user=sale.id("u2"), now=now_ms())
        drawn = await gateway.query("campaign", sale.campaign)

        async def team_expired() -> bool:
            """the team's deadline to pass and a tick to expire it"""
            return (await gateway.query("team", team)).expired

        await eventually(team_expired)
        await reactor.run_once()
        return drawn, await gateway.query("campaign", sale.campaign)

    drawn, returned = run(sale, flow)
    assert drawn.remaining_cents == 8000 and returned.remaining_cents == 10_000
    assert sale.count("TeamExpiredUnfilled") == 1 and sale.count("PoolReturned") == 1


def test_referrals_follow_first_touch_and_never_cycle(sale):
    """An inviter seen earlier is credited; a later attempt to invite back is not."""
    alice, bob = sale.id("alice"), sale.id("bob")

    async def flow(flows: SaleDayFlows, reactor: Reactor, gateway):
        now = now_ms()  # alice is seen strictly before bob, by the clock the commands carry
        await flows.start_session(user=alice, session_id="s1", utm_source="wechat", now=now)
        await flows.start_session(user=bob, session_id="s1", utm_source="share", inviter=alice,
                                  now=now + 10)
        await flows.start_session(user=alice, session_id="s2", inviter=bob, now=now + 20)
        return await gateway.query("session", bob), await gateway.query("session", alice)

    bob_state, alice_state = run(sale, flow)
    assert bob_state.inviter == alice and alice_state.inviter == ""
    assert sale.count("ReferralAttributed") == 1


@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)
def test_a_grant_reaches_the_wallet_once_and_the_budget_holds(sale):
    """Granted coupons are delivered once each; past the budget, grants are refused."""
    carol = sale.id("carol")

    async def flow(flows: SaleDayFlows, reactor: Reactor, gateway):
        replies = [await flows.grant_coupon(campaign=sale.campaign, grant_id=sale.id(f"g{i}"),
                                            user=carol, now=now_ms()) for i in range(12)]
        await reactor.run_once()
        await reactor.run_once()
        return replies, await gateway.query("session", carol)

    replies, wallet = run(sale, flow)
    assert sum(isinstance(r, Accepted) for r in replies) == 10
    assert {r.code for r in replies if not isinstance(r, Accepted)} == {"budget_exhausted"}
    assert len(wallet.coupons) == 10 and sale.count("CouponReceived") == 10


def test_a_visit_near_a_store_earns_its_coupon_once(sale):
    """Within 500 m of a store the user gets that store's coupon, once however often reported."""
    dan = sale.id("dan")
    stores = (("store-7", 31_230_400, 121_473_700, sale.campaign, 500),)

    async def flow(flows: SaleDayFlows, reactor: Reactor, gateway):
        for i in range(3):
            reply = await gateway.submit(ReportLocation(user=dan, lat_e6=31_230_500,
                                                        lon_e6=121_473_700, now=now_ms(),
                                                        stores=stores),
                                         command_id=sale.id(f"loc-{i}"))
            assert isinstance(reply, Accepted)
        for _ in range(3):  # the visit -> a grant -> the delivery
            await reactor.run_once()
        return await gateway.query("session", dan)

    wallet = run(sale, flow)
    assert list(wallet.coupons) == [f"geo/store-7/{dan}"]
    assert sale.count("StoreVisited") == 1 and sale.count("CouponGranted") == 1
