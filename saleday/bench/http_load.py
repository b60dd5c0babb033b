"""The load generators of `saleday bench http`: wrk (C) driven by a Lua script that cycles
through the workload's requests, and a Python one (aiohttp on uvloop, in a child process)
that can also run open loop at a fixed rate; `row` turns a Python run into a result row.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import subprocess
import tempfile
import time
from array import array
from collections import Counter
from typing import Any


def _load_child(conn: Any, url: str, reqs: list[tuple[dict, bytes, str]], concurrency: int,
                duration_s: float, rate: float | None) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        conn.send(asyncio.run(_load(url, reqs, concurrency, duration_s, rate)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


async def _load(url: str, reqs: list[tuple[dict, bytes, str]], concurrency: int,
                duration_s: float, rate: float | None) -> dict[str, Any]:
    import aiohttp

    loop = asyncio.get_running_loop()
    latencies = array("d")
    statuses: Counter[int] = Counter()
    granted: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    n = len(reqs)
    connector = aiohttp.TCPConnector(limit=concurrency if rate is None else 1024)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def one(i: int) -> None:
            headers, body, sku = reqs[i % n]
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    status = r.status
            except Exception as exc:  # noqa: BLE001 - counted as an error
                errors[type(exc).__name__] += 1
                return
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1
            if status == 201:
                granted[sku] += 1

        t0 = loop.time()
        stop_at = t0 + duration_s
        if rate is None:
            counter = iter(range(10**12))

            async def worker() -> None:
                while loop.time() < stop_at:
                    await one(next(counter))

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            tasks = []
            for k in range(int(rate * duration_s)):
                delay = t0 + k / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(loop.create_task(one(k)))
            await asyncio.gather(*tasks)
        elapsed = loop.time() - t0
    return {"elapsed_s": elapsed, "latencies": latencies.tobytes(), "statuses": dict(statuses),
            "granted": dict(granted), "errors": dict(errors)}


def generate(url: str, reqs: list[tuple[dict, bytes, str]], *, concurrency: int,
             duration_s: float, rate: float | None = None) -> dict[str, Any]:
    """Run the load generator in a child process (so it has a core's worth of its own)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_load_child, args=(child, url, reqs, concurrency, duration_s, rate))
    proc.start()
    child.close()
    try:
        if not parent.poll(duration_s + 120):
            raise RuntimeError("the load generator did not finish")
        out = parent.recv()
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    if "error" in out:
        raise RuntimeError(f"the load generator failed: {out['error']}")
    lat = array("d")
    lat.frombytes(out.pop("latencies"))
    out["latencies"] = sorted(lat)
    return out


def _pct(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def row(system: str, out: dict[str, Any], stock: int | None) -> dict[str, Any]:
    """A result row from the generator's tally (`stock` None: the system holds none)."""
    lat, statuses = out["latencies"], out["statuses"]
    done = len(lat)
    oversold = 0 if stock is None else sum(max(0, n - stock) for n in out["granted"].values())
    server_errors = sum(n for s, n in statuses.items() if int(s) >= 500)
    return {"system": system, "requests": done, "seconds": round(out["elapsed_s"], 2),
            "req_per_s": round(done / out["elapsed_s"], 1) if out["elapsed_s"] else 0.0,
            "p50_ms": _pct(lat, 0.50), "p99_ms": _pct(lat, 0.99),
            "errors": server_errors + sum(out["errors"].values()),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "oversold": oversold}


_WRK_SCRIPT = """
local i = 0
c2, c4, c5 = 0, 0, 0
request = function()
  i = i + 1
  local r = reqs[(i % #reqs) + 1]
  return wrk.format("POST", path, r[1], r[2])
end
response = function(status, headers, body)
  if status < 300 then c2 = c2 + 1 elseif status < 500 then c4 = c4 + 1 else c5 = c5 + 1 end
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("c2"); b = b + t:get("c4"); c = c + t:get("c5") end
  io.write(string.format("STATUSES %d %d %d\\n", a, b, c))
end
"""


def _lua(text: str) -> str:
    return json.dumps(text)   # a JSON string is a valid Lua string literal (ASCII here)


def wrk_load(wrk: str, url: str, reqs: list[tuple[dict, bytes, str]], *, concurrency: int,
             duration_s: float, limit: int = 4000) -> dict[str, Any]:
    """A closed-loop run by wrk (C, one thread), cycling through (the first `limit` of)
    `reqs`: req/s, p50/p99 (wrk's own histogram), statuses by class, socket errors."""
    base, _, path = url.partition("/v1/")
    lines = ["reqs = {"]
    for headers, body, _ in reqs[:limit]:
        hdrs = ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in headers.items())
        lines.append(f"  {{ {{ {hdrs} }}, {_lua(body.decode())} }},")
    lines.append("}")
    lines.append(f"path = {_lua('/v1/' + path)}")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("\n".join(lines) + _WRK_SCRIPT)
        script = f.name
    try:
        done = subprocess.run([wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s",
                               "--latency", "-s", script, base], capture_output=True, text=True,
                              timeout=duration_s + 60)
    finally:
        os.unlink(script)
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    pcts = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    st = re.search(r"STATUSES (\d+) (\d+) (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if rps is None or st is None:
        raise RuntimeError(f"wrk said: {(done.stderr or out)[-300:]}")
    socket_errors = sum(int(x) for x in sock.groups()) if sock else 0
    return {"requests": int(total.group(1)) if total else None, "req_per_s": float(rps.group(1)),
            "p50_ms": pcts.get("50"), "p99_ms": pcts.get("99"),
            "statuses": {"2xx": int(st.group(1)), "4xx": int(st.group(2)),
                         "5xx": int(st.group(3))},
            "errors": int(st.group(3)) + socket_errors}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return 0.0
    return round(float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)], 3)
