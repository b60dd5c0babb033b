"""The FastAPI app: `create_app(gateway, settings=...)`, its error handling and its health.

Every error is an RFC 9457 problem (`problems.py`): the app's own (`ApiProblem`), a body or
parameter that does not validate (422), an unknown route or method (404, 405). The edge
middleware times every request for `/metrics` by route template and status, and is the
catch-all: an exception no handler took is logged (structlog, with its traceback) and
answered as a problem 500 that names no internals. Nothing a client sends should reach
it; the schema fuzz test holds the app to that.

At start-up (the lifespan) the objects alive then, the modules, Ray's client, FastAPI's
routes and pydantic's schemas, are moved out of the garbage collector's generations
(`gc.freeze`, undone at shutdown): they live as long as the process, and every full
collection walked all of them again, a cost per order that grew with the heap
(docs/DESIGN_NOTES.md, the seventh run).
"""

from __future__ import annotations

import asyncio
import gc
import time
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from saleday.http import (
    live,
    routes_admin,
    routes_behaviour,
    routes_members,
    routes_orders,
    routes_shop,
    warroom,
)
from saleday.http.edge import Api, wall_ms
from saleday.http.lean import LeanLane
from saleday.http.models import Health
from saleday.http.problems import TITLES, ApiProblem, snake
from saleday.http.settings import HttpSettings

log = structlog.get_logger("saleday.http")

READY_TIMEOUT_S = 2.0
KINDS = ("sku", "session", "order", "campaign", "team")


