"""The command line of hot standby (cluster/failover.py), without Ray: `saleday status` after
a failover (Ray's few functions stood in for): the dead old primary is `replaced`, the
promoted standby serves its stream as a primary, a standby a few events behind is healthy,
a dead standby is not; and the options `serve` and `bench failover` refuse."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from saleday.actors.host import Request, ShardHost
from saleday.actors.sku import AddStock, sku_decider
from saleday.cli import ops
from saleday.cli.main import app
from saleday.cluster import ray_api
from saleday.events import open_store


class Ref:
    def __init__(self, value):
        self.value = value


class Actor:
    def __init__(self, said):
        self.status = self
        self.said = said

    def remote(self):
        return Ref(self.said)


def stand_in_ray(monkeypatch, actors: dict[str, tuple[str, dict | None]]) -> None:
    """name -> (Ray state, what its `status()` says, None if it cannot answer)."""
    monkeypatch.setattr(ray_api, "where", lambda names=None: {
        name: {"class": "ShardActor", "state": state, "node_id": "n1", "node_ip": "127.0.0.1",
               "pid": 1, "restarts": 0, "detached": False, "started": 1}
        for name, (state, _) in actors.items()})
    monkeypatch.setattr(ray_api, "find_actor", lambda name: Actor(actors[name][1])
                        if actors[name][1] is not None else None)
    monkeypatch.setattr(ray_api, "wait", lambda refs, timeout=None: refs)
    monkeypatch.setattr(ray_api, "get", lambda ref, timeout=None: ref.value)


def said(version: int, *, standby: bool, epoch: int) -> dict:
    return {"stream": "sku-000", "kind": "sku", "version": version, "epoch": epoch,
            "standby": standby, "fenced": False, "pid": 2, "store": "sqlite"}


@pytest.fixture
def store_url(tmp_path):
    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    host = ShardHost(decider=sku_decider, store=store, stream="sku-000")
    host.handle([Request(f"c{i}", AddStock(sku="a", qty=1, now=1)) for i in range(3)])
    store.close()
    return url   # sku-000 is at version 3


def test_after_a_failover_the_old_primary_is_replaced_and_the_pair_is_healthy(
        monkeypatch, store_url):
    """After a failover, status shows the dead old primary as replaced, the promoted standby as a
    healthy primary, and the new standby's lag."""
    stand_in_ray(monkeypatch, {
        "sku-000": ("DEAD", None),
        "sku-000.standby-ab12-1": ("ALIVE", said(3, standby=False, epoch=2)),
        "sku-000.standby-ab12-2": ("ALIVE", said(2, standby=True, epoch=0)),
    })
    rows = {r["stream"]: r for r in ops.shard_rows(store_url)}
    assert {n: (r["role"], r["health"], r["lag"]) for n, r in rows.items()} == {
        "sku-000": ("primary", "replaced", None),
        "sku-000.standby-ab12-1": ("primary", "ok", 0),
        "sku-000.standby-ab12-2": ("standby", "ok", 1),
    }


def test_a_dead_primary_with_nobody_serving_its_stream_is_dead(monkeypatch, store_url):
    """A dead primary whose standby is dead too shows as dead, and so does the standby."""
    stand_in_ray(monkeypatch, {
        "sku-000": ("DEAD", None),
        "sku-000.standby-ab12-1": ("DEAD", None),
    })
    rows = {r["stream"]: r for r in ops.shard_rows(store_url)}
    assert {n: (r["role"], r["health"]) for n, r in rows.items()} == {
        "sku-000": ("primary", "dead"), "sku-000.standby-ab12-1": ("standby", "dead")}


@pytest.mark.parametrize("args, says", [
    (["bench", "failover", "--kill", "nicely"], "--kill 'nicely'"),
    (["serve", "--standbys", "2"], "--standbys"),
])
def test_standby_options_refuse_what_is_not_there_before_starting_anything(args, says):
    """An unknown kill mode or more than one standby exits 2 with a message and no traceback."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and says in result.output, result.output
    assert "Traceback" not in result.output
