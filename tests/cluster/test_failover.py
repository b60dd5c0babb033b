"""`cluster.failover.Failover` with Ray's few functions stood in for (no Ray): promotion once
per generation (a primary's writer epoch), a fresh primary when the standby is dead too,
the new standby placed apart from the new primary, the health check that replaces a dead
standby, and a restarted failover actor adopting the shards anew."""

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


EPOCHS = {"last": 0}
"""The log's writer epochs (one counter is enough here): a primary takes the next one when
it starts, a standby when it is promoted."""


def next_epoch() -> int:
    EPOCHS["last"] += 1
    return EPOCHS["last"]


class Shard:
    """A shard actor as the failover sees it: status, promote; `dead` fails every call."""

    def __init__(self, name: str, *, standby: bool, node: str) -> None:
        self.name, self.standby, self.node = name, standby, node
        self.dead = False
        self.promotions = 0
        self.epoch = 0 if standby else next_epoch()
        self.status = Method(self._status)
        self.promote = Method(self._promote)

    def _status(self):
        if self.dead:
            raise Died(self.name)
        return {"stream": "sku-000", "standby": self.standby, "node": self.node,
                "epoch": self.epoch, "fenced": False}

    def _promote(self):
        if self.dead:
            raise Died(self.name)
        self.promotions += 1
        self.standby = False
        self.epoch = next_epoch()
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
    monkeypatch.setattr(ray_api, "wait", lambda refs, timeout=None: list(refs))
    # The failover's shards are detached and named: found by name while they live.
    monkeypatch.setattr(ray_api, "named_actors", lambda prefix: sorted(
        shard.name for shard, _ in shards if shard.name.startswith(prefix) and not shard.dead))
    return shards


def by_name(made: list, first: dict):
    """`ray_api.find_actor` over the first primaries and the live shards the failover made."""
    def find(name):
        live = {shard.name: shard for shard, _ in made if not shard.dead}
        return first.get(name) or live.get(name)
    return find


def failover(made: list, primary: Shard) -> Failover:
    def make_shard(*, kind, stream, name, standby, scheduling_strategy):
        node = scheduling_strategy[1] if scheduling_strategy else "n1"
        shard = Shard(name, standby=standby, node=node)
        made.append((shard, {"standby": standby, "strategy": scheduling_strategy}))
        return shard

    fo = Failover({"sku": [primary]}, make_shard, resource="saleday_shard", replace_after_s=0)
    fo.start("sku", 0, "sku-000", primary, "n1", primary.epoch)
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
    assert fo.fail_over("sku-000", primary.epoch) == (standby.epoch, standby)
    assert fo.fail_over("sku-000", primary.epoch) == (standby.epoch, standby)   # a second gateway
    assert standby.promotions == 1 and fo.handles["sku"][0] is standby
    assert standby.epoch > primary.epoch
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
    generation, fresh = fo.fail_over("sku-000", primary.epoch)
    assert fresh is made[1][0] and made[1][1]["standby"] is False
    assert generation == fresh.epoch > primary.epoch
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


class Local:
    """An actor handle over an object in this process: `handle.method.remote(...)`."""

    def __init__(self, obj) -> None:
        self.obj = obj

    def __getattr__(self, name):
        return Method(getattr(self.obj, name))


def test_a_failover_another_process_did_reaches_the_runtimes_handles_and_log(made, monkeypatch):
    """Given the runtime's failover actor (`FailoverActor`, here in this process) and a
    second gateway's view of it (an HTTP replica's `SharedFailover`), when the replica fails
    the dead primary over, then the runtime's handles follow at its next check, which logs
    the failover once; the replica and a late reader see the new generation."""
    from saleday.cluster import failover_actor as failover_module
    from saleday.cluster.failover_actor import FailoverActor, SharedFailover

    def make_shard(*, kind, stream, name, standby, scheduling_strategy):
        shard = Shard(name, standby=standby, node="n2" if standby else "n1")
        made.append((shard, {"standby": standby}))
        return shard

    primary = Shard("sku-000", standby=False, node="n1")
    monkeypatch.setattr(ray_api, "find_actor", {"sku-000": primary}.get)
    layout = [("sku", 0, "sku-000")]
    actor = Local(FailoverActor(layout=layout, make_shard=make_shard, resource=None, timeout_s=5))
    handles = {"sku": [primary]}
    runtime = SharedFailover(actor, handles, layout=layout)
    replica = SharedFailover(actor)
    (standby, _), = made
    primary.dead = True
    assert replica.fail_over("sku-000", primary.epoch) == (standby.epoch, standby)
    assert handles["sku"][0] is primary   # not yet: another process promoted it
    logged = []
    monkeypatch.setattr(failover_module.log, "warning", lambda event, **kw: logged.append((event, kw)))
    runtime.check()
    runtime.check()
    assert handles["sku"][0] is standby
    assert [(e, kw["stream"], kw["how"]) for e, kw in logged] == [("shard_failed_over", "sku-000", "standby")]
    assert runtime.primaries()["sku-000"] == ("sku", 0, standby.epoch, standby)
    assert runtime.generations() == {"sku": [standby.epoch]}
    assert runtime.fail_over("sku-000", primary.epoch) == (standby.epoch, standby)   # a stale report
    actor.obj.stop()


