"""The lean order route: what the schema says of it, what it refuses to be made of, and that
the lane inside the edge answers it as the app's router would."""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter, Request

from saleday.http import routes_orders
from saleday.http.auth import User
from saleday.http.lean import body_of, lean
from saleday.http.models import OrderIn, OrderOut
from saleday.http.routes_shop import IdKey, PathId

PROBLEM = "application/problem+json"


def test_the_schema_describes_the_order_route_from_its_signature(client):
    """OpenAPI still gives POST /v1/orders its JSON body (OrderIn), the Idempotency-Key
    header, the bearer security, the 201 OrderOut answer and the problem statuses."""
    op = client.http.get("/openapi.json").json()["paths"]["/v1/orders"]["post"]
    body = op["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OrderIn"}
    assert [(p["name"], p["in"]) for p in op["parameters"]] == [("Idempotency-Key", "header")]
    assert op["security"] == [{"HTTPBearer": []}]
    assert op["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrderOut"}
    assert {"401", "409", "422", "429", "503"} <= set(op["responses"])


def test_a_route_with_a_parameter_it_cannot_supply_is_refused():
    """Making a lean route whose endpoint takes a path parameter, or a body that is not one
    pydantic model, raises TypeError, so the handler never silently leaves one out."""
    router = APIRouter()

    async def by_path(order_id: PathId, user: User) -> OrderOut: ...

    with pytest.raises(TypeError, match="path_params"):
        lean(router, "GET", "/orders/{order_id}")(by_path)

    async def optional_body(request: Request, user: User, key: IdKey = None,
                          body: OrderIn | None = None) -> OrderOut: ...

    with pytest.raises(TypeError, match="one pydantic model"):
        lean(router, "POST", "/orders")(optional_body)


def test_the_lane_counts_the_order_route_in_the_metrics(client):
    """An order answered by the lane is counted under its route template and status."""
    client.sale()
    assert client.as_user("POST", "/v1/orders", "u-1",
                          json={"lines": [{"sku": "sku-1", "qty": 1}]}).status_code == 201
    text = client.http.get("/metrics").text
    assert 'saleday_http_requests_total{method="POST",route="/v1/orders",status="201"} 1.0' in text


@pytest.mark.parametrize("content_type, raw", [
    (None, b'{"lines": [{"sku": "sku-1", "qty": 1}]}'),
    ("text/plain", b'{"lines": [{"sku": "sku-1", "qty": 1}]}'),
    ("application/json", b""),
])
def test_a_body_not_sent_as_json_is_a_422(client, content_type, raw):
    """A body without a JSON content type, or no body at all, is a 422 problem naming the
    body, and nothing is placed."""
    client.sale(stock=1)
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.as_user("POST", "/v1/orders", "u-1", content=raw, headers=headers)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert r.json()["errors"][0]["loc"] == ["body"]
    assert client.http.get("/v1/skus/sku-1").json()["available"] == 1


def test_a_json_subtype_body_is_accepted(client):
    """application/<x>+json with parameters is JSON, as FastAPI takes it."""
    client.sale()
    r = client.as_user("POST", "/v1/orders", "u-1",
                       content=json.dumps({"lines": [{"sku": "sku-1", "qty": 1}]}),
                       headers={"Content-Type": "application/vnd.order+json; charset=utf-8"})
    assert r.status_code == 201, r.text


def test_body_errors_are_located_under_body():
    """A field that does not validate is reported at body.<path>, as FastAPI reports it."""
    from fastapi.exceptions import RequestValidationError

    with pytest.raises(RequestValidationError) as caught:
        body_of(OrderIn, "application/json", b'{"lines": [{"sku": "s", "qty": 0}]}')
    assert caught.value.errors()[0]["loc"] == ("body", "lines", 0, "qty")


@pytest.mark.parametrize("root_path, lane", [("", True), ("/shop", False)])
def test_the_lane_or_else_the_router_takes_the_order_to_the_same_route(shards, settings,
                                                                       root_path, lane):
    """The lane answers an order itself (FastAPI's per-route wrapping never runs); behind a
    proxy that sets a root_path it steps aside, and the app's router routes the order to
    the very route the lane serves, which answers it the same way."""
    from fastapi.testclient import TestClient

    from saleday.http import create_app
    from tests.http.conftest import Client

    routes = routes_orders.lean_routes()
    assert [(r.path, r.methods) for r in routes] == [("/v1/orders", {"POST"})]
    app = create_app(shards, settings=settings)
    seen = []

    class Seen:   # outermost: sees the scope the inner layers filled in
        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            await self.inner(scope, receive, send)
            if scope["type"] == "http":
                seen.append((scope.get("route"), "fastapi_inner_astack" in scope))

    app.add_middleware(Seen)
    with TestClient(app, root_path=root_path, raise_server_exceptions=False) as http:
        client = Client(http, settings)
        client.sale()
        seen.clear()
        r = client.as_user("POST", "/v1/orders", "u-1",
                           json={"lines": [{"sku": "sku-1", "qty": 1}]})
        assert r.status_code == 201 and r.json()["total_cents"] == 500
    assert seen == [(routes[0], not lane)]


def test_the_lane_answers_with_the_headers_and_body_the_router_would(shards, settings):
    """Given the same order placed through the lane and, under a root_path, through the
    router, then both answers carry the same header names in the same order (length,
    JSON type, Location), a Content-Length that is the body's, and a body that is the
    response model's own JSON serialization."""
    from fastapi.testclient import TestClient

    from saleday.http import create_app
    from tests.http.conftest import Client

    answers = []
    for root_path in ("", "/shop"):
        app = create_app(shards, settings=settings)
        with TestClient(app, root_path=root_path, raise_server_exceptions=False) as http:
            client = Client(http, settings)
            client.sale(f"sku-{len(answers)}")
            r = client.as_user("POST", "/v1/orders", "u-1",
                               json={"lines": [{"sku": f"sku-{len(answers)}", "qty": 1}]})
            assert r.status_code == 201, r.text
            answers.append(r)
    lane, router = answers
    names = [k for k, _ in lane.headers.multi_items()]
    assert names == [k for k, _ in router.headers.multi_items()]
    assert names == ["content-length", "content-type", "location"]
    assert lane.headers["content-type"] == router.headers["content-type"] == "application/json"
    for r in answers:
        assert int(r.headers["content-length"]) == len(r.content)
        assert r.content == OrderOut.model_validate_json(r.content).model_dump_json().encode()
        assert r.headers["location"] == f"/v1/orders/{r.json()['order_id']}"
