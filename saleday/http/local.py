"""The front door as the simulator and the benchmark use it: in this process, on loopback.

`local_front_door(store_url, ...)` does what `saleday serve --http` does (a local Ray, the
shards over the store, the reactor, the Serve app) on a free loopback port, with fresh
random secrets that never leave the process, and yields the simulator's `HttpTarget`.
`target_from_settings` builds the target of a front door running elsewhere from the
secrets the operator holds (SALEDAY_HTTP_*, or the development secrets under the data dir).
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

from saleday.http.settings import SECRET_NAMES, HttpSettings, MissingSecrets, read_dev_secrets
from saleday.simulator.http_client import HttpTarget

log = structlog.get_logger("saleday.http.local")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token_factory(settings: HttpSettings, ttl_s: int = 6 * 3600) -> Any:
    from saleday.http.auth import issue_token

    return lambda user: issue_token(user, settings, ttl_s=ttl_s)


def target_from_settings(base_url: str, *, data_dir: Path) -> HttpTarget:
    """The target at `base_url` with the secrets from SALEDAY_HTTP_* or, for those unset,
    the development secrets of `serve --http --dev-secrets` under `data_dir`; raises
    `MissingSecrets` naming what is missing."""
    settings = HttpSettings()
    dev = read_dev_secrets(data_dir)
    update = {n: dev[n] for n in SECRET_NAMES if getattr(settings, n) is None and n in dev}
    if update:
        from pydantic import SecretStr

        settings = settings.model_copy(update={n: SecretStr(v) for n, v in update.items()})
    missing = settings.missing_secrets()
    if missing:
        raise MissingSecrets(missing)
    return HttpTarget(base_url=base_url.rstrip("/"), token_for=token_factory(settings),
                      operator_token=settings.secret("operator_token"),
                      webhook_secret=settings.secret("webhook_secret"))


def local_settings(**overrides: Any) -> HttpSettings:
    """Loopback on a free port, with random secrets (not written anywhere)."""
    fresh = {n: secrets.token_urlsafe(32) for n in SECRET_NAMES}
    return HttpSettings(**{"host": "127.0.0.1", "port": free_port(), **fresh, **overrides})


@contextmanager
def local_front_door(store_url: str, *, shards: dict[str, int], address: str | None = None,
                     num_cpus: int | None = None, payment_window_ms: int = 900_000,
                     **http: Any) -> Iterator[HttpTarget]:
    """Shards over `store_url` on a local Ray, the reactor, and the Serve app on a free
    loopback port; on leaving, the shards expire what is due, then everything stops."""
    from saleday.cluster import ray_api
    from saleday.cluster.runtime import Runtime, RuntimeConfig
    from saleday.http import cli as http_cli

    settings = local_settings(payment_window_ms=max(1000, payment_window_ms), **http)
    runtime = Runtime(RuntimeConfig(store_url=store_url, ray_address=address, num_cpus=num_cpus,
                                    shards=shards, tick_s=0.2))
    runtime.start()
    started = False
    try:
        url = http_cli.start(runtime, settings, replicas=1)
        started = True
        yield HttpTarget(base_url=url, token_for=token_factory(settings),
                         operator_token=settings.secret("operator_token"),
                         webhook_secret=settings.secret("webhook_secret"))
        for _ in range(2):   # expire what is due now, then let the reactor see it
            ray_api.get([h.tick.remote() for hs in runtime.handles.values() for h in hs],
                        timeout=30)
            time.sleep(0.3)
    finally:
        local = address is None
        if started:
            # A local Ray goes with everything on it: ending it is far quicker than Serve's
            # graceful shutdown (which waited out its 30 s timeout here).
            http_cli.stop(shutdown_serve=not local)
        runtime.stop(kill_shards=local, shutdown_ray=local)
        if started and local:
            forget_serve()


def forget_serve() -> None:
    """Drop this process's handle on a Serve whose Ray is gone (so a later Serve starts
    afresh); quick, since Serve sees that the cluster is gone."""
    from saleday.http.serve import stop_local

    try:
        stop_local()
    except Exception as exc:  # noqa: BLE001 - nothing left to stop
        log.info("serve_already_gone", error=type(exc).__name__)
