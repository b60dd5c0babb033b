"""A shard's local socket (`cluster.local_socket`) and the gateway over it, without Ray: batches
and queries travel over the socket and are answered in order; a shard that raises, closes or stalls is a
`SocketTrouble`, and the gateway then sends the same batch (the same command ids) through
the shard's Ray handle; the socket lives in a directory only its user can enter."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from pathlib import Path

import pytest

from saleday.actors.host import Request
from saleday.actors.sku import COMMANDS, ReserveStock, SoldOut
from saleday.cluster.gateway import Gateway, GatewayConfig
from saleday.cluster.local_socket import (
    ShardSocket,
    SocketLink,
    SocketTrouble,
    query_answerer,
    query_request,
)
from saleday.cluster.routing import ShardMap
from saleday.cluster.wire import Wire

WIRE = Wire(COMMANDS)


def answer(blob: bytes) -> bytes:
    return WIRE.encode_replies([SoldOut(sku=r.command.sku, requested=1, available=0)
                                for r in WIRE.decode_requests(blob)])


def reserve(i: int) -> ReserveStock:
    return ReserveStock(reservation_id=f"r{i}", user="u", sku="a", qty=1, now=1, deadline=2)


class Served:
    """A shard's socket whose answers the test controls; counts what it decided."""

    def __init__(self, *, fail: bool = False, stall: threading.Event | None = None,
                 queries: bool = True) -> None:
        self.seen: list[list[str]] = []
        self.asked: list[list[str]] = []
        self.fail = fail
        self.stall = stall
        self.socket = ShardSocket(self._handle, "sku-000",
                                  query=query_answerer(self._states_of) if queries else None)

    def _states_of(self, entities: list[str]) -> list[dict]:
        self.asked.append(entities)
        if self.fail:
            raise RuntimeError("the store is away")
        return [state_of(e) for e in entities]

    def _handle(self, blob: bytes) -> bytes:
        self.seen.append([r.command_id for r in WIRE.decode_requests(blob)])
        if self.stall is not None:
            self.stall.wait(5)
        if self.fail:
            raise RuntimeError("the store is away")
        return answer(blob)


def state_of(entity: str) -> dict:
    return {"sku": entity, "available": len(entity)}


