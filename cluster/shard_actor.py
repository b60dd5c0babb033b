"""The shard actor's body: a plain class that `ray_api.shard_handle` makes a Ray actor.

`ShardActor` builds a `ShardHost` from plain settings, so Ray can (re)create it anywhere;
tests construct it without Ray. It speaks `cluster.wire` batches, exits when fenced or when
its log was rewound (Ray then restarts it and it recovers from the log as it is), and
records per-batch metrics where Ray exports them.

As a standby (`standby=True`, cluster/failover.py) it takes no writer epoch and a thread
follows the log every `follow_every_s`, so its state stays current; `promote()` makes it
the stream's writer (a new epoch fences the old primary) and stops the thread.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from typing import Any

import structlog

from saleday.actors.decider import code_of
from saleday.actors.host import Accepted, Request, ShardFenced, ShardHost, Unavailable
from saleday.actors.kinds import deciders
from saleday.cluster import ray_api
from saleday.cluster.local_socket import ShardSocket, query_answerer
from saleday.cluster.wire import Wire
from saleday.events import open_store

log = structlog.get_logger("saleday.shard")


class ShardActor:
    """A shard host built from plain settings, so Ray can (re)create it anywhere."""

    def __init__(self, *, kind: str, stream: str, store_url: str, snapshot_every: int = 50_000,
                 standby: bool = False, follow_every_s: float = 0.02,
                 local_socket: bool = True) -> None:
        from saleday.cluster import logs

        logs.configure(os.environ.get("SALEDAY_LOG_LEVEL", "warning"))
        decider = deciders()[kind]
        self.wire = Wire(decider.commands)
        self.host = ShardHost(decider=decider, store=open_store(store_url), stream=stream,
                              snapshot_every=snapshot_every, snapshot_in_background=True,
                              standby=standby)
        self.metrics = ShardMetrics(stream)
        self._lock = threading.Lock()   # the follower thread and `promote` never overlap
        self._stop_following = threading.Event()
        self.gc = BatchGc(stream)
        self._serving = threading.Lock()   # Ray's calls and the local socket's take turns
        self.socket: ShardSocket | None = None
        if local_socket:
            try:
                self.socket = ShardSocket(self.handle, stream,
                                          query=query_answerer(self.states_of))
            except OSError as exc:   # Ray alone then
                log.warning("local_socket_failed", stream=stream, error=str(exc)[:300])
        if standby:
            threading.Thread(target=self._follow, args=(follow_every_s,), daemon=True,
                             name=f"follow-{stream}").start()
        tune_gc()

    def _follow(self, every_s: float) -> None:
        """A standby's thread: apply the primary's commits as they land."""
        while not self._stop_following.wait(every_s):
            try:
                with self._lock:
                    if not self.host.standby:
                        return
                    if self.host.follow():
                        self.gc.after_batch()
                    else:   # nothing new: an idle standby sweeps as an idle primary does
                        self.gc.on_tick()
            except Exception as exc:  # the store is away: try again next turn
                log.info("standby_follow_failed", stream=self.host.stream,
                         error=f"{type(exc).__name__}: {exc}"[:300])

    def promote(self) -> dict[str, Any]:
        """Become the stream's writer (idempotent); the status after it."""
        self._stop_following.set()
        with self._lock, self._serving:
            self.host.promote()
        return self.status()

    def handle(self, batch: bytes) -> bytes:
        """Decide a batch encoded by `cluster.wire`; answer with the encoded replies."""
        return self.wire.encode_replies(self.handle_requests(self.wire.decode_requests(batch)))

    def local_socket(self) -> dict[str, Any] | None:
        """Where a gateway on this node sends batches instead of Ray calls
        (`cluster.local_socket`), or None."""
        if self.socket is None:
            return None
        return {"path": self.socket.path, "node": ray_api.node_id()}

    def handle_requests(self, requests: list[Request]) -> list[Any]:
        with self._serving:
            return self._handle_requests(requests)

    def _handle_requests(self, requests: list[Request]) -> list[Any]:
        started = time.perf_counter()
        version = self.host.version
        try:
            replies = self.host.handle(requests)
            self.gc.after_batch()
            self.metrics.batch(replies, self.host.version - version, time.perf_counter() - started)
            if any(isinstance(r, Unavailable) for r in replies):
                self._exit_if_log_rewound()
            return replies
        except ShardFenced:
            # A newer incarnation owns the stream. Exit so Ray restarts this actor, and
            # the restart takes a newer epoch still; never decide on a stale view.
            log.error("shard_exiting_fenced", stream=self.host.stream, epoch=self.host.epoch)
            os._exit(70)

    def tick(self) -> int:
        try:
            with self._serving:
                recorded = self.host.tick()
        except ShardFenced:
            os._exit(70)
        self.gc.on_tick()
        return recorded

    def _exit_if_log_rewound(self) -> None:
        """If the log now ends before what this incarnation committed (Redis restarted
        without its last writes: `appendfsync everysec` and an OS crash, or a failover to
        a lagging replica), no append can ever succeed at our version again. Exit, so Ray
        restarts the shard and it recovers from the log as it now is, instead of
        answering `Unavailable` forever. Nothing is appended at a forked position."""
        head = self.host.log_rewound()   # None when unreachable: the store is the problem
        if head is not None:
            log.error("log_rewound", stream=self.host.stream, shard_version=self.host.version,
                      log_version=head, lost=self.host.version - head)
            os._exit(71)

    def status(self) -> dict[str, Any]:
        return {**self.host.status(), "pid": os.getpid(), "node": ray_api.node_id(),
                "store": self.host.store.url}

    def state_of(self, entity: str) -> Any:
        return self.host.state_of(entity)

    def states_of(self, entities: list[str]) -> list[Any]:
        """The states of several entities in one call (the gateway batches queries)."""
        return [self.host.state_of(e) for e in entities]

    def snapshot(self) -> int:
        with self._serving:
            self.host.save_snapshot()
        return self.host.snapshot_version



