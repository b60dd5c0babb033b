"""The front door on Ray Serve: a deployment whose every replica holds a gateway to the
shard actors that `saleday serve` runs.

    serve deploy deploy/serve_config.yaml          # a cluster: import_path saleday.http.serve:build
    saleday serve --http [--host 127.0.0.1] [--port 8000]    # locally: the shards and this app

A replica FINDS the named shard actors (`ray_api.find_actor` in saleday's namespace); it
never starts one, so the shards keep one writer each however many replicas there are.
When the shards have hot standbys (`saleday serve --standbys 1`), it finds the runtime's
failover actor instead, takes the current primaries from it, and a batch that finds a
primary dead is failed over through it (cluster/failover_actor.py), as the runtime's own
gateway does. It reads its settings from the node's environment (`SALEDAY_*` for the
store and the shards, `SALEDAY_HTTP_*` for the secrets and limits): secrets are not put
in the Serve config.
A local run (`run_local`) may hand them to the replicas as constructor arguments instead,
which Serve keeps to itself. This module declares the Serve deployment (Serve's decorators,
`bind`, `options`); its Ray calls (finding actors, starting and stopping Serve) go through
`saleday.cluster.ray_api`.
"""

from __future__ import annotations

from typing import Any

import structlog
from ray import serve

from saleday.actors.kinds import deciders
from saleday.cluster import ray_api
from saleday.cluster.failover_actor import SharedFailover
from saleday.cluster.gateway import Gateway
from saleday.cluster.local_socket import link_to
from saleday.cluster.routing import ShardMap
from saleday.cluster.runtime import RuntimeConfig
from saleday.cluster.wire import Wire

log = structlog.get_logger("saleday.http.serve")

APP_NAME = "saleday"
MAX_ONGOING_REQUESTS = 256
"""Requests a replica works on at once: it mostly awaits the gateway, which batches them,
so Serve's default of 5 would leave it idle and queue requests at the proxy."""


class ShardsNotRunning(RuntimeError):
    """A replica found no shard actor of that name: start `saleday serve` first."""


def attach_gateway(config: RuntimeConfig) -> Gateway:
    """A gateway to the shard actors already running under `config`'s shard map (through
    the runtime's failover actor when there is one: `config.standbys`)."""
    kinds = deciders()
    maps = {kind: ShardMap.uniform(kind, n, config.partitions) for kind, n in config.shards.items()}
    failover = SharedFailover.find() if config.standbys else None
    if config.standbys and failover is None:
        raise ShardsNotRunning(f"no failover actor in namespace {ray_api.NAMESPACE!r}: the "
                               "replicas were told the shards have standbys; run `saleday "
                               "serve --standbys 1` with the same --shards first")
    primaries = failover.primaries() if failover is not None else {}
    handles: dict[str, list[Any]] = {}
    generations: dict[str, list[int]] = {}
    for kind, shard_map in maps.items():
        handles[kind], generations[kind] = [], []
        for i in range(shard_map.shards):
            stream = shard_map.stream(i)
            if stream in primaries:
                _, _, generation, handle = primaries[stream]
            else:
                generation, handle = 0, ray_api.find_actor(stream)
            if handle is None:
                raise ShardsNotRunning(f"no shard actor {stream!r} in namespace "
                                       f"{ray_api.NAMESPACE!r}: run `saleday serve` with the "
                                       "same --shards first")
            handles[kind].append(handle)
            generations[kind].append(generation)
    kind_by_type = {cls: kind for kind in maps for cls in kinds[kind].commands}
    return Gateway(maps, handles, config.gateway_config(),
                   entity_of={kind: kinds[kind].entity_of for kind in maps},
                   kind_of=lambda command: kind_by_type.get(type(command), "?"),
                   transient=ray_api.transient_errors(), wire=Wire(list(kind_by_type)),
                   failover=failover.fail_over if failover is not None else None,
                   died=ray_api.actor_died_errors() if failover is not None else (),
                   generations=generations,
                   link=link_to if config.local_socket else None)


@serve.deployment(name="saleday-http", max_ongoing_requests=MAX_ONGOING_REQUESTS,
                  ray_actor_options={"num_cpus": 0})
@serve.ingress()
class SaledayHttp:
    """One replica: its own gateway to the shards, its own app (rate limits, idempotency
    keys and metrics are per replica)."""

    def __init__(self, runtime: dict[str, Any] | None = None,
                 http: dict[str, Any] | None = None, views: bool = True,
                 stock: bool = True) -> None:
        from saleday.cluster.settings import load_settings
        from saleday.http.settings import HttpSettings

        settings = load_settings()
        config = settings.runtime_config().model_copy(update=runtime or {})
        self.settings = HttpSettings(**(http or {}))
        self.gateway = attach_gateway(config)
        self.views = None
        if views:
            from saleday.http.views import ViewReader

            self.views = ViewReader.from_url(config.store_url)
        self.stock: Any = None if stock else False   # None: the views' log
        if stock and self.views is None:
            from saleday.events import open_store

            self.stock = open_store(config.store_url)
        log.info("replica_started", shards=config.shards)

    def __serve_build_asgi_app__(self) -> Any:
        from saleday.http.app import create_app

        return create_app(self.gateway, settings=self.settings, views=self.views,
                          stock=self.stock)


def build(args: dict[str, Any]) -> Any:
    """The application `serve deploy` builds (`import_path: saleday.http.serve:build`).

    `args` may set `shards`, `partitions` and the batching options (anything else comes
    from the nodes' SALEDAY_* environment), `views: false` and `stock: false` (no live
    stock sockets)."""
    runtime = {k: v for k, v in args.items() if k in RuntimeConfig.model_fields}
    return SaledayHttp.bind(runtime=runtime or None, views=bool(args.get("views", True)),
                            stock=bool(args.get("stock", True)))


def run_local(config: RuntimeConfig, http: Any, *, replicas: int = 1,
              views: bool = True, stock: bool = True) -> str:
    """Start Serve on this Ray (its proxy on `http.host`:`http.port`, loopback by default)
    with the app over `config`'s running shards; return the base URL."""
    secrets = {n: http.secret(n) for n in ("jwt_secret", "webhook_secret", "operator_token")}
    plain = http.model_dump(mode="json", exclude={"jwt_secret", "webhook_secret",
                                                  "operator_token"})
    app = SaledayHttp.options(num_replicas=replicas).bind(
        runtime=config.model_dump(), http={**plain, **secrets}, views=views, stock=stock)
    ray_api.serve_run(app, name=APP_NAME, host=http.host, port=http.port)
    return f"http://{http.host}:{http.port}"


def stop_local() -> None:
    """Stop Serve on this Ray (the app and its proxy); the shards keep running."""
    ray_api.serve_shutdown()
