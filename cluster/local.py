"""Shards in this process: the gateway's API over plain `ShardHost`s, without Ray.

`LocalShards` hosts every kind's shards on one store and offers what the flows use of a
`Gateway` (`submit`, `submit_retrying_busy`, `submit_many`, `query`), so
`flows.checkout.Checkout`, `flows.sale_day.SaleDayFlows` and the `Reactor` run on it
unchanged and write the log the system writes.

Commands queue per shard and are decided as one batch and one commit per shard, either
- `autoflush=True`: as soon as the event loop gets to it (concurrent submissions to one
  shard share a batch, as the Ray gateway's micro-batches do); an `Unavailable` reply goes
  back to its caller, as the gateway's does; or
- `autoflush=False`: when the owner calls `flush()`, every shard in a fixed order, an
  `Unavailable` command queued again with its id (the client retries) — the deterministic
  rounds of the in-process simulator (`simulator.inprocess`).

Refusals match the gateway's: a command no shard hosts, or whose entity id is not a str,
is answered `InvalidCommand` at once; the hosts refuse the rest alone (a field the log
cannot record, a command id reused with another payload: `IdempotencyConflict`).

Time is the hosts' `clock` (ms): a callable given by the owner, or `now_ms`, which the
owner moves. `tick()` expires what is due on the shards with a timer due; `react()` turns
new team and campaign facts into their follow-up commands (`flows.reactions.follow_ups`),
which carry the fact's correlation id and name the fact as their causation id.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from saleday.actors.decider import InvalidCommand
from saleday.actors.host import Request, ShardHost, TransportFailure, Unavailable
from saleday.actors.kinds import deciders
from saleday.cluster.routing import ShardMap, UnroutableEntity
from saleday.events import EventStore, Tail, event_ref, registry
from saleday.flows.reactions import follow_ups


@dataclass
class Lane:
    """One shard: its host, the store it writes through, and the requests waiting for it."""

    kind: str
    stream: str
    host: ShardHost
    store: Any
    queue: list[tuple[Request, asyncio.Future]] = field(default_factory=list)
    scheduled: bool = False


class LocalShards:
    """Every kind's shards in this process, behind the gateway's API."""

    def __init__(self, store: EventStore, shards: dict[str, int], *, partitions: int = 64,
                 snapshot_every: int = 50_000, clock: Callable[[], int] | None = None,
                 autoflush: bool = False,
                 reactor_kinds: tuple[str, ...] = ("team", "campaign")) -> None:
        self.store = store
        self.now_ms = 0
        self.clock = clock if clock is not None else (lambda: self.now_ms)
        self.autoflush = autoflush
        self.maps = {kind: ShardMap.uniform(kind, n, partitions) for kind, n in shards.items()}
        self.deciders = deciders()
        self.snapshot_every = snapshot_every
        self._kind_by_type = {cls: kind for kind in shards for cls in self.deciders[kind].commands}
        self.lanes: dict[str, list[Lane]] = {
            kind: [self._lane(kind, m.stream(i)) for i in range(m.shards)]
            for kind, m in self.maps.items()}
        self.order = [lane for kind in sorted(self.lanes) for lane in self.lanes[kind]]
        self._routes = {cls: (self.deciders[kind].entity_of, self.maps[kind].shard_of,
                              self.lanes[kind]) for cls, kind in self._kind_by_type.items()}
        prefixes = tuple(f"{k}-" for k in reactor_kinds)
        self.tail = Tail(store, include=lambda s: s.startswith(prefixes))
        self._reacting = [lane for lane in self.order if lane.stream.startswith(prefixes)]
        self._reacted_at: tuple[int, ...] = ()
        self._owed: list[tuple[asyncio.Future, tuple[str, Any, str, str]]] = []
        self._ids = itertools.count(1)
        self.reactions = 0
        self.batches = 0

    def _lane(self, kind: str, stream: str) -> Lane:
        store = self._store_for(stream)
        return Lane(kind, stream, self.new_host(kind, stream, store), store)

    def _store_for(self, stream: str) -> Any:
        """The store a shard writes through (a subclass may wrap it)."""
        return self.store

    def new_host(self, kind: str, stream: str, store: Any) -> ShardHost:
        """A host for `stream` that recovers from the store (a new writer epoch)."""
        return ShardHost(decider=self.deciders[kind], store=store, stream=stream,
                         snapshot_every=self.snapshot_every, clock=self.clock)

    def lane_of(self, kind: str, entity: str) -> Lane:
        return self.lanes[kind][self.maps[kind].shard_of(entity)]

    # -- the gateway's API ------------------------------------------------------------

    def submit_nowait(self, command: Any, command_id: str | None = None,
                      correlation_id: str = "", causation_id: str = "") -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        route = self._routes.get(type(command))
        if route is None:  # refused as the gateway refuses it
            fut.set_result(InvalidCommand(reason=f"no shards host {type(command).__name__}"))
            return fut
        entity_of, shard_of, lanes = route
        try:
            lane = lanes[shard_of(entity_of(command))]
        except UnroutableEntity as exc:
            fut.set_result(InvalidCommand(reason=f"{type(command).__name__} cannot be routed: {exc}"))
            return fut
        lane.queue.append((Request(command_id or f"local-{next(self._ids)}", command,
                                   correlation_id, causation_id), fut))
        if self.autoflush and not lane.scheduled:
            lane.scheduled = True
            loop.call_soon(self._flush_now, lane)
        return fut

    async def submit(self, command: Any, *, command_id: str | None = None,
                     correlation_id: str = "", causation_id: str = "") -> Any:
        return await self.submit_nowait(command, command_id, correlation_id, causation_id)

    async def submit_retrying_busy(self, command: Any, *, command_id: str,
                                   busy_retries: int = 50, correlation_id: str = "",
                                   causation_id: str = "") -> Any:
        return await self.submit_nowait(command, command_id, correlation_id, causation_id)

    async def submit_many(self, commands: Sequence[Any]) -> list[Any]:
        return list(await asyncio.gather(*(self.submit_nowait(c) for c in commands)))

    async def query(self, kind: str, entity_id: str) -> Any:
        return self.lane_of(kind, entity_id).host.state_of(entity_id)

    # -- deciding -----------------------------------------------------------------------

    def pending(self) -> bool:
        return any(lane.queue for lane in self.order)

    def flush(self, t_s: float = 0.0) -> int:
        """Give every shard its queue as one batch, in a fixed order; an `Unavailable`
        command waits for the next flush with its id. Return the commands answered."""
        done = 0
        for index, lane in enumerate(self.order):
            if lane.queue:
                done += self._run(index, lane, t_s, retry_unavailable=True)
        return done

    def _flush_now(self, lane: Lane) -> None:
        lane.scheduled = False
        if lane.queue:
            self._run(self.order.index(lane), lane, 0.0, retry_unavailable=False)

    def _run(self, index: int, lane: Lane, t_s: float, *, retry_unavailable: bool) -> int:
        take, lane.queue = lane.queue, []
        try:
            replies = self._deliver(index, lane, [r for r, _ in take], t_s)
        except Exception as exc:  # noqa: BLE001 - hand the failure to every waiting caller
            for _, fut in take:
                if not fut.done():
                    fut.set_exception(exc)
            return 0
        self.batches += 1
        done = 0
        retry = []
        for (req, fut), reply in zip(take, replies):
            if retry_unavailable and isinstance(reply, Unavailable):
                retry.append((req, fut))
            elif not fut.done():
                fut.set_result(reply)
                done += 1
        lane.queue[:0] = retry
        return done

    def _deliver(self, index: int, lane: Lane, requests: list[Request], t_s: float) -> list[Any]:
        """Hand one batch to a shard (a subclass may inject faults here)."""
        return lane.host.handle(requests)

    def tick(self) -> int:
        """Expire what is due now on every shard that has a timer due; return the events."""
        now = self.clock()
        recorded = 0
        for lane in self.order:
            due = lane.host.next_due()
            if due is not None and due <= now:
                recorded += lane.host.tick()
        return recorded

    def react(self) -> int:
        """Queue what new team and campaign facts call for (shares, grants, pool returns),
        and again what a shard could not take last time (answered `Unavailable`: the fact
        still owes it, and a repeat is answered as a duplicate)."""
        queued = self._react_again()
        heads = tuple(lane.host.version for lane in self._reacting)
        if heads == self._reacted_at:
            return queued
        self._reacted_at = heads
        while batch := self.tail.poll():
            for env in batch:
                for cid, command in follow_ups(env, registry.decode(env)):
                    self._follow_up((cid, command, env.correlation_id,
                                     event_ref(env.stream, env.version)))
                    queued += 1
        self.reactions += queued
        return queued

    def _follow_up(self, step: tuple[str, Any, str, str]) -> None:
        cid, command, correlation_id, causation_id = step
        self._owed.append((self.submit_nowait(command, cid, correlation_id, causation_id),
                           step))

    def _react_again(self) -> int:
        owed, self._owed, again = self._owed, [], 0
        for fut, step in owed:
            if not fut.done():
                self._owed.append((fut, step))
            elif (not fut.cancelled() and fut.exception() is None
                  and isinstance(fut.result(), TransportFailure)):
                self._follow_up(step)
                again += 1
        return again

    def status(self) -> list[dict[str, Any]]:
        return [lane.host.status() for lane in self.order]
