"""`saleday bench cluster`: its slot placement, its local clusters and its figures, at the
smallest sizes (one master and its replica)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot
from typer.testing import CliRunner

from saleday.bench.redis_cluster import SLOTS, slot_owners
from saleday.cli.main import app
from tests.helpers import redis_server_executable


def test_each_placed_stream_lands_on_its_master_and_every_slot_has_one():
    """slot_owners splits the slots in ranges over the masters, and moves the slot of
    each placed stream to the master it names (two streams that the ranges would put on
    one master of two are split)."""
    place = {"sku-000": 0, "sku-001": 1}
    plain = slot_owners(2, {}, "bench")
    slot = {s: key_slot(f"bench:{{{s}}}:log".encode()) for s in place}
    assert plain[slot["sku-000"]] == plain[slot["sku-001"]] == 0  # CRC16's luck
    owners = slot_owners(2, place, "bench")
    assert len(owners) == SLOTS and set(owners) == {0, 1}
    assert [owners[slot[s]] for s in place] == [0, 1]
    assert sum(a != b for a, b in zip(plain, owners)) == 1


@pytest.mark.parametrize("args, says", [
    (["--masters", "0"], "--masters '0'"),
    (["--masters", "1,x"], "--masters '1,x'"),
    (["--wait", "2"], "--wait '2'"),
    (["--appendfsync", "sometimes"], "--appendfsync 'sometimes'"),
])
def test_bench_cluster_refuses_a_bad_option_before_starting_anything(args, says):
    """A master count outside 1-16, a wait other than 0 or 1, or an unknown appendfsync
    is a one-line error and exit 2."""
    result = CliRunner().invoke(app, ["bench", "cluster", *args])
    assert result.exit_code == 2 and says in result.output
    assert "Traceback" not in result.output


@pytest.mark.redis
@pytest.mark.slow
def test_bench_cluster_measures_appends_with_and_without_wait_on_one_master():
    """On one master with its replica, each wait value gets an append rate, events per
    master and per shard CPU-second, the speed-up against itself (1.0) and WAIT's ratio
    against no wait. [a few seconds: spawns a writer]"""
    from saleday.bench.cluster_store import run

    redis_server_executable()  # skips (or fails, SALEDAY_REQUIRE_REDIS=1) without one
    result = run(masters=(1,), waits=(0, 1), events=400, batch=50, repeat=1)
    rows = result["rows"]
    assert [(r["masters"], r["shards"], r["wait_replicas"]) for r in rows] == [(1, 1, 0), (1, 1, 1)]
    for r in rows:
        assert r["events_per_s"] > 0 and r["commits_per_s"] == round(r["events_per_s"] / 50)
        assert r["events_per_master_cpu_s"] > 0 and r["events_per_writer_cpu_s"] > 0
        assert r["x_first"] == 1.0 and r["masters_used"] == 1
    assert rows[1]["x_no_wait"] == round(rows[1]["events_per_s"] / rows[0]["events_per_s"], 2)
    assert result["params"]["replicas_per_master"] == 1 and result["machine"]["cores"]


def test_bench_reserve_on_a_local_cluster_refuses_the_baselines():
    """`bench reserve --redis-cluster N` runs saleday[redis] alone: asking for a Redis
    baseline with it is a one-line error and exit 2, before any server starts."""
    result = CliRunner().invoke(app, ["bench", "reserve", "--redis-cluster", "2",
                                      "--system", "seed_decrby_rollback"])
    assert result.exit_code == 2 and "saleday[redis] alone" in result.output
