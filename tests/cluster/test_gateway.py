"""The gateway's batching, back-pressure, retries and timeouts, against stand-in shards (no Ray)."""

from __future__ import annotations

import asyncio

import pytest

from saleday.actors.decider import InvalidCommand
from saleday.actors.host import Accepted, Busy, Unavailable
from saleday.actors.sku import COMMANDS, ReserveStock, SoldOut
from saleday.cluster.gateway import Gateway, GatewayConfig
from saleday.cluster.routing import ShardMap, partition_of
from saleday.cluster.wire import Wire
from tests.helpers import eventually

WIRE = Wire(COMMANDS)


class Flaky(Exception):
    """Stands in for Ray's 'actor unavailable' errors."""


class StandInShard:
    """Answers batches like a shard would; can fail the first calls or answer slowly."""

    def __init__(self, *, fail_first: int = 0, delay: float = 0.0) -> None:
        self.calls: list[list[str]] = []
        self.fail_first = fail_first
        self.delay = delay
        self.handle = self
        self.tick = self

    def remote(self, blob: bytes | None = None):
        return self._answer(blob)

    async def _answer(self, blob):
        if blob is None:
            return 0
        requests = WIRE.decode_requests(blob)
        self.calls.append([r.command_id for r in requests])
        if self.delay:
            await asyncio.sleep(self.delay)  # the slow shard under test, not a wait for anything
        if len(self.calls) <= self.fail_first:
            raise Flaky("restarting")
        return WIRE.encode_replies([SoldOut(sku=r.command.sku, requested=1, available=0)
                                    for r in requests])


def gateway(shards, **config) -> Gateway:
    return Gateway({"sku": ShardMap.uniform("sku", len(shards), 8)}, {"sku": shards},
                   GatewayConfig(tick_s=0, **config), entity_of={"sku": lambda c: c.sku},
                   kind_of=lambda c: "sku" if type(c) in COMMANDS else "?",
                   transient=(Flaky,), wire=WIRE)


def reserve(i: int, sku: str = "a") -> ReserveStock:
    return ReserveStock(reservation_id=f"r{i}", user="u", sku=sku, qty=1, now=1, deadline=2)


def test_commands_for_one_shard_travel_in_one_call():
    """Many commands submitted together reach their shard in a single batch."""
    shard = StandInShard()
    replies = asyncio.run(gateway([shard]).submit_many([reserve(i) for i in range(100)]))
    assert len(shard.calls) == 1 and len(shard.calls[0]) == 100
    assert all(isinstance(r, SoldOut) for r in replies)


def test_a_batch_gets_each_reply_in_its_place_with_one_future():
    """`submit_batch` answers every command, in order, on one future: across shards, with
    commands refused at once (no shard hosts it, its entity is not a str) among them."""
    shards = [StandInShard(), StandInShard()]
    gw = gateway(shards)
    commands = [reserve(0, "sku-1"), "not a command", reserve(1, "sku-2"),
                ReserveStock(reservation_id="r", user="u", sku=7, qty=1, now=1, deadline=2),
                *[reserve(i, f"sku-{i}") for i in range(2, 40)]]

    async def run():
        fut = gw.submit_batch(commands)
        assert isinstance(fut, asyncio.Future)
        return await fut, await gw.submit_batch([])

    replies, none = asyncio.run(run())
    assert none == [] and len(replies) == len(commands)
    assert isinstance(replies[1], InvalidCommand) and isinstance(replies[3], InvalidCommand)
    assert "cannot be routed" in replies[3].reason
    for command, reply in zip(commands, replies):
        if not isinstance(reply, InvalidCommand):
            assert reply == SoldOut(sku=command.sku, requested=1, available=0)
    assert all(calls for calls in (s.calls for s in shards))
    sent = [cid for s in shards for call in s.calls for cid in call]
    assert len(sent) == len(set(sent)) == len(commands) - 2


