"""Behaviour over HTTP: a batch of views recorded once however often it is retried, the
caller's own windows, and the experiments view for the operator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from saleday.http.views import ViewReader
from saleday.projections.checkpoint import open_checkpoints
from tests.http.conftest import make_client, now_ms


@pytest.fixture
def viewing(shards, settings, tmp_path) -> Iterator:
    reader = ViewReader(shards.store, open_checkpoints(f"sqlite:///{tmp_path}/projections.db"))
    yield from make_client(shards, settings, views=reader)


def batch(at: int, *skus: str) -> dict:
    return {"events": [{"action": "view", "sku": s, "category": "C1", "at_ms": at + i}
                       for i, s in enumerate(skus)]}


def test_a_batch_of_views_is_recorded_once_and_shows_in_the_callers_windows(viewing):
    """Three views are three events; the same batch again under its key records none; the
    caller's 5-minute window holds the three products, another user's holds nothing."""
    client = viewing
    at = now_ms() - 1000
    key = {"Idempotency-Key": "k-1"}
    r = client.as_user("POST", "/v1/behaviour", "me", json=batch(at, "P1", "P2", "P1"), headers=key)
    assert r.status_code == 200 and r.json() == {"recorded": 3}
    again = client.as_user("POST", "/v1/behaviour", "me", json=batch(at, "P1", "P2", "P1"), headers=key)
    assert again.status_code == 200 and again.json() == {"recorded": 0}
    mine = client.as_user("GET", "/v1/views/windows/browse-5m", "me").json()["data"]
    assert [w["products"] for w in mine] in ([["P1", "P2"]], [["P1"], ["P2"]], [["P1", "P2"], ["P1"]])
    assert sum(w["views"] for w in mine) == 3
    assert client.as_user("GET", "/v1/views/windows/browse-5m", "you").json()["data"] == []
    assert client.as_user("GET", "/v1/views/windows/weekly", "me").status_code == 404


def test_behaviour_from_the_future_or_too_many_at_once_is_refused(client):
    """An event time after the server's clock is a 422 in words; so is a batch over 100."""
    r = client.as_user("POST", "/v1/behaviour", "me", json=batch(now_ms() + 3_600_000, "P1"))
    assert r.status_code == 422 and "after now" in r.text
    big = client.as_user("POST", "/v1/behaviour", "me", json=batch(now_ms() - 10, *["P1"] * 101))
    assert big.status_code == 422


def test_the_experiments_view_is_the_operators(viewing):
    """/v1/views/experiments needs the operator token and lists the log's experiments."""
    client = viewing
    assert client.as_user("GET", "/v1/views/experiments", "me").status_code == 401
    r = client.http.get("/v1/views/experiments", headers=client.op())
    assert r.status_code == 200 and r.json() == {"view": "experiments", "data": []}
