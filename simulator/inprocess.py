"""The in-process engine: every shard host in this process, on a virtual clock, no Ray.

It is the fast path for huge runs and the harness for deterministic simulation testing.
`cluster.local.LocalShards` offers the gateway's API over plain `ShardHost`s that share
one store; here (`FaultyShards`) commands queue per shard and are decided in rounds:
the engine lets every flow run until all of them wait (on a reply or on the clock), then
hands each shard its queue as one batch, in a fixed order, and resumes the flows. Nothing
depends on the wall clock or on thread timing, so a scenario, a seed and a fault plan give
the same log, event for event.

Faults (`FaultPlan`, drawn from the seed) are injected between and around those batches:
- `crash`: the shard's host is dropped and a new one recovers from the store (a new
  writer epoch; the old incarnation would be fenced);
- `lost_reply`: the batch is decided and committed, the replies are lost, and the client
  sends the same batch again (the host answers it from its dedup record);
- `duplicate`: the same batch is delivered twice;
- `failed_append`: the store refuses the commit (`StoreUnavailable`); the host answers
  `Unavailable` and the client retries with the same ids;
- `late_payment`: an order's payment callback is held back past its deadline (the order
  must be cancelled, its holds released, and the late payment refunded).

Real trouble with the store (not injected) is ridden out or ended, never spun on:
- an unreachable store (Redis down): every store call is tried again with backoff
  (`PatientStore`: 50 ms doubling to 2 s, one warning per try) until `give_up_s` have
  passed since the outage began; then the run ends with `StoreOutage`;
- a log that now ends before what the run committed (Redis back without its data, or
  emptied): the shards' own check (`ShardHost.log_rewound`, as a Ray shard uses it)
  ends the run with `LogRewound`. Both are `SimulationError`s (the CLI exits 2).
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import itertools
import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from saleday.actors.host import Accepted, Request, Unavailable
from saleday.cluster.local import Lane, LocalShards
from saleday.events import EventStore, StoreUnavailable
from saleday.events.store import redact
from saleday.simulator.errors import SimulationError
from saleday.simulator.generator import Visit

log = structlog.get_logger("saleday.simulator")

FAULT_KINDS = ("crash", "lost_reply", "duplicate", "failed_append", "late_payment")


@dataclass
class FaultPlan:
    """When and where faults strike: (simulated second, kind, lane index) per fault."""

    at: list[tuple[float, str, int]] = field(default_factory=list)
    injected: Counter = field(default_factory=Counter)

    @classmethod
    def draw(cls, seed: int, *, window_s: float, lanes: int, per_kind: int = 3) -> FaultPlan:
        """`per_kind` faults of each shard-side kind at random times of the busy part of
        the window, on random shards. (Late payments are picked per order by the driver.)"""
        rng = np.random.default_rng([seed, 7])
        at = []
        for kind in FAULT_KINDS[:-1]:
            for t in rng.uniform(0.0, 0.5 * window_s, per_kind):
                at.append((float(t), kind, int(rng.integers(0, lanes))))
        at.sort()
        return cls(at=at)


class _FailNextAppend:
    """A store proxy that refuses the next append, as an unreachable store would."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.armed = False

    def append(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            raise StoreUnavailable("(simulated)", "injected fault: the store refused this append")
        return self._store.append(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class StoreOutage(SimulationError):
    """The store stayed unreachable longer than the run was told to wait."""


class LogRewound(SimulationError):
    """The log now ends before what the run committed: the run cannot go on."""


class Patience:
    """How long trouble with the store is retried: backoff from `first_pause_s` doubling
    to `max_pause_s`, until `give_up_s` have passed since the trouble began."""

    def __init__(self, url: str, *, give_up_s: float, first_pause_s: float = 0.05,
                 max_pause_s: float = 2.0) -> None:
        self.url = redact(url)
        self.give_up_s = give_up_s
        self.first_pause_s = first_pause_s
        self.max_pause_s = max_pause_s
        self.since: float | None = None
        self._pause = first_pause_s

    def ok(self) -> None:
        self.since = None
        self._pause = self.first_pause_s

    def wait(self, reason: str, **where: Any) -> None:
        """Sleep before the next try, or raise `StoreOutage` once the bound is spent."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        waited = now - self.since
        if waited >= self.give_up_s:
            raise StoreOutage(f"the store {self.url} has been unavailable for {waited:.1f} s; "
                              f"gave up (the last error: {reason})")
        pause = min(self._pause, self.give_up_s - waited)
        log.warning("store_unavailable_retrying", retry_in_s=round(pause, 3),
                    down_s=round(waited, 1), error=reason, **where)
        time.sleep(pause)
        self._pause = min(self._pause * 2, self.max_pause_s)


class PatientStore:
    """A store proxy that rides out an outage: a call that finds the store unreachable is
    tried again as `patience` says, then fails the run with `StoreOutage`."""

    def __init__(self, store: EventStore, patience: Patience) -> None:
        self._store = store
        self.patience = patience

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        while True:
            try:
                result = fn(*args, **kwargs)
            except StoreUnavailable as exc:
                self.patience.wait(str(exc), call=fn.__name__)
                continue
            if self.patience.since is not None:
                self.patience.ok()
            return result

    def append(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._store.append, *args, **kwargs)

    def read(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._store.read, *args, **kwargs)

    def head(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._store.head, *args, **kwargs)

    def streams(self) -> Any:
        return self._call(self._store.streams)

    def acquire_epoch(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._store.acquire_epoch, *args, **kwargs)

    def load_snapshot(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._store.load_snapshot, *args, **kwargs)

    def save_snapshot(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._store.save_snapshot, *args, **kwargs)

    def recorded(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._store.recorded, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class FaultyShards(LocalShards):
    """`LocalShards` in deterministic rounds, with the faults of a `FaultPlan` injected
    around the batches they strike."""

    def __init__(self, store: EventStore, shards: dict[str, int], *,
                 faults: FaultPlan | None = None, give_up_s: float = 30.0, **kw: Any) -> None:
        self.faults = faults or FaultPlan()
        self._fault_at = 0
        url = getattr(store, "url", "(in memory)")
        self.patience = Patience(url, give_up_s=give_up_s)
        """For store calls that find the store unreachable (`PatientStore`)."""
        self.refusals = Patience(url, give_up_s=give_up_s)
        """For rounds in which a shard could not commit though the store answered."""
        self._fatal: BaseException | None = None
        self._refused: tuple[Lane, str] | None = None
        super().__init__(PatientStore(store, self.patience), shards, autoflush=False, **kw)

    def flush(self, t_s: float = 0.0) -> int:
        """As `LocalShards.flush`; then, if a shard could not commit for a reason no fault
        injected, end the run on a rewound log, or wait before the next try."""
        self._refused = None
        done = super().flush(t_s)
        if self._fatal is not None:
            raise self._fatal
        if self._refused is None:
            if self.refusals.since is not None:
                self.refusals.ok()
            return done
        lane, reason = self._refused
        head = lane.host.log_rewound()
        if head is not None:
            raise LogRewound(
                f"the log on {self.patience.url} was rewound: stream {lane.stream} now ends "
                f"at version {head}, but this run had committed {lane.host.version} (a Redis "
                f"restarted without its data, or emptied?); the run cannot go on")
        self.refusals.wait(reason, stream=lane.stream)
        return done

    def holding(self) -> bool:
        """Whether replies or commands are held for a later round (`swarm_shards`)."""
        return False

    def queued(self) -> bool:
        """Whether any shard has commands waiting, taken this round or not."""
        return any(lane.queue for lane in self.order)

    def next_wake_ms(self) -> int | None:
        """The earliest engine time (ms) at which a shard has something to do without a
        new command: a timer due (one cancelled since may wake it early: harmless)."""
        dues = [due for lane in self.order if (due := lane.host.next_due()) is not None]
        return min(dues) if dues else None

    def skipped(self, now_ms: int) -> None:
        """A round in which nothing was due went by without being run (`run_rounds`)."""

    def _store_for(self, stream: str) -> _FailNextAppend:
        return _FailNextAppend(self.store)

    def _deliver(self, index: int, lane: Lane, requests: list[Request], t_s: float) -> list[Any]:
        try:
            return self._deliver_with_faults(index, lane, requests, t_s)
        except SimulationError as exc:   # the store's outage outlasted the bound: end the run
            self._fatal = exc
            raise

    def _deliver_with_faults(self, index: int, lane: Lane, requests: list[Request],
                             t_s: float) -> list[Any]:
        fault = self._due_fault(index, t_s)
        if fault == "crash":
            lane.host = self.new_host(lane.kind, lane.stream, lane.store)
        elif fault == "failed_append":
            lane.store.armed = True
        replies = lane.host.handle(requests)
        if fault == "failed_append":
            lane.store.armed = False
        elif self._refused is None:
            refused = next((r for r in replies if isinstance(r, Unavailable)), None)
            if refused is not None:
                self._refused = (lane, refused.reason)
        if fault == "lost_reply":
            replies = lane.host.handle(requests)   # the client's retry of the same batch
        elif fault == "duplicate":
            again = lane.host.handle(requests)
            for first, second in zip(replies, again):
                if isinstance(first, Accepted) and not isinstance(second, Accepted):
                    log.error("duplicate_delivery_diverged", stream=lane.stream,
                              first=type(first).__name__, second=type(second).__name__)
        return replies

    def _due_fault(self, index: int, t_s: float) -> str | None:
        plan = self.faults
        while self._fault_at < len(plan.at) and plan.at[self._fault_at][0] <= t_s:
            _, kind, target = plan.at[self._fault_at]
            if target % len(self.order) != index:
                return None   # waits for its lane's next batch
            self._fault_at += 1
            plan.injected[kind] += 1
            log.info("fault_injected", kind=kind, stream=self.order[index].stream, at_s=round(t_s, 3))
            return kind
        return None


async def settle() -> None:
    """Return once every other task is waiting (on a reply or on the clock).

    asyncio runs ready callbacks first-in first-out; when this task resumes and the loop's
    ready queue is empty, nothing else can run until a reply or the clock moves. (`_ready`
    is CPython's BaseEventLoop queue; a bounded number of yields stands in elsewhere.)
    """
    loop = asyncio.get_running_loop()
    for _ in range(10_000):
        await asyncio.sleep(0)
        ready = getattr(loop, "_ready", None)
        if ready is not None and not ready:
            return


class VirtualTime:
    """The simulated clock of the in-process engine: flows wait on it, the engine moves it."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.now_s = start_s
        self._waiters: list[tuple[float, int, asyncio.Future]] = []
        self._seq = itertools.count()

    async def wait_until(self, t_s: float) -> None:
        if t_s <= self.now_s:
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (t_s, next(self._seq), fut))
        await fut

    def advance(self, t_s: float) -> int:
        self.now_s = t_s
        woke = 0
        while self._waiters and self._waiters[0][0] <= t_s:
            _, _, fut = heapq.heappop(self._waiters)
            fut.set_result(None)
            woke += 1
        return woke

    def next_due(self) -> float | None:
        return self._waiters[0][0] if self._waiters else None


@contextmanager
def _frozen_after_each_round() -> Iterator[None]:
    """Thaw, when the rounds end, what they froze: unless the heap was frozen before."""
    thawed = gc.get_freeze_count() == 0
    try:
        yield
    finally:
        if thawed:
            gc.unfreeze()


async def run_rounds(shards: FaultyShards, clock: VirtualTime, visits: Iterator[Visit],
                     play: Any, *, tick_s: float, end_s: float, to_ms: Any,
                     on_tick: Any = None, start_s: float = 0.0,
                     skip_idle: bool = True) -> list[BaseException]:
    """Drive visits through `play(visit)` on the virtual clock from `start_s` (the window's
    start) until `end_s` and after, until every flow has finished; return the exceptions
    visits raised (a bug: the flows answer refusals with values, never by raising).

    Rounds are `tick_s` apart. With `skip_idle`, a round that can do nothing is not run:
    when no flow is ready, no shard has a command queued and nothing is due before the
    next round (an arrival, a flow's wait on the clock, a shard's timer, a held reply), the
    clock moves on over the grid of rounds to the first at which something is due. A
    skipped round would have decided nothing, so the log is the one every round writes
    (the same digest); `on_tick` runs only for the rounds that are run.

    What a round leaves alive is frozen after it (`gc.freeze`, as a shard actor does after
    each batch: `cluster.shard_actor.BatchGc`), so the cyclic GC walks only what the
    current round allocates, never the millions of states, views and figures a large run
    accumulates; what was frozen goes back to the collector when the run ends (unless
    the heap was frozen before it began)."""
    with _frozen_after_each_round():
        tasks: set[asyncio.Task] = set()
        failures: list[BaseException] = []

        def done(task: asyncio.Task) -> None:
            tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                failures.append(task.exception())  # type: ignore[arg-type]

        upcoming = next(visits, None)
        t = float(start_s)
        while True:
            shards.now_ms = to_ms(t)
            clock.advance(t)
            while upcoming is not None and upcoming.t_s <= t:
                task = asyncio.get_running_loop().create_task(play(upcoming))
                tasks.add(task)
                task.add_done_callback(done)
                upcoming = next(visits, None)
            await settle()
            shards.tick()
            shards.react()
            while shards.pending():
                shards.flush(t)
                await settle()
                shards.react()
            if on_tick is not None:
                on_tick(t)
            gc.freeze()
            idle = upcoming is None and not tasks and not shards.holding()
            if idle and t >= end_s:
                return failures
            if t > 2 * end_s + 3_600:   # a reply that never comes: fail, never spin for ever
                raise SimulationError(f"{len(tasks)} visits still wait for a reply at {t:g} "
                                      f"simulated s, long past the end of the sale ({end_s:g} s)")
            nxt = t + tick_s
            if idle:
                nxt = max(nxt, min(end_s, t + 60 * tick_s))   # idle: run the clock out faster
            elif skip_idle and not shards.queued() and not _has_ready():
                nxt = _skip(shards, clock, nxt, tick_s, to_ms,
                            upcoming.t_s if upcoming is not None else math.inf,
                            2 * end_s + 3_600)
            t = nxt


def _has_ready() -> bool:
    """Whether a callback (a flow woken by a reply released this round) waits to run; True
    where the loop's ready queue cannot be seen, so that no round is skipped then."""
    ready = getattr(asyncio.get_running_loop(), "_ready", None)
    return ready is None or bool(ready)


def _skip(shards: FaultyShards, clock: VirtualTime, t: float, tick_s: float, to_ms: Any,
          arrival_s: float, limit_s: float) -> float:
    """The first round from `t` on (stepping `tick_s` as the rounds do, so each round's
    time is the float it always was) at which something is due; the rounds passed over
    are told to `shards.skipped`."""
    due_s = min(arrival_s, clock.next_due() or math.inf, limit_s)
    wake_ms = shards.next_wake_ms()
    while t < due_s:
        now_ms = to_ms(t)
        if wake_ms is not None and now_ms >= wake_ms:
            break
        shards.skipped(now_ms)
        t = t + tick_s
    return t