def test_a_batch_and_single_submissions_share_the_lanes_and_the_ids():
    """Commands of a batch and single ones travel in the same micro-batches, and their
    generated ids stay unique and in submission order."""
    shard = StandInShard()
    gw = gateway([shard])

    async def run():
        one = gw.submit_nowait(reserve(0))
        many = gw.submit_batch([reserve(i) for i in range(1, 6)])
        last = gw.submit_nowait(reserve(6))
        return await one, await many, await last

    one, many, last = asyncio.run(run())
    assert len(many) == 5 and all(isinstance(r, SoldOut) for r in (one, *many, last))
    assert len(shard.calls) == 1 and len(shard.calls[0]) == 7
    assert shard.calls[0] == sorted(shard.calls[0])


def test_a_batch_past_the_queue_limit_is_answered_busy_in_its_place():
    """Back-pressure applies to a batch command by command: what does not fit is Busy."""
    shard = StandInShard(delay=0.05)

    async def run():
        return await gateway([shard], max_batch=4, max_in_flight=1, max_queue=8).submit_batch(
            [reserve(i) for i in range(20)])

    replies = asyncio.run(run())
    assert [isinstance(r, Busy) for r in replies] == [False] * 12 + [True] * 8


def test_batches_are_capped_at_max_batch():
    """No call carries more than max_batch commands."""
    shard = StandInShard()
    asyncio.run(gateway([shard], max_batch=10).submit_many([reserve(i) for i in range(35)]))
    assert [len(c) for c in shard.calls] == [10, 10, 10, 5]


def test_a_lone_command_to_an_idle_shard_does_not_wait_for_company():
    """With nothing in flight, a command goes at the end of its turn of the loop, not after
    max_wait_ms (each of an order's sequential hops used to wait it out)."""
    shard = StandInShard()

    async def one() -> float:
        gw = gateway([shard], max_wait_ms=500)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await gw.submit(reserve(1))
        return loop.time() - started

    assert asyncio.run(one()) < 0.25
    assert [len(c) for c in shard.calls] == [1]


def test_commands_behind_a_batch_in_flight_wait_and_travel_together():
    """While a call is in flight, what arrives meanwhile waits (for a free slot or
    max_wait_ms) and goes in one call."""
    shard = StandInShard(delay=0.05)

    async def run() -> None:
        gw = gateway([shard], max_in_flight=1, max_wait_ms=1_000)
        first = gw.submit_nowait(reserve(0))
        await asyncio.sleep(0.01)                       # the first call is in flight
        rest = [gw.submit_nowait(reserve(i)) for i in range(1, 6)]
        await asyncio.sleep(0)
        await asyncio.gather(first, *rest)

    asyncio.run(run())
    assert [len(c) for c in shard.calls] == [1, 5]


def test_an_idle_wait_can_be_asked_for():
    """`idle_wait_ms` > 0 brings back the wait on an idle lane: commands submitted across
    turns within it travel together."""
    shard = StandInShard()

    async def run() -> None:
        gw = gateway([shard], idle_wait_ms=100)
        futs = []
        for i in range(4):
            futs.append(gw.submit_nowait(reserve(i)))
            await asyncio.sleep(0.001)
        await asyncio.gather(*futs)

    asyncio.run(run())
    assert [len(c) for c in shard.calls] == [4]


def test_commands_route_to_the_shard_of_their_entity():
    """Each command goes to the shard that owns its entity's partition."""
    shards = [StandInShard(), StandInShard()]
    gw = gateway(shards)
    skus = [f"sku-{i}" for i in range(40)]
    asyncio.run(gw.submit_many([reserve(i, sku) for i, sku in enumerate(skus)]))
    for index, shard in enumerate(shards):
        for call in shard.calls:
            assert len(call) > 0
    owners = {sku: gw.maps["sku"].owners[partition_of(sku, 8)] for sku in skus}
    assert sum(len(c) for c in shards[0].calls) == sum(1 for o in owners.values() if o == 0)