def _two_shards_one_failed_over(made, monkeypatch):
    """A runtime of two shards whose failover actor promoted sku-001's standby (and gave
    it a new standby); the actor's process then dies."""
    from saleday.cluster.failover_actor import FailoverActor, SharedFailover

    def make_shard(*, kind, stream, name, standby, scheduling_strategy):
        shard = Shard(name, standby=standby, node="n2" if standby else "n1")
        made.append((shard, {"stream": stream, "standby": standby}))
        return shard

    first = {s: Shard(s, standby=False, node="n1") for s in ("sku-000", "sku-001")}
    alive = dict(first)
    monkeypatch.setattr(ray_api, "find_actor", by_name(made, alive))
    layout = [("sku", 0, "sku-000"), ("sku", 1, "sku-001")]
    actor = Local(FailoverActor(layout=layout, make_shard=make_shard, resource=None, timeout_s=5))
    handles = {"sku": [first["sku-000"], first["sku-001"]]}
    runtime = SharedFailover(actor, handles, layout=layout)
    runtime.check()
    first["sku-001"].dead = True
    del alive["sku-001"]   # killed by the failover, its name freed
    generation, promoted = SharedFailover(actor).fail_over("sku-001", first["sku-001"].epoch)
    assert promoted.name.startswith("sku-001.standby-")
    wait_until(lambda: len(made) == 3, what="sku-001's new standby")
    actor.obj.stop()
    return first, handles, runtime, layout, make_shard, generation, promoted


def test_a_restarted_failover_actor_adopts_the_shards_it_had_started(made, monkeypatch):
    """Given a runtime of two shards whose failover actor had promoted sku-001's standby,
    when the actor's process dies, then what it had started lives on (detached: the
    promoted primary and the standbys), and Ray's new incarnation adopts it all by name:
    no shard is started, no epoch changes, a gateway's stale report gets the promoted
    primary, and the runtime's check says the actor restarted, with no fresh primary."""
    from saleday.cluster import failover_actor as failover_module
    from saleday.cluster.failover_actor import FailoverActor, SharedFailover

    first, handles, runtime, layout, make_shard, generation, promoted = (
        _two_shards_one_failed_over(made, monkeypatch))
    standbys = {shard.name for shard, how in made if shard.standby}
    before = len(made)
    restarted = Local(FailoverActor(layout=layout, make_shard=make_shard, resource=None,
                                    timeout_s=5))
    assert len(made) == before and restarted.obj.incarnation()["fresh"] == []
    assert SharedFailover(restarted).primaries() == {
        "sku-000": ("sku", 0, first["sku-000"].epoch, first["sku-000"]),
        "sku-001": ("sku", 1, promoted.epoch, promoted)}
    assert {s.name for s in SharedFailover(restarted).standbys().values()} == standbys
    assert SharedFailover(restarted).fail_over("sku-001", first["sku-001"].epoch) == (
        promoted.epoch, promoted)
    assert promoted.promotions == 1
    logged = []
    monkeypatch.setattr(failover_module.log, "error", lambda event, **kw: logged.append((event, kw)))
    runtime.actor = restarted
    runtime.check()
    assert handles["sku"] == [first["sku-000"], promoted]
    assert logged == [("failover_actor_restarted", {"fresh_primaries": []})]
    restarted.obj.stop()


