"""Every Ray call goes through `saleday.cluster.ray_api`: importing the runtime does not
import Ray, and the code that drives actors works with plain objects standing in for the
actor handles and for `ray_api`'s few functions, with no Ray started."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from saleday.cluster import projection_actors, ray_api
from saleday.cluster.runtime import Runtime, RuntimeConfig


class Call:
    """A stand-in for an actor method: `.remote(*args)` answers at once with `value`."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def remote(self, *args: Any) -> Any:
        return self.value


@pytest.fixture
def plain_ray(monkeypatch):
    """`ray_api` with its getting, killing and finding done on plain objects; returns the
    killed handles and the names still taken by live actors."""
    seen = SimpleNamespace(killed=[], live=set())

    def kill(handle: Any, *, no_restart: bool = False) -> None:
        seen.killed.append((handle.name, no_restart))
        seen.live.discard(handle.name)

    monkeypatch.setattr(ray_api, "get", lambda refs, timeout=None: refs)
    monkeypatch.setattr(ray_api, "kill", kill)
    monkeypatch.setattr(ray_api, "find_actor",
                        lambda name: SimpleNamespace(name=name) if name in seen.live else None)
    return seen


def test_importing_the_runtime_does_not_import_ray():
    """`saleday.cluster`, its runtime and its projection workers load without loading Ray
    (ray_api imports it inside the functions that call it)."""
    code = ("import sys, saleday.cluster, saleday.cluster.runtime, "
            "saleday.cluster.projection_actors, saleday.cluster.gateway; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stopping_a_runtime_kills_its_shards_for_good_and_waits_for_their_names(plain_ray):
    """`Runtime.stop(kill_shards=True)` kills every shard without restart and returns once
    no live actor carries a shard's name, so a new runtime can start shards of those names."""
    rt = Runtime(RuntimeConfig(shards={"sku": 2, "order": 1}))
    rt.handles = {kind: [SimpleNamespace(name=m.stream(i)) for i in range(m.shards)]
                  for kind, m in rt.maps.items()}
    plain_ray.live.update({"sku-000", "sku-001", "order-000"})
    rt.stop(kill_shards=True)
    assert sorted(plain_ray.killed) == [("order-000", True), ("sku-000", True), ("sku-001", True)]
    assert rt.handles == {} and plain_ray.live == set()


def test_a_split_projection_is_merged_measured_and_stopped_through_its_handles(plain_ray):
    """The rows of two parts merge into one view, their lags add up, and stopping them
    stops each part's thread and then kills its actor for good."""
    stopped: list[str] = []
    parts = [SimpleNamespace(name=f"part-{i}", rows=Call({"stock": [("sku", sku, [5, 0, 0, False, 0])]}),
                             lag=Call({"total": lag}),
                             stop=SimpleNamespace(remote=lambda i=i: stopped.append(f"part-{i}")))
             for i, (sku, lag) in enumerate([("a", 3), ("b", 4)])]
    views = projection_actors.merged_views(parts)
    assert set(views["stock"].t["sku"]) == {"a", "b"}
    assert projection_actors.total_lag(parts) == 7
    projection_actors.stop_workers(parts)
    assert stopped == ["part-0", "part-1"]
    assert plain_ray.killed == [("part-0", True), ("part-1", True)]