def test_a_full_queue_answers_busy_at_once():
    """Past max_in_flight batches and max_queue waiting commands, submit answers Busy."""
    shard = StandInShard(delay=0.05)
    replies = asyncio.run(gateway([shard], max_batch=4, max_in_flight=1, max_queue=8)
                          .submit_many([reserve(i) for i in range(40)]))
    busy = [r for r in replies if isinstance(r, Busy)]
    # 4 leave in the one batch allowed in flight, 8 wait, the other 28 are shed.
    assert len(busy) == 28 and all(r.shard == "sku-000" for r in busy)
    assert sum(len(c) for c in shard.calls) == 40 - len(busy)


def test_an_unavailable_shard_gets_the_same_batch_again():
    """A transient failure is retried with the SAME command ids until the shard answers."""
    shard = StandInShard(fail_first=2)
    replies = asyncio.run(gateway([shard], retry_for_s=5).submit_many([reserve(i) for i in range(5)]))
    assert len(shard.calls) == 3 and shard.calls[0] == shard.calls[1] == shard.calls[2]
    assert all(isinstance(r, SoldOut) for r in replies)


def test_a_shard_that_never_answers_gives_unavailable_within_the_retry_budget():
    """Retries stop when retry_for_s runs out; every caller gets Unavailable, none waits forever."""
    shard = StandInShard(fail_first=10**6)
    replies = asyncio.run(gateway([shard], retry_for_s=0.2).submit_many([reserve(i) for i in range(3)]))
    assert all(isinstance(r, Unavailable) for r in replies)


def test_a_slow_shard_call_times_out_and_is_retried():
    """Every wait has a timeout: a call slower than call_timeout_s is retried, then given up."""
    shard = StandInShard(delay=1.0)
    replies = asyncio.run(gateway([shard], call_timeout_s=0.05, retry_for_s=0.3)
                          .submit_many([reserve(1)]))
    assert isinstance(replies[0], Unavailable) and len(shard.calls) >= 2


def test_a_command_no_shard_hosts_is_refused():
    """An object that is no known command is an InvalidCommand, not a crash."""
    (reply,) = asyncio.run(gateway([StandInShard()]).submit_many(["not a command"]))
    assert isinstance(reply, InvalidCommand)


