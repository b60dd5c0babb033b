"""What only real Ray can show: restarts, fencing across processes, retries, load shedding.

The session's shared Ray serves the module (ray.init costs seconds on 2 cores).
"""

from __future__ import annotations

import asyncio
import time

import pytest
import ray

from saleday.actors.decider import InvalidCommand
from saleday.actors.host import Accepted, Busy, Request, ShardFenced, ShardHost
from saleday.actors.sku import AddStock, ConfigureSale, ReserveStock, sku_decider
from saleday.bench.reserve import stock_from_log
from saleday.cluster import ray_api
from saleday.cluster.gateway import Gateway, GatewayClient, GatewayConfig
from saleday.cluster.runtime import Runtime, RuntimeConfig
from saleday.cluster.wire import Wire
from saleday.events import open_store
from tests.helpers import wait_until

pytestmark = pytest.mark.ray
T0 = 1_762_790_400_000



def now_ms() -> int:
    return time.time_ns() // 1_000_000


def start(store_url: str, **config) -> Runtime:
    """Two SKU shard actors on `store_url` (each test kills its own in `stop`)."""
    return Runtime(RuntimeConfig(store_url=store_url, shards={"sku": 2}, tick_s=0, **config)).start()


def stop(rt: Runtime) -> None:
    rt.stop(kill_shards=True)


