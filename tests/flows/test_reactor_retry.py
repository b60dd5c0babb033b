"""The reactor keeps what a shard could not take: a follow-up answered `Unavailable` (a
shard down or restarting) is owed still, and the next pass delivers it once."""

from __future__ import annotations

import asyncio
import uuid

from saleday.actors.campaign import CreateCampaign
from saleday.actors.host import Accepted, Unavailable
from saleday.cluster.local import LocalShards
from saleday.events import StoreUnavailable, open_store
from saleday.flows.reactor import Reactor
from saleday.flows.sale_day import SaleDayFlows

NOW = 1_762_790_400_000


class FlakyWallets:
    """A gateway whose session shards are down for the first `outages` grants it sees."""

    def __init__(self, shards: LocalShards, outages: int) -> None:
        self.shards, self.outages = shards, outages

    async def submit_retrying_busy(self, command, **kw):
        if type(command).__name__ == "ReceiveCoupon" and self.outages > 0:
            self.outages -= 1
            return Unavailable(reason="session shard restarting")
        return await self.shards.submit_retrying_busy(command, **kw)


def test_a_grant_a_wallet_could_not_take_is_delivered_by_the_next_pass():
    """Given a claimed grant whose wallet shard is down at the reactor's first pass, when
    the reactor passes again, then the coupon is in the wallet, once."""

    async def go():
        shards = LocalShards(open_store(f"memory://{uuid.uuid4().hex}"),
                             {"session": 1, "campaign": 1, "team": 1}, autoflush=True,
                             clock=lambda: NOW)
        created = await shards.submit(CreateCampaign(
            campaign="c1", value_cents=500, min_spend_cents=0, valid_from=NOW - 1000,
            valid_until=NOW + 86_400_000, budget_coupons=10, budget_cents=10_000, now=NOW))
        assert isinstance(created, Accepted)
        claimed = await SaleDayFlows(shards).grant_coupon(campaign="c1", grant_id="g1",
                                                          user="u1", now=NOW)
        assert isinstance(claimed, Accepted)
        reactor = Reactor(shards.store, FlakyWallets(shards, outages=1))
        await reactor.run_once()
        before = len((await shards.query("session", "u1")).coupons)
        await reactor.run_once()
        await reactor.run_once()
        after = (await shards.query("session", "u1")).coupons
        return before, after, reactor.retrying

    before, after, retrying = asyncio.run(go())
    assert before == 0
    assert [c.value_cents for c in after.values()] == [500]
    assert retrying == []


class FirstWalletAppendFails:
    """A store in front of the real one whose first append to a session stream fails
    as an unreachable store does."""

    def __init__(self, store) -> None:
        self.store, self.failed = store, False

    def __getattr__(self, name):
        return getattr(self.store, name)

    def append(self, stream, events, expected_version, **kw):
        if stream.startswith("session-") and not self.failed:
            self.failed = True
            raise StoreUnavailable("memory://", "the session store is restarting")
        return self.store.append(stream, events, expected_version, **kw)


class WalletsOnAFlakyStore(LocalShards):
    def _store_for(self, stream: str):
        return FirstWalletAppendFails(self.store) if stream.startswith("session-") else self.store


def test_in_process_shards_react_again_to_a_follow_up_their_store_refused():
    """Given in-process shards whose wallet store fails the grant's delivery once, when
    they react again (as `serve --http`'s housekeeping does), then the coupon arrives, once."""

    async def go():
        shards = WalletsOnAFlakyStore(open_store(f"memory://{uuid.uuid4().hex}"),
                                      {"session": 1, "campaign": 1, "team": 1},
                                      autoflush=True, clock=lambda: NOW)
        await shards.submit(CreateCampaign(
            campaign="c1", value_cents=500, min_spend_cents=0, valid_from=NOW - 1000,
            valid_until=NOW + 86_400_000, budget_coupons=10, budget_cents=10_000, now=NOW))
        await SaleDayFlows(shards).grant_coupon(campaign="c1", grant_id="g1", user="u1", now=NOW)
        seen = []
        for _ in range(3):
            shards.react()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            seen.append(len((await shards.query("session", "u1")).coupons))
        return seen

    assert asyncio.run(go()) == [0, 1, 1]


def test_a_follower_makes_one_last_pass_when_it_is_stopped():
    """Given a follower that has found nothing yet, when a fact arrives and the stop is set
    before its next poll, then it still follows that fact before returning."""
    from saleday.flows.sale_day import follow_until

    async def go():
        stop, log, facts = asyncio.Event(), [], []

        async def run_once() -> int:
            done = len(facts)
            log.extend(facts)
            facts.clear()
            return done

        follower = asyncio.create_task(follow_until(run_once, stop, poll_s=60.0))
        await asyncio.sleep(0.01)
        facts.append("claim-1")
        stop.set()
        await asyncio.wait_for(follower, 5)
        return log

    assert asyncio.run(go()) == ["claim-1"]