def test_gateway_command_ids_are_unique_and_ordered():
    """Generated ids never repeat and sort in submission order within a gateway."""
    gw = gateway([StandInShard()])
    ids = [gw.new_command_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and ids == sorted(ids)


def test_accepted_replies_cross_the_wire_intact():
    """Replies with events and rejections survive encoding between processes."""
    from saleday.actors.sku import StockReserved

    reply = Accepted((StockReserved(reservation_id="r", user="u", sku="a", qty=2, unit_prices=(1, 2),
                                    tiers=(0, 1), deadline=5, reserved_at=1),), 3, 3, True)
    rejection = SoldOut(sku="a", requested=2, available=1)
    assert WIRE.decode_replies(WIRE.encode_replies([reply, rejection])) == [reply, rejection]


def test_an_undecodable_request_becomes_a_refusal_not_a_crash():
    """A request naming an unknown type decodes to something the shard refuses alone."""
    import msgpack

    known = WIRE._t(reserve(1))
    columns = [[value] for value in known.values(reserve(1))]
    blob = msgpack.packb([["c1", "c2", "c3"], ["", "", ""], ["", "", ""],
                          [[["nowhere:Nothing", 1, []], [known.name, 1, columns],
                            [known.name, 1, columns[:-1]]], [0, 1, 2]]])
    first, second, third = WIRE.decode_requests(blob)
    assert isinstance(first.command, str) and second.command == reserve(1)
    assert isinstance(third.command, str) and "malformed" in third.command


def test_batches_of_mixed_commands_and_replies_cross_the_wire_in_order():
    """Requests of several classes, and accepted replies among refusals, come back as sent, in order."""
    from saleday.actors.host import Request
    from saleday.actors.sku import AddStock, StockReserved

    requests = [Request("c1", reserve(1), "corr", ""), Request("c2", AddStock(sku="a", qty=3, now=1)),
                Request("c3", reserve(2), "", "sku-a@4")]
    assert WIRE.decode_requests(WIRE.encode_requests(requests)) == requests
    event = StockReserved(reservation_id="r", user="u", sku="a", qty=1, unit_prices=(1,),
                          tiers=(0,), deadline=5, reserved_at=1)
    replies = [SoldOut(sku="a", requested=2, available=1), Accepted((event, event), 3, 4, False),
               Accepted((), 0, 0, True), Busy(shard="sku-0"), Accepted((event,), 5, 5, False)]
    assert WIRE.decode_replies(WIRE.encode_replies(replies)) == replies
    assert WIRE.decode_replies(WIRE.encode_replies([])) == []


@pytest.mark.parametrize("shards", [1, 3, 8])
def test_uniform_maps_spread_partitions_and_can_move_one(shards):
    """Partitions spread evenly over shards; the map is data and a partition can move."""
    m = ShardMap.uniform("sku", shards, 8)
    assert m.shards == shards and ShardMap.from_dict(m.to_dict()) == m
    moved = m.moved(0, shards - 1)
    assert moved.owners[0] == shards - 1 and moved.owners[1:] == m.owners[1:]


class TickCounter(StandInShard):
    """A stand-in shard that counts the gateway's ticks."""

    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0
        self.tick = self._TickMethod(self)

    class _TickMethod:
        def __init__(self, shard) -> None:
            self.shard = shard

        def remote(self):
            self.shard.ticks += 1
            return self.shard._answer(None)


def test_the_gateway_ticks_every_shard_while_idle():
    """With no traffic at all, each shard is still asked to expire what is due."""
    shards = [TickCounter(), TickCounter()]

    async def idle() -> None:
        gw = Gateway({"sku": ShardMap.uniform("sku", 2, 8)}, {"sku": shards},
                     GatewayConfig(tick_s=0.02), entity_of={"sku": lambda c: c.sku},
                     kind_of=lambda c: "sku", transient=(Flaky,), wire=WIRE)
        gw.start_ticking()
        await eventually(lambda: all(s.ticks >= 3 for s in shards),
                         what="three ticks counted at each shard")
        await gw.close()

    asyncio.run(idle())
    assert all(s.ticks >= 3 for s in shards)


class StateShard(StandInShard):
    """Answers state queries, counting the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.query_calls: list[list[str]] = []
        shard = self

        class _States:
            def remote(self, entities):
                async def answer():
                    shard.query_calls.append(list(entities))
                    return [f"state of {e}" for e in entities]
                return answer()

        self.states_of = _States()


def test_queries_to_one_shard_in_the_same_turn_travel_in_one_call():
    """State queries to one shard made in the same turn reach it in a single call, each answered
    with its own state."""
    shard = StateShard()

    async def go():
        gw = gateway([shard])
        first = await asyncio.gather(*(gw.query("sku", e) for e in ("a", "b", "c")))
        second = await gw.query("sku", "d")
        return first, second

    first, second = asyncio.run(go())
    assert first == ["state of a", "state of b", "state of c"] and second == "state of d"
    assert shard.query_calls == [["a", "b", "c"], ["d"]]


def test_a_failed_query_call_fails_every_query_in_it():
    """When a batched query call fails, every query in it gets the error."""
    shard = StateShard()

    class _Down:
        def remote(self, entities):
            async def fail():
                raise Flaky("restarting")
            return fail()

    shard.states_of = _Down()

    async def go():
        gw = gateway([shard])
        return await asyncio.gather(*(gw.query("sku", e) for e in ("a", "b")),
                                    return_exceptions=True)

    assert [type(r) for r in asyncio.run(go())] == [Flaky, Flaky]


class Died(Flaky):
    """Stands in for Ray's `ActorDiedError` (a subclass of its transient errors)."""


class DeadShard(StandInShard):
    """A primary whose process is gone: every call fails with `Died` (the n-th call after
    `late[n]` seconds, as when Ray's death notice reaches calls at different times)."""

    def __init__(self, late: tuple[float, ...] = ()) -> None:
        super().__init__()
        self.late = late

    async def _answer(self, blob):
        if blob is not None:
            self.calls.append([r.command_id for r in WIRE.decode_requests(blob)])
            n = len(self.calls) - 1
            if n < len(self.late):
                await asyncio.sleep(self.late[n])  # the slow death notice under test
        raise Died("the actor died")


class Promotions:
    """Stands in for `cluster.failover.Failover.fail_over`: one standby per generation."""

    def __init__(self, standby) -> None:
        self.standby = standby
        self.asked: list[tuple[str, int]] = []
        self.generation = 0

    def __call__(self, shard: str, generation: int):
        self.asked.append((shard, generation))
        if generation == self.generation:
            self.generation += 1
        return self.generation, self.standby


def failover_gateway(shards, promotions, **config) -> Gateway:
    return Gateway({"sku": ShardMap.uniform("sku", len(shards), 8)}, {"sku": shards},
                   GatewayConfig(tick_s=0, **config), entity_of={"sku": lambda c: c.sku},
                   kind_of=lambda c: "sku" if type(c) in COMMANDS else "?",
                   transient=(Flaky,), wire=WIRE, failover=promotions, died=(Died,))


def test_a_dead_primary_is_failed_over_and_the_same_batch_goes_to_the_standby():
    """Given a dead primary with a standby, when batches reach it, then the gateway asks
    for one promotion (later callers get the promoted standby), sends the very same
    command ids to the standby without backoff, and answers every command."""
    dead, standby = DeadShard(), StandInShard()
    promotions = Promotions(standby)
    gw = failover_gateway([dead], promotions, max_batch=10, max_in_flight=2)

    async def go():
        return await gw.submit_many([reserve(i) for i in range(40)])

    replies = asyncio.run(go())
    assert all(isinstance(r, SoldOut) for r in replies)
    assert dead.calls and all(call in standby.calls for call in dead.calls)  # the same batches
    sent_to_standby = [cid for call in standby.calls for cid in call]
    assert len(sent_to_standby) == 40 and len(set(sent_to_standby)) == 40
    assert promotions.generation == 1 and gw.stats["failovers"] == 1
    assert gw.stats["retries"] == 0 and gw.lanes["sku"][0].handle is standby


def test_a_batch_that_learns_late_of_a_death_already_failed_over_promotes_nothing():
    """Given two batches in flight to a primary that died, when the second learns of it
    after the first has failed over, then it is resent to the promoted standby and no
    second promotion is asked for (it names the primary it was sent to)."""
    dead, standby = DeadShard(late=(0.0, 0.05)), StandInShard()
    promotions = Promotions(standby)
    gw = failover_gateway([dead], promotions, max_batch=10, max_in_flight=2)
    replies = asyncio.run(gw.submit_many([reserve(i) for i in range(20)]))
    assert all(isinstance(r, SoldOut) for r in replies)
    assert promotions.asked == [("sku-000", 0), ("sku-000", 0)]
    assert promotions.generation == 1 and len(standby.calls) == 2


def test_without_a_failover_a_dead_shard_is_retried_as_before():
    """No failover configured: `Died` is one more transient error, retried until the budget."""
    dead = DeadShard()
    replies = asyncio.run(gateway([dead], retry_for_s=0.05).submit_many([reserve(1)]))
    assert isinstance(replies[0], Unavailable) and len(dead.calls) >= 2
