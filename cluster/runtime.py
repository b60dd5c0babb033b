"""Putting it together: Ray, the shard actors of each entity kind, and a gateway.

    with Runtime(RuntimeConfig(store_url="sqlite:///saleday-data/events.db")) as rt:
        client = rt.client()
        reply = client.submit(ReserveStock(...))

On the embedded default Ray starts in this process and the log is a SQLite file under the
data dir; with `ray_address` and a `redis://` store it joins a cluster.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, Field

from saleday.actors.kinds import deciders
from saleday.cluster import ray_api
from saleday.cluster.failover_actor import FAILOVER_ACTOR, SharedFailover
from saleday.cluster.gateway import Gateway, GatewayClient, GatewayConfig
from saleday.cluster.local_socket import link_to
from saleday.cluster.routing import ShardMap
from saleday.cluster.wire import Wire
from saleday.events import open_store
from saleday.events.store import sqlite_path

log = structlog.get_logger("saleday.runtime")


class RuntimeConfig(BaseModel):
    """How to run: where the log is, how many shards of each kind, how to batch."""

    store_url: str = "sqlite:///saleday-data/events.db"
    ray_address: str | None = None
    num_cpus: int | None = None
    shards: dict[str, int] = Field(default_factory=lambda: {"sku": 2})
    partitions: int = 64
    snapshot_every: int = 50_000
    max_batch: int = 1024
    max_wait_ms: float = 2.0
    idle_wait_ms: float = 0.0
    max_in_flight: int = 2
    local_socket: bool = True
    """A gateway sends batches to shards on its own node over their Unix sockets
    (`cluster.local_socket`) instead of Ray calls; False: Ray calls only."""
    call_timeout_s: float = 10.0
    retry_for_s: float = 30.0
    tick_s: float = 1.0
    # Placement (deployed clusters): shards ask `{shard_resource: shard_resource_amount}`
    # when a resource is named, are spread across nodes, and are detached when `detached`.
    shard_resource: str | None = None
    shard_resource_amount: float = 0.01
    spread: bool = True
    detached: bool = False
    # Hot standby (cluster/failover.py): 1 = each shard has a standby that follows the log
    # and is promoted when its primary dies (shards are then not restarted by Ray); 0 = none,
    # Ray restarts a dead shard, which recovers from snapshot and log.
    standbys: int = Field(0, ge=0, le=1)

    def gateway_config(self) -> GatewayConfig:
        return GatewayConfig(max_batch=self.max_batch, max_wait_ms=self.max_wait_ms,
                             idle_wait_ms=self.idle_wait_ms,
                             max_in_flight=self.max_in_flight, call_timeout_s=self.call_timeout_s,
                             retry_for_s=self.retry_for_s, tick_s=self.tick_s)


class Runtime:
    """Ray plus the named shard actors of each kind; hands out gateways over them."""

    def __init__(self, config: RuntimeConfig = RuntimeConfig()) -> None:
        self.config = config
        self.maps = {kind: ShardMap.uniform(kind, n, config.partitions)
                     for kind, n in config.shards.items()}
        self.handles: dict[str, list[Any]] = {}
        self._clients: list[GatewayClient] = []
        kinds = deciders()
        unknown = set(config.shards) - set(kinds)
        if unknown:
            raise ValueError(f"no decider for kind(s) {sorted(unknown)}; known: {sorted(kinds)}")
        self._entity_of = {kind: kinds[kind].entity_of for kind in config.shards}
        self._kind_by_type = {cls: kind for kind in config.shards for cls in kinds[kind].commands}
        self._wire = Wire(list(self._kind_by_type))
        self.failover: SharedFailover | None = None
        """With `standbys`: the failover actor every gateway promotes through."""

    def start(self) -> Runtime:
        """Start (or join) Ray and bring every shard up; raise `StoreUnavailable` at once if
        the log cannot be reached, rather than let Ray restart shards that cannot recover."""
        if self.config.store_url.startswith("sqlite:"):
            # The shards are other processes, perhaps started elsewhere: give them the
            # file's absolute path, not one relative to this process's directory.
            path = Path(sqlite_path(self.config.store_url)).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            query = self.config.store_url.partition("?")[2]
            self.config = self.config.model_copy(
                update={"store_url": f"sqlite:///{path}" + (f"?{query}" if query else "")})
        store = open_store(self.config.store_url)
        try:
            store.streams()
        finally:
            store.close()
        ray_api.start_ray(self.config.ray_address, num_cpus=self.config.num_cpus)
        for kind, shard_map in self.maps.items():
            self.handles[kind] = [make_shard(self.config, kind=kind, stream=shard_map.stream(i))
                                  for i in range(shard_map.shards)]
        self.status()  # waits until every shard has recovered
        if self.config.standbys:
            layout = [(kind, i, shard_map.stream(i)) for kind, shard_map in self.maps.items()
                      for i in range(shard_map.shards)]
            self.failover = SharedFailover.start_actor(
                self.handles, partial(make_shard, self.config, detached=True), layout=layout,
                resource=self.config.shard_resource, timeout_s=self.config.call_timeout_s)
            self.failover.refresh()   # a primary that did not answer it was replaced
            self.failover.wait_ready()
        return self

    def check_standbys(self) -> list[str]:
        """Replace every dead standby (`Failover.check`); the streams that got a new one.
        A failover actor that cannot be reached is logged (an error), not raised: the
        shards that are up keep serving, but no shard can fail over until it answers."""
        if self.failover is None:
            return []
        try:
            return self.failover.check()
        except Exception as exc:  # noqa: BLE001 - the health loop must go on
            log.error("failover_unreachable", error=f"{type(exc).__name__}: {exc}"[:300])
            return []

    def standby_status(self) -> list[dict[str, Any]]:
        """The statuses of the standbys (none without `standbys`); waits for new ones."""
        return self.failover.wait_ready() if self.failover is not None else []

    def status(self) -> list[dict[str, Any]]:
        if self.failover is not None:
            self.failover.refresh()   # another process's gateway may have failed one over
        refs = [h.status.remote() for hs in self.handles.values() for h in hs]
        return ray_api.get(refs, timeout=120)

    def kind_of(self, command: Any) -> str:
        return self._kind_by_type.get(type(command), "?")

    def gateway(self) -> Gateway:
        """A new asyncio gateway; create it inside the event loop that will use it."""
        failover = self.failover
        return Gateway(self.maps, self.handles, self.config.gateway_config(),
                       entity_of=self._entity_of, kind_of=self.kind_of,
                       transient=ray_api.transient_errors(), wire=self._wire,
                       failover=failover.fail_over if failover is not None else None,
                       died=ray_api.actor_died_errors() if failover is not None else (),
                       generations=failover.generations() if failover is not None else None,
                       link=link_to if self.config.local_socket else None)

    def client(self) -> GatewayClient:
        """A synchronous client with its own gateway."""
        client = GatewayClient(self.gateway)
        self._clients.append(client)
        return client

    def stop(self, *, kill_shards: bool = False, shutdown_ray: bool = False) -> None:
        """Close the clients; with `kill_shards`, end the shard actors too (and wait until
        their names are free, so a new runtime can start shards of the same names)."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        if kill_shards:
            started: set[str] = set()
            if self.failover is not None:
                self.failover.stop()   # its standby threads, then the actor itself
                started.add(FAILOVER_ACTOR)
            handles = [h for hs in self.handles.values() for h in hs]
            names = {self.maps[kind].stream(i) for kind, hs in self.handles.items()
                     for i in range(len(hs))}
            if self.config.standbys:
                # What the failover started (standbys, later primaries, of this incarnation
                # or an earlier one) is detached, and found by its name: `<stream>.…`.
                started.update(n for n in ray_api.named_actors("")
                               if n.partition(".")[0] in names and "." in n)
                handles += [h for h in map(ray_api.find_actor, sorted(started - {FAILOVER_ACTOR}))
                            if h is not None]
            for handle in handles:
                try:
                    ray_api.kill(handle, no_restart=True)
                except Exception:  # noqa: BLE001 - dead already (a failed-over primary)
                    pass
            for name in names | started:
                _wait_name_free(name)
            self.handles.clear()
            self.failover = None
        if shutdown_ray:
            ray_api.shutdown()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_shard(config: RuntimeConfig, *, kind: str, stream: str, name: str | None = None,
               standby: bool = False, scheduling_strategy: Any = None,
               detached: bool | None = None) -> Any:
    """A shard actor of `config`'s settings and placement (a standby's strategy, given,
    replaces the spread). With standbys its `max_restarts` is 0 (the failover replaces a
    dead one), and a first primary is never detached: it ends with the process that
    started it. `detached` (the failover's standbys and later primaries) overrides that:
    they outlive the failover actor that started them (cluster/failover_actor.py)."""
    placement: dict[str, Any] = {
        "resources": ray_api.shard_placement(config.shard_resource, config.shard_resource_amount),
        "scheduling_strategy": "SPREAD" if config.spread else None,
        "detached": (config.detached and not config.standbys) if detached is None else detached}
    if scheduling_strategy is not None:
        placement["scheduling_strategy"] = scheduling_strategy
    return ray_api.shard_handle(kind=kind, stream=stream, store_url=config.store_url,
                                snapshot_every=config.snapshot_every, name=name,
                                standby=standby, max_restarts=0 if config.standbys else -1,
                                **placement)


def _wait_name_free(name: str, timeout_s: float = 10.0) -> None:
    """Wait (at most `timeout_s`) until no live actor carries `name`."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray_api.find_actor(name) is None:
            return
        time.sleep(0.05)
