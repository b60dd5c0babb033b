"""The shard host's serving loop: decide a batch, commit it as one, then answer.

A batch of requests is decided in order (later commands see earlier ones' effects),
all resulting events are appended as ONE commit at the expected version and the host's
writer epoch, and only then is state advanced and each request answered. Nothing is
acknowledged that is not in the log.

- A repeated command id is answered from the dedup record (`actors/host/dedup.py`), or
  refused as an `IdempotencyConflict` if it carries another command.
- One command, one refusal: a command whose events the log cannot record (an int outside
  msgpack's range, a lone surrogate, a NUL in its id) is refused alone as an
  `InvalidCommand`; the batch is decided again without it and committed. (The commit
  finds the offenders, so the common path pays nothing for the check.)
- Recovery (`__init__`): take a new writer epoch (fencing any older incarnation), load
  the latest snapshot (`actors/host/snapshots.py`), replay the stream's tail.
- Timers (`actors/host/timers.py`): one per entity, at its earliest deadline (from
  `deadline_of` as events land, `next_deadline` after an expiry and on recovery); due
  entities get the decider's expire command before every batch and on `tick()`. A batch
  that fails to commit puts its timers back. An expiry's events carry, as causation and
  correlation ids, those of the event that set the deadline (`actors/host/causes.py`);
  a command's events carry its request's.
- Failures: a store that is unreachable fails the batch as `Unavailable` (the caller
  retries with the same ids); a commit that lost a race catches up from the log and
  decides again; a fenced host refuses all further work (`ShardFenced`).
- Standby (`standby=True`): recovers as above but takes NO writer epoch (it must not
  fence the primary), refuses batches, and `follow()` applies what the primary commits.
  `promote()` takes a new epoch (fencing the old primary), applies the last of the log,
  rebuilds the timers and serves: the work left is what the primary committed since the
  last `follow()`, not the whole stream.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from saleday.actors.decider import (
    Decider,
    Fingerprint,
    InvalidCommand,
    Rejection,
    fingerprint,
)
from saleday.actors.host.causes import Causes
from saleday.actors.host.dedup import DedupRecord
from saleday.actors.host.replies import (
    Accepted,
    Reply,
    Request,
    ShardFenced,
    Unavailable,
    wall_clock_ms,
)
from saleday.actors.host.snapshots import Snapshots
from saleday.actors.host.timers import Timers
from saleday.events import (
    ConcurrencyError,
    DuplicateCommandError,
    EventLogError,
    EventRegistry,
    EventStore,
    FencedError,
    InvalidAppend,
    InvalidEventData,
    NewEvent,
    StoreUnavailable,
)
from saleday.events import (
    registry as default_registry,
)
from saleday.events.chain import seal
from saleday.events.envelope import ZERO_HASH

log = structlog.get_logger("saleday.shard")


@dataclass
class _Batch:
    events: list[NewEvent] = field(default_factory=list)
    facts: list[Any] = field(default_factory=list)   # the decided events, as `events`
    decided: list[Any] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)   # request index per event, -1: expiry
    prints: dict[int, Fingerprint] = field(default_factory=dict)   # request index -> fingerprint
    working: dict[str, Any] = field(default_factory=dict)
    due: list[tuple[int, str]] = field(default_factory=list)   # timers taken for this batch


class ShardHost(DedupRecord, Snapshots, Causes):
    """Hosts every entity of `decider` that routing sends here, on `stream`."""

    def __init__(self, *, decider: Decider, store: EventStore, stream: str,
                 registry: EventRegistry = default_registry, snapshot_every: int = 10_000,
                 dedup_capacity: int = 20_000, clock: Callable[[], int] = wall_clock_ms,
                 snapshot_in_background: bool = False, use_snapshot: bool = True,
                 standby: bool = False) -> None:
        self.decider = decider
        self._takes = frozenset(decider.commands)
        self.store = store
        self.stream = stream
        self.registry = registry
        self.snapshot_every = snapshot_every
        self.dedup_capacity = dedup_capacity
        self.clock = clock
        self.states: dict[str, Any] = {}
        self.version = 0
        self.snapshot_version = 0
        self.fenced = False
        self.standby = standby
        self._dedup: OrderedDict[str, tuple] = OrderedDict()
        """command id -> (first, last) version of its events ((0, 0) when it decided none),
        then its fingerprint when known: `(first, last, fingerprint)`."""
        self._timers = Timers()
        self._causes = {}
        self._executor = (ThreadPoolExecutor(1, thread_name_prefix=f"snapshot-{stream}")
                          if snapshot_in_background else None)
        self._snapshotting: Future | None = None
        self._encoded: dict[str, tuple[Any, bytes]] = {}
        started = time.perf_counter()
        self.epoch = 0 if standby else store.acquire_epoch(stream)
        if use_snapshot:
            self._load_snapshot()
        replayed = self._catch_up()
        if not standby:
            self._rebuild_timers()
        log.info("shard_recovered", stream=stream, epoch=self.epoch, version=self.version,
                 snapshot_version=self.snapshot_version, replayed=replayed, standby=standby,
                 entities=len(self.states), ms=round((time.perf_counter() - started) * 1000, 1))

    # -- standby ----------------------------------------------------------------------

    def follow(self) -> int:
        """A standby: apply what the log holds past this host's version; return how many
        events. A primary has nothing to follow (0)."""
        return self._catch_up() if self.standby else 0

    def promote(self) -> int:
        """A standby becomes the stream's writer: take a new epoch (every older writer is
        fenced from now on), apply the rest of the log, rebuild the timers; return the
        epoch. Promoting a primary changes nothing."""
        if not self.standby:
            return self.epoch
        started = time.perf_counter()
        self.epoch = self.store.acquire_epoch(self.stream)
        replayed = self._catch_up()   # after the epoch: the old writer can add nothing now
        self._rebuild_timers()
        self.standby = False
        log.info("shard_promoted", stream=self.stream, epoch=self.epoch, version=self.version,
                 replayed=replayed, ms=round((time.perf_counter() - started) * 1000, 1))
        return self.epoch

    # -- recovery ---------------------------------------------------------------------

    def _catch_up(self) -> int:
        """Apply what the log holds past `self.version`; return how many events."""
        replayed = 0
        decider, registry = self.decider, self.registry
        while True:
            envelopes = self.store.read(self.stream, self.version + 1, 50_000)
            if not envelopes:
                return replayed
            accepted: dict[str, list[int]] = {}
            for env, event in zip(envelopes, registry.decode_all(envelopes)):
                entity = decider.entity_of(event)
                state = self.states.get(entity)
                if state is None:
                    state = decider.initial(entity)
                self.states[entity] = decider.evolve(state, event)
                self.note_recorded(event, env.version, env.correlation_id)
                accepted.setdefault(env.command_id, []).append(env.version)
            dedup = self._dedup
            for command_id, versions in accepted.items():
                known = dedup.get(command_id)
                if known is None or known[:2] != (versions[0], versions[-1]):
                    self._remember(command_id, (versions[0], versions[-1]))
            self.version = envelopes[-1].version
            replayed += len(envelopes)

    def _rebuild_timers(self) -> None:
        self._timers.rebuild(self.states, self.decider.next_deadline)

    # -- serving ----------------------------------------------------------------------

    def handle(self, requests: Sequence[Request]) -> list[Reply]:
        """Decide a batch, append its events as one commit, then answer each request."""
        if self.fenced:
            raise ShardFenced(f"{self.stream}: epoch {self.epoch} was fenced")
        if self.standby:
            return [Unavailable(reason=f"{self.stream}: a standby, not promoted") for _ in requests]
        refused: dict[int, Rejection] = {}
        attempts = 0
        while attempts < 3:
            attempts += 1
            batch = self._decide(requests, self.clock(), refused)
            try:
                return self._commit(requests, batch)
            except (InvalidEventData, InvalidAppend):
                # Some command's events cannot be recorded: refuse those commands alone,
                # and decide the rest again without them (a later one may have seen them).
                self._timers.put_back(batch.due)
                found = self._unrecordable(batch)
                if not found.keys() - refused.keys():
                    raise
                refused.update(found)
                attempts -= 1   # each round refuses at least one more command: it ends
            except ConcurrencyError:
                # Our view is behind the log (an earlier append whose reply was lost did
                # land): catch up, then decide again; retried ids are now answered from dedup.
                self._catch_up()
                self._rebuild_timers()
            except DuplicateCommandError as exc:
                # Some commands were recorded long ago (older than the dedup record):
                # learn their versions from the store's own record, then decide again.
                self._timers.put_back(batch.due)
                self._catch_up()
                self._rebuild_timers()
                self._learn(exc.command_ids)
            except BaseException:
                self._timers.put_back(batch.due)
                raise
        return [Unavailable(reason=f"{self.stream}: could not commit after catching up")
                for _ in requests]

    def tick(self) -> int:
        """Expire what is due now; return the number of events it recorded."""
        before = self.version
        self.handle([])
        return self.version - before

    def next_due(self) -> int | None:
        """When the earliest timer is due (it may have been cancelled since), or None."""
        return self._timers.next_due()

    def _unrecordable(self, batch: _Batch) -> dict[int, Rejection]:
        """The requests whose events the log cannot record, each with its refusal."""
        by_owner: dict[int, list[NewEvent]] = {}
        for owner, event in zip(batch.owners, batch.events):
            by_owner.setdefault(owner, []).append(event)
        found: dict[int, Rejection] = {}
        for owner, events in by_owner.items():
            if owner < 0:
                continue
            try:
                seal(self.stream, 0, ZERO_HASH, events)
            except (InvalidEventData, InvalidAppend) as exc:
                log.warning("command_unrecordable", stream=self.stream, error=str(exc)[:300])
                found[owner] = InvalidCommand(reason=f"its events cannot be recorded: {exc}")
        return found

    def _decide(self, requests: Sequence[Request], now: int,
                refused: dict[int, Rejection] | None = None) -> _Batch:
        batch = _Batch()
        self._expire_due(batch, now)
        decider = self.decider
        dedup = self._dedup
        takes = self._takes
        entity_of, decide, evolve = decider.entity_of, decider.decide, decider.evolve
        new_event = self.registry.new_event
        working, states, initial = batch.working, self.states, decider.initial
        decided, events, facts, owners = batch.decided, batch.events, batch.facts, batch.owners
        seen: dict[str, int] = {}
        for i, req in enumerate(requests):
            cid = req.command_id
            if type(cid) is not str or not cid:  # it could be neither remembered nor recorded
                decided.append((i, InvalidCommand(
                    reason=f"a command id must be a non-empty str, not {cid!r:.80}")))
                continue
            if cid in dedup or cid in seen:
                # A repeated id: answered as the first time (in `_commit`), unless it
                # carries a different command.
                conflict = self._conflict(req, batch.prints, seen)
                if conflict is not None:
                    decided.append((i, conflict))
                continue
            seen[cid] = i
            if refused and i in refused:
                decided.append((i, refused[i]))
                continue
            command = req.command
            if type(command) not in takes:
                decided.append((i, InvalidCommand(
                    reason=f"{decider.kind} shard does not take {type(command).__name__}")))
                continue
            try:
                entity = entity_of(command)
                state = working.get(entity)   # (`_state`, written out: once per command)
                if state is None:
                    state = states.get(entity)
                    if state is None:
                        state = initial(entity)
                result = decide(command, state)
                if not isinstance(result, Rejection):
                    for event in result:
                        state = evolve(state, event)
                        events.append(new_event(
                            event, command_id=cid, recorded_at=now,
                            correlation_id=req.correlation_id, causation_id=req.causation_id))
                        facts.append(event)
                        owners.append(i)
                    working[entity] = state
                    batch.prints[i] = fingerprint(command)
                    result = tuple(result)
            except Exception as exc:  # a decider bug or a malformed command: refuse, don't die
                log.warning("command_failed", stream=self.stream, command_id=req.command_id,
                            command=type(command).__name__, error=f"{type(exc).__name__}: {exc}")
                result = InvalidCommand(reason=f"{type(exc).__name__}: {exc}")
            decided.append((i, result))
        return batch

    def _expire_due(self, batch: _Batch, now: int) -> None:
        expire = self.decider.expire
        if expire is None:
            return
        batch.due = self._timers.take_due(now)
        for _, entity in batch.due:
            state = self._state(batch, entity)
            result = self.decider.decide(expire(entity, now), state)
            if isinstance(result, Rejection) or not result:
                continue
            for event in result:
                state = self.decider.evolve(state, event)
                causation_id, correlation_id = self.cause_of_expiry(entity, event)
                batch.events.append(self.registry.new_event(
                    event, command_id=f"{self.decider.kind}.expire:{entity}:{now}:{self.version}",
                    recorded_at=now, correlation_id=correlation_id, causation_id=causation_id))
                batch.facts.append(event)
                batch.owners.append(-1)
            batch.working[entity] = state

    def _state(self, batch: _Batch, entity: str) -> Any:
        state = batch.working.get(entity)
        if state is None:
            state = self.states.get(entity)
            if state is None:
                state = self.decider.initial(entity)
        return state

    def _commit(self, requests: Sequence[Request], batch: _Batch) -> list[Reply]:
        first = last = 0
        if batch.events:
            try:
                result = self.store.append(self.stream, batch.events, self.version, epoch=self.epoch)
            except FencedError:
                self.fenced = True
                log.error("shard_fenced", stream=self.stream, epoch=self.epoch)
                raise ShardFenced(f"{self.stream}: epoch {self.epoch} was fenced") from None
            except StoreUnavailable as exc:
                log.warning("append_unavailable", stream=self.stream, error=str(exc))
                self._timers.put_back(batch.due)
                return [Unavailable(reason=str(exc)) for _ in requests]
            if result.duplicate:  # the whole commit was already recorded
                raise DuplicateCommandError(self.stream, sorted({e.command_id for e in batch.events}))
            first, last = result.first_version, result.last_version
        # Durable: now advance state, then answer.
        self.states.update(batch.working)
        for n, (fact, event) in enumerate(zip(batch.facts, batch.events)):
            self.note_recorded(fact, first + n, event.correlation_id)
        versions: dict[int, list[int]] = {}
        for n, owner in enumerate(batch.owners):
            versions.setdefault(owner, []).append(first + n)
        self._push_deadlines(batch)
        replies: dict[int, Reply] = {}
        for i, result in batch.decided:
            if isinstance(result, Rejection):
                replies[i] = result
                continue
            vs = versions.get(i)
            reply = Accepted(result, vs[0], vs[-1]) if vs else Accepted(result)
            self._remember(requests[i].command_id,
                           (reply.first_version, reply.last_version, batch.prints[i]))
            replies[i] = reply
        if last:
            self.version = last
            if self.version - self.snapshot_version >= self.snapshot_every:
                self.save_snapshot()
        out: list[Reply] = []
        for i, req in enumerate(requests):
            reply = replies.get(i)
            if reply is None:  # a duplicate id: answer as the first time
                reply = (self._first_answer(requests, i, replies)
                         or self._recorded(req.command_id, req.command)
                         or InvalidCommand(reason=f"command id {req.command_id!r} lost its reply"))
            out.append(reply)
        return out

    def _push_deadlines(self, batch: _Batch) -> None:
        """After a commit: timers for new deadlines, and the next one of expired entities."""
        deadline_of, entity_of = self.decider.deadline_of, self.decider.entity_of
        schedule = self._timers.schedule
        for i, result in batch.decided:
            if isinstance(result, Rejection):
                continue
            for event in result:
                deadline = deadline_of(event)
                if deadline is not None:
                    schedule(entity_of(event), deadline)
        next_deadline = self.decider.next_deadline
        for _, entity in batch.due:
            due = next_deadline(self.state_of(entity))
            if due is not None:
                schedule(entity, due)

    # -- status -----------------------------------------------------------------------

    def log_rewound(self) -> int | None:
        """The log's head version if the log now ends before what this host committed
        (Redis restarted without its last writes, failed over to a lagging replica, or
        emptied): no append can succeed at this host's version again. None if it does not,
        or if the store cannot be asked."""
        try:
            head = self.store.head(self.stream).version
        except EventLogError:
            return None
        return head if head < self.version else None

    def status(self) -> dict[str, Any]:
        return {"stream": self.stream, "kind": self.decider.kind, "epoch": self.epoch,
                "version": self.version, "snapshot_version": self.snapshot_version,
                "entities": len(self.states), "timers": len(self._timers),
                "fenced": self.fenced, "standby": self.standby}

    def state_of(self, entity: str) -> Any:
        state = self.states.get(entity)
        return state if state is not None else self.decider.initial(entity)
