"""The generic shard host: many entities of one decider, one event stream, one writer.

A batch of requests is decided in order (later commands see earlier ones' effects),
all resulting events are appended as ONE commit at the expected version and the host's
writer epoch, and only then is state advanced and each request answered. Nothing is
acknowledged that is not in the log.

- Dedup: a retried command id is answered from the dedup record (the last
  `dedup_capacity` commands' versions, rebuilt from the log on recovery), with no second
  effect. Behind it stands the store's own command-id record: an older retry that would
  write again is caught there and answered with its original events; one that is
  refused when decided again (say its reservation is still held) gets that refusal.
- Idempotency conflicts: the dedup record keeps each accepted command's `fingerprint`
  (actors/decider.py: every field but the stamped ones, such as `now` and deadlines). A
  repeated id carrying a different command is refused (`IdempotencyConflict`), in the
  same batch or a later one. Snapshots carry the fingerprints; what recovery rebuilds from
  the log alone (the log records events, not commands) has none, and there a repeated id
  is checked only against its recorded events: they must be about the command's entity.
- One command, one refusal: a command whose events the log cannot record (an int outside
  msgpack's range, a lone surrogate, a NUL in its id) is refused alone as an
  `InvalidCommand`; the batch is decided again without it and committed. (The commit
  finds the offenders, so the common path pays nothing for the check.)
- Recovery (`__init__`): take a new writer epoch (fencing any older incarnation), load
  the latest snapshot, replay the stream's tail.
- Timers: one per entity, at its earliest deadline (from `deadline_of` as events land,
  `next_deadline` after an expiry and on recovery); due entities get the decider's expire
  command before every batch and on `tick()`. A batch that fails to commit puts its
  timers back.
- Failures: a store that is unreachable fails the batch as `Unavailable` (the caller
  retries with the same ids); a commit that lost a race catches up from the log and
  decides again; a fenced host refuses all further work (`ShardFenced`).

This is a plain class: unit tests drive it without Ray (cluster/ray_api.py makes it an actor).
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any

import structlog

from saleday.actors import state_codec
from saleday.actors.decider import (
    Decider,
    Fingerprint,
    IdempotencyConflict,
    InvalidCommand,
    Rejection,
    fingerprint,
    same_command,
    snake_case,
)
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
    Snapshot,
    StoreUnavailable,
)
from saleday.events import (
    registry as default_registry,
)
from saleday.events.chain import seal
from saleday.events.codec import envelopes
from saleday.events.envelope import ZERO_HASH

log = structlog.get_logger("saleday.shard")

SNAPSHOT_FORMAT = 4
"""4: msgpack data (actors/state_codec.py), never a pickle; 3 and older were pickles and are
read as unusable (the shard replays its stream)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One command sent to a shard, with the id that makes its retry safe."""

    command_id: str
    command: Any
    correlation_id: str = ""


@dataclass(frozen=True, slots=True)
class Accepted:
    """The command was decided and its events (possibly none) are durable in the log."""

    events: tuple[Any, ...] = ()
    first_version: int = 0
    last_version: int = 0
    duplicate: bool = False


class TransportFailure:
    """Not decided, for a reason outside the rules: the shard or its store could not be
    reached, or the shard shed load. Retrying with the same command id is safe. Not a
    `Rejection`: the rules never said no (callers that count refusals must not count these).
    """

    @property
    def code(self) -> str:
        """A stable snake_case name, e.g. `busy`."""
        return snake_case(type(self).__name__)

    def describe(self) -> str:
        details = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.code}({details})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable(TransportFailure):
    """Not decided: the shard or its store could not be reached. Retry with the same id."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Busy(TransportFailure):
    """Not decided: the shard's queue is full (load shedding). Retry later."""

    shard: str


Reply = Accepted | Rejection | TransportFailure
"""What a shard (or a gateway in front of it) answers for each request: `Accepted`, a typed
`Rejection` by the rules, or a `TransportFailure` (`Busy`, `Unavailable`)."""


