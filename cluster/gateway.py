"""The batching gateway: commands in, one Ray call per batch per shard, replies out.

A Ray actor call costs ~0.2-0.7 ms here, so one call per request would cap a shard at a
few thousand requests a second. The gateway groups requests for the same shard (up to
`max_batch`, waiting at most `max_wait_ms`) into one `handle` call. A lane with no batch in
flight waits only `idle_wait_ms` (default 0: what was submitted in the same turn of the
event loop goes together, then it is sent): waiting the full `max_wait_ms` there added it to
every hop of a quiet system (three sequential hops per HTTP order) and bought no batching,
since nothing was queued behind it. A busy lane's requests wait for a free slot or
`max_wait_ms`, and go together.

- Back-pressure: at most `max_in_flight` batches per shard are in flight, and at most
  `max_queue` requests wait behind them; past that `submit` answers `Busy` at once
  (load shedding, never an unbounded queue).
- Retries: when a shard is unavailable or restarting, the same batch (the SAME command
  ids) is sent again with backoff until `retry_for_s` runs out; the shard answers a
  repeated id from its dedup record, so nothing happens twice. Every wait has a timeout.
- Ticks: every `tick_s` each shard is asked to expire what is due, so a lost payment
  callback cannot hold stock past its deadline even when no traffic arrives.
- Failover (shards with a hot standby, cluster/failover.py): a batch or tick that finds
  its shard dead for good (`died`) asks `failover(shard, generation)` for the promoted
  standby and sends the same batch to it at once; no backoff, no waiting for Ray.
- Every command gets an answer: one that cannot be routed (its entity id is not a str)
  or cannot cross the wire (an int outside msgpack's range, a lone surrogate in a str)
  is refused alone as an `InvalidCommand`; the rest of its micro-batch is sent as usual.

`Gateway` is asyncio; `GatewayClient` is the synchronous API over it (its own loop in a
background thread). Both return one reply per command, in order.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from saleday.actors.decider import InvalidCommand
from saleday.actors.host import Busy, Reply, Request, Unavailable
from saleday.cluster.local_socket import SocketTrouble, query_request
from saleday.cluster.routing import ShardMap, UnroutableEntity
from saleday.cluster.wire import Wire

log = structlog.get_logger("saleday.gateway")

_Entry = tuple[str, Any, str, str, Any]
"""A request waiting in a lane: command id, command, correlation id, causation id, and
what takes its reply (an asyncio future, or a `_Slot` of a `submit_batch`). Plain tuples:
a `Request` object each cost the gateway as much again to build and to take apart."""

ROUTE_CACHE = 65_536
"""Entity ids whose lane a gateway remembers per command class (then it starts over)."""

LINK_RETRY_S = 30.0
"""How long a lane whose shard offered no local socket uses Ray before asking again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    max_batch: int = 1024
    max_wait_ms: float = 2.0
    idle_wait_ms: float = 0.0
    """How long a lane with nothing in flight waits for more requests before sending."""
    max_in_flight: int = 2
    max_queue: int | None = None
    """Requests allowed to wait per shard; default `max_batch * max_in_flight * 2`."""
    call_timeout_s: float = 10.0
    retry_for_s: float = 30.0
    tick_s: float = 1.0


@dataclass
class _Lane:
    name: str
    handle: Any
    queue: list[_Entry] = field(default_factory=list)
    in_flight: int = 0
    timer: asyncio.Handle | None = None
    queries: list[tuple[str, asyncio.Future]] = field(default_factory=list)
    generation: int = 0
    """Which primary `handle` is (bumped at each failover of this shard)."""
    link: Any = None
    """The shard's local socket (`cluster.local_socket`), of primary `link_generation`."""
    link_generation: int = -1
    link_retry_at: float = 0.0
    link_lock: asyncio.Lock | None = None


class _Many:
    """The replies of one `submit_batch`, and the future that gets them all."""

    __slots__ = ("future", "replies", "left")

    def __init__(self, future: asyncio.Future, n: int) -> None:
        self.future = future
        self.replies: list[Any] = [None] * n
        self.left = n
        if not n:
            future.set_result([])


class _Slot:
    """One command's place in a `_Many`: takes its reply as a future would."""

    __slots__ = ("many", "index")

    def __init__(self, many: _Many, index: int) -> None:
        self.many = many
        self.index = index

    def done(self) -> bool:
        return self.many.replies[self.index] is not None

    def set_result(self, reply: Any) -> None:
        many = self.many
        many.replies[self.index] = reply
        many.left -= 1
        if not many.left and not many.future.done():
            many.future.set_result(many.replies)


