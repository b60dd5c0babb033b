"""The lean route: a FastAPI route whose requests skip FastAPI's per-request machinery.

FastAPI answers a request by solving the endpoint's dependency graph (a walk over every
parameter, each validated by pydantic), parsing a JSON body into Python objects before
validating them, and checking the returned model against the response model again. On
`POST /v1/orders` that machinery, with the router and the middleware, took ~45 % of the
HTTP process's CPU (docs/API.md, the fourth and fifth runs).

`LeanRoute` (an `APIRoute`, so routing, the OpenAPI operation and the status code are
what FastAPI makes of the endpoint's signature, as before) answers each request with a
handler built once from that same signature:

- the body (one parameter, a pydantic model): read once and validated once from the raw
  bytes (`model_validate_json`), after a JSON content type is checked;
- the user (`auth.User`): the same `current_user` dependency, called directly, so the
  bearer token, its verification and the rate limit are the API's own;
- header parameters (`str | None`): read from the headers, as sent;
- `Request`, and `Response` (whose headers and status join the answer, as FastAPI does);
- the answer: an instance of the response model, serialized once to bytes (pydantic's
  serializer, as `model_dump_json` does) and sent with the two headers `Response` would
  have built (`JsonBody`), under the route's status code; a `Response` returned is sent
  as it is.

A parameter of any other kind, another dependency, or a response-model option is refused
when the route is made (`TypeError`), so what the schema says and what the handler does
cannot drift apart. Errors are the app's: the user's 401/429 first (a body is not read
for a caller who may not send one), then a body that is not JSON or does not validate is
a `RequestValidationError` (the 422 problem) with every error's `loc` under `body`, as
FastAPI's own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import fastapi
import fastapi.routing
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from saleday.http.auth import bearer, current_user

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
_DEFAULT_OPTIONS = {"response_model_include": None, "response_model_exclude": None,
                    "response_model_by_alias": True, "response_model_exclude_unset": False,
                    "response_model_exclude_defaults": False,
                    "response_model_exclude_none": False}


class LeanRoute(APIRoute):
    """An `APIRoute` answered by `lean_handler` instead of FastAPI's request handler."""

    lean: Handler

    def get_route_handler(self) -> Handler:
        self.lean = lean_handler(_effective(self))
        return self.lean