class ShardFenced(Exception):
    """This incarnation lost its stream to a newer one and must not decide anything."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Batch:
    events: list[NewEvent] = field(default_factory=list)
    decided: list[Any] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)   # request index per event, -1: expiry
    prints: dict[int, Fingerprint] = field(default_factory=dict)   # request index -> fingerprint
    working: dict[str, Any] = field(default_factory=dict)
    due: list[tuple[int, str]] = field(default_factory=list)   # timers taken for this batch


class ShardHost:
    """Hosts every entity of `decider` that routing sends here, on `stream`."""

    def __init__(self, *, decider: Decider, store: EventStore, stream: str,
                 registry: EventRegistry = default_registry, snapshot_every: int = 10_000,
                 dedup_capacity: int = 20_000, clock: Callable[[], int] = wall_clock_ms,
                 snapshot_in_background: bool = False, use_snapshot: bool = True) -> None:
        self.decider = decider
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
        self._dedup: OrderedDict[str, tuple] = OrderedDict()
        """command id -> (first, last) version of its events ((0, 0) when it decided none),
        then its fingerprint when known: `(first, last, fingerprint)`."""
        self._timers: dict[str, int] = {}
        """entity -> the earliest time its expire command is due (one timer per entity)."""
        self._heap: list[tuple[int, str]] = []
        """(due, entity), lazily deleted: an entry counts only while it matches `_timers`."""
        self._executor = (ThreadPoolExecutor(1, thread_name_prefix=f"snapshot-{stream}")
                          if snapshot_in_background else None)
        self._snapshotting: Future | None = None
        self._encoded: dict[str, tuple[Any, bytes]] = {}
        started = time.perf_counter()
        self.epoch = store.acquire_epoch(stream)
        if use_snapshot:
            self._load_snapshot()
        replayed = self._catch_up()
        self._rebuild_timers()
        log.info("shard_recovered", stream=stream, epoch=self.epoch, version=self.version,
                 snapshot_version=self.snapshot_version, replayed=replayed,
                 entities=len(self.states), ms=round((time.perf_counter() - started) * 1000, 1))

    # -- recovery ---------------------------------------------------------------------

    def _load_snapshot(self) -> None:
        """Start from the stored snapshot, if it is one this code wrote. It is data decoded
        for the decider's declared state classes only (never unpickled): anyone who can
        write the snapshot key must not be able to run code here."""
        snap = self.store.load_snapshot(self.stream)
        if snap is None:
            return
        try:
            header, encoded = state_codec.unpack_snapshot(snap.data)
            kind, form = header.get("kind"), header.get("format")
            if form != SNAPSHOT_FORMAT or kind != self.decider.kind:
                raise ValueError(f"snapshot of {kind!r} format {form}")
            codec = state_codec.for_decider(self.decider)
            codec.check_schema(header.get("classes"))
            decode = codec.decode
            states = {entity: decode(state) for entity, state in encoded.items()}
            ids, versions = header["dedup"]
            dedup = OrderedDict(zip(ids, (tuple(v) for v in versions), strict=True))
        except Exception as exc:  # a snapshot is a cache: replay the whole stream instead
            log.warning("snapshot_unusable", stream=self.stream, version=snap.version,
                        error=f"{type(exc).__name__}: {exc}")
            return
        self.states = states
        self._dedup = dedup
        self.version = self.snapshot_version = snap.version

    def _catch_up(self) -> int:
        """Apply what the log holds past `self.version`; return how many events."""
        replayed = 0
        decider, registry = self.decider, self.registry
        while True:
            envelopes = self.store.read(self.stream, self.version + 1, 50_000)
            if not envelopes:
                return replayed
            accepted: dict[str, list[int]] = {}
            for env in envelopes:
                event = registry.decode(env)
                entity = decider.entity_of(event)
                state = self.states.get(entity)
                if state is None:
                    state = decider.initial(entity)
                self.states[entity] = decider.evolve(state, event)
                accepted.setdefault(env.command_id, []).append(env.version)
            dedup = self._dedup
            for command_id, versions in accepted.items():
                known = dedup.get(command_id)
                if known is None or known[:2] != (versions[0], versions[-1]):
                    self._remember(command_id, (versions[0], versions[-1]))
            self.version = envelopes[-1].version
            replayed += len(envelopes)

    # -- timers -------------------------------------------------------------------------

    def _rebuild_timers(self) -> None:
        next_deadline = self.decider.next_deadline
        self._timers = {e: d for e, s in self.states.items() if (d := next_deadline(s)) is not None}
        self._heap = [(d, e) for e, d in self._timers.items()]
        heapq.heapify(self._heap)

    def _schedule(self, entity: str, due: int) -> None:
        current = self._timers.get(entity)
        if current is None or due < current:
            self._timers[entity] = due
            heapq.heappush(self._heap, (due, entity))

    def _take_due(self, now: int) -> list[tuple[int, str]]:
        """Pop the timers due at `now` (one per entity); `_put_back` undoes it."""
        due: list[tuple[int, str]] = []
        heap, timers = self._heap, self._timers
        while heap and heap[0][0] <= now:
            at, entity = heapq.heappop(heap)
            if timers.get(entity) == at:
                del timers[entity]
                due.append((at, entity))
        return due

    def _put_back(self, due: list[tuple[int, str]]) -> None:
        for at, entity in due:
            self._schedule(entity, at)

    def _remember(self, command_id: str, versions: tuple) -> None:
        """Record `(first, last)` or `(first, last, fingerprint)` for a command id."""
        self._dedup[command_id] = versions
        if len(self._dedup) > self.dedup_capacity:
            self._dedup.popitem(last=False)

    def _learn(self, command_ids: Sequence[str]) -> None:
        """Put commands the store has recorded, but our dedup record forgot, back into it."""
        for command_id, last in self.store.recorded(self.stream, command_ids).items():
            if command_id in self._dedup:
                continue
            commit = next(iter(self.store.read_commits(self.stream, last)))
            versions = [env.version for env in envelopes([commit]) if env.command_id == command_id]
            if versions:
                self._remember(command_id, (versions[0], versions[-1]))

    def _recorded(self, command_id: str, command: Any = None) -> Reply | None:
        """The reply to a command decided before: its events, re-read from the log.

        Without a recorded fingerprint (rebuilt from the log) the events are checked to be
        about `command`'s entity; if they are not, the id was reused: a conflict."""
        recorded = self._dedup.get(command_id)
        if recorded is None:
            return None
        first, last = recorded[0], recorded[1]
        if not last:
            return Accepted((), 0, 0, duplicate=True)
        events = self.registry.decode_all(self.store.read(self.stream, first, last - first + 1))
        if len(recorded) < 3 and command is not None and events:
            entity_of = self.decider.entity_of
            try:
                entity = entity_of(command)
                other = next((e for e in events if entity_of(e) != entity), None)
            except Exception:  # noqa: BLE001 - a command without an entity is no match
                other = events[0]
            if other is not None:
                return IdempotencyConflict(command_id=command_id, reason=(
                    f"this id recorded {type(other).__name__} for {entity_of(other)!r}, "
                    f"not {type(command).__name__} for its entity"))
        return Accepted(tuple(events), first, last, duplicate=True)

    # -- serving ----------------------------------------------------------------------

    def handle(self, requests: Sequence[Request]) -> list[Reply]:
        """Decide a batch, append its events as one commit, then answer each request."""
        if self.fenced:
            raise ShardFenced(f"{self.stream}: epoch {self.epoch} was fenced")
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
                self._put_back(batch.due)
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
                self._put_back(batch.due)
                self._catch_up()
                self._rebuild_timers()
                self._learn(exc.command_ids)
            except BaseException:
                self._put_back(batch.due)
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
        return self._heap[0][0] if self._heap else None

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

    def _conflict(self, req: Request, batch: _Batch,
                  seen: dict[str, int]) -> IdempotencyConflict | None:
        """Whether a repeated command id carries another command than its first use did
        (known only when that use was accepted, and its fingerprint is known)."""
        first = seen.get(req.command_id)
        if first is None:
            recorded = self._dedup[req.command_id]
            known = recorded[2] if len(recorded) > 2 else None
        else:
            known = batch.prints.get(first)
        if known is None or same_command(known, fingerprint(req.command)):
            return None
        return IdempotencyConflict(command_id=req.command_id, reason=(
            f"this id was used for another {known[0]}; only the stamped fields "
            f"(actors/decider.py) may differ when a command is sent again"))

    def _decide(self, requests: Sequence[Request], now: int,
                refused: dict[int, Rejection] | None = None) -> _Batch:
        batch = _Batch()
        self._expire_due(batch, now)
        decider = self.decider
        dedup = self._dedup
        seen: dict[str, int] = {}
        for i, req in enumerate(requests):
            cid = req.command_id
            if type(cid) is not str or not cid:  # it could be neither remembered nor recorded
                batch.decided.append((i, InvalidCommand(
                    reason=f"a command id must be a non-empty str, not {cid!r:.80}")))
                continue
            if cid in dedup or cid in seen:
                # A repeated id: answered as the first time (in `_commit`), unless it
                # carries a different command.
                conflict = self._conflict(req, batch, seen)
                if conflict is not None:
                    batch.decided.append((i, conflict))
                continue
            seen[cid] = i
            if refused and i in refused:
                batch.decided.append((i, refused[i]))
                continue
            command = req.command
            if type(command) not in decider.commands:
                batch.decided.append((i, InvalidCommand(
                    reason=f"{decider.kind} shard does not take {type(command).__name__}")))
                continue
            try:
                entity = decider.entity_of(command)
                state = self._state(batch, entity)
                result = decider.decide(command, state)
                if not isinstance(result, Rejection):
                    for event in result:
                        state = decider.evolve(state, event)
                        batch.events.append(self.registry.new_event(
                            event, command_id=req.command_id, recorded_at=now,
                            correlation_id=req.correlation_id))
                        batch.owners.append(i)
                    batch.working[entity] = state
                    batch.prints[i] = fingerprint(command)
                    result = tuple(result)
            except Exception as exc:  # a decider bug or a malformed command: refuse, don't die
                log.warning("command_failed", stream=self.stream, command_id=req.command_id,
                            command=type(command).__name__, error=f"{type(exc).__name__}: {exc}")
                result = InvalidCommand(reason=f"{type(exc).__name__}: {exc}")
            batch.decided.append((i, result))
        return batch

    def _expire_due(self, batch: _Batch, now: int) -> None:
        expire = self.decider.expire
        if expire is None:
            return
        batch.due = self._take_due(now)
        for _, entity in batch.due:
            state = self._state(batch, entity)
            result = self.decider.decide(expire(entity, now), state)
            if isinstance(result, Rejection) or not result:
                continue
            for event in result:
                state = self.decider.evolve(state, event)
                batch.events.append(self.registry.new_event(
                    event, command_id=f"{self.decider.kind}.expire:{entity}:{now}:{self.version}",
                    recorded_at=now))
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
                self._put_back(batch.due)
                return [Unavailable(reason=str(exc)) for _ in requests]
            if result.duplicate:  # the whole commit was already recorded
                raise DuplicateCommandError(self.stream, sorted({e.command_id for e in batch.events}))
            first, last = result.first_version, result.last_version
        # Durable: now advance state, then answer.
        self.states.update(batch.working)
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

    def _first_answer(self, requests: Sequence[Request], i: int,
                      replies: dict[int, Reply]) -> Reply | None:
        """The reply to an earlier request in this batch carrying the same command id."""
        cid = requests[i].command_id
        for j in range(i):
            if requests[j].command_id == cid and j in replies:
                first = replies[j]
                if isinstance(first, Accepted):
                    return Accepted(first.events, first.first_version, first.last_version,
                                    duplicate=True)
                return first
        return None

    def _push_deadlines(self, batch: _Batch) -> None:
        """After a commit: timers for new deadlines, and the next one of expired entities."""
        deadline_of, entity_of = self.decider.deadline_of, self.decider.entity_of
        for i, result in batch.decided:
            if isinstance(result, Rejection):
                continue
            for event in result:
                deadline = deadline_of(event)
                if deadline is not None:
                    self._schedule(entity_of(event), deadline)
        next_deadline = self.decider.next_deadline
        for _, entity in batch.due:
            due = next_deadline(self.state_of(entity))
            if due is not None:
                self._schedule(entity, due)

    # -- snapshots and status ---------------------------------------------------------

    def save_snapshot(self) -> None:
        """Store the folded state at the current version (a cache: recovery works without).

        The state is captured here (states are immutable values, so a shallow copy is a
        consistent picture); with `snapshot_in_background` it is encoded and stored on a
        background thread, so a large snapshot does not stall the batches behind it.
        """
        if self._snapshotting is not None and not self._snapshotting.done():
            return  # one at a time; the next threshold will take another
        picture = {"format": SNAPSHOT_FORMAT, "kind": self.decider.kind,
                   "states": dict(self.states),
                   "dedup": (list(self._dedup), list(self._dedup.values()))}
        version = self.version
        if self._executor is None:
            self._store_snapshot(picture, version)
        else:
            self._snapshotting = self._executor.submit(self._store_snapshot, picture, version)

    def _store_snapshot(self, picture: dict[str, Any], version: int) -> None:
        # Entity by entity, yielding the GIL between slices: one encode call over the whole
        # state would hold it for ~100 ms per 100k reservations and stall the batches.
        # States are immutable values, so an entity whose state is the very object encoded
        # last time has not changed: its bytes are spliced in again, not re-encoded.
        states: dict[str, bytes] = {}
        cache: dict[str, tuple[Any, bytes]] = {}
        previous = self._encoded
        background = self._executor is not None
        codec = state_codec.for_decider(self.decider)
        encode = codec.packer()
        encoded = 0
        try:
            for entity, state in picture.pop("states").items():
                hit = previous.get(entity)
                if hit is not None and hit[0] is state:
                    blob = hit[1]
                else:
                    blob = encode(state)
                    encoded += 1
                    if background and encoded % 16 == 0:
                        time.sleep(0)  # let the batches run (nothing to yield to in the foreground)
                states[entity] = blob
                cache[entity] = (state, blob)
        except state_codec.StateCodecError as exc:
            log.warning("snapshot_failed", stream=self.stream, version=version, error=str(exc))
            return
        self._encoded = cache
        picture["classes"] = codec.schema
        data = state_codec.pack_snapshot(picture, states)
        try:
            self.store.save_snapshot(Snapshot(stream=self.stream, version=version,
                                              recorded_at=self.clock(), data=data))
        except EventLogError as exc:
            log.warning("snapshot_failed", stream=self.stream, version=version, error=str(exc))
            return
        self.snapshot_version = max(self.snapshot_version, version)
        log.info("snapshot_saved", stream=self.stream, version=version, bytes=len(data))

    def wait_for_snapshot(self) -> None:
        """Block until a background snapshot, if any, is stored."""
        if self._snapshotting is not None:
            self._snapshotting.result()

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
                "fenced": self.fenced}

    def state_of(self, entity: str) -> Any:
        state = self.states.get(entity)
        return state if state is not None else self.decider.initial(entity)