def sale(skus: list[str], stock: int) -> list:
    return [c for sku in skus for c in (
        AddStock(sku=sku, qty=stock, now=T0),
        ConfigureSale(sku=sku, tiers=((stock // 2, 4950), (0, 9900)), per_user_limit=0,
                      start=T0, end=T0 + 10 * 365 * 86_400_000, now=T0))]


def reservations(n: int, skus: list[str], *, deadline_ms: int = 900_000) -> list[ReserveStock]:
    now = now_ms()
    return [ReserveStock(reservation_id=f"r-{i}", user=f"u-{i % 97}", sku=skus[i % len(skus)], qty=1,
                         now=now, deadline=now + deadline_ms) for i in range(n)]


def reserved_units_in_log(store_url: str) -> dict[str, int]:
    """Units held or sold per SKU, folded from the log (not from any shard's memory)."""
    return stock_from_log(store_url)[1]


def test_a_killed_shard_comes_back_losing_nothing_acknowledged(ray_instance, tmp_path):
    """Killing a shard mid-stream: it restarts, recovers, and every acknowledged reservation is in
    the log exactly once, with nothing oversold."""
    url = f"sqlite:///{tmp_path}/events.db"
    rt = start(url, retry_for_s=60)
    try:
        client = rt.client()
        skus = [f"sku-{i}" for i in range(20)]
        assert all(isinstance(r, Accepted) for r in client.submit_many(sale(skus, 50)))
        commands = reservations(3000, skus)
        killer_done = []
        before = open_store(url).head("sku-000").version

        def kill_mid_stream() -> None:
            # Mid-stream by construction: once the shard has logged reservations, and before
            # the second half of the sale is sent (the loop below waits for this thread).
            store = open_store(url)
            wait_until(lambda: store.head("sku-000").version > before, timeout=120,
                       what="sku-000 to log its first reservations")
            store.close()
            ray.kill(rt.handles["sku"][0], no_restart=False)
            killer_done.append(True)

        import threading

        killer = threading.Thread(target=kill_mid_stream)
        killer.start()
        replies = []
        for i in range(0, len(commands), 250):
            if i == len(commands) // 2:
                killer.join(180)
            replies += client.submit_many(commands[i:i + 250])
        assert killer_done
        accepted = [c for c, r in zip(commands, replies) if isinstance(r, Accepted)]
        assert all(isinstance(r, Accepted) or r.code == "sold_out" for r in replies), \
            {type(r).__name__ for r in replies}
        in_log = {env.data["reservation_id"] for s in open_store(url).streams()
                  for env in open_store(url).read(s) if env.type == "inventory.stock_reserved"}
        assert {c.reservation_id for c in accepted} <= in_log
        held = reserved_units_in_log(url)
        assert all(0 <= units <= 50 for units in held.values()), held
        assert len(accepted) == sum(held.values()) == 1000
        status = rt.status()
        assert {s["stream"] for s in status} == {"sku-000", "sku-001"}
        assert max(s["epoch"] for s in status) >= 2
    finally:
        stop(rt)


def test_unencodable_commands_are_refused_and_the_lane_to_the_shard_stays_open(ray_instance, tmp_path):
    """Issue 11, as reported: an int past 64 bits, then a lone surrogate in an id, then a
    reservation, to one shard: each command is answered (the first two refused), and the
    reservation and every later one are accepted; no in-flight slot is left taken."""
    url = f"sqlite:///{tmp_path}/events.db"
    rt = start(url)
    client = GatewayClient(rt.gateway, timeout_s=20)   # the old code hung here for good
    try:
        assert all(isinstance(r, Accepted) for r in client.submit_many(sale(["sku-1"], 10)))
        now = now_ms()
        huge = client.submit(AddStock(sku="sku-1", qty=2**70, now=now))
        surrogate = client.submit(ReserveStock(reservation_id="r-\ud800", user="u-1", sku="sku-1",
                                               qty=1, now=now, deadline=now + 60_000),
                                  command_id="c-\ud800")
        replies = [client.submit(ReserveStock(reservation_id=f"r-{i}", user="u-1", sku="sku-1", qty=1,
                                              now=now, deadline=now + 60_000)) for i in range(3)]
        assert isinstance(huge, InvalidCommand) and "qty" in huge.reason
        assert isinstance(surrogate, InvalidCommand) and "cannot cross the wire" in surrogate.reason
        assert all(isinstance(r, Accepted) for r in replies), replies
        assert all(lane.in_flight == 0 for lane in client.gateway.lanes["sku"])
        assert reserved_units_in_log(url) == {"sku-1": 3}
    finally:
        client.close()
        stop(rt)


def test_a_retried_command_is_applied_once(ray_instance, tmp_path):
    """The same command id sent twice through the gateway yields one event and a duplicate reply."""
    url = f"sqlite:///{tmp_path}/events.db"
    rt = start(url)
    try:
        client = rt.client()
        client.submit_many(sale(["sku-a"], 5))
        command = reservations(1, ["sku-a"])[0]
        first = client.submit(command, command_id="checkout-1/reserve")
        again = client.submit(command, command_id="checkout-1/reserve")
        assert isinstance(first, Accepted) and isinstance(again, Accepted)
        assert again.duplicate and again.events == first.events
        assert reserved_units_in_log(url) == {"sku-a": 1}
    finally:
        stop(rt)


def test_a_zombie_incarnation_is_fenced_and_the_actor_recovers(ray_instance, tmp_path):
    """When another incarnation takes the stream, the old one writes nothing more; the actor
    restarts, takes a newer epoch, and serves with the other writer's events included."""
    url = f"sqlite:///{tmp_path}/events.db"
    rt = start(url, retry_for_s=60)
    try:
        client = rt.client()
        client.submit_many(sale(["sku-a", "sku-b", "sku-c"], 10))
        stream = "sku-000"
        owned = [s for s in ("sku-a", "sku-b", "sku-c") if rt.maps["sku"].shard_of(s) == 0]
        assert owned, "routing put no test SKU on shard 0"
        # Another writer (as after a partition) takes the stream and records a reservation.
        intruder = ShardHost(decider=sku_decider, store=open_store(url), stream=stream)
        (mine,) = intruder.handle([Request("intruder-1", reservations(1, owned)[0])])
        assert isinstance(mine, Accepted)
        # The actor's old incarnation is fenced on its next append; Ray restarts it.
        reply = client.submit(ReserveStock(reservation_id="after", user="u-1", sku=owned[0], qty=1,
                                           now=now_ms(), deadline=now_ms() + 60_000))
        assert isinstance(reply, Accepted)
        late = ReserveStock(reservation_id="late", user="u-2", sku=owned[0], qty=1, now=now_ms(),
                            deadline=now_ms() + 60_000)
        with pytest.raises(ShardFenced):
            intruder.handle([Request("intruder-2", late)])
        versions = [env.command_id for env in open_store(url).read(stream)]
        assert "intruder-1" in versions and "intruder-2" not in versions
        assert sum(reserved_units_in_log(url).values()) == 2
    finally:
        stop(rt)


def test_a_full_gateway_sheds_load_with_busy(ray_instance, tmp_path):
    """Past its bound the gateway answers Busy at once instead of queueing without limit."""
    url = f"sqlite:///{tmp_path}/events.db"
    rt = start(url)
    try:
        client = rt.client()
        client.submit_many(sale(["sku-a"], 100_000))
        commands = reservations(5000, ["sku-a"])

        async def flood() -> list:
            gateway = Gateway(rt.maps, rt.handles,
                              GatewayConfig(max_batch=8, max_in_flight=1, max_queue=16, tick_s=0),
                              entity_of={"sku": sku_decider.entity_of}, kind_of=lambda c: "sku",
                              transient=ray_api.transient_errors(), wire=Wire(sku_decider.commands))
            return await gateway.submit_many(commands)

        replies = asyncio.run(flood())
        busy = [r for r in replies if isinstance(r, Busy)]
        accepted = [r for r in replies if isinstance(r, Accepted)]
        assert busy and accepted and len(busy) + len(accepted) == len(commands)
        assert busy[0].shard == "sku-000" or busy[0].shard == "sku-001"
        assert sum(reserved_units_in_log(url).values()) == len(accepted)
    finally:
        stop(rt)


def test_a_killed_primary_fails_over_to_its_standby_losing_nothing_acknowledged(ray_instance,
                                                                                 tmp_path):
    """Issue 17: with a standby per shard, the primary's process killed mid-stream (SIGKILL)
    is replaced by its promoted standby (no Ray restart); every acknowledged reservation is
    in the log exactly once, nothing is oversold, and the old epoch is fenced."""
    import os
    import signal
    import threading

    from saleday.events import FencedError
    from saleday.events import registry as events_registry

    url = f"sqlite:///{tmp_path}/events.db"
    rt = Runtime(RuntimeConfig(store_url=url, shards={"sku": 1}, tick_s=0, retry_for_s=30,
                               standbys=1)).start()   # one pair: 2 actor processes, not 4
    try:
        client = rt.client()
        skus = [f"sku-{i}" for i in range(10)]
        assert all(isinstance(r, Accepted) for r in client.submit_many(sale(skus, 20)))
        old = ray_api.get(rt.handles["sku"][0].status.remote(), timeout=30)
        assert [s["stream"] for s in rt.standby_status()] == ["sku-000"]
        commands = reservations(300, skus)
        replies: list = []
        sender = threading.Thread(target=lambda: [
            replies.extend(client.submit_many(commands[i:i + 30])) for i in range(0, 300, 30)])
        store = open_store(url)
        sender.start()
        wait_until(lambda: store.head("sku-000").version > old["version"], timeout=60,
                   what="sku-000 to log its first reservations")
        os.kill(old["pid"], signal.SIGKILL)
        sender.join(120)
        assert len(replies) == 300
        assert all(isinstance(r, Accepted) or r.code == "sold_out" for r in replies), \
            {type(r).__name__ for r in replies}
        accepted = [c.reservation_id for c, r in zip(commands, replies) if isinstance(r, Accepted)]
        logged = [env.data["reservation_id"] for s in store.streams() for env in store.read(s)
                  if env.type == "inventory.stock_reserved"]
        assert sorted(accepted) == sorted(logged)   # each acknowledged one, once; nothing else
        held = reserved_units_in_log(url)
        assert all(0 <= units <= 20 for units in held.values()) and sum(held.values()) == 200
        # The promoted standby serves shard 0 under a new epoch; Ray restarted nothing.
        now = rt.handles["sku"][0]
        new = ray_api.get(now.status.remote(), timeout=30)
        assert new["pid"] != old["pid"] and new["standby"] is False and new["epoch"] > old["epoch"]
        assert [f["how"] for f in rt.failover.failovers] == ["standby"]
        assert client.gateway.stats["failovers"] == 1
        # A zombie of the old epoch writes nothing.
        (event,) = sku_decider.decide(AddStock(sku="sku-0", qty=1, now=T0),
                                      sku_decider.initial("sku-0"))
        zombie = events_registry.new_event(event, command_id="zombie", recorded_at=T0)
        with pytest.raises(FencedError):
            store.append("sku-000", [zombie], store.head("sku-000").version, epoch=old["epoch"])
        store.close()   # (the new standby and the health check: tests/cluster/test_failover.py)
    finally:
        stop(rt)


def test_a_killed_failover_actor_is_restarted_and_adopts_the_shards(ray_instance, tmp_path):
    """Issue 17: the failover actor is one process. Given a shard already failed over to its
    standby (so its primary, and its new standby, are actors the failover actor started),
    when the failover actor's process is SIGKILLed, then that primary and that standby live
    on (they are detached), the reservations sent meanwhile are answered by the same
    primary, Ray restarts the actor, which adopts both by name (no fresh primary, no new
    epoch), the health check says it restarted, and every acknowledged reservation is in
    the log once."""
    import os
    import signal

    import structlog

    url = f"sqlite:///{tmp_path}/events.db"
    rt = Runtime(RuntimeConfig(store_url=url, shards={"sku": 1}, tick_s=0, retry_for_s=60,
                               standbys=1)).start()
    try:
        client = rt.client()
        skus = [f"sku-{i}" for i in range(5)]
        assert all(isinstance(r, Accepted) for r in client.submit_many(sale(skus, 100)))
        commands = reservations(90, skus)
        first = ray_api.get(rt.handles["sku"][0].status.remote(), timeout=30)
        os.kill(first["pid"], signal.SIGKILL)
        replies = client.submit_many(commands[:30])   # through the promoted standby
        promoted = ray_api.get(rt.handles["sku"][0].status.remote(), timeout=30)
        assert promoted["epoch"] > first["epoch"] and promoted["standby"] is False
        wait_until(lambda: all(rt.failover.standbys().values()), timeout=60,
                   what="the promoted primary's new standby")
        (standby,) = rt.standby_status()
        actor_pid = ray_api.get(rt.failover.actor.incarnation.remote(), timeout=30)["pid"]
        os.kill(actor_pid, signal.SIGKILL)
        replies += client.submit_many(commands[30:])   # the same primary: it lives on
        assert all(isinstance(r, Accepted) for r in replies), {type(r).__name__ for r in replies}
        with structlog.testing.capture_logs() as logged:
            # While Ray restarts it, calls to the actor fail (the check logs that).
            wait_until(lambda: rt.check_standbys() is not None and "failover_actor_restarted"
                       in [e["event"] for e in logged], timeout=120,
                       what="the health check to find the restarted failover actor")
        restarted = [e for e in logged if e["event"] == "failover_actor_restarted"]
        assert restarted[0]["fresh_primaries"] == []
        now = ray_api.get(rt.handles["sku"][0].status.remote(), timeout=30)
        assert (now["pid"], now["epoch"]) == (promoted["pid"], promoted["epoch"])
        assert ray_api.get(rt.failover.actor.incarnation.remote(), timeout=30)["pid"] != actor_pid
        (kept,) = rt.standby_status()
        assert kept["pid"] == standby["pid"] and kept["stream"] == "sku-000"
        store = open_store(url)
        logged_ids = [env.data["reservation_id"] for env in store.read("sku-000")
                      if env.type == "inventory.stock_reserved"]
        store.close()
        assert sorted(logged_ids) == sorted(c.reservation_id for c in commands)
        rt.stop(kill_shards=True)   # detached, yet ended with the runtime: no name is left
        assert ray_api.named_actors("sku-000") == []
        assert ray_api.find_actor("saleday-failover") is None
    finally:
        stop(rt)