class ShardMetrics:
    """Per-shard counters and a batch-latency histogram, exported where Ray exports metrics
    (its Prometheus endpoint, when the cluster runs the metrics agent). Recorded once per
    batch, never per command."""

    def __init__(self, stream: str) -> None:
        metrics = ray_api.metrics_api()
        if metrics is None:
            self._enabled = False
            return
        tags = ("shard",)
        self._commands = metrics.Counter("saleday_shard_commands", "Commands decided, by outcome.",
                                         tag_keys=("shard", "outcome"))
        self._events = metrics.Counter("saleday_shard_events", "Events appended.", tag_keys=tags)
        self._batch_ms = metrics.Histogram(
            "saleday_shard_batch_ms", "Time to decide, append and answer one batch (ms).",
            boundaries=[1, 2, 5, 10, 25, 50, 100, 250, 1000], tag_keys=tags)
        self._tags = {"shard": stream}
        self._enabled = True

    def batch(self, replies: list[Any], events: int, seconds: float) -> None:
        if not self._enabled:
            return
        outcomes: dict[type, int] = {}
        for kind in map(type, replies):
            outcomes[kind] = outcomes.get(kind, 0) + 1
        for kind, n in outcomes.items():
            code = "accepted" if issubclass(kind, Accepted) else code_of(kind)
            self._commands.inc(n, tags={**self._tags, "outcome": code})
        if events:
            self._events.inc(events, tags=self._tags)
        self._batch_ms.observe(seconds * 1000, tags=self._tags)


class BatchGc:
    """The shard's cyclic GC, kept out of its batches.

    A batch's survivors (new states, dedup entries, the commit's rows) are tens of
    thousands of young objects; with the young generation collected every 50,000
    allocations, each collection traversed them all and stalled the batch it landed in by
    14-34 ms (traced in both shards of `bench reserve`, Dec 1; half of the requests slower
    than 25 ms at half load waited on one). So after every batch the survivors are frozen
    (`gc.freeze`: moved out of the collector's reach, O(1), and the young count reset):
    collections then never run inside a batch. What a shard keeps is immutable values
    without reference cycles, so nothing frozen is garbage the collector would have had to
    find (the same bench, unfrozen and collected after 2,400 batches: 0 objects). As a
    safety net, a shard idle for `idle_s` sweeps at its tick (unfreeze, collect, freeze
    again), at most once per `sweep_every_s`.
    """

    def __init__(self, stream: str, *, idle_s: float = 2.0, sweep_every_s: float = 300.0,
                 clock: Any = time.monotonic) -> None:
        self.stream = stream
        self.idle_s = idle_s
        self.sweep_every_s = sweep_every_s
        self.clock = clock
        self.last_batch = self.last_sweep = clock()
        self.batches_since_sweep = 0

    def after_batch(self) -> None:
        gc.freeze()
        self.last_batch = self.clock()
        self.batches_since_sweep += 1

    def on_tick(self) -> int | None:
        """Sweep if the shard is idle and due; the objects the sweep found, or None."""
        now = self.clock()
        if (not self.batches_since_sweep or now - self.last_batch < self.idle_s
                or now - self.last_sweep < self.sweep_every_s):
            return None
        return self.sweep()

    def sweep(self) -> int:
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.last_sweep = self.clock()
        log.info("gc_swept", stream=self.stream, batches=self.batches_since_sweep,
                 unreachable=found, ms=round((time.perf_counter() - started) * 1000, 1))
        self.batches_since_sweep = 0
        return found


def tune_gc() -> None:
    """Keep the cyclic GC off the latency path of a long-lived, allocation-heavy process.

    Recovered state is moved out of the GC's reach (`gc.freeze`), and the young
    generation is collected every 50,000 allocations instead of 700, so a full collection
    over millions of live objects does not land in the middle of a batch.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
