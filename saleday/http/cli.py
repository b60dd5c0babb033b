"""The front door's commands: `saleday token`, and the `--http` part of `saleday serve`.

    saleday token --user u-1 [--ttl 3600] [--data ./saleday-data]
    saleday serve --http [--host 127.0.0.1] [--port 8000] [--replicas 1] [--dev-secrets]

`token` signs with SALEDAY_HTTP_JWT_SECRET, or else with the development secret that
`serve --http --dev-secrets` wrote under the data dir. Secrets are never printed; only the
file that holds generated ones is named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from saleday.cli.common import fail


def register(app: typer.Typer) -> None:
    """Add `token` to the `saleday` app."""
    app.command("token")(token)


def _http_settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from saleday.http.settings import HttpSettings

    try:
        return HttpSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        fail(ValueError("; ".join(f"SALEDAY_HTTP_{'.'.join(map(str, e['loc'])).upper()}: "
                                  f"{e['msg']}" for e in exc.errors(include_input=False))))


def token(
    user: Annotated[str, typer.Option("--user", help="The user the token is for (its `sub`).")],
    ttl: Annotated[int | None, typer.Option("--ttl", min=1, help="Seconds it is valid "
                                            "(default SALEDAY_HTTP_TOKEN_TTL_S, 3600).")] = None,
    data: Annotated[Path, typer.Option("--data", help="Data dir whose development secrets "
                                       "to use when SALEDAY_HTTP_JWT_SECRET is unset.")] = Path("saleday-data"),
) -> None:
    """Print a signed bearer token (JWT) for USER, for tests and the simulator."""
    from pydantic import SecretStr

    from saleday.http.auth import issue_token
    from saleday.http.settings import read_dev_secrets

    settings = _http_settings()
    if settings.jwt_secret is None:
        dev = read_dev_secrets(data)
        if "jwt_secret" not in dev:
            fail(ValueError("no SALEDAY_HTTP_JWT_SECRET set and no development secrets under "
                            f"{data} (start `saleday serve --http --dev-secrets` first)"))
        settings = settings.model_copy(update={"jwt_secret": SecretStr(dev["jwt_secret"])})
    try:
        typer.echo(issue_token(user, settings, ttl_s=ttl))
    except ValueError as exc:
        fail(exc)


def prepare(*, host: str | None, port: int | None, dev_secrets: bool, data_dir: Path) -> Any:
    """The HTTP settings with every secret, or exit 2 saying which are missing."""
    from saleday.http.settings import MissingSecrets, with_secrets

    settings = _http_settings(host=host, port=port)
    try:
        settings, path = with_secrets(settings, data_dir=data_dir, dev=dev_secrets)
    except MissingSecrets as exc:
        fail(exc)
    if path is not None:
        typer.echo(f"development secrets (random) are in {path} (mode 0600); "
                   f"`saleday token --user U --data {data_dir}` signs with them", err=True)
    return settings


def http_shards(cpus: int | None = None) -> dict[str, int]:
    """The shards `serve --http` starts when neither --shards nor SALEDAY_SHARDS says: every
    kind the API needs, one shard of each busy kind (sku, session, order) per 4 CPUs.

    Fewer shard processes than cores keep each batch bigger: on 2 cores one shard per kind
    served ~1.5x the orders/s of two per busy kind (`saleday bench http --shards`)."""
    busy = max(1, (cpus or os.cpu_count() or 1) // 4)
    return {"sku": busy, "session": busy, "order": busy, "campaign": 1, "team": 1}

_reactor: dict[str, Any] = {}


def start(runtime: Any, settings: Any, *, replicas: int) -> str:
    """Start the Serve app over the running shards, and the reactor that delivers grants,
    red-packet shares and store-visit coupons to wallets (and, when the member kind is
    served, the follower that earns points and claims price protection, and with the
    presale and sku kinds the one that sets the deposits' units aside: flows/followers.py);
    print and return the URL."""
    import asyncio

    from saleday.events import open_store
    from saleday.flows.followers import live_followers
    from saleday.http.serve import run_local

    client = runtime.client()
    store = open_store(runtime.config.store_url)

    async def react() -> None:
        _reactor["stop"] = asyncio.Event()
        followers = live_followers(store, client.gateway, runtime.config.shards,
                                   _reactor["stop"])
        await asyncio.gather(*followers.values())

    _reactor.update(loop=client._loop, store=store,
                    future=asyncio.run_coroutine_threadsafe(react(), client._loop))
    url = run_local(runtime.config, settings, replicas=replicas)
    typer.echo(f"http: {url} (OpenAPI at {url}/docs)", err=True)
    return url


def stop(*, shutdown_serve: bool = True) -> None:
    """Stop the reactor and (unless the caller is about to end Ray itself, which is
    quicker than Serve's graceful shutdown) Serve."""
    from saleday.http.serve import stop_local

    if shutdown_serve:
        stop_local()
    if "stop" in _reactor:
        _reactor["loop"].call_soon_threadsafe(_reactor["stop"].set)
        try:
            _reactor["future"].result(timeout=5)
        except Exception:  # noqa: BLE001 - stopping: whatever it ended with is moot
            pass
        _reactor["store"].close()
