"""The browse trigger: a user who views enough products of one category in a window
without ordering gets one push per firing, through the frequency cap, exactly once even
when the runner replays the log."""

from __future__ import annotations

import asyncio

from saleday.actors.session import RecordBehaviour, TrackOrder
from saleday.cluster.local import LocalShards
from saleday.events import open_store
from saleday.simulator.triggers import BrowseTrigger, TriggerRunner

T0 = 1_794_326_400_000
MIN = 60_000


def play(store, steps, rule=BrowseTrigger(min_products=3)):
    """Submit `steps` (command lists, one per 5-minute round), polling a trigger runner
    after each; return the runner."""
    async def main():
        shards = LocalShards(store, {"session": 1}, partitions=8, clock=lambda: shards.now_ms)
        runner = TriggerRunner(store, rule, shards.submit_nowait)
        for i, commands in enumerate(steps):
            shards.now_ms = T0 + i * 5 * MIN + 4 * MIN
            for n, c in enumerate(commands):
                shards.submit_nowait(c, f"step/{i}/{n}")
            while shards.pending():
                shards.flush()
            runner.poll(shards.now_ms)
            while shards.pending():
                shards.flush()
        runner.poll(shards.now_ms)
        return runner
    return asyncio.run(main())


def views(user, round_, skus, category="C01"):
    at = T0 + round_ * 5 * MIN + MIN
    now = T0 + round_ * 5 * MIN + 4 * MIN
    return [RecordBehaviour(user=user, action="view", sku=s, category=category, at=at + k, now=now)
            for k, s in enumerate(skus)]


def test_firings_go_through_the_cap_and_orders_stop_them(tmp_path):
    """Four qualifying windows fire four pushes of which the cap lets three through; views
    spread over categories, or a user who ordered in the window, fire nothing."""
    store = open_store(f"sqlite:///{tmp_path}/e.db")
    steps = [views("ann", 0, ["a", "b", "c"])
             + views("bob", 0, ["a"], "C01") + views("bob", 0, ["b"], "C02")
             + views("bob", 0, ["c"], "C03")
             + [TrackOrder(user="cy", order_id="o1", status="placed", amount_cents=100,
                           now=T0 + MIN)] + views("cy", 0, ["a", "b", "c"])]
    steps += [views("ann", r, ["a", "b", "c"]) for r in (1, 2, 3)]
    runner = play(store, steps)
    s = runner.summary()
    assert s["firings"] == 4 and s["pushes_delivered"] == 3 and s["pushes_capped"] == 1
    assert s["users_pushed"] == 1
    pushed = [e for e in store.read("session-000") if e.type == "sessions.push_delivered"]
    assert {e.data["user"] for e in pushed} == {"ann"} and len(pushed) == 3
    store.close()


def test_a_runner_replaying_the_log_delivers_nothing_twice(tmp_path):
    """A second runner over the same log fires the same firings again; the session answers
    them as duplicates, so no push is delivered twice."""
    store = open_store(f"sqlite:///{tmp_path}/e.db")
    steps = [views("ann", 0, ["a", "b", "c"])]
    play(store, steps)
    before = sum(store.streams().values())
    again = play(store, [[]])
    assert again.summary()["firings"] == 1
    assert sum(store.streams().values()) == before
    store.close()
