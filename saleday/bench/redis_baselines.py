"""The two Redis baselines of `saleday bench reserve`, on the same workload as saleday.

- `run_seed_decrby`: the seed's approach, `DECRBY` then `INCRBY` back when negative, one
  round trip per request (no durable log);
- `run_lua_pipelined`: an atomic Lua check-and-decrement plus `XADD` of the event,
  pipelined 256 at a time.
Each counts what it oversold from its own counters.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from saleday.bench.workload import Workload, percentiles


def run_seed_decrby(client: redis.Redis, prefix: str, work: Workload) -> dict[str, Any]:
    """The seed: DECRBY, and INCRBY back when it went negative. One round trip each."""
    for sku in work.skus:
        client.set(f"{prefix}:stock:{sku}", work.stock)
    latencies = []
    granted = negative_seen = 0
    started = time.perf_counter()
    for _, sku in work.requests:
        t0 = time.perf_counter()
        left = client.decrby(f"{prefix}:stock:{sku}", 1)
        if left < 0:
            negative_seen += 1
            client.incrby(f"{prefix}:stock:{sku}", 1)
        else:
            granted += 1
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    p50, p99 = percentiles(latencies)
    sold = sum(work.stock - int(client.get(f"{prefix}:stock:{sku}")) for sku in work.skus)
    return {"req_per_s": round(len(work.requests) / elapsed), "p50_ms": p50, "p99_ms": p99,
            "oversold": max(0, sold - work.supply), "granted": granted,
            "negative_stock_seen": negative_seen, "durable_log": False}


_LUA_RESERVE = """
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
local qty = tonumber(ARGV[1])
if left < qty then return 0 end
redis.call('DECRBY', KEYS[1], qty)
redis.call('XADD', KEYS[2], '*', 'user', ARGV[2], 'sku', ARGV[3], 'qty', qty)
return 1
"""


def run_lua_pipelined(client: redis.Redis, prefix: str, work: Workload, *, depth: int = 256) -> dict[str, Any]:
    """An atomic Lua check-and-decrement plus XADD, pipelined `depth` at a time."""
    for sku in work.skus:
        client.set(f"{prefix}:stock:{sku}", work.stock)
    script = client.register_script(_LUA_RESERVE)
    script(keys=[f"{prefix}:stock:{work.skus[0]}", f"{prefix}:log"], args=[0, "warm", "up"])
    latencies = []
    granted = 0
    started = time.perf_counter()
    for i in range(0, len(work.requests), depth):
        chunk = work.requests[i:i + depth]
        t0 = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for user, sku in chunk:
            script(keys=[f"{prefix}:stock:{sku}", f"{prefix}:log"], args=[1, user, sku], client=pipe)
        results = pipe.execute()
        dt = time.perf_counter() - t0
        latencies.extend([dt] * len(chunk))
        granted += sum(results)
    elapsed = time.perf_counter() - started
    p50, p99 = percentiles(latencies)
    sold = sum(work.stock - int(client.get(f"{prefix}:stock:{sku}")) for sku in work.skus)
    return {"req_per_s": round(len(work.requests) / elapsed), "p50_ms": p50, "p99_ms": p99,
            "oversold": max(0, sold - work.supply), "granted": granted, "durable_log": True}
