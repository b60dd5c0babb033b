"""Putting it together: Ray, the shard actors of each entity kind, and a gateway.

    with Runtime(RuntimeConfig(store_url="sqlite:///saleday-data/events.db")) as rt:
        client = rt.client()
        reply = client.submit(ReserveStock(...))

On the embedded default Ray starts in this process and the log is a SQLite file under the
data dir; with `ray_address` and a `redis://` store it joins a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from saleday.actors.kinds import deciders
from saleday.cluster import ray_api
from saleday.cluster.gateway import Gateway, GatewayClient, GatewayConfig
from saleday.cluster.routing import ShardMap
from saleday.cluster.wire import Wire
from saleday.events import open_store
from saleday.events.store import sqlite_path


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
    max_in_flight: int = 2
    call_timeout_s: float = 10.0
    retry_for_s: float = 30.0
    tick_s: float = 1.0
    # Placement (deployed clusters): shards ask `{shard_resource: shard_resource_amount}`
    # when a resource is named, are spread across nodes, and are detached when `detached`.
    shard_resource: str | None = None
    shard_resource_amount: float = 0.01
    spread: bool = True
    detached: bool = False

    def gateway_config(self) -> GatewayConfig:
        return GatewayConfig(max_batch=self.max_batch, max_wait_ms=self.max_wait_ms,
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
            self.handles[kind] = [
                ray_api.shard_handle(kind=kind, stream=shard_map.stream(i),
                                    store_url=self.config.store_url,
                                    snapshot_every=self.config.snapshot_every,
                                    **self._placement())
                for i in range(shard_map.shards)]
        self.status()  # waits until every shard has recovered
        return self

    def _placement(self) -> dict[str, Any]:
        c = self.config
        return {"resources": ray_api.shard_placement(c.shard_resource, c.shard_resource_amount),
                "scheduling_strategy": "SPREAD" if c.spread else None,
                "detached": c.detached}

    def status(self) -> list[dict[str, Any]]:
        refs = [h.status.remote() for hs in self.handles.values() for h in hs]
        return ray_api.get(refs, timeout=120)

    def kind_of(self, command: Any) -> str:
        return self._kind_by_type.get(type(command), "?")

    def gateway(self) -> Gateway:
        """A new asyncio gateway; create it inside the event loop that will use it."""
        return Gateway(self.maps, self.handles, self.config.gateway_config(),
                       entity_of=self._entity_of, kind_of=self.kind_of,
                       transient=ray_api.transient_errors(), wire=self._wire)

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
            for handles in self.handles.values():
                for handle in handles:
                    ray_api.kill(handle, no_restart=True)
            for kind, handles in self.handles.items():
                for i in range(len(handles)):
                    _wait_name_free(self.maps[kind].stream(i))
            self.handles.clear()
        if shutdown_ray:
            ray_api.shutdown()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_name_free(name: str, timeout_s: float = 10.0) -> None:
    """Wait (at most `timeout_s`) until no live actor carries `name`."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray_api.find_actor(name) is None:
            return
        time.sleep(0.05)
