"""The swarm's fault classes, injected into the in-process engine's rounds.

`SwarmShards` is `FaultyShards` (today's five classes, `simulator.inprocess`) with the
classes of `simulator.swarm` added, each struck deterministically from the seed's
`SwarmSchedule`:

- `torn_write`: the shard's store proxy (`SwarmStore`) is told to tear the next append:
  the commit is written whole (`kept=all`, the acknowledgement is what was lost) or not
  at all (`kept=none`), and an error is raised either way, as a store whose writer died
  mid-commit answers; the shard's host is then dropped and a new one recovers. The real
  backends commit atomically (one SQLite transaction, one Lua script), so all or nothing
  is what recovery may find.
- `slow_store`: the batch commits, but the append takes up to `max_s` simulated seconds:
  the shard takes no batch and fires no timer until then, and the replies come then.
- `full_disk`: for up to `max_s` seconds the shard's appends are refused
  (`StoreUnavailable`: no space left); refused commands are retried the next round.
- `clock_skew`: each shard's host reads the engine's clock plus its own offset.
- `delayed_reply`: a batch's replies are held up to `max_s` seconds and handed back in a
  shuffled order.
- `delayed_follow_up`: the reactor's follow-ups of one round are held up to `max_s`
  seconds, then queued in a shuffled order.
- `bad_snapshot`: the shard's host is dropped, and the new one loads a stale snapshot
  (an older one the store kept) or an unreadable one (cut in half).
- `projection_kill`: see `simulator.swarm_views`.

Held replies and follow-ups are released by `tick()` on the virtual clock; `holding()`
keeps the engine's rounds going while any are held.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import structlog

from saleday.actors.host import Request, ShardHost, Unavailable
from saleday.cluster.local import Lane
from saleday.events import EventStore, Snapshot, StoreUnavailable
from saleday.simulator.errors import SimulationError
from saleday.simulator.inprocess import FaultPlan, FaultyShards, _FailNextAppend
from saleday.simulator.swarm import FaultMix, SwarmSchedule

log = structlog.get_logger("saleday.simulator")


class RecoveryFailed(SimulationError):
    """A shard's new host could not recover from the store after an injected fault."""


