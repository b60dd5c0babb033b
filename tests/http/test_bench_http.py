"""`saleday bench http` and `saleday simulate --engine http`: once each, with tiny arguments,
on a local Ray (the Serve app on a free loopback port)."""

from __future__ import annotations

import json
import os
import time

import pytest
from typer.testing import CliRunner

from saleday.bench.http import _read_sku, _rows_of_a_child, goals, row, served_here
from saleday.bench.http_procs import cpu_s, parse_gateway_counts
from saleday.cli.main import app
from saleday.http.metrics import HttpMetrics


def test_a_row_counts_units_granted_beyond_stock_as_oversold():
    """The client's tally: 201s per SKU beyond its stock are oversold; 5xx and lost
    requests are errors; a system that holds no stock oversells nothing."""
    out = {"latencies": [0.001, 0.002, 0.003], "elapsed_s": 1.0,
           "statuses": {201: 2, 503: 1}, "granted": {"a": 2, "b": 1}, "errors": {"OSError": 1}}
    r = row("x", out, stock=1)
    assert r["oversold"] == 1 and r["errors"] == 2 and r["req_per_s"] == 3.0
    assert row("floor", out, stock=None)["oversold"] == 0


def test_the_stock_read_after_a_run_waits_out_a_503_and_names_any_other_answer():
    """A SKU read answered 503 (shards draining the backlog) is retried after Retry-After;
    a 404 is an error naming its status, not a KeyError deep in the row."""
    import httpx

    answers = [httpx.Response(503, headers={"retry-after": "0"}, json={"title": "busy"}),
               httpx.Response(200, json={"reserved": 1, "sold": 2, "stocked": 3,
                                         "available": 0})]
    with httpx.Client(transport=httpx.MockTransport(lambda request: answers.pop(0)),
                      base_url="http://bench") as http:
        assert _read_sku(http, "/v1/skus/s")["sold"] == 2
    gone = httpx.MockTransport(lambda request: httpx.Response(404, json={"title": "unknown"}))
    with httpx.Client(transport=gone, base_url="http://bench") as http:
        with pytest.raises(RuntimeError, match="answered 404"):
            _read_sku(http, "/v1/skus/s")


def test_a_serve_row_after_another_serve_runs_in_a_child_that_says_why_it_failed():
    """Once a Serve row ran in this process, a Serve row with other options runs in a child
    process of its own; a child that fails gives a row naming its error, not a crash."""
    assert served_here([{"system": "saleday[serve]@half"}])
    assert not served_here([{"system": "floor"}, {"system": "saleday[uvicorn]"}])
    rows = _rows_of_a_child("saleday[serve+throughput]", {}, duration_s=0.5, concurrency=1,
                            skus=1, stock=1, users=1, seed=1, redis_url="redis://x",
                            num_cpus=1, generator="warp", shards=None, worker_niceness=0)
    assert rows == [{"system": "saleday[serve+throughput]",
                     "error": rows[0]["error"]}] and "warp" in rows[0]["error"]


def test_cpu_seconds_of_processes_grow_with_their_work_and_a_gone_process_has_none():
    """The per-request CPU figures read the processes' own CPU time: it grows while a
    process computes, and a process that is gone gives no figure rather than a wrong one."""
    before = cpu_s([os.getpid()])
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    assert cpu_s([os.getpid()]) - before >= 0.03
    assert cpu_s([os.getpid(), 2**22 + 12345]) is None


def test_the_gateway_counters_are_read_back_from_the_apps_metrics():
    """Commands per batch come from the gateway's counters as /metrics renders them."""
    class Gateway:
        stats = {"submitted": 640, "batches": 20, "busy": 0}

    counts = parse_gateway_counts(HttpMetrics(Gateway()).render().decode())
    assert counts == {"submitted": 640.0, "batches": 20.0, "busy": 0.0}


def test_goals_compare_the_best_saleday_row_with_the_seed_and_the_floor():
    """The goals read the fastest saleday row against the seed's approach, the floor, and
    its own open-loop run at half its rate."""
    rows = [{"system": "floor", "req_per_s": 1000.0}, {"system": "seed_decrby_rollback",
                                                       "req_per_s": 400.0},
            {"system": "saleday[serve]", "req_per_s": 300.0, "oversold": 0},
            {"system": "saleday[uvicorn]", "req_per_s": 700.0, "oversold": 0},
            {"system": "saleday[uvicorn]@half", "req_per_s": 350.0, "p99_ms": 20.0,
             "oversold": 0}]
    g = goals(rows)
    assert g["best_saleday"] == "saleday[uvicorn]" and g["x_seed"] == 1.75 and g["x_seed_met"]
    assert g["x_floor"] == 0.7 and g["x_floor_met"] and g["p99_at_half_met"]
    assert g["oversold"] == 0



