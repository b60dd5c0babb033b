"""A standby shard host (no Ray): it follows the primary without fencing it, refuses work
until promoted, and once promoted serves with the primary's state, dedup and timers while
the old primary is fenced."""

from __future__ import annotations

import pytest

from saleday.actors.host import Accepted, Request, ShardFenced, Unavailable
from saleday.actors.sku import ReserveStock, SoldOut
from saleday.cluster.failover import standby_node
from saleday.events import open_store
from tests.actors.test_host import T0, Clock, host, reserve, stocked


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/events.db")
    yield s
    s.close()


def test_a_standby_follows_the_primary_without_fencing_it(store):
    """Given a serving primary, when a standby starts and follows, then the primary still
    commits (no epoch was taken) and the standby holds the same state and version."""
    primary = host(store)
    stocked(primary, qty=3)
    standby = host(store, standby=True)
    (first,) = primary.handle([Request("c1", reserve("r1", 2))])
    assert isinstance(first, Accepted)
    assert standby.follow() == 1
    assert (standby.version, standby.epoch) == (primary.version, 0)
    assert standby.state_of("a") == primary.state_of("a")
    assert standby.status()["standby"] is True


def test_a_standby_refuses_batches_until_promoted(store):
    """Given a standby, when a batch reaches it, then it is answered Unavailable and
    nothing is appended."""
    primary = host(store)
    stocked(primary)
    standby = host(store, standby=True)
    replies = standby.handle([Request("c1", reserve("r1"))])
    assert [type(r) for r in replies] == [Unavailable]
    assert store.head("sku-000").version == primary.version


def test_a_promoted_standby_serves_dedups_and_fences_the_old_primary(store):
    """Given a standby that has not yet seen the primary's last commit, when it is
    promoted, then it applies that commit, answers a retry of it from dedup (no second
    effect), serves new commands, and the old primary is fenced."""
    primary = host(store)
    stocked(primary, qty=3)
    standby = host(store, standby=True)
    (last,) = primary.handle([Request("c1", reserve("r1", 2))])   # not followed yet
    old_epoch = primary.epoch
    epoch = standby.promote()
    assert epoch > old_epoch and standby.promote() == epoch   # idempotent
    retried, sold_out, fresh = standby.handle([
        Request("c1", reserve("r1", 2)), Request("c2", reserve("r2", 2)),
        Request("c3", reserve("r3", 1))])
    assert isinstance(retried, Accepted) and retried.duplicate
    assert (retried.first_version, retried.last_version) == (last.first_version, last.last_version)
    assert sold_out == SoldOut(sku="a", requested=2, available=1)
    assert isinstance(fresh, Accepted)
    with pytest.raises(ShardFenced):
        primary.handle([Request("zombie", reserve("rz", 1))])
    ids = [e.command_id for e in store.read("sku-000")]
    assert ids.count("c1") == 1 and "zombie" not in ids


def test_a_promoted_standby_expires_what_the_primary_held(store):
    """Given a reservation held on the primary, when the standby is promoted after its
    deadline, then the promoted host's timers expire it (they were rebuilt on promotion)."""
    clock = Clock()
    primary = host(store, clock)
    stocked(primary, qty=1)
    primary.handle([Request("c1", reserve("r1", 1, deadline=T0 + 1_000))])
    standby = host(store, clock, standby=True)
    standby.follow()
    standby.promote()
    clock.now = T0 + 2_000
    assert standby.tick() == 1
    (again,) = standby.handle([Request("c2", ReserveStock(reservation_id="r2", user="u2", sku="a",
                                                          qty=1, now=clock.now,
                                                          deadline=clock.now + 60_000))])
    assert isinstance(again, Accepted)


NODES = [{"node_id": "head", "resources": {"CPU": 0}},
         {"node_id": "n1", "resources": {"CPU": 1, "saleday_shard": 100}},
         {"node_id": "n2", "resources": {"CPU": 1, "saleday_shard": 100}}]


def test_a_standby_goes_to_another_node_than_its_primary():
    """Placement: never the primary's node when another offers the shard resource; the
    same stream always gets the same choice; without another node, no constraint."""
    for primary in ("n1", "n2"):
        for stream in ("sku-000", "sku-001", "sku-002", "order-000"):
            chosen = standby_node(stream, primary, NODES, "saleday_shard")
            assert chosen in {"n1", "n2"} - {primary}
    assert standby_node("sku-000", "n1", NODES) in {"head", "n2"}
    assert standby_node("sku-000", "n1", NODES[:2], "saleday_shard") is None
    assert standby_node("sku-000", None, NODES[1:2]) == "n1"


def test_standbys_of_many_shards_spread_over_the_other_nodes():
    """The standbys of many shards whose primaries share a node are spread over all the other
    nodes."""
    nodes = [{"node_id": f"n{i}", "resources": {}} for i in range(4)]
    chosen = {standby_node(f"sku-{i:03d}", "n0", nodes) for i in range(32)}
    assert chosen == {"n1", "n2", "n3"}