def create_app(gateway: Any, *, settings: HttpSettings, views: Any = None,
               clock: Callable[[], int] = wall_ms, stock: Any = None) -> FastAPI:
    """The API over `gateway` (a `Gateway`, or `LocalShards` with `autoflush=True`).

    `views` (a `saleday.http.views.ViewReader`) serves /v1/views and the war room; `stock`
    is the log the live stock sockets follow (default: the views' log; False: none);
    `clock` gives the commands' `now` in ms. The settings must hold every secret
    (`settings.with_secrets`)."""
    missing = settings.missing_secrets()
    if missing:
        from saleday.http.settings import MissingSecrets

        raise MissingSecrets(missing)
    lacking = set(KINDS) - set(getattr(gateway, "maps", KINDS))
    if lacking:
        raise ValueError(f"the HTTP API needs shards of every kind; none host {sorted(lacking)}")
    if stock is None and views is not None:
        stock = views.store
    api = Api(gateway, settings, views, clock)
    if stock is not False and stock is not None:
        api.stock = live.StockFeed(stock, poll_s=settings.stock_poll_ms / 1000,
                                   registry=api.metrics.registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if api.stock is not None:
            api.stock.start()
        gc.collect()
        gc.freeze()   # what lives at start-up is no longer walked by every full collection
        try:
            yield
        finally:
            gc.unfreeze()
            if api.stock is not None:
                await asyncio.to_thread(api.stock.stop)

    otel = settings.otel
    app = FastAPI(title="saleday", version="1", lifespan=lifespan,
                  telemetry={"tracing": otel, "metrics": otel, "logs": otel},
                  description="The sale-day API: sessions, coupons, team-ups, store visits, "
                              "checkout, payment callbacks, reads and admin; live stock over "
                              "a WebSocket (/v1/stock/live) and the war room at /. Errors are "
                              "RFC 9457 problems (application/problem+json). See docs/API.md.")
    app.state.api = api
    app.add_exception_handler(ApiProblem, _problem)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_middleware(LeanLane, routes=routes_orders.lean_routes())   # inside the edge
    app.add_middleware(EdgeMiddleware)
    app.include_router(routes_shop.router)
    app.include_router(routes_orders.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_behaviour.router)
    app.include_router(routes_members.router)
    # not nested: metrics label routes by full path; it holds routes_members' price and
    # presale routes too
    app.include_router(routes_admin.admin)
    app.include_router(live.router)
    app.include_router(warroom.router)
    app.mount("/static", StaticFiles(directory=warroom.STATIC), name="static")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Health:
        """The process answers (nothing else is checked)."""
        return Health(status="ok")

    @app.get("/readyz", tags=["health"], responses={503: routes_shop.PROBLEM})
    async def readyz(request: Request) -> Health:
        """Every shard answers a read within 2 s."""
        return await _ready(request.app.state.api.gateway)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        m = request.app.state.api.metrics
        return Response(m.render(), media_type=m.content_type)

    return app


async def _ready(gateway: Any) -> Health:
    counts: dict[str, int] = {}
    probes = []
    for kind, shard_map in getattr(gateway, "maps", {}).items():
        counts[kind] = shard_map.shards
        probes.extend(gateway.query(kind, entity) for entity in _one_per_shard(shard_map))
    try:
        await asyncio.wait_for(asyncio.gather(*probes), READY_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        log.warning("not_ready", error=type(exc).__name__)
        raise ApiProblem(503, "not_ready", "a shard did not answer",
                         headers={"Retry-After": "1"}) from None
    return Health(status="ready", shards=counts)


def _one_per_shard(shard_map: Any) -> list[str]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < shard_map.shards and n < 100_000:
        entity = f"readyz-{n}"
        found.setdefault(shard_map.shard_of(entity), entity)
        n += 1
    return list(found.values())


# -- errors -----------------------------------------------------------------------------------


async def _problem(request: Request, exc: ApiProblem) -> JSONResponse:
    return exc.response(request.url.path)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    detail = f"{'.'.join(first['loc'])}: {first['msg']}" if first["loc"] else first["msg"]
    return ApiProblem(422, "invalid_request", detail, errors=errors).response(request.url.path)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if isinstance(exc, BodyTooLarge):
        return ApiProblem(413, "too_large", str(exc.detail)).response(request.url.path)
    if exc.status_code == 400:   # a body that does not even parse: malformed input, a 422
        detail = exc.detail if isinstance(exc.detail, str) else "the body does not parse"
        errors = [{"loc": ["body"], "msg": detail, "type": "body_unreadable"}]
        return ApiProblem(422, "invalid_request", detail, errors=errors).response(request.url.path)
    title = TITLES.get(exc.status_code, "Error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    return ApiProblem(exc.status_code, snake(title.replace(" ", "")), detail,
                      headers=dict(exc.headers or {})).response(request.url.path)


class BodyTooLarge(StarletteHTTPException):
    """A request body past `max_body_bytes`, found while it streams in (no Content-Length,
    or one that lied). An HTTP exception, so FastAPI's body reading passes it on."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"a request body is at most {limit} bytes")


def _too_large(limit: int) -> ApiProblem:
    return ApiProblem(413, "too_large", f"a request body is at most {limit} bytes")


def _content_length(scope: dict) -> int | None:
    """The request's Content-Length, or None when it has none (or not a number: the
    server refuses that before the app sees it)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _limited(receive: Any, limit: int) -> Any:
    """`receive`, counting the body's bytes and raising BodyTooLarge past `limit`."""
    seen = 0

    async def counted() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


class EdgeMiddleware:
    """Times every HTTP request for /metrics, refuses a body past `max_body_bytes` as a
    problem 413 (by its Content-Length before reading it, else as it streams in), and
    answers a bug as a problem 500."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        sent = False
        state = scope["app"].state if "app" in scope else None
        limit = state.api.settings.max_body_bytes if state is not None else None
        if limit is not None:
            length = _content_length(scope)
            if length is not None and length > limit:
                status = 413
                await _too_large(limit).response(scope.get("path", ""))(scope, receive, send)
                self._observe(scope, status, started)
                return
            receive = _limited(receive, limit)

        async def send_status(message: dict) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status, sent = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BodyTooLarge as exc:   # raised where no handler of the app answered it
            status = 413
            if not sent:
                await _too_large(limit or 0).response(scope.get("path", ""))(scope, receive, send)
            log.info("http_body_too_large", path=scope.get("path"), detail=exc.detail)
        except Exception as exc:  # noqa: BLE001 - the catch-all: log the bug, answer a problem
            log.error("http_unhandled", method=scope.get("method"), path=scope.get("path"),
                      error=f"{type(exc).__name__}: {exc}"[:500],
                      traceback=traceback.format_exc(limit=20))
            status = 500
            if not sent:
                problem = ApiProblem(500, "internal_error", "an unexpected error; it was logged")
                await problem.response(scope.get("path", ""))(scope, receive, send)
        finally:
            self._observe(scope, status, started)

    @staticmethod
    def _observe(scope: dict, status: int, started: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        api = scope["app"].state.api if "app" in scope else None
        if api is not None:
            api.metrics.observe(template, scope.get("method", ""), status,
                                time.perf_counter() - started)