class RayHandle:
    """The shard's Ray handle as the gateway calls it (`handle.handle.remote(blob)`, and
    `handle.states_of.remote(ids)`)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.asked: list[list[str]] = []
        self.handle = self
        ray = self

        class StatesOf:
            def remote(self, entities: list[str]):
                ray.asked.append(entities)

                async def reply():
                    return [state_of(e) for e in entities]
                return reply()

        self.states_of = StatesOf()

    def remote(self, blob: bytes):
        self.calls.append([r.command_id for r in WIRE.decode_requests(blob)])

        async def reply():
            return answer(blob)
        return reply()


def gateway(ray: RayHandle, served: Served | None, **config) -> Gateway:
    async def link(handle):
        return await SocketLink.open(served.socket.path) if served is not None else None

    return Gateway({"sku": ShardMap.uniform("sku", 1, 8)}, {"sku": [ray]},
                   GatewayConfig(tick_s=0, **config), entity_of={"sku": lambda c: c.sku},
                   kind_of=lambda c: "sku", wire=WIRE, link=link)


@pytest.fixture
def closing():
    made: list[Served] = []
    yield made
    for s in made:
        s.socket.close()


def test_the_socket_is_private_to_its_user(closing):
    served = Served()
    closing.append(served)
    path = Path(served.socket.path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.parent.stat().st_uid == os.getuid()
    served.socket.close()
    assert not path.exists()


def test_batches_travel_over_the_socket_and_not_through_ray(closing):
    served, ray = Served(), RayHandle()
    closing.append(served)

    async def run():
        gw = gateway(ray, served)
        replies = await gw.submit_many([reserve(i) for i in range(50)])
        replies += await gw.submit_many([reserve(i) for i in range(50, 60)])
        await gw.close()
        return replies

    replies = asyncio.run(run())
    assert len(replies) == 60 and all(isinstance(r, SoldOut) for r in replies)
    assert [len(b) for b in served.seen] == [50, 10]
    assert ray.calls == []


def test_pipelined_batches_are_answered_in_order(closing):
    served = Served()
    closing.append(served)

    async def run():
        link = await SocketLink.open(served.socket.path)
        blobs = [WIRE.encode_requests([Request(f"c{k}-{i}", reserve(i)) for i in range(k + 1)])
                 for k in range(5)]
        out = await asyncio.gather(*(link.call(b, 5) for b in blobs))
        link.close()
        return out

    out = asyncio.run(run())
    assert [len(WIRE.decode_replies(b)) for b in out] == [1, 2, 3, 4, 5]


def test_a_shard_that_raises_gets_the_same_batch_through_ray(closing):
    served, ray = Served(fail=True), RayHandle()
    closing.append(served)

    async def run():
        gw = gateway(ray, served)
        replies = await gw.submit_many([reserve(i) for i in range(3)])
        stats = dict(gw.stats)
        await gw.close()
        return replies, stats

    replies, stats = asyncio.run(run())
    assert all(isinstance(r, SoldOut) for r in replies)
    assert served.seen == ray.calls   # the same command ids went both ways
    assert stats["socket_fallbacks"] == 1


def test_a_stalled_socket_times_out_to_ray(closing):
    stall = threading.Event()
    served, ray = Served(stall=stall), RayHandle()
    closing.append(served)

    async def run():
        gw = gateway(ray, served, call_timeout_s=0.3)
        replies = await gw.submit_many([reserve(i) for i in range(4)])
        await gw.close()
        return replies

    try:
        replies = asyncio.run(run())
    finally:
        stall.set()
    assert all(isinstance(r, SoldOut) for r in replies)
    assert len(ray.calls) == 1 and ray.calls == served.seen


def test_a_closed_socket_fails_what_waits_on_it(closing):
    served = Served(stall=threading.Event())
    closing.append(served)

    async def run():
        link = await SocketLink.open(served.socket.path)
        blob = WIRE.encode_requests([Request("c1", reserve(1))])
        waiting = asyncio.ensure_future(link.call(blob, 5))
        await asyncio.sleep(0.05)
        link.close("test")
        with pytest.raises(SocketTrouble):
            await waiting
        with pytest.raises(SocketTrouble):
            await link.call(blob, 5)

    asyncio.run(run())
    served.stall.set()


def test_without_a_socket_the_gateway_uses_ray():
    ray = RayHandle()

    async def run():
        gw = gateway(ray, None)
        replies = await gw.submit_many([reserve(i) for i in range(5)])
        await gw.close()
        return replies

    assert all(isinstance(r, SoldOut) for r in asyncio.run(run()))
    assert [len(c) for c in ray.calls] == [5]


def _ask(gw: Gateway, skus: list[str]) -> list:
    return [gw.query("sku", sku) for sku in skus]


@pytest.mark.parametrize("queries", [True, False])
def test_queries_travel_over_the_socket_or_through_ray_when_it_does_not_answer_them(
        closing, queries):
    """Queries made in one turn go over the socket as one frame; a shard whose socket does
    not answer queries gets the same query through Ray, and every caller its state."""
    served, ray = Served(queries=queries), RayHandle()
    closing.append(served)

    async def run():
        gw = gateway(ray, served)
        states = await asyncio.gather(*_ask(gw, ["a", "bb", "ccc"]))
        states += await asyncio.gather(*_ask(gw, ["dddd"]))
        await gw.close()
        return states

    states = asyncio.run(run())
    assert states == [state_of(s) for s in ("a", "bb", "ccc", "dddd")]
    if queries:
        assert served.asked == [["a", "bb", "ccc"], ["dddd"]] and ray.asked == []
    else:
        assert served.asked == [] and ray.asked[0] == ["a", "bb", "ccc"]


def test_a_query_the_shard_fails_on_the_socket_is_asked_through_ray(closing):
    served, ray = Served(fail=True), RayHandle()
    closing.append(served)

    async def run():
        gw = gateway(ray, served)
        states = await asyncio.gather(*_ask(gw, ["a", "bb"]))
        stats = dict(gw.stats)
        await gw.close()
        return states, stats

    states, stats = asyncio.run(run())
    assert states == [state_of("a"), state_of("bb")]
    assert served.asked == ray.asked == [["a", "bb"]]
    assert stats["socket_fallbacks"] == 1


def test_a_malformed_query_frame_is_refused_and_the_link_goes_on(closing):
    """A query that is not an array of ids is an error frame (SocketTrouble), not a dead
    socket: the next request on the same connection is answered."""
    from saleday.cluster.local_socket import QUERY

    served = Served()
    closing.append(served)

    async def run():
        link = await SocketLink.open(served.socket.path)
        with pytest.raises(SocketTrouble, match="array of entity ids"):
            await link.call(b"\x01", 5, QUERY)
        with pytest.raises(SocketTrouble, match="not served"):
            await link.call(b"", 5, 7)
        states = await link.query(query_request(["a"]), 5)
        link.close()
        return states

    assert asyncio.run(run()) == [state_of("a")]


def test_an_id_that_cannot_travel_as_msgpack_is_asked_through_ray_and_the_link_stays(closing):
    """A query naming an id msgpack cannot encode (a str with a lone surrogate) goes
    through Ray as before, and the socket is not blamed for it."""
    served, ray = Served(), RayHandle()
    closing.append(served)
    odd = ["a\ud800"]

    async def run():
        gw = gateway(ray, served)
        first = await asyncio.gather(*(gw.query("sku", e) for e in odd))
        then = await gw.query("sku", "bb")
        stats = dict(gw.stats)
        await gw.close()
        return first, then, stats

    first, then, stats = asyncio.run(run())
    assert ray.asked == [odd] and served.asked == [["bb"]]
    assert then == state_of("bb") and stats["socket_fallbacks"] == 0
    assert first[0] == state_of("a\ud800")
