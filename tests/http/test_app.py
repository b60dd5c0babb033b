"""The app as a whole: authentication, the rate limit, load shedding and outages as 503s,
the catch-all 500, health, readiness and the Prometheus metrics."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from saleday.actors.host import Busy, Unavailable
from saleday.actors.order import RecordPayment, StartCheckout
from saleday.http import HttpSettings, create_app
from saleday.http.auth import issue_token
from saleday.http.settings import MissingSecrets
from saleday.http.webhook import sign
from tests.http.conftest import SECRETS, make_client

PROBLEM = "application/problem+json"
ORDER = {"lines": [{"sku": "sku-1", "qty": 1}]}


class Failing:
    """The gateway's API over real shards, answering `reply` (or raising) for checkouts."""

    def __init__(self, inner, reply=None, raises=None, on=StartCheckout) -> None:
        self.inner, self.reply, self.raises, self.on = inner, reply, raises, on
        self.maps = inner.maps

    async def submit_retrying_busy(self, command, *, command_id, busy_retries=50, **ids):
        if isinstance(command, self.on) and (self.reply or self.raises):
            if self.raises:
                raise self.raises
            return self.reply
        return await self.inner.submit_retrying_busy(command, command_id=command_id, **ids)

    async def submit(self, command, *, command_id=None, **ids):
        return await self.inner.submit(command, command_id=command_id, **ids)

    async def query(self, kind, entity):
        if self.raises and kind == "order":
            raise self.raises
        return await self.inner.query(kind, entity)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_no_token_or_a_bad_one_is_a_401(client, settings):
    """A user route without a token, with a token signed by another secret, an expired one,
    or one for another audience is a 401 problem asking for a bearer token."""
    other = settings.model_copy(update={"jwt_secret": settings.operator_token})
    now = int(time.time())
    tokens = [None, "not-a-jwt", issue_token("u", other),
              issue_token("u", settings, ttl_s=1, now_s=now - 100),
              jwt.encode({"sub": "u", "iss": "saleday", "aud": "elsewhere", "exp": now + 60},
                         SECRETS["jwt_secret"], algorithm="HS256"),
              jwt.encode({"sub": "u", "iss": "saleday", "aud": "saleday-api", "exp": now + 60},
                         SECRETS["jwt_secret"], algorithm="HS384")]
    for token in tokens:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = client.http.post("/v1/orders", json=ORDER, headers=headers)
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM, token
        assert r.headers["WWW-Authenticate"] == "Bearer"


def test_admin_routes_need_the_operator_token(client):
    """Admin routes refuse a user's token and no token with a 401."""
    for headers in ({}, client.auth("u")):
        r = client.http.post("/v1/admin/skus/s/stock", json={"qty": 1}, headers=headers)
        assert r.status_code == 401
    assert client.http.post("/v1/admin/skus/s/stock", json={"qty": 1},
                            headers=client.op()).status_code == 200


