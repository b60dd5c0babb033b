"""Hot standby shards: a second copy of each shard that follows the log, promoted when the
primary dies (as Kafka Streams keeps standby tasks).

With `RuntimeConfig(standbys=1)` every shard gets a standby actor (`ShardActor(standby=True)`)
on another node when there is one (`standby_node`, a soft node affinity: on one node it
shares the node). It takes no writer epoch and applies the primary's commits every
`follow_every_s`. The shards of such a runtime are never restarted by Ray
(`max_restarts=0`): a dead primary stays dead, and the gateway that finds it dead (an
`ActorDiedError` on a batch or a tick) calls `Failover.fail_over`, which

1. promotes the standby: a new writer epoch (the old primary, were it still alive, is
   fenced on its next append and exits), the last commits applied, timers rebuilt;
2. gives the gateway the promoted actor, which answers the batch (the same command ids:
   one the old primary committed is answered from the dedup record the standby followed);
3. starts a new standby for the new primary, on a thread, `replace_after_s` (1 s) later:
   its new worker process would otherwise take the cores from the promoted shard just
   when it drains what queued up during the failover.

Without a live standby (it died too) a fresh primary is started and recovers from the
snapshot and the log, as a Ray restart would. Several gateways may find the same death:
the failover happens once per generation, and the others get the promoted actor. A
primary's generation is its writer epoch, which the log keeps: it grows at every
promotion and outlives any process that tracks it, so a gateway's report is judged the
same way by a failover actor that was restarted in between.

The `Failover` of a runtime runs in an actor of its own (cluster/failover_actor.py), so
that every gateway, the runtime's and the HTTP replicas', promotes through the same one.

Actor names: the first primary keeps the stream's name (`sku-000`); standbys are named
`sku-000.standby-N`, fresh primaries `sku-000.primary-N`. `saleday status` finds them by
those names.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from saleday.cluster import ray_api

log = structlog.get_logger("saleday.failover")


def standby_node(stream: str, primary_node: str | None, nodes: list[dict[str, Any]],
                 resource: str | None = None) -> str | None:
    """The node a standby of `stream` should run on: a live node other than its primary's
    that offers `resource` (when one is named), chosen by the stream's hash so standbys of
    many shards spread over the nodes; None when there is no other such node (the standby
    then goes wherever the primary's rules allow, maybe beside it)."""
    candidates = sorted(n["node_id"] for n in nodes
                        if n["node_id"] != primary_node
                        and (resource is None or n["resources"].get(resource, 0) > 0))
    if not candidates:
        return None
    return candidates[zlib.crc32(stream.encode()) % len(candidates)]


@dataclass
class _Pair:
    kind: str
    index: int
    stream: str
    primary: Any
    primary_node: str | None = None
    standby: Any | None = None
    standby_name: str | None = None
    generation: int = 0
    """The primary's writer epoch: a gateway says which primary it found dead by the
    generation it was given with it."""
    starting: bool = False
    """A standby is being started (never two at once)."""
    lock: threading.Lock = field(default_factory=threading.Lock)


class Failover:
    """The standbys of a runtime's shards, and the promotion of one when its primary dies.

    `make_shard(kind=, stream=, name=, standby=, scheduling_strategy=)` creates a shard actor
    (the runtime's placement and settings); `handles`, when given, is a `{kind: [primary]}`
    kept current here (the actor keeps none: `SharedFailover` keeps the runtime's).
    """

    def __init__(self, handles: dict[str, list[Any]] | None, make_shard: Callable[..., Any], *,
                 resource: str | None = None, timeout_s: float = 10.0,
                 replace_after_s: float = 1.0) -> None:
        self.handles = handles
        self.make_shard = make_shard
        self.resource = resource
        self.timeout_s = timeout_s
        self.replace_after_s = replace_after_s
        """How long after a promotion the new standby is started: a new worker process
        costs about a CPU-second of imports, which would compete with the promoted shard
        for the cores while it drains the batches queued during the failover."""
        self._stopping = threading.Event()
        self._pairs: dict[str, _Pair] = {}
        self._names = 0
        self.token = uuid.uuid4().hex[:6]   # another runtime (or incarnation) names its own
        self._names_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.failovers: list[dict[str, Any]] = []

    def _name(self, stream: str, role: str) -> str:
        with self._names_lock:
            self._names += 1
            return f"{stream}.{role}-{self.token}-{self._names}"

    # -- standbys -----------------------------------------------------------------------

    def start(self, kind: str, index: int, stream: str, primary: Any,
              primary_node: str | None, epoch: int) -> None:
        """Track a primary (of writer epoch `epoch`) and start its standby (not waiting
        for it: see `wait_ready`)."""
        pair = _Pair(kind, index, stream, primary, primary_node, generation=epoch)
        self._pairs[stream] = pair
        self._start_standby(pair)

    def adopt(self, layout: list[tuple[str, int, str]], timeout_s: float = 10.0) -> list[str]:
        """Track the shards of `layout` (kind, index, stream) as they are now, found by
        name; the streams that got a fresh primary.

        A stream's actors are its first primary (named after it) and the standbys and
        later primaries a failover started (`sku-000.standby-…`, `sku-000.primary-…`;
        detached, so they outlive the failover actor that started them). Of those that
        answer, the primary of the newest writer epoch is kept (an older one still up is
        a zombie the log fences anyway: it is killed), and so is one standby (any other is
        killed). A stream with no live primary has its standby promoted, or, with none,
        gets a fresh primary at once, recovered from the log under a new epoch; then every
        shard without a standby gets one.

        This is how a failover actor starts, and how Ray's restart of one finds the shards
        again, the promoted primaries and the standbys included. A handle found by name does
        not keep its actor alive (Ray's `get_actor`): the runtime's own handles of the first
        primaries do, so the runtime keeps them (`SharedFailover.refresh`), and the rest are
        detached."""
        named = ray_api.named_actors("")   # one call to Ray's GCS for every stream
        names = {stream: [stream, *(n for n in named if n.startswith(f"{stream}."))]
                 for _, _, stream in layout}
        found = {name: ray_api.find_actor(name) for group in names.values() for name in group}
        asked = {name: h.status.remote() for name, h in found.items() if h is not None}
        statuses: dict[str, dict[str, Any]] = {}
        ready = set(ray_api.wait(list(asked.values()), timeout=timeout_s)) if asked else set()
        for name, ref in asked.items():
            if ref in ready:
                try:
                    statuses[name] = ray_api.get(ref, timeout=0)
                except Exception:  # noqa: BLE001 - dead or broken: not adopted
                    pass
        kept: dict[str, tuple[Any, str | None, int]] = {}
        spares: dict[str, tuple[Any, str]] = {}
        fresh: dict[str, Any] = {}
        for kind, _, stream in layout:
            live = [(name, statuses[name]) for name in names[stream] if name in statuses]
            primaries = sorted(((st["epoch"], name) for name, st in live
                                if not st.get("standby") and not st.get("fenced")), reverse=True)
            standbys = [name for name, st in live if st.get("standby")]
            losers = [name for _, name in primaries[1:]] + standbys[1:]
            if primaries:
                epoch, name = primaries[0]
                kept[stream] = (found[name], statuses[name].get("node"), epoch)
            elif standbys:   # its primary died with the failover actor's attention elsewhere
                name = standbys.pop(0)
                status = ray_api.get(found[name].promote.remote(), timeout=self.timeout_s)
                kept[stream] = (found[name], status.get("node"), status["epoch"])
                log.warning("standby_promoted_at_adoption", stream=stream, name=name,
                            epoch=status["epoch"])
            else:
                fresh[stream] = self.make_shard(kind=kind, stream=stream,
                                                name=self._name(stream, "primary"),
                                                standby=False, scheduling_strategy=None)
            if standbys:
                spares[stream] = (found[standbys[0]], standbys[0])
            for name in losers:
                log.warning("shard_zombie_killed", stream=stream, name=name)
                try:
                    ray_api.kill(found[name], no_restart=True)
                except Exception:  # noqa: BLE001 - ended meanwhile
                    pass
        recovered = ray_api.get([h.status.remote() for h in fresh.values()], timeout=120)
        for (stream, handle), status in zip(fresh.items(), recovered):
            kept[stream] = (handle, status.get("node"), status["epoch"])
            log.warning("shard_adopted_fresh", stream=stream, epoch=status["epoch"])
        for kind, index, stream in layout:
            primary, node, epoch = kept[stream]
            if self.handles is not None and self.handles[kind][index] != primary:
                self.handles[kind][index] = primary
            pair = _Pair(kind, index, stream, primary, node, generation=epoch)
            if stream in spares:
                pair.standby, pair.standby_name = spares[stream]
            self._pairs[stream] = pair
            self._start_standby(pair)   # (none is started for a pair that has one)
        return list(fresh)

    def _start_standby(self, pair: _Pair) -> None:
        with pair.lock:
            if pair.starting or pair.standby is not None:
                return
            pair.starting = True
            primary_node = pair.primary_node
        standby = node = name = None
        try:
            node = standby_node(pair.stream, primary_node, ray_api.alive_nodes(), self.resource)
            name = self._name(pair.stream, "standby")
            standby = self.make_shard(
                kind=pair.kind, stream=pair.stream, name=name, standby=True,
                scheduling_strategy=ray_api.node_affinity(node) if node else None)
        except Exception as exc:  # the failover path still works without one (slowly)
            log.warning("standby_not_started", stream=pair.stream,
                        error=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            with pair.lock:
                pair.starting = False
                if standby is not None:
                    pair.standby, pair.standby_name = standby, name
        if standby is not None:
            log.info("standby_started", stream=pair.stream, name=name, node=node)

    def check(self, timeout_s: float = 5.0) -> list[str]:
        """The health check of the standbys: start one for every shard whose standby is
        dead (or could not be started); the streams that got a new one. A standby that is
        only slow to answer is left alone."""
        died = ray_api.actor_died_errors()
        started = []
        for pair in list(self._pairs.values()):
            standby = pair.standby
            if standby is not None:
                try:
                    ray_api.get(standby.status.remote(), timeout=timeout_s)
                    continue
                except died:
                    log.warning("standby_died", stream=pair.stream, name=pair.standby_name)
                except Exception:  # noqa: BLE001 - slow or busy, not dead
                    continue
            with pair.lock:
                if pair.standby is not standby or pair.starting:
                    continue
                pair.standby = pair.standby_name = None
            self._start_standby(pair)
            if pair.standby is not None:
                started.append(pair.stream)
        return started

    def wait_ready(self, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        """Wait until every standby has recovered; their statuses."""
        refs = [p.standby.status.remote() for p in self._pairs.values() if p.standby is not None]
        return ray_api.get(refs, timeout=timeout_s)

    def standbys(self) -> dict[str, Any]:
        """stream -> its standby's handle (None while it is being started, or none left)."""
        return {s: p.standby for s, p in self._pairs.items()}

    # -- promotion ----------------------------------------------------------------------

    def current(self, stream: str) -> tuple[int, Any]:
        pair = self._pairs[stream]
        return pair.generation, pair.primary

    def primaries(self) -> dict[str, tuple[str, int, int, Any]]:
        """stream -> (kind, index, generation, primary) of every shard it watches."""
        return {s: (p.kind, p.index, p.generation, p.primary) for s, p in self._pairs.items()}

    def fail_over(self, stream: str, generation: int) -> tuple[int, Any]:
        """The primary of generation `generation` is dead: promote its standby (or start a
        fresh primary), once; return the new (generation, primary). A caller that reports
        an older generation gets the current primary at once; one that reports a newer
        generation than this failover knows (it was restarted since) is believed: an
        extra promotion costs time, never safety, since the new epoch fences the rest."""
        pair = self._pairs[stream]
        started = time.perf_counter()
        with pair.lock:
            if generation < pair.generation:
                return pair.generation, pair.primary
            old, promoted, how = pair.primary, None, "standby"
            status: dict[str, Any] = {}
            if pair.standby is not None:
                try:
                    status = ray_api.get(pair.standby.promote.remote(), timeout=self.timeout_s)
                    promoted = pair.standby
                except Exception as exc:
                    log.warning("standby_promotion_failed", stream=stream,
                                error=f"{type(exc).__name__}: {exc}"[:300])
            if promoted is None:   # no live standby: a fresh primary recovers from the log
                how = "fresh"
                promoted = self.make_shard(kind=pair.kind, stream=stream,
                                           name=self._name(stream, "primary"), standby=False,
                                           scheduling_strategy=None)
                status = ray_api.get(promoted.status.remote(), timeout=120)
            pair.primary, pair.primary_node = promoted, status.get("node")
            pair.standby = pair.standby_name = None
            pair.generation = max(status.get("epoch") or 0, pair.generation + 1, generation + 1)
            if self.handles is not None:
                self.handles[pair.kind][pair.index] = promoted
            generation = pair.generation
        try:
            ray_api.kill(old, no_restart=True)   # dead already, or a zombie: fenced anyway
        except Exception:  # noqa: BLE001 - best effort
            pass
        ms = round((time.perf_counter() - started) * 1000, 1)
        self.failovers.append({"id": f"{self.token}-{len(self.failovers) + 1}",
                               "stream": stream, "how": how, "epoch": status.get("epoch"),
                               "ms": ms, "asked_at": started})
        log.warning("shard_failed_over", stream=stream, how=how, epoch=status.get("epoch"),
                    generation=generation, ms=ms)
        thread = threading.Thread(target=self._replace_standby, args=(pair,), daemon=True,
                                  name=f"standby-{stream}")
        self._threads.append(thread)
        thread.start()
        return generation, promoted

    def _replace_standby(self, pair: _Pair) -> None:
        if not self._stopping.wait(self.replace_after_s):
            self._start_standby(pair)

    def stop(self) -> None:
        """Wait for standbys being started, then forget them all (the runtime ends them,
        found by name)."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._pairs.clear()