class LeanLane:
    """ASGI middleware: a request for a lean route's method and path goes straight to its
    handler, past the router and FastAPI's per-route wrapping; anything else goes on.

    It sits inside the app's other middleware (the edge's metrics and catch-all see the
    request as before) and does what the layers it skips did for this route: it names the
    route in the scope (the metrics' route label) and answers an exception by the app's
    exception handlers (an `ApiProblem`, a `RequestValidationError`), raising the rest. A
    request under a `root_path` takes the ordinary way."""

    def __init__(self, app: Any, routes: Iterable[LeanRoute]) -> None:
        self.app = app
        self.routes = {(method, route.path): route for route in routes
                       for method in route.methods}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        route = (self.routes.get((scope["method"], scope["path"]))
                 if scope["type"] == "http" and not scope.get("root_path") else None)
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
        request = Request(scope, receive, send)
        try:
            response = await route.lean(request)
        except Exception as exc:
            handler = _handler_of(scope["app"].exception_handlers, exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
            exc.__traceback__ = None
        await response(scope, receive, send)


def _handler_of(handlers: dict[Any, Any], exc: Exception) -> Any:
    """The app's handler of `exc` as Starlette's ExceptionMiddleware finds it (an HTTP
    exception's status first, then by class, nearest first; `Exception` itself is the
    server error middleware's)."""
    if isinstance(exc, HTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


def _effective(route: APIRoute) -> Any:
    """The route as its router's inclusion sees it (prefix, dependencies, responses), as
    `APIRoute.get_route_handler` resolves it; the route itself where FastAPI has no such
    context (versions before included routers kept one)."""
    var = getattr(fastapi.routing, "_effective_route_context_var", None)
    context = var.get() if var is not None else None
    if context is not None and getattr(context, "original_route", None) is route:
        return context
    return route


def lean_handler(route: Any) -> Handler:
    """The request handler of `route`, or `TypeError` naming what it cannot supply."""
    dependant = route.dependant
    name = route.path
    unsupported = [kind for kind in ("path_params", "query_params", "cookie_params")
                   if getattr(dependant, kind)]
    unsupported += [p for p in ("websocket_param_name", "http_connection_param_name",
                                "background_tasks_param_name", "security_scopes_param_name")
                    if getattr(dependant, p)]
    if unsupported:
        raise TypeError(f"LeanRoute {name}: cannot supply {unsupported}")
    users = [d.name for d in dependant.dependencies if d.call is current_user]
    others = [d.call for d in dependant.dependencies if d.call is not current_user]
    if others or any(n is None for n in users):
        raise TypeError(f"LeanRoute {name}: only the User dependency is supplied, not {others}")
    headers = []
    for field in dependant.header_params:
        if field.field_info.annotation not in (str | None, str):
            raise TypeError(f"LeanRoute {name}: header {field.alias} must be a str")
        headers.append((field.name, field.alias.lower(), field.field_info.is_required()))
    body_name, body_model = None, None
    if dependant.body_params:
        field = dependant.body_params[0]
        model = field.field_info.annotation
        if len(dependant.body_params) > 1 or not (isinstance(model, type)
                                                   and issubclass(model, BaseModel)):
            raise TypeError(f"LeanRoute {name}: the body must be one pydantic model")
        body_name, body_model = field.name, model
    options = {k: getattr(route, k) for k in _DEFAULT_OPTIONS}
    if options != _DEFAULT_OPTIONS:
        raise TypeError(f"LeanRoute {name}: response model options are not supported")
    reply_model = route.response_model
    if reply_model is not None and not (isinstance(reply_model, type)
                                        and issubclass(reply_model, BaseModel)):
        raise TypeError(f"LeanRoute {name}: the response model must be a pydantic model")
    endpoint = dependant.call
    status = route.status_code or 200
    request_name, response_name = dependant.request_param_name, dependant.response_param_name

    async def handler(request: Request) -> Response:
        values: dict[str, Any] = {}
        if users:
            user = await current_user(request, await bearer(request))
            for n in users:
                values[n] = user
        if headers:
            sent = request.headers
            missing = []
            for n, header, required in headers:
                values[n] = sent.get(header)
                if required and values[n] is None:
                    missing.append({"type": "missing", "loc": ("header", header),
                                    "msg": "Field required"})
            if missing:
                raise RequestValidationError(missing)
        if body_model is not None:
            values[body_name] = body_of(body_model, request.headers.get("content-type"),
                                        await request.body())
        if request_name:
            values[request_name] = request
        sub = None
        if response_name:
            sub = values[response_name] = _SubResponse()
        result = await endpoint(**values)
        if isinstance(result, Response):
            return result
        if reply_model is None or not isinstance(result, reply_model):
            raise TypeError(f"{name} answered a {type(result).__name__}, not a {reply_model}")
        if sub is None:
            return JsonBody(result.__pydantic_serializer__.to_json(result), status)
        return JsonBody(result.__pydantic_serializer__.to_json(result),
                        sub.status_code or status, sub.raw_headers)

    return handler


class _SubResponse(Response):
    """The `Response` an endpoint is given to set headers (and a status) on: no body, no
    headers and no status of its own (FastAPI's sub-response, made without rendering)."""

    def __init__(self) -> None:
        self.status_code = None  # type: ignore[assignment]
        self.background = None
        self.body = b""
        self.raw_headers = []


class JsonBody(Response):
    """A JSON body already serialized: its Content-Length and Content-Type built as
    `Response(body, media_type="application/json")` builds them (same bytes, same order),
    then `extra` raw headers, without `Response`'s rendering and header parsing."""

    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int,
                 extra: list[tuple[bytes, bytes]] | tuple = ()) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", str(len(body)).encode("latin-1")),
                            (b"content-type", b"application/json"), *extra]


def body_of(model: type[BaseModel], content_type: str | None, raw: bytes) -> Any:
    """`raw` validated as `model`, or the `RequestValidationError` FastAPI would raise:
    a body missing, not sent as JSON, not JSON, or not valid, its errors under `body`."""
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",),
                                       "msg": "Field required"}])
    if not _is_json(content_type):
        raise RequestValidationError([{"type": "content_type", "loc": ("body",),
                                       "msg": "send the body as JSON (Content-Type: "
                                              "application/json)"}])
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])}
             for e in exc.errors(include_url=False, include_input=False,
                                 include_context=False)]) from None


def _is_json(content_type: str | None) -> bool:
    """application/json or application/<anything>+json, parameters aside (FastAPI's rule)."""
    if not content_type:
        return False
    kind = content_type.partition(";")[0].strip().lower()
    main, _, sub = kind.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def lean(router: fastapi.APIRouter, method: str, path: str,
         **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`@router.<method>(path, **options)` with the route made a `LeanRoute`."""

    def add(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        router.add_api_route(path, endpoint, methods=[method], route_class_override=LeanRoute,
                             **options)
        return endpoint

    return add
