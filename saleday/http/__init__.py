"""The HTTP front door: a versioned JSON API over the gateway, served by Ray Serve.

    app = create_app(gateway, settings=HttpSettings(...))     # any ASGI server, or Serve

`create_app` takes anything with the gateway's API (`cluster.gateway.Gateway` on Ray, or
`cluster.local.LocalShards` in this process), so every route runs in tests without Ray.
The modules: `settings` (SALEDAY_HTTP_* and the secrets), `auth` (bearer JWTs, the
operator token), `webhook` (the payment provider's signed callback), `problems` (RFC 9457
answers and the refusal -> status table), `ratelimit`, `idempotency`, `models` (the
request and response bodies), `views` (reads of the projections), `metrics`
(Prometheus), `edge` (the app's state, and a reply -> an answer), `app` (the factory,
handlers and middleware), `lean` (the order route's handler without FastAPI's
per-request machinery, and the lane that reaches it past the router), `routes_shop` / `routes_orders` / `routes_admin` (the routes),
`serve` (the Ray Serve deployment) and `cli` (`saleday token`, `saleday serve --http`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from saleday.http.app import create_app
    from saleday.http.settings import HttpSettings

__all__ = ["HttpSettings", "create_app"]


def __getattr__(name: str) -> Any:
    """Import the app (FastAPI, pydantic models: seconds) only when it is asked for, so
    the CLI's other commands, which import `saleday.http.cli`, do not pay for it."""
    if name == "create_app":
        from saleday.http.app import create_app
        return create_app
    if name == "HttpSettings":
        from saleday.http.settings import HttpSettings
        return HttpSettings
    raise AttributeError(f"module 'saleday.http' has no attribute {name!r}")
