"""The shard's GC policy (`cluster.shard_actor.BatchGc`), without Ray: a batch's survivors are
frozen out of the collector's reach so no collection runs inside a later batch; a shard idle
long enough sweeps what was frozen (cyclic garbage is found then, not leaked); a busy shard
never sweeps."""

from __future__ import annotations

import gc
import weakref

import pytest

from saleday.actors.host import Accepted, Request
from saleday.actors.sku import AddStock
from saleday.cluster.shard_actor import BatchGc, ShardActor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Node:
    """A container that can sit in a reference cycle and be watched by a weakref."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def gc_restored():
    saved = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*saved)


def test_after_a_batch_its_survivors_are_frozen_and_the_young_count_starts_again():
    policy = BatchGc("sku-000", clock=Clock())
    survivors = [{"n": i} for i in range(5_000)]
    frozen = gc.get_freeze_count()
    policy.after_batch()
    assert gc.get_freeze_count() >= frozen + len(survivors)
    assert gc.get_count()[0] < 100


def test_an_idle_shard_sweeps_the_cycles_frozen_with_its_batches():
    clock = Clock()
    policy = BatchGc("sku-000", idle_s=2.0, sweep_every_s=300.0, clock=clock)
    node = Node()
    watch = weakref.ref(node)
    policy.after_batch()           # the cycle is frozen while alive
    del node
    gc.collect()
    assert watch() is not None     # out of the collector's reach until a sweep
    clock.now += 301.0
    assert policy.on_tick() >= 1
    assert watch() is None
    assert policy.on_tick() is None   # nothing new since


def test_a_busy_shard_or_a_recent_sweep_does_not_sweep():
    clock = Clock()
    policy = BatchGc("sku-000", idle_s=2.0, sweep_every_s=300.0, clock=clock)
    clock.now += 400.0
    assert policy.on_tick() is None   # no batch since the start: nothing to sweep
    policy.after_batch()
    clock.now += 1.0
    assert policy.on_tick() is None   # a batch 1 s ago: busy
    clock.now += 2.0
    assert policy.on_tick() is not None
    policy.after_batch()
    clock.now += 10.0
    assert policy.on_tick() is None   # idle, but swept 10 s ago


def test_a_shard_actor_freezes_after_each_batch():
    actor = ShardActor(kind="sku", stream="sku-000", store_url="memory://batch-gc-actor")
    frozen = gc.get_freeze_count()
    replies = actor.handle_requests([Request(f"c{i}", AddStock(sku=f"s{i}", qty=5, now=1))
                                     for i in range(200)])
    assert all(isinstance(r, Accepted) for r in replies)
    assert gc.get_freeze_count() > frozen
    assert gc.get_count()[0] < 100
    assert actor.gc.batches_since_sweep == 1


def test_an_idle_standby_sweeps_too():
    """A standby never ticks: its follower thread sweeps once nothing new has come for
    `idle_s`, as an idle primary does at its tick."""
    import time

    url = "memory://batch-gc-standby"
    primary = ShardActor(kind="sku", stream="sku-000", store_url=url, local_socket=False)
    standby = ShardActor(kind="sku", stream="sku-000", store_url=url, standby=True,
                         follow_every_s=0.01, local_socket=False)
    standby.gc = BatchGc("sku-000", idle_s=0.05, sweep_every_s=0.0)
    replies = primary.handle_requests([Request(f"c{i}", AddStock(sku=f"s{i}", qty=5, now=1))
                                       for i in range(50)])
    assert all(isinstance(r, Accepted) for r in replies)
    deadline = time.monotonic() + 10
    while standby.host.version < primary.host.version and time.monotonic() < deadline:
        time.sleep(0.01)
    assert standby.host.version == primary.host.version   # it followed: a batch to freeze
    swept_at = standby.gc.last_sweep
    while standby.gc.last_sweep == swept_at and time.monotonic() < deadline:
        time.sleep(0.01)
    assert standby.gc.last_sweep > swept_at
    assert standby.gc.batches_since_sweep == 0
    standby.promote()   # its follower thread stops
