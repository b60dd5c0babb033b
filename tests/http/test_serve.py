"""The HTTP API on Ray Serve: a local Ray (the session's shared one), the shards, the Serve
app on a free loopback port, an order placed over real HTTP and read back; and the Serve
config file."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.http.conftest import SECRETS, now_ms

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_serve_config_is_valid_and_not_starved():
    """deploy/serve_config.yaml passes Serve's own schema, builds from this package, and
    lets a replica work on far more than Serve's default of 5 requests at once."""
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((ROOT / "deploy" / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.import_path == "saleday.http.serve:build"
    (dep,) = app.deployments
    assert dep.name == "saleday-http" and dep.max_ongoing_requests >= 100
    assert "secret" not in (ROOT / "deploy" / "serve_config.yaml").read_text().split("applications:")[1].lower()


def test_a_replica_without_its_shards_says_which_to_start(monkeypatch):
    """A replica that finds no shard actor of its map refuses to start, naming the missing
    shard and what to run (the actors are looked up through ray_api; no Ray is needed)."""
    from saleday.cluster import ray_api
    from saleday.cluster.runtime import RuntimeConfig
    from saleday.http.serve import ShardsNotRunning, attach_gateway

    found = []
    monkeypatch.setattr(ray_api, "find_actor",
                        lambda name: found.append(name) or (object() if name == "sku-000" else None))
    with pytest.raises(ShardsNotRunning, match="no shard actor 'sku-001'.*run `saleday serve`"):
        attach_gateway(RuntimeConfig(shards={"sku": 2}))
    assert found == ["sku-000", "sku-001"]


def test_a_replica_told_of_standbys_without_a_failover_actor_says_what_to_start(monkeypatch):
    """A replica whose settings say the shards have standbys, finding no failover actor,
    refuses to start and says to run `saleday serve --standbys 1` (no Ray needed)."""
    from saleday.cluster import ray_api
    from saleday.cluster.runtime import RuntimeConfig
    from saleday.http.serve import ShardsNotRunning, attach_gateway

    monkeypatch.setattr(ray_api, "find_actor", lambda name: None if name == "saleday-failover"
                        else object())
    with pytest.raises(ShardsNotRunning, match="no failover actor.*serve --standbys 1"):
        attach_gateway(RuntimeConfig(shards={"sku": 1}, standbys=1))


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_an_order_over_real_http_on_serve(ray_instance, tmp_path):
    """With the shards on a local Ray and the Serve app on a loopback port, an order placed
    over HTTP is answered 201 and reads back the same, its stock change reaches a socket
    through Serve's proxy, and the war room answers; Serve is shut down after (the session's
    Ray stays up for the next module)."""
    from ray import serve

    from saleday.cluster.runtime import Runtime, RuntimeConfig
    from saleday.http.auth import issue_token
    from saleday.http.serve import run_local
    from saleday.http.settings import HttpSettings

    runtime = None
    try:
        runtime = Runtime(RuntimeConfig(
            store_url=f"sqlite:///{tmp_path}/events.db",
            shards={"sku": 1, "session": 1, "order": 1, "campaign": 1, "team": 1})).start()
        settings = HttpSettings(**SECRETS, port=free_port())
        url = run_local(runtime.config, settings)
        assert url.startswith("http://127.0.0.1:")
        op = {"Authorization": f"Bearer {SECRETS['operator_token']}"}
        user = {"Authorization": f"Bearer {issue_token('u-1', settings)}"}
        with httpx.Client(base_url=url, timeout=30) as http:
            _ready_with_a_sale(http, op, "sku-1")
            placed = http.post("/v1/orders", json={"lines": [{"sku": "sku-1", "qty": 2}]},
                               headers={**user, "Idempotency-Key": "k1"})
            assert placed.status_code == 201, placed.text
            assert placed.json()["total_cents"] == 1400
            read = http.get(placed.headers["Location"], headers=user)
            assert read.status_code == 200 and read.json() == placed.json()
            assert http.get("/v1/skus/sku-1").json()["reserved"] == 2
            assert http.get("/v1/warroom", headers=op).json()["orders"]["orders_placed"] == 1
        assert _pushed(url, "sku-1")["reserved"] == 2
    finally:
        serve.shutdown()
        if runtime is not None:
            runtime.stop(kill_shards=True)


def _ready_with_a_sale(http: httpx.Client, op: dict, sku: str) -> None:
    """Wait until the app is ready, then put 5 units of `sku` on sale at 7.00 for a minute."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if http.get("/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the Serve app never got ready"
        time.sleep(0.2)
    now = now_ms()
    assert http.post(f"/v1/admin/skus/{sku}/stock", json={"qty": 5}, headers=op).status_code == 200
    assert http.put(f"/v1/admin/skus/{sku}/sale", headers=op, json={
        "tiers": [{"units": 0, "price_cents": 700}], "start_ms": now - 1000,
        "end_ms": now + 60_000}).status_code == 200


def _pushed(url: str, sku: str) -> dict:
    """The first state of `sku` with a reservation that the stock socket sends."""
    import json

    from websockets.sync.client import connect

    with connect(url.replace("http://", "ws://") + f"/v1/stock/live?sku={sku}",
                 open_timeout=10) as ws:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = json.loads(ws.recv(timeout=20))
            if m["type"] == "stock" and m["reserved"]:
                return m
    raise AssertionError("no stock change came through Serve")


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_a_replica_fails_a_dead_shard_over_to_its_standby(ray_instance, tmp_path):
    """Issue 13 with issue 17's standbys: with `standbys=1`, the Serve replica's gateway
    finds the SKU shard's primary killed (SIGKILL) on the next order and promotes its
    standby through the runtime's failover actor: the order is placed (201), the one placed
    before reads back with its stock still held, the runtime sees the promoted primary,
    and a replica started after the failover attaches to it."""
    import os
    import signal

    from ray import serve

    from saleday.cluster import ray_api
    from saleday.cluster.runtime import Runtime, RuntimeConfig
    from saleday.http.auth import issue_token
    from saleday.http.serve import attach_gateway, run_local
    from saleday.http.settings import HttpSettings

    runtime = None
    try:
        # tick_s=0: the runtime's own gateway never calls the shard, so the failover
        # below can only come from the replica's.
        runtime = Runtime(RuntimeConfig(store_url=f"sqlite:///{tmp_path}/events.db",
                                        shards={"sku": 1, "session": 1, "order": 1,
                                                "campaign": 1, "team": 1},
                                        standbys=1, tick_s=0)).start()
        settings = HttpSettings(**SECRETS, port=free_port())
        url = run_local(runtime.config, settings, views=False, stock=False)
        op = {"Authorization": f"Bearer {SECRETS['operator_token']}"}
        user = {"Authorization": f"Bearer {issue_token('u-1', settings)}"}
        with httpx.Client(base_url=url, timeout=60) as http:
            _ready_with_a_sale(http, op, "sku-1")

            def order(key: str) -> httpx.Response:
                return http.post("/v1/orders", json={"lines": [{"sku": "sku-1", "qty": 2}]},
                                 headers={**user, "Idempotency-Key": key})

            first = order("k1")
            assert first.status_code == 201, first.text
            old = next(s for s in runtime.status() if s["stream"] == "sku-000")
            os.kill(old["pid"], signal.SIGKILL)
            second = order("k2")
            assert second.status_code == 201, second.text
            assert http.get(first.headers["Location"], headers=user).json() == first.json()
            assert http.get("/v1/skus/sku-1").json()["reserved"] == 4
        assert [(f["stream"], f["how"]) for f in runtime.failover.failovers] == [("sku-000", "standby")], runtime.failover.failovers
        # The runtime's handles follow the replica's failover.
        new = next(s for s in runtime.status() if s["stream"] == "sku-000")
        assert new["pid"] != old["pid"] and new["standby"] is False and new["epoch"] > old["epoch"]
        late = attach_gateway(runtime.config)   # a replica started after the failover
        (lane,) = late.lanes["sku"]
        assert lane.generation == new["epoch"]   # a generation is its primary's writer epoch
        assert ray_api.get(lane.handle.status.remote(), timeout=30)["pid"] == new["pid"]
    finally:
        serve.shutdown()
        if runtime is not None:
            runtime.stop(kill_shards=True)