class Gateway:
    """Routes commands of each kind to its shards, in micro-batches."""

    def __init__(self, maps: dict[str, ShardMap], handles: dict[str, list[Any]],
                 config: GatewayConfig = GatewayConfig(), *,
                 entity_of: dict[str, Callable[[Any], str]],
                 kind_of: Callable[[Any], str],
                 transient: tuple[type[BaseException], ...] = (),
                 wire: Wire | None = None,
                 failover: Callable[[str, int], tuple[int, Any]] | None = None,
                 died: tuple[type[BaseException], ...] = (),
                 link: Callable[[Any], Awaitable[Any]] | None = None,
                 generations: dict[str, list[int]] | None = None) -> None:
        self.maps = maps
        self.link = link
        """handle -> a `SocketLink` to that shard on this node, or None (Ray then)."""
        self.failover = failover
        self.died = died if failover is not None else ()
        self.wire = wire or Wire(())
        self.config = config
        self.entity_of = entity_of
        self.kind_of = kind_of
        self.transient = transient + (asyncio.TimeoutError,)
        self.max_queue = config.max_queue or config.max_batch * config.max_in_flight * 2
        self.lanes = {kind: [_Lane(maps[kind].stream(i), h,
                                   generation=(generations or {}).get(kind, [0] * len(hs))[i])
                             for i, h in enumerate(hs)]
                      for kind, hs in handles.items()}
        """`generations`: which primary each handle is (its writer epoch, as `failover`
        reports it), when some shards have failed over before this gateway was made."""
        self._next_id = 1
        self._routes: dict[type, tuple[list[_Lane], ShardMap, Callable[[Any], str],
                                       dict[str, _Lane]] | None] = {}
        """Per command class: its kind's lanes, map, entity getter and a cache of which
        lane each entity id seen lately goes to (`kind_of` depends on the class alone)."""
        self._id_prefix = uuid.uuid4().hex[:12]
        self._last_us = 0
        self._ticker: asyncio.Task | None = None
        self.stats = {"submitted": 0, "busy": 0, "batches": 0, "retries": 0, "unavailable": 0,
                      "failovers": 0, "socket_fallbacks": 0}

    def new_command_id(self) -> str:
        """A unique, time-ordered command id (keeps the stores' dedup indexes append-only)."""
        n, self._next_id = self._next_id, self._next_id + 1
        return f"{self._id_stamp()}{n:012d}"

    def _id_stamp(self) -> str:
        """The start of the next ids: this gateway's prefix and the time in us, never
        going backwards; the counter that follows makes each id unique."""
        self._last_us = max(self._last_us, time.time_ns() // 1000)
        return f"{self._id_prefix}-{self._last_us:016d}-"

    def start_ticking(self) -> None:
        if self._ticker is None and self.config.tick_s > 0:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for lanes in self.lanes.values():
            for lane in lanes:
                if lane.link is not None:
                    lane.link.close()
                    lane.link = None

    # -- submitting ---------------------------------------------------------------------

    def submit_nowait(self, command: Any, *, command_id: str | None = None,
                      correlation_id: str = "", causation_id: str = "") -> asyncio.Future:
        """Queue one command; the returned future resolves to its reply."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.stats["submitted"] += 1
        lane = self._lane_of(command, fut)
        if lane is not None:
            lane.queue.append((command_id or self.new_command_id(), command, correlation_id,
                               causation_id, fut))
            self._queued(lane)
        return fut

    def submit_batch(self, commands: Sequence[Any]) -> asyncio.Future:
        """Queue many commands under fresh ids; ONE future resolves to all their replies,
        in order, once the last is in.

        The same routing, batching, back-pressure and retries as `submit_nowait`, without
        an asyncio future and a done-callback per command: those were a fifth of a
        pipelined client's CPU (the reserve bench's driver, py-spy), where the shards'
        replies to a whole micro-batch are set one by one."""
        loop = asyncio.get_running_loop()
        many = _Many(loop.create_future(), len(commands))
        self.stats["submitted"] += len(commands)
        stamp = self._id_stamp()
        first, self._next_id = self._next_id, self._next_id + len(commands)
        max_batch = self.config.max_batch
        touched: dict[int, _Lane] = {}
        for i, command in enumerate(commands):
            slot = _Slot(many, i)
            lane = self._lane_of(command, slot)
            if lane is not None:
                lane.queue.append((f"{stamp}{first + i:012d}", command, "", "", slot))
                if len(lane.queue) >= max_batch:
                    self._flush(lane)
                touched[id(lane)] = lane
        for lane in touched.values():
            if lane.queue:
                self._queued(lane)
        return many.future

    def _lane_of(self, command: Any, sink: Any) -> _Lane | None:
        """The lane `command` goes to; None when it was answered at once (unroutable, or
        its lane's queue full: `Busy`)."""
        route = self._routes.get(type(command), False)
        if route is False:
            route = self._routes[type(command)] = self._route_of(command)
        if route is None:
            sink.set_result(InvalidCommand(reason=f"no shards host {type(command).__name__}"))
            return None
        lanes, shard_map, entity_of, seen = route
        try:
            entity = entity_of(command)
            lane = seen.get(entity) if type(entity) is str else None
            if lane is None:
                lane = lanes[shard_map.shard_of(entity)]
                if type(entity) is str:
                    if len(seen) >= ROUTE_CACHE:
                        seen.clear()
                    seen[entity] = lane
        except (UnroutableEntity, AttributeError) as exc:
            sink.set_result(InvalidCommand(
                reason=f"{type(command).__name__} cannot be routed: {exc}"))
            return None
        if len(lane.queue) >= self.max_queue:
            self.stats["busy"] += 1
            sink.set_result(Busy(shard=lane.name))
            return None
        return lane

    def _route_of(self, command: Any) -> tuple[list[_Lane], ShardMap, Callable[[Any], str],
                                              dict[str, _Lane]] | None:
        kind = self.kind_of(command)
        if kind not in self.maps:
            return None
        return self.lanes[kind], self.maps[kind], self.entity_of[kind], {}

    def _queued(self, lane: _Lane) -> None:
        """A request joined `lane`'s queue: send a full batch now, else make sure a send
        is due (`max_wait_ms` behind a batch in flight, `idle_wait_ms` or the end of
        this turn of the loop when nothing is)."""
        if len(lane.queue) >= self.config.max_batch:
            self._flush(lane)
        elif lane.timer is None:
            loop = asyncio.get_running_loop()
            if lane.in_flight:
                lane.timer = loop.call_later(self.config.max_wait_ms / 1000, self._flush, lane)
            elif self.config.idle_wait_ms:
                lane.timer = loop.call_later(self.config.idle_wait_ms / 1000, self._flush, lane)
            else:   # after the rest of this turn's submissions
                lane.timer = loop.call_soon(self._flush, lane)

    async def submit(self, command: Any, *, command_id: str | None = None,
                     correlation_id: str = "", causation_id: str = "") -> Reply:
        return await self.submit_nowait(command, command_id=command_id,
                                        correlation_id=correlation_id, causation_id=causation_id)

    async def submit_retrying_busy(self, command: Any, *, command_id: str,
                                   busy_retries: int = 50, correlation_id: str = "",
                                   causation_id: str = "") -> Reply:
        """Submit under a caller-chosen (deterministic) id, riding out load shedding: a
        `Busy` answer is tried again with backoff, up to `busy_retries` times.

        The backoff doubles from 5 ms up to 1 s, with jitter (x0.5-1.5), so thousands of
        refused callers spread their retries out instead of returning together."""
        reply: Reply = Busy(shard="")
        for attempt in range(busy_retries):
            reply = await self.submit_nowait(command, command_id=command_id,
                                             correlation_id=correlation_id,
                                             causation_id=causation_id)
            if not isinstance(reply, Busy):
                return reply
            await asyncio.sleep(min(0.005 * 2 ** attempt, 1.0) * (0.5 + random.random()))
        return reply

    async def submit_many(self, commands: Iterable[Any]) -> list[Reply]:
        return await self.submit_batch(list(commands))

    async def query(self, kind: str, entity_id: str) -> Any:
        """The current (durable) state of one entity, read from its shard.

        Queries to one shard made in the same turn of the event loop travel in one call
        (`states_of`), as commands do in batches: one Ray call per query cost the
        simulator's driver a fifth of its CPU."""
        lane = self.lanes[kind][self.maps[kind].shard_of(entity_id)]
        fut = asyncio.get_running_loop().create_future()
        if not lane.queries:
            asyncio.get_running_loop().call_soon(self._flush_queries, lane)
        lane.queries.append((entity_id, fut))
        return await fut

    def _flush_queries(self, lane: _Lane) -> None:
        take, lane.queries = lane.queries, []
        asyncio.get_running_loop().create_task(self._send_queries(lane, take))

    async def _send_queries(self, lane: _Lane, take: list[tuple[str, asyncio.Future]]) -> None:
        entities = [e for e, _ in take]
        try:
            generation = lane.generation
            try:
                states = await self._ask(lane, entities)
            except self.died as exc:   # ask the promoted standby, once
                if not await self._fail_over(lane, generation, exc):
                    raise
                states = await self._ask(lane, entities)
        except BaseException as exc:  # every caller gets the failure, nobody waits forever
            for _, fut in take:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), state in zip(take, states):
            if not fut.done():
                fut.set_result(state)

    async def _ask(self, lane: _Lane, entities: list[str]) -> list[Any]:
        """The states of `entities` from the lane's shard: over its local socket when there
        is one (as batches go), else (or on any trouble with it) through Ray."""
        link = await self._link(lane) if self.link is not None else None
        request = query_request(entities) if link is not None else None
        if request is not None:
            try:
                return await link.query(request, self.config.call_timeout_s)
            except SocketTrouble as exc:
                self._unlink(lane, link, exc)
        return await asyncio.wait_for(lane.handle.states_of.remote(entities),
                                      self.config.call_timeout_s)

    # -- batching -----------------------------------------------------------------------

    def _flush(self, lane: _Lane) -> None:
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        while lane.queue and lane.in_flight < self.config.max_in_flight:
            take = lane.queue[:self.config.max_batch]
            del lane.queue[:self.config.max_batch]
            lane.in_flight += 1
            asyncio.get_running_loop().create_task(self._send(lane, take))

    def _encodable(self, take: list[_Entry]) -> tuple[bytes, list[_Entry]]:
        """The batch blob, and the requests in it; one that cannot cross the wire is
        answered here with an `InvalidCommand` of its own and left out."""
        try:
            return self._encode(take), take
        except Exception:  # noqa: BLE001 - find the offenders (the rare path)
            pass
        kept = []
        for entry in take:
            problem = self.wire.unencodable(Request(*entry[:4]))
            sink = entry[4]
            if problem is None:
                kept.append(entry)
            elif not sink.done():
                log.info("command_unencodable", command_id=repr(entry[0])[:80],
                         problem=problem[:300])
                sink.set_result(InvalidCommand(reason=problem))
        return (self._encode(kept) if kept else b""), kept

    def _encode(self, take: list[_Entry]) -> bytes:
        command_ids, commands, correlation_ids, causation_ids, _ = zip(*take)
        return self.wire.encode_request_columns(command_ids, correlation_ids, causation_ids,
                                                commands)

    async def _send(self, lane: _Lane, take: list[_Entry]) -> None:
        try:
            batch, take = self._encodable(take)
            if take:
                await self._call(lane, batch, take)
        except BaseException as exc:  # never leave a caller waiting forever
            for entry in take:
                if not entry[4].done():
                    entry[4].set_result(Unavailable(
                        reason=f"{lane.name}: {type(exc).__name__}: {exc}"))
            if not isinstance(exc, Exception):
                raise
        finally:
            lane.in_flight -= 1
            if lane.queue:
                self._flush(lane)

    async def _call(self, lane: _Lane, batch: bytes, take: list[_Entry]) -> None:
        give_up = time.monotonic() + self.config.retry_for_s
        delay = 0.01
        while True:
            generation = lane.generation   # the primary this attempt goes to
            try:
                link = await self._link(lane) if self.link is not None else None
                blob = None
                if link is not None:
                    try:
                        blob = await link.call(batch, self.config.call_timeout_s)
                    except SocketTrouble as exc:   # the same batch through Ray, at once
                        self._unlink(lane, link, exc)
                if blob is None:
                    blob = await asyncio.wait_for(lane.handle.handle.remote(batch),
                                                  self.config.call_timeout_s)
                replies = self.wire.decode_replies(blob)
                break
            except self.died as exc:
                if time.monotonic() < give_up and await self._fail_over(lane, generation, exc):
                    continue   # the promoted standby takes the same batch at once
                if time.monotonic() + delay > give_up:
                    replies = self._give_up(lane, take, exc)
                    break
                self.stats["retries"] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except self.transient as exc:
                if time.monotonic() + delay > give_up:
                    replies = self._give_up(lane, take, exc)
                    break
                self.stats["retries"] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        self.stats["batches"] += 1
        for entry, reply in zip(take, replies, strict=True):
            sink = entry[4]
            if not sink.done():
                sink.set_result(reply)

    async def _link(self, lane: _Lane) -> Any:
        """The lane's socket link to its current primary: opened on first use and after a
        failover; None (Ray, for a while) where it cannot be had."""
        if _linked(lane):
            return lane.link
        if time.monotonic() < lane.link_retry_at:
            return None
        if lane.link_lock is None:
            lane.link_lock = asyncio.Lock()
        async with lane.link_lock:   # one opening per lane; the others take its result
            if _linked(lane):
                return lane.link
            if time.monotonic() < lane.link_retry_at:
                return None
            if lane.link is not None:
                lane.link.close()
            generation = lane.generation
            assert self.link is not None
            link = await self.link(lane.handle)
            lane.link, lane.link_generation = link, generation
            if link is None:
                lane.link_retry_at = time.monotonic() + LINK_RETRY_S
            return link

    def _unlink(self, lane: _Lane, link: Any, exc: BaseException) -> None:
        link.close(str(exc))
        if lane.link is link:
            lane.link = None
            lane.link_retry_at = time.monotonic() + 1.0
        self.stats["socket_fallbacks"] += 1
        log.info("local_socket_fallback", shard=lane.name, error=str(exc)[:300])

    def _give_up(self, lane: _Lane, take: list[_Entry],
                 exc: BaseException) -> list[Reply]:
        log.warning("shard_unavailable", shard=lane.name, requests=len(take),
                    error=f"{type(exc).__name__}: {exc}"[:300])
        self.stats["unavailable"] += len(take)
        return [Unavailable(reason=f"{lane.name}: {type(exc).__name__}") for _ in take]

    async def _fail_over(self, lane: _Lane, generation: int, exc: BaseException) -> bool:
        """The lane's primary of `generation` (the one the failed call went to) is dead:
        take the promoted standby (from `failover`, run on a thread: it waits for the
        promotion; a generation already failed over just gets the current primary). False
        if the failover itself failed."""
        assert self.failover is not None
        try:
            new_generation, handle = await asyncio.to_thread(self.failover, lane.name,
                                                             generation)
        except Exception as error:  # noqa: BLE001 - retried as a transient failure
            log.warning("failover_failed", shard=lane.name, error=f"{type(error).__name__}: "
                        f"{error}"[:300], cause=type(exc).__name__)
            return False
        if lane.generation < new_generation:   # another batch of this lane may have swapped it
            lane.handle, lane.generation = handle, new_generation
            self.stats["failovers"] += 1
        return True

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            for lanes in self.lanes.values():
                for lane in lanes:
                    generation = lane.generation
                    try:
                        await asyncio.wait_for(lane.handle.tick.remote(),
                                               self.config.call_timeout_s)
                    except self.died as exc:   # the health check: an idle shard died
                        await self._fail_over(lane, generation, exc)
                    except Exception as exc:
                        log.info("tick_failed", shard=lane.name, error=type(exc).__name__)


def _linked(lane: _Lane) -> bool:
    """Whether the lane's socket link is open and to its current primary."""
    return (lane.link is not None and not lane.link.closed
            and lane.link_generation == lane.generation)


class GatewayClient:
    """The synchronous API: a `Gateway` on its own event loop in a background thread."""

    def __init__(self, make_gateway: Callable[[], Gateway], *, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="saleday-gateway",
                                        daemon=True)
        self._thread.start()
        self.gateway: Gateway = self._call(self._make(make_gateway))

    @staticmethod
    async def _make(make_gateway: Callable[[], Gateway]) -> Gateway:
        gateway = make_gateway()
        gateway.start_ticking()
        return gateway

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout_s)

    def submit(self, command: Any, *, command_id: str | None = None,
               correlation_id: str = "") -> Reply:
        return self._call(self.gateway.submit(command, command_id=command_id,
                                              correlation_id=correlation_id))

    def submit_many(self, commands: Sequence[Any]) -> list[Reply]:
        return self._call(self.gateway.submit_many(commands))

    def close(self) -> None:
        try:
            self._call(self.gateway.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