class SwarmStore(_FailNextAppend):
    """A shard's store proxy that can tear an append, refuse appends while the disk is
    full, and hand the next recovery a stale or unreadable snapshot."""

    def __init__(self, store: EventStore, disk_full: Callable[[], bool]) -> None:
        super().__init__(store)
        self.tear: str | None = None
        """`all` or `none`: what the next append keeps before it fails."""
        self.bad_snapshot: str | None = None
        """`stale` or `unreadable`: what the next snapshot load returns."""
        self.saved: list[Snapshot] = []
        self._disk_full = disk_full

    def append(self, stream: str, events: Any, *args: Any, **kwargs: Any) -> Any:
        if self._disk_full():
            raise StoreUnavailable("(simulated)", "injected fault: no space left on device")
        tear, self.tear = self.tear, None
        if tear is None:
            return super().append(stream, events, *args, **kwargs)
        self.torn(tear, stream, events, *args, **kwargs)
        raise StoreUnavailable("(simulated)", f"injected fault: the writer died mid-commit "
                                              f"(the store kept {tear} of it)")

    def torn(self, kept: str, stream: str, events: Any, *args: Any, **kwargs: Any) -> None:
        """What a torn commit leaves in the store: all of it, or nothing."""
        if kept == "all":
            self._store.append(stream, events, *args, **kwargs)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self._store.save_snapshot(snapshot)
        self.saved = [*self.saved[-3:], snapshot]

    def load_snapshot(self, stream: str) -> Snapshot | None:
        bad, self.bad_snapshot = self.bad_snapshot, None
        snap = self._store.load_snapshot(stream)
        if bad is None or snap is None:
            return snap
        if bad == "unreadable":
            return dataclasses.replace(snap, data=snap.data[: len(snap.data) // 2])
        older = [s for s in self.saved if s.version < snap.version]
        return older[-1] if older else None


class SwarmShards(FaultyShards):
    """`FaultyShards` with the swarm's classes (see the module's docstring)."""

    def __init__(self, store: EventStore, shards: dict[str, int], *, mix: FaultMix,
                 when: SwarmSchedule, to_ms: Callable[[float], int], **kw: Any) -> None:
        self.mix = mix
        self._to_ms = to_ms
        zero = to_ms(0.0)
        self._skew_ms: dict[str, int] = {}
        self._skews = iter(to_ms(s) - zero for s in when.skew_s)
        self._disk_full_until: dict[str, int] = {}
        self._blocked_until: dict[str, int] = {}
        self._refused_at: dict[str, int] = {}
        """shard -> the round (engine ms) in which the full disk last refused it."""
        self._hold: int | None = None
        self._held: list[tuple[int, int, list[tuple[asyncio.Future, Any]]]] = []
        self._held_follow_ups: list[tuple[int, int, list[tuple[str, Any, str, str]]]] = []
        self._capture: list[tuple[str, Any, str, str]] | None = None
        """Follow-ups held back: (command id, command, correlation id, causation id)."""
        self._follow_ups_ms = [to_ms(t) for t in when.follow_ups_at]
        self._variants = iter(when.variants)
        self._rng = np.random.default_rng([mix.seed, 19, 3])
        self._seq = itertools.count()
        self.watch: Any = None
        """The projection worker of `projection_kill` (`simulator.swarm_views`), if on."""
        super().__init__(store, shards, faults=FaultPlan(at=list(when.at)), **kw)
        skewed = sum(1 for ms in self._skew_ms.values() if ms)
        if skewed:
            self.faults.injected["clock_skew"] = skewed   # shards whose clock is off

    def _span_ms(self, kind: str) -> int:
        """A random duration up to the class's `max_s`, in the engine's ms."""
        seconds = float(self._rng.uniform(0.0, float(self.mix.param(kind, "max_s", 0.0))))
        return self._to_ms(seconds) - self._to_ms(0.0)

    # -- shards, stores and clocks ----------------------------------------------------------

    def _store_for(self, stream: str) -> SwarmStore:
        return SwarmStore(self.store, lambda: self._disk_full_until.get(stream, -1) >= self.now_ms)

    def new_host(self, kind: str, stream: str, store: Any) -> ShardHost:
        if stream not in self._skew_ms:
            self._skew_ms[stream] = next(self._skews, 0)
        skew = self._skew_ms[stream]
        clock = self.clock if skew == 0 else (lambda: self.clock() + skew)
        return ShardHost(decider=self.deciders[kind], store=store, stream=stream,
                         snapshot_every=self.snapshot_every, clock=clock)

    def _blocked(self, lane: Lane) -> bool:
        """Whether the shard takes no batch now: blocked in a slow append, or refused by
        the full disk in this round already."""
        now = self.now_ms
        return (self._blocked_until.get(lane.stream, -1) > now
                or self._refused_at.get(lane.stream) == now)

    # -- the rounds ------------------------------------------------------------------------

    def pending(self) -> bool:
        return any(lane.queue and not self._blocked(lane) for lane in self.order)

    def holding(self) -> bool:
        """Whether replies or follow-ups are held for later (the rounds must go on)."""
        return bool(self._held or self._held_follow_ups)

    def next_wake_ms(self) -> int | None:
        """As `FaultyShards.next_wake_ms`, each timer by its shard's own clock; and when a
        held reply or follow-up is due, or a blocked shard takes batches again."""
        now = self.now_ms
        wakes = [due - self._skew_ms.get(lane.stream, 0) for lane in self.order
                 if (due := lane.host.next_due()) is not None]
        wakes.extend(until for until, _, _ in self._held)
        wakes.extend(until for until, _, _ in self._held_follow_ups)
        wakes.extend(until for until in self._blocked_until.values() if until > now)
        wakes.extend(until + 1 for until in self._disk_full_until.values() if until >= now)
        return min(wakes) if wakes else None

    def skipped(self, now_ms: int) -> None:
        """A round not run still counts for the projection worker, which folds a batch
        every few rounds (`simulator.swarm_views`)."""
        if self.watch is not None:
            self.watch.step(now_ms)

    def _run(self, index: int, lane: Lane, t_s: float, *, retry_unavailable: bool) -> int:
        """As `LocalShards._run`, but a blocked shard takes nothing, and a struck batch's
        replies may be held and shuffled."""
        if self._blocked(lane):
            return 0
        take, lane.queue = lane.queue, []
        self._hold = None
        try:
            replies = self._deliver(index, lane, [r for r, _ in take], t_s)
        except Exception as exc:  # noqa: BLE001 - hand the failure to every waiting caller
            for _, fut in take:
                if not fut.done():
                    fut.set_exception(exc)
            return 0
        self.batches += 1
        answered, retry = [], []
        for (req, fut), reply in zip(take, replies):
            if retry_unavailable and isinstance(reply, Unavailable):
                retry.append((req, fut))
            elif not fut.done():
                answered.append((fut, reply))
        lane.queue[:0] = retry
        if self._hold is None:
            for fut, reply in answered:
                fut.set_result(reply)
        elif answered:
            order = self._rng.permutation(len(answered))
            self._held.append((self._hold, next(self._seq), [answered[i] for i in order]))
        return len(answered)

    def _deliver_with_faults(self, index: int, lane: Lane, requests: list[Request],
                             t_s: float) -> list[Any]:
        if self._disk_full_until.get(lane.stream, -1) >= self.now_ms:
            replies = lane.host.handle(requests)      # refused: retried next round
            self._refused_at[lane.stream] = self.now_ms
            return replies
        plan = self.faults
        due = plan.at[self._fault_at] if self._fault_at < len(plan.at) else None
        if due is None or due[0] > t_s or due[1] in ("crash", "lost_reply", "duplicate",
                                                    "failed_append"):
            return super()._deliver_with_faults(index, lane, requests, t_s)
        kind = self._due_fault(index, t_s)
        if kind is None:   # due on another shard
            return super()._deliver_with_faults(index, lane, requests, t_s)
        if kind == "torn_write":
            lane.store.tear = str(self.mix.param("torn_write", "kept", "all"))
            replies = lane.host.handle(requests)
            lane.store.tear = None
            self._recover(lane)   # the writer died
            return replies
        if kind == "full_disk":
            self._disk_full_until[lane.stream] = self.now_ms + self._span_ms("full_disk")
            return self._deliver_with_faults(index, lane, requests, t_s)
        if kind == "bad_snapshot":
            lane.store.bad_snapshot = next(self._variants, "stale")
            self._recover(lane)
            return lane.host.handle(requests)
        replies = lane.host.handle(requests)
        if kind == "slow_store":
            until = self.now_ms + self._span_ms("slow_store")
            self._blocked_until[lane.stream] = until
            self._hold = until
        elif kind == "delayed_reply":
            self._hold = self.now_ms + self._span_ms("delayed_reply")
        return replies

    def _recover(self, lane: Lane) -> None:
        """Drop the shard's host and recover a new one from the store, or end the run."""
        try:
            lane.host = self.new_host(lane.kind, lane.stream, lane.store)
        except Exception as exc:
            raise RecoveryFailed(f"shard {lane.stream} could not recover from the store: "
                                 f"{type(exc).__name__}: {exc}") from exc

    def tick(self) -> int:
        """Release what is due of the held replies and follow-ups, fire the timers of every
        shard that is not blocked (each by its own clock), and fold the projection."""
        now = self.now_ms
        while self._held and min(self._held)[0] <= now:
            item = min(self._held)
            self._held.remove(item)
            for fut, reply in item[2]:
                if not fut.done():
                    fut.set_result(reply)
        while self._held_follow_ups and min(self._held_follow_ups)[0] <= now:
            item = min(self._held_follow_ups)
            self._held_follow_ups.remove(item)
            for cid, command, correlation, causation in item[2]:
                super().submit_nowait(command, cid, correlation, causation)
        recorded = 0
        for lane in self.order:
            if self._blocked(lane):
                continue
            due = lane.host.next_due()
            if due is not None and due <= lane.host.clock():
                recorded += lane.host.tick()
        if self.watch is not None:
            self.watch.step(now)
        return recorded

    def react(self) -> int:
        """As `LocalShards.react`; in a round struck by `delayed_follow_up`, what it queues
        is held and shuffled instead."""
        strike = bool(self._follow_ups_ms) and self._follow_ups_ms[0] <= self.now_ms
        if not strike:
            return super().react()
        self._capture = []
        try:
            queued = super().react()
        finally:
            captured, self._capture = self._capture, None
        if captured:
            self._follow_ups_ms.pop(0)
            self.faults.injected["delayed_follow_up"] += 1
            order = self._rng.permutation(len(captured))
            self._held_follow_ups.append((now := self.now_ms + self._span_ms("delayed_follow_up"),
                                          next(self._seq), [captured[i] for i in order]))
            log.info("fault_injected", kind="delayed_follow_up", commands=len(captured),
                     until_ms=now)
        return queued

    def submit_nowait(self, command: Any, command_id: str | None = None,
                      correlation_id: str = "", causation_id: str = "") -> asyncio.Future:
        if self._capture is not None and command_id is not None:
            self._capture.append((command_id, command, correlation_id, causation_id))
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut
        return super().submit_nowait(command, command_id, correlation_id, causation_id)


def swarm_shards(store: EventStore, shard_counts: dict[str, int], *, mix: FaultMix,
                 window_s: float, to_ms: Callable[[float], int], data_dir: Any,
                 give_up_s: float) -> SwarmShards:
    """The in-process engine's shards for `mix`: its schedule drawn from the seed, snapshots
    as often as `bad_snapshot` asks (else every 50,000 events, as with `--faults`), and the
    projection worker of `projection_kill`."""
    from pathlib import Path

    from saleday.simulator.swarm import schedule
    from saleday.simulator.swarm_views import ProjectionWatch

    when = schedule(mix, window_s=window_s, lanes=sum(shard_counts.values()))
    every = int(mix.param("bad_snapshot", "snapshot_every", 50_000))
    shards = SwarmShards(store, shard_counts, mix=mix, when=when, to_ms=to_ms,
                         give_up_s=give_up_s, snapshot_every=every)
    if "projection_kill" in mix.on:
        def killed() -> None:
            shards.faults.injected["projection_kill"] += 1

        shards.watch = ProjectionWatch(shards.store, Path(data_dir) / "dst-projections.db",
                                       [to_ms(t) for t in when.kills_at], killed)
    return shards
