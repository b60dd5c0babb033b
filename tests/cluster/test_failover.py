"""`cluster.failover.Failover` with Ray's few functions stood in for (no Ray): promotion once
per generation, a fresh primary when the standby is dead too, the new standby placed apart
from the new primary, and the health check that replaces a dead standby."""

from __future__ import annotations

import pytest

from saleday.cluster import ray_api
from saleday.cluster.failover import Failover
from tests.helpers import wait_until


class Died(Exception):
    """Stands in for Ray's `ActorDiedError`."""


class Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        return lambda: self.fn(*args)


class Shard:
    """A shard actor as the failover sees it: status, promote; `dead` fails every call."""

    def __init__(self, name: str, *, standby: bool, node: str) -> None:
        self.name, self.standby, self.node = name, standby, node
        self.dead = False
        self.promotions = 0
        self.status = Method(self._status)
        self.promote = Method(self._promote)

    def _status(self):
        if self.dead:
            raise Died(self.name)
        return {"stream": "sku-000", "standby": self.standby, "node": self.node,
                "epoch": 1 + self.promotions}

    def _promote(self):
        if self.dead:
            raise Died(self.name)
        self.promotions += 1
        self.standby = False
        return self._status()


NODES = [{"node_id": n, "resources": {"saleday_shard": 100}} for n in ("n1", "n2")]


@pytest.fixture
def made(monkeypatch):
    """Every shard the failover makes, in order; Ray's functions stood in for."""
    shards: list[tuple[Shard, dict]] = []
    monkeypatch.setattr(ray_api, "get", lambda ref, timeout=None:
                        [r() for r in ref] if isinstance(ref, list) else ref())
    monkeypatch.setattr(ray_api, "alive_nodes", lambda: NODES)
    monkeypatch.setattr(ray_api, "node_affinity", lambda node, soft=True: ("on", node))
    monkeypatch.setattr(ray_api, "kill", lambda handle, no_restart=False: None)
    monkeypatch.setattr(ray_api, "actor_died_errors", lambda: (Died,))
    return shards


def failover(made: list, primary: Shard) -> Failover:
    def make_shard(*, kind, stream, name, standby, scheduling_strategy):
        node = scheduling_strategy[1] if scheduling_strategy else "n1"
        shard = Shard(name, standby=standby, node=node)
        made.append((shard, {"standby": standby, "strategy": scheduling_strategy}))
        return shard

    fo = Failover({"sku": [primary]}, make_shard, resource="saleday_shard", replace_after_s=0)
    fo.start("sku", 0, "sku-000", primary, "n1")
    return fo


def test_a_dead_primary_is_failed_over_to_its_standby_once(made):
    """Given a primary on n1 with its standby on n2, when it dies and two gateways report
    it, then the standby is promoted once, becomes the runtime's handle, and a new standby
    is started on n1 (apart from the new primary)."""
    primary = Shard("sku-000", standby=False, node="n1")
    fo = failover(made, primary)
    (standby, how), = made
    assert how == {"standby": True, "strategy": ("on", "n2")}
    primary.dead = True
    assert fo.fail_over("sku-000", 0) == (1, standby)
    assert fo.fail_over("sku-000", 0) == (1, standby)   # the second gateway to notice
    assert standby.promotions == 1 and fo.handles["sku"][0] is standby
    wait_until(lambda: len(made) == 2, timeout=10, what="a new standby")
    assert fo.standbys()["sku-000"] is made[1][0]
    fo.stop()
    assert [h for _, h in made[1:]] == [{"standby": True, "strategy": ("on", "n1")}]
    assert [f["how"] for f in fo.failovers] == ["standby"]


def test_without_a_live_standby_a_fresh_primary_takes_over(made):
    """When the primary and its standby are both dead, a fresh primary is started in its place."""
    primary = Shard("sku-000", standby=False, node="n1")
    fo = failover(made, primary)
    made[0][0].dead = True
    primary.dead = True
    generation, fresh = fo.fail_over("sku-000", 0)
    assert generation == 1 and fresh is made[1][0] and made[1][1]["standby"] is False
    assert [f["how"] for f in fo.failovers] == ["fresh"]
    fo.stop()


def test_the_health_check_replaces_a_dead_standby_only(made):
    """The health check leaves a live standby alone and starts a new one when it has died."""
    primary = Shard("sku-000", standby=False, node="n1")
    fo = failover(made, primary)
    assert fo.check() == [] and len(made) == 1
    made[0][0].dead = True
    assert fo.check() == ["sku-000"]
    assert len(made) == 2 and fo.standbys()["sku-000"] is made[1][0]
    fo.stop()