def test_the_redis_logged_row_keeps_the_log_under_a_prefix_of_its_own_and_deletes_it(redis_url):
    """`saleday[uvicorn+redis]` logs to the seed's Redis under its own prefix (the URL's
    other options kept) and deletes every key under that prefix afterwards, nothing else."""
    import uuid

    import redis

    from saleday.bench.http_procs import delete_prefix as _delete_prefix
    from saleday.bench.http_procs import with_prefix as _with_prefix

    assert _with_prefix("redis://h:6379/3?socket_timeout=2", "p1") == (
        "redis://h:6379/3?socket_timeout=2&prefix=p1")
    assert _with_prefix("redis://h:6379/0?prefix=old", "new") == "redis://h:6379/0?prefix=new"
    prefix = f"bench-http-log-{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(redis_url)
    try:
        client.mset({f"{prefix}:{{s-{i}}}:log": i for i in range(1500)})
        client.set(f"{prefix}x:other", 1)
        _delete_prefix(redis_url, prefix)
        assert not list(client.scan_iter(f"{prefix}:*"))
        assert client.get(f"{prefix}x:other") == b"1"
    finally:
        client.delete(f"{prefix}x:other")
        client.close()

@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_http_prints_rows_of_every_system_and_saleday_never_oversells(redis_url):
    """With tiny arguments each system asked for gets a row with the documented fields (or
    says why it failed), saleday's rows oversell nothing, a saleday row times its stock
    pushes from commit to socket, and nothing is left behind in Redis. (The Serve rows run
    the same row code behind Serve's proxy, which starts in ~20 s here: an order and a
    stock push through that proxy are tested in test_serve.py.)"""
    import redis

    before = set(redis.Redis.from_url(redis_url).scan_iter("bench-http-*"))
    result = CliRunner().invoke(app, [
        "bench", "http", "--json", "--duration", "1", "--concurrency", "8", "--skus", "5",
        "--stock", "20", "--users", "50", "--redis-url", redis_url, "--system", "floor",
        "--system", "seed_decrby_rollback", "--system", "saleday[uvicorn]"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["machine"]["cores"]
    failed = {r["system"]: r["error"] for r in out["rows"] if "error" in r}
    assert not failed, failed
    for name in ("saleday[uvicorn]",):   # commit -> socket, while ordering
        push = out["stock_push_ms"][name]
        assert push["n"] > 0 and 0 <= push["p50"] <= push["p99"] <= push["max"], (name, push)
    systems = {r["system"]: r for r in out["rows"]}
    assert {"floor", "seed_decrby_rollback", "saleday[uvicorn]"} <= set(systems)
    for name, r in systems.items():
        assert "error" not in r, (name, r)
        assert {"req_per_s", "p50_ms", "p99_ms", "errors", "oversold"} <= set(r), name
    for name in ("saleday[uvicorn]", "saleday[uvicorn]@half"):
        assert systems[name]["requests"] > 0
        assert systems[name]["oversold"] == 0 and systems[name]["oversold_by_server"] == 0
    assert systems["seed_decrby_rollback"]["oversold"] == 0
    assert out["goals"]["oversold"] == 0
    assert set(out["shards"]) == {"sku", "session", "order", "campaign", "team"}
    assert set(redis.Redis.from_url(redis_url).scan_iter("bench-http-*")) == before


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_simulate_engine_http_drives_a_local_serve_app_and_the_audit_passes(tmp_path):
    """`--engine http` starts the shards and the Serve app on loopback, plays the visits
    over HTTP, and the log it leaves passes the audit (exit 0, one JSON object)."""
    result = CliRunner().invoke(app, [
        "simulate", "--engine", "http", "--users", "60", "--compression", "3600", "--json",
        "--no-charts", "--no-progress", "--data", str(tmp_path / "d"), "--num-cpus", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["engine"] == "http" and report["audit_ok"]
    assert report["target"].startswith("http://127.0.0.1:")
    assert report["http"]["requests_by_route"]["POST /v1/sessions"] > 0
    assert report["orders"]["placed"] > 0