def test_a_restarted_failover_actor_replaces_what_died_with_it(made, monkeypatch):
    """Given the same runtime, when the actor's process dies together with sku-001's
    promoted primary (a node lost, say), then the new incarnation promotes sku-001's live
    standby; and when every shard the actor had started died too, it gives sku-001 a fresh
    primary under a newer epoch and both shards new standbys."""
    from saleday.cluster.failover_actor import FailoverActor, SharedFailover

    first, handles, runtime, layout, make_shard, generation, promoted = (
        _two_shards_one_failed_over(made, monkeypatch))
    promoted.dead = True
    spare = next(s for s, how in made if how["stream"] == "sku-001" and s.standby)
    restarted = Local(FailoverActor(layout=layout, make_shard=make_shard, resource=None,
                                    timeout_s=5))
    assert restarted.obj.incarnation()["fresh"] == []
    assert spare.promotions == 1 and spare.epoch > promoted.epoch
    assert SharedFailover(restarted).fail_over("sku-001", generation) == (spare.epoch, spare)
    restarted.obj.stop()

    for shard, _ in made:
        shard.dead = True
    del made[:]
    again = Local(FailoverActor(layout=layout, make_shard=make_shard, resource=None,
                                timeout_s=5))
    started = [(how["stream"], how["standby"]) for _, how in made]
    assert started == [("sku-001", False), ("sku-000", True), ("sku-001", True)]
    fresh = made[0][0]
    assert again.obj.incarnation()["fresh"] == ["sku-001"] and fresh.epoch > spare.epoch
    assert SharedFailover(again).primaries() == {
        "sku-000": ("sku", 0, first["sku-000"].epoch, first["sku-000"]),
        "sku-001": ("sku", 1, fresh.epoch, fresh)}
    again.obj.stop()


def test_adoption_keeps_the_newest_primary_and_one_standby(made, monkeypatch):
    """Two live primaries of one stream (an older epoch's zombie, left by an earlier run)
    and two standbys: the newest primary and the first standby are kept, the others
    killed."""
    from saleday.cluster.failover_actor import FailoverActor

    killed = []
    monkeypatch.setattr(ray_api, "kill", lambda handle, no_restart=False: killed.append(handle))
    zombie = Shard("sku-000.primary-old-1", standby=False, node="n1")
    first = Shard("sku-000", standby=False, node="n1")
    extra = [Shard(f"sku-000.standby-old-{i}", standby=True, node="n2") for i in (2, 3)]
    made.extend((s, {"stream": "sku-000", "standby": s.standby}) for s in (zombie, *extra))
    monkeypatch.setattr(ray_api, "find_actor", by_name(made, {"sku-000": first}))

    def make_shard(**kw):
        raise AssertionError(f"nothing to start: {kw}")

    actor = FailoverActor(layout=[("sku", 0, "sku-000")], make_shard=make_shard, resource=None,
                          timeout_s=5)
    assert actor.primaries() == {"sku-000": ("sku", 0, first.epoch, first)}
    assert actor.standbys() == {"sku-000": extra[0]}
    assert killed == [zombie, extra[1]]
    actor.stop()


def test_the_health_check_outlives_an_unreachable_failover_actor(made, monkeypatch):
    """When the failover actor is gone, the runtime's health check logs an error and
    returns, so that `saleday serve` keeps serving with the shards that are up."""
    from saleday.cluster import runtime as runtime_module
    from saleday.cluster.failover_actor import SharedFailover
    from saleday.cluster.runtime import Runtime, RuntimeConfig

    def gone(*args):
        raise Died("saleday-failover")

    class Gone:
        def __getattr__(self, name):
            return Method(gone)

    rt = Runtime(RuntimeConfig(shards={"sku": 1}, standbys=1))
    rt.failover = SharedFailover(Gone(), rt.handles)
    logged = []
    monkeypatch.setattr(runtime_module.log, "error", lambda event, **kw: logged.append((event, kw)))
    assert rt.check_standbys() == []
    assert [(e, kw["error"]) for e, kw in logged] == [("failover_unreachable", "Died: saleday-failover")]


def test_a_gateway_starts_while_the_failover_actor_is_away(made):
    """The runtime's generations for a new gateway are zeros when the actor cannot answer
    (being restarted), so the gateway still starts (a report of generation 0 is a stale
    one, answered with the current primary, as the test of another process's failover shows)."""
    from saleday.cluster.failover_actor import SharedFailover

    def away(*args):
        raise Died("saleday-failover")

    class Away:
        def __getattr__(self, name):
            return Method(away)

    handles = {"sku": [Shard("sku-000", standby=False, node="n1")]}
    assert SharedFailover(Away(), handles, layout=[("sku", 0, "sku-000")]).generations() == {
        "sku": [0]}
