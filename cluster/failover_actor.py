"""The runtime's `Failover` (cluster/failover.py) in an actor of its own, and the
gateways' way to it.

The `Failover` of a runtime runs in an actor of its own (`FailoverActor`, named
`saleday-failover`, on the node of the process that started the runtime): every gateway
that finds a primary dead promotes through it, the runtime's own (`SharedFailover`, which
keeps the runtime's handles current) and those of the HTTP replicas in other processes
(`SharedFailover.find`), so a death several of them find is failed over once. The standbys
and later primaries it starts are detached (the runtime's `make_shard` is given
`detached=True`): they outlive it, and the runtime's stop ends them by name. The actor
itself and the first primaries end with the process that started the runtime.

Ray restarts the failover actor when its process dies (`max_restarts=-1`). The new one
adopts the shards by name (`Failover.adopt`): each stream's live primary of the newest
epoch and one live standby are kept (other live ones are killed); a stream with no live
primary has its standby promoted, or gets a fresh primary recovered from the log under a
new epoch; a shard without a standby gets one. Gateways still holding a dead primary
report it with its older epoch and are handed the current one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import structlog

from saleday.cluster import ray_api
from saleday.cluster.failover import Failover

log = structlog.get_logger("saleday.failover")


FAILOVER_ACTOR = "saleday-failover"
"""The name of a runtime's `FailoverActor` in saleday's namespace."""


class FailoverActor:
    """A runtime's `Failover` in an actor of its own, so that the gateways of other
    processes (the HTTP replicas) promote through the same one (`SharedFailover`).

    It is a threaded actor: a promotion waits on the standby, and meanwhile other gateways'
    calls (another shard's failover, a generation already failed over) are answered. It
    starts by adopting the runtime's shards (`layout`: kind, index, stream; `Failover.adopt`),
    and so does the actor Ray restarts in its place when its process dies (with the same
    arguments: no actor handles among them, which Ray would keep in its object store, where
    a restart cannot count on them, ray-project/ray#53727)."""

    def __init__(self, *, layout: list[tuple[str, int, str]], make_shard: Callable[..., Any],
                 resource: str | None, timeout_s: float) -> None:
        self.failover = Failover(None, make_shard, resource=resource, timeout_s=timeout_s)
        self.fresh = self.failover.adopt(layout)

    def wait_ready(self, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        return self.failover.wait_ready(timeout_s)

    def health(self) -> dict[str, Any]:
        """The health check in one call: the streams given a new standby (`check`), this
        incarnation's token and fresh primaries, the current primaries, the failovers."""
        started = self.failover.check()
        return {**self.incarnation(), "started": started, "primaries": self.primaries(),
                "failovers": self.failovers()}

    def fail_over(self, stream: str, generation: int) -> tuple[int, Any]:
        return self.failover.fail_over(stream, generation)

    def primaries(self) -> dict[str, tuple[str, int, int, Any]]:
        return self.failover.primaries()

    def standbys(self) -> dict[str, Any]:
        return self.failover.standbys()

    def failovers(self) -> list[dict[str, Any]]:
        return list(self.failover.failovers)

    def incarnation(self) -> dict[str, Any]:
        """Which incarnation of the actor this is (a token of its own) and the streams it
        gave a fresh primary when it started."""
        return {"token": self.failover.token, "fresh": self.fresh, "pid": os.getpid()}

    def stop(self) -> None:
        self.failover.stop()


class SharedFailover:
    """The `Failover` interface over a `FailoverActor`: the runtime's, which starts the
    actor and keeps the runtime's `handles` current, or one found by another process
    (`find`), which only promotes and reads."""

    def __init__(self, actor: Any, handles: dict[str, list[Any]] | None = None, *,
                 layout: list[tuple[str, int, str]] = (), timeout_s: float = 180.0) -> None:
        """`layout`: the runtime's shards as (kind, index, stream)."""
        self.actor = actor
        self.handles = handles
        """The runtime's `{kind: [primary]}`, kept current here (None: not a runtime's)."""
        self.timeout_s = timeout_s
        """How long a promotion may take: a fresh primary recovering from the log is the
        slow case (the promotion of a live standby takes tens of ms)."""
        self._where: dict[str, tuple[str, int]] = {stream: (kind, index)
                                                   for kind, index, stream in layout}
        self._reported: set[str] = set()
        """Failovers already logged here by `check`."""
        self._incarnation: str | None = None
        """The token of the actor's incarnation last seen by `check`."""

    @classmethod
    def start_actor(cls, handles: dict[str, list[Any]], make_shard: Callable[..., Any], *,
                    layout: list[tuple[str, int, str]], resource: str | None,
                    timeout_s: float) -> SharedFailover:
        """Start the runtime's failover actor on this node, next to the process it ends with;
        it adopts the shards of `layout` (kind, index, stream), whose first primaries are in
        `handles`, and Ray restarts it there (adopting them anew) if its process dies."""
        here = ray_api.node_id()
        actor = ray_api.actor(FailoverActor, name=FAILOVER_ACTOR,
                              init={"layout": layout, "make_shard": make_shard,
                                    "resource": resource, "timeout_s": timeout_s},
                              scheduling_strategy=(ray_api.node_affinity(here, soft=False)
                                                   if here else None),
                              max_restarts=-1, max_concurrency=32)
        shared = cls(actor, handles, layout=layout)
        shared._incarnation = shared._get(actor.incarnation.remote())["token"]
        return shared

    @classmethod
    def find(cls) -> SharedFailover | None:
        """The failover of the runtime running on this Ray, if it has standbys."""
        actor = ray_api.find_actor(FAILOVER_ACTOR)
        return cls(actor) if actor is not None else None

    def _get(self, ref: Any, timeout_s: float | None = None) -> Any:
        return ray_api.get(ref, timeout=timeout_s or self.timeout_s)

    def wait_ready(self, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        return self._get(self.actor.wait_ready.remote(timeout_s), timeout_s + 5)

    def check(self) -> list[str]:
        """Replace dead standbys; bring the runtime's handles up to date (another
        process's gateway may have failed a shard over), and log here the failovers the
        actor did since the last check, and its restart by Ray (its own log is in Ray's
        worker logs)."""
        report = self._get(self.actor.health.remote())
        if self._incarnation is not None and report["token"] != self._incarnation:
            log.error("failover_actor_restarted", fresh_primaries=report["fresh"])
        self._incarnation = report["token"]
        self._refresh(report["primaries"])
        for f in report["failovers"]:
            if f["id"] not in self._reported:
                self._reported.add(f["id"])
                log.warning("shard_failed_over", stream=f["stream"], how=f["how"],
                            epoch=f["epoch"], ms=f["ms"])
        return report["started"]

    def primaries(self) -> dict[str, tuple[str, int, int, Any]]:
        return self._get(self.actor.primaries.remote())

    def generations(self) -> dict[str, list[int]]:
        """`{kind: [generation]}` of the runtime's handles, for a gateway over them (0
        where the actor cannot say now: such a gateway's first report of a death is
        answered with the current primary, then its next one is judged)."""
        out = {kind: [0] * len(hs) for kind, hs in (self.handles or {}).items()}
        try:
            primaries = self.primaries()
        except Exception as exc:  # noqa: BLE001 - restarting: a new gateway still starts
            log.warning("failover_generations_unknown", error=f"{type(exc).__name__}"[:300])
            return out
        for kind, index, generation, _ in primaries.values():
            if kind in out:
                out[kind][index] = generation
        return out

    def refresh(self) -> None:
        """Point the runtime's handles at the current primaries."""
        if self.handles is not None:
            self._refresh(self.primaries())

    def _refresh(self, primaries: dict[str, tuple[str, int, int, Any]]) -> None:
        for kind, index, _, primary in primaries.values():
            self._keep(kind, index, primary)

    def _keep(self, kind: str, index: int, primary: Any) -> None:
        # The runtime's handle of a first primary is the one that keeps it alive (the
        # actor's, found by name, does not): replaced only by another actor's handle.
        if self.handles is not None and self.handles[kind][index] != primary:
            self.handles[kind][index] = primary

    def fail_over(self, stream: str, generation: int) -> tuple[int, Any]:
        generation, primary = self._get(self.actor.fail_over.remote(stream, generation))
        if stream in self._where:
            self._keep(*self._where[stream], primary)
        return generation, primary

    def standbys(self) -> dict[str, Any]:
        return self._get(self.actor.standbys.remote())

    @property
    def failovers(self) -> list[dict[str, Any]]:
        return self._get(self.actor.failovers.remote())

    def stop(self) -> None:
        """Stop the actor's standby threads, then end the actor. What it started is
        detached: the runtime ends it by name."""
        try:
            self._get(self.actor.stop.remote(), 60)
        except Exception as exc:  # noqa: BLE001 - dead or restarting: the runtime still ends what it started
            log.warning("failover_stop_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            ray_api.kill(self.actor, no_restart=True)