def test_past_the_rate_limit_a_user_gets_429_with_retry_after(shards):
    """A user past their bucket gets 429 with Retry-After; another user is not affected."""
    settings = HttpSettings(**SECRETS, rate_per_s=0.01, rate_burst=2)
    for client in make_client(shards, settings):
        codes = [client.as_user("GET", "/v1/coupons", "greedy").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = client.as_user("GET", "/v1/coupons", "greedy")
        assert r.status_code == 429 and r.headers["content-type"] == PROBLEM
        assert int(r.headers["Retry-After"]) >= 1
        assert client.as_user("GET", "/v1/coupons", "patient").status_code == 200


@pytest.mark.parametrize("reply, code", [(Busy(shard="order-000"), "busy"),
                                         (Unavailable(reason="store down"), "unavailable")])
def test_load_shedding_and_outages_are_503_with_retry_after(shards, settings, reply, code):
    """A shard shedding load (Busy) or out of reach (Unavailable) is a 503 with Retry-After,
    and nothing of the order is held."""
    for client in make_client(Failing(shards, reply), settings):
        client.sale()
        r = client.as_user("POST", "/v1/orders", "u", json=ORDER)
        assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith(f":{code}") and r.headers["Retry-After"] == "1"
        assert "store down" not in r.text
        assert client.http.get("/v1/skus/sku-1").json()["reserved"] == 0


def test_a_callback_not_decided_is_503_and_acted_on_when_retried(shards, settings):
    """A payment callback whose shard is unavailable is a 503 (the provider retries), and the
    very same signed request sent again once the shard is back pays the order."""
    gateway = Failing(shards, Unavailable(reason="down"), on=RecordPayment)
    for client in make_client(gateway, settings):
        client.sale()
        order = client.as_user("POST", "/v1/orders", "u", json=ORDER).json()
        raw = json.dumps({"id": "e", "type": "payment.succeeded", "order_id": order["order_id"],
                          "payment_id": "p", "amount_cents": order["total_cents"]}).encode()
        headers = {"Content-Type": "application/json",
                   "Saleday-Signature": sign(SECRETS["webhook_secret"], int(time.time()), raw)}
        first = client.http.post("/v1/payments/callback", content=raw, headers=headers)
        assert first.status_code == 503 and first.headers["Retry-After"] == "1"
        gateway.reply = None
        again = client.http.post("/v1/payments/callback", content=raw, headers=headers)
        assert again.status_code == 200 and again.json()["status"] == "paid"


def test_a_bug_is_a_500_problem_that_names_no_internals(shards, settings):
    """An exception no handler expects is logged and answered as a problem 500 without
    its message or traceback."""
    for client in make_client(Failing(shards, raises=RuntimeError("secret internals")), settings):
        r = client.as_user("POST", "/v1/orders", "u", json=ORDER)
        assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
        assert "secret internals" not in r.text and r.json()["type"].endswith(":internal_error")


def test_a_shard_that_cannot_be_read_is_a_503(shards, settings):
    """A read that times out at the shard is a 503 `unavailable` with Retry-After, not a 500."""
    for client in make_client(Failing(shards, raises=TimeoutError()), settings):
        r = client.as_user("GET", "/v1/orders/o-1", "u")
        assert r.status_code == 503 and r.json()["type"].endswith(":unavailable")
        assert r.headers["Retry-After"] == "1"


@pytest.mark.parametrize("path", ["/v1/orders", "/v1/sessions"])
def test_a_body_past_the_limit_is_a_413_problem_whether_announced_or_streamed(shards, path):
    """A body larger than max_body_bytes is refused 413 as a problem: by its Content-Length
    before it is read, or as it streams in without one; a body within it is decided."""
    settings = HttpSettings(**SECRETS, max_body_bytes=2048)
    for c in make_client(shards, settings):
        headers = c.auth("u1", **{"Content-Type": "application/json"})
        big = json.dumps({"lines": [{"sku": "s" * 3000, "qty": 1}]}).encode()
        announced = c.http.post(path, content=big, headers=headers)
        streamed = c.http.post(path, content=iter([big[:1500], big[1500:]]), headers=headers)
        for r in (announced, streamed):
            assert r.status_code == 413, r.text
            assert r.headers["content-type"] == PROBLEM
            assert r.json()["type"].endswith(":too_large")
        small = c.http.post(path, content=json.dumps(ORDER if path == "/v1/orders" else
                                                     {"source": "app"}), headers=headers)
        assert small.status_code not in (413, 500), small.text
        metrics = c.http.get("/metrics").text
        assert 'status="413"' in metrics


def test_unknown_routes_and_methods_are_problems(client):
    """An unknown path is a 404 problem, a wrong method a 405 problem."""
    r = client.http.get("/v1/nothing")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = client.http.delete("/v1/orders")
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM


def test_health_and_readiness(client):
    """/healthz answers; /readyz reads every shard of every kind."""
    assert client.http.get("/healthz").json() == {"status": "ok", "shards": {}}
    r = client.http.get("/readyz")
    assert r.status_code == 200 and r.json()["shards"] == {"sku": 2, "session": 2, "order": 2,
                                                            "campaign": 1, "team": 1}


def test_metrics_are_prometheus_text_by_route_and_status(client):
    """/metrics parses as Prometheus text and counts requests by route template and status,
    with a latency histogram."""
    client.sale()
    client.as_user("GET", "/v1/orders/o-x", "u")
    client.as_user("GET", "/v1/orders/o-y", "u")
    r = client.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    counted = {(s.labels["route"], s.labels["status"]): s.value
               for s in families["saleday_http_requests"].samples if s.name.endswith("_total")}
    assert counted[("/v1/orders/{order_id}", "404")] == 2
    assert counted[("/v1/admin/skus/{sku}/sale", "200")] == 1
    assert "saleday_http_request_duration_seconds" in families


def test_the_app_refuses_to_start_without_secrets(shards):
    """Creating the app with a secret missing raises, naming the variable to set."""
    with pytest.raises(MissingSecrets, match="SALEDAY_HTTP_WEBHOOK_SECRET"):
        create_app(shards, settings=HttpSettings(jwt_secret="j" * 40, operator_token="o" * 40))


def test_the_heap_alive_at_start_up_is_frozen_while_the_app_runs(shards, settings):
    """Given an app, while it runs (its lifespan started) the objects alive at start-up,
    the app among them, are out of the collector's generations (gc.freeze), and after its
    shutdown they are back in them."""
    import gc

    from fastapi.testclient import TestClient

    # Given nothing frozen: the freeze is the process's, and another app's lifespan may be
    # open in this one (schemathesis keeps the fuzz test's app started from its import on).
    gc.unfreeze()
    app = create_app(shards, settings=settings)
    assert gc.get_freeze_count() == 0
    with TestClient(app) as http:
        assert gc.get_freeze_count() > 0
        assert not any(o is app.router for o in gc.get_objects(generation=2))
        assert http.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == 0
