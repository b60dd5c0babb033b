"""Fixtures of the HTTP tests: the app over in-process shards (`LocalShards`, autoflush) on a
memory log, a client, users' tokens and a sale that is open."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from saleday.cluster.local import LocalShards
from saleday.events import open_store
from saleday.http import HttpSettings, create_app
from saleday.http.auth import issue_token

KINDS = {"sku": 2, "session": 2, "order": 2, "campaign": 1, "team": 1}
SECRETS = {"jwt_secret": "j" * 40, "webhook_secret": "w" * 40, "operator_token": "o" * 40}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def settings() -> HttpSettings:
    return HttpSettings(**SECRETS, stores=[{"store_id": "store-1", "lat": 31.2304,
                                            "lon": 121.4737, "campaign": "geo", "radius_m": 200}])


@pytest.fixture
def shards() -> LocalShards:
    return LocalShards(open_store(f"memory://http-{uuid.uuid4().hex}"), KINDS, autoflush=True,
                       clock=now_ms)


class Client:
    """A TestClient with helpers for tokens and the operator."""

    def __init__(self, client: TestClient, settings: HttpSettings) -> None:
        self.http = client
        self.settings = settings

    def auth(self, user: str, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(user, self.settings)}", **headers}

    def op(self, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {SECRETS['operator_token']}", **headers}

    def as_user(self, method: str, url: str, user: str, **kw: Any) -> Any:
        headers = self.auth(user, **kw.pop("headers", {}))
        return self.http.request(method, url, headers=headers, **kw)

    def sale(self, sku: str = "sku-1", *, stock: int = 10, tiers=((2, 500), (0, 1000)),
             limit: int = 0) -> None:
        """Stock `sku` and open its sale now (for a day)."""
        now = now_ms()
        r = self.http.post(f"/v1/admin/skus/{sku}/stock", json={"qty": stock}, headers=self.op())
        assert r.status_code == 200, r.text
        r = self.http.put(f"/v1/admin/skus/{sku}/sale", headers=self.op(), json={
            "tiers": [{"units": u, "price_cents": p} for u, p in tiers],
            "per_user_limit": limit, "start_ms": now - 1000, "end_ms": now + 86_400_000})
        assert r.status_code == 200, r.text


def make_client(gateway: Any, settings: HttpSettings, **kw: Any) -> Iterator[Client]:
    with TestClient(create_app(gateway, settings=settings, **kw),
                    raise_server_exceptions=False) as http:
        yield Client(http, settings)


@pytest.fixture
def client(shards: LocalShards, settings: HttpSettings) -> Iterator[Client]:
    yield from make_client(shards, settings)
