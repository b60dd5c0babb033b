"""`saleday bench failover`: how long a shard is away after its process dies, with and
without a hot standby (cluster/failover.py), and what the standbys cost in throughput.

`repeat` rounds in one Ray; each round runs `standbys` 0 and then 1, each on a fresh
runtime and SQLite log with `shards` SKU shards and stock for `skus` SKUs that never runs
out (so a shared machine's noise falls on both modes alike):
1. throughput: one client keeps `window` reservations outstanding for `load_s` seconds;
   commands answered per second, and the CPU seconds the standbys used meanwhile per CPU
   second of the primaries (`standby_cpu_per_primary_cpu`, from /proc: the standbys' cost
   apart from the noise of other work on the machine);
2. failover: under that same load, the process of shard 0's primary is killed
   (`kill="pid"`: SIGKILL of its worker, as a crash; `"ray"`: `ray.kill`), and a probe
   reservation for shard 0 is submitted at once; the gap is kill -> its answer. Without a
   standby Ray restarts the actor, which recovers from snapshot and log (the gateway
   retrying with backoff meanwhile); with one, the gateway promotes the standby
   (`detect_ms`: from the kill until a gateway, told by Ray that the actor died, asks for
   the failover; `promote_ms`: the promotion itself, to the standby's answer; the rest of
   the gap is the batches queued before the probe, answered by the promoted standby);
3. check: every reservation acknowledged Accepted is in the log once (`lost` counts those
   that are not; it must be 0).
Medians over the rounds are quoted.
"""

from __future__ import annotations

import os
import signal
import statistics
import tempfile
import threading
import time
from typing import Any

from saleday.actors.host import Accepted
from saleday.actors.sku import AddStock, ConfigureSale, ReserveStock
from saleday.events import open_store
from saleday.simulator.results import machine_info as machine

KILLS = ("pid", "ray")


def run(*, shards: int = 2, skus: int = 200, window: int = 512, load_s: float = 3.0,
        repeat: int = 3, kill: str = "pid", num_cpus: int | None = None,
        ray_nodes: int = 0, http: bool = False) -> dict[str, Any]:
    """`repeat` rounds; each runs both modes (0 then 1 standby, each on a fresh runtime and
    log), so the noise of a shared machine falls on both alike. With `ray_nodes`, on a
    multi-node Ray on this machine (a head and that many one-CPU shard nodes). With
    `http`, through the HTTP API on Serve (`_http_round`)."""
    from saleday.cluster import ray_api

    if kill not in KILLS:
        raise ValueError(f"kill must be one of {KILLS}, not {kill!r}")
    rounds: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    load_before = os.getloadavg()
    address, stop = ray_api.local_nodes(ray_nodes) if ray_nodes else (None, ray_api.shutdown)
    try:
        for _ in range(repeat):
            for standbys in (0, 1):
                one = _http_round if http else _round
                rounds[standbys].append(one(standbys=standbys, shards=shards, skus=skus,
                                            window=window, load_s=load_s, kill=kill,
                                            num_cpus=num_cpus, ray_address=address))
    finally:
        stop()
    rows = [_row(standbys, rounds[standbys]) for standbys in (0, 1)]
    without, with_ = rows
    return {
        "params": {"shards": shards, "skus": skus, "window": window, "load_s": load_s,
                   "repeat": repeat, "kill": kill, "store": "sqlite", "ray_nodes": ray_nodes,
                   "http": http},
        "rows": rows,
        "kill_to_answer_ms_without_standby": without["kill_to_answer_ms_median"],
        "kill_to_answer_ms_with_standby": with_["kill_to_answer_ms_median"],
        "failover_speedup": round(without["kill_to_answer_ms_median"]
                                  / max(with_["kill_to_answer_ms_median"], 1e-9), 2),
        "standby_throughput_ratio": round(with_["commands_per_s"]
                                          / max(without["commands_per_s"], 1e-9), 3),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "machine": machine(),
    }


def _row(standbys: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["commands_per_s"] for r in rounds]
    gaps = [r["kill_to_answer_ms"] for r in rounds]
    return {"standbys": standbys, "commands_per_s": round(statistics.median(rates)),
            "commands_per_s_runs": [round(v) for v in rates],
            "kill_to_answer_ms": [round(g, 1) for g in gaps],
            "kill_to_answer_ms_median": round(statistics.median(gaps), 1),
            "detect_ms": [r["detect_ms"] for r in rounds if r["detect_ms"] is not None],
            "promote_ms": [r["promote_ms"] for r in rounds if r["promote_ms"] is not None],
            "standby_cpu_per_primary_cpu": [r["standby_cpu_per_primary_cpu"] for r in rounds
                                            if r["standby_cpu_per_primary_cpu"] is not None],
            "standbys_on_another_node": [r["standbys_on_another_node"] for r in rounds
                                         if r["standbys_on_another_node"] is not None],
            "failovers": sum(r["failovers"] for r in rounds),
            "gateway_retries": [r["retries"] for r in rounds],
            "acknowledged": sum(r["acknowledged"] for r in rounds),
            "lost": (None if any(r["lost"] is None for r in rounds)
                     else sum(r["lost"] for r in rounds)),
            # --http: an order's own latency at that load (the probe is an order too, so
            # its kill -> answer cannot be shorter than about this)
            **({"order_p50_ms": [r["order_p50_ms"] for r in rounds],
                "order_p99_ms": [r["order_p99_ms"] for r in rounds]}
               if "order_p50_ms" in rounds[0] else {})}


class _Driver:
    """A gateway of the runtime on an event loop of its own (a thread): the load runs on
    it, and the probe is submitted to it from the main thread."""

    def __init__(self, rt: Any) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="bench-failover-gateway")
        self._thread.start()

        async def make() -> Any:
            return rt.gateway()

        self.gateway = self.start(make()).result(timeout=60)

    def start(self, coro: Any) -> Any:
        """Run `coro` on the loop; its concurrent future."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def submit(self, command: Any, timeout_s: float = 120) -> Any:
        return self.start(self.gateway.submit(command)).result(timeout=timeout_s)

    def submit_many(self, commands: list[Any], timeout_s: float = 120) -> list[Any]:
        return self.start(self.gateway.submit_many(commands)).result(timeout=timeout_s)

    def close(self) -> None:
        self.start(self.gateway.close()).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


class _Load:
    """Keeps `window` reservations outstanding through the driver's gateway (a new one as
    each is answered) until stopped."""

    def __init__(self, client: _Driver, names: list[str], window: int, tag: str) -> None:
        self.client, self.names, self.window, self.tag = client, names, window, tag
        self.stop = threading.Event()
        self.answered = 0
        self.accepted: list[str] = []
        self.other: dict[str, int] = {}
        self._done: Any = None

    async def _drive(self) -> None:
        import asyncio

        gateway = self.client.gateway
        room = asyncio.Semaphore(self.window)
        pending: set[asyncio.Future] = set()
        n = 0

        def answered(fut: asyncio.Future, rid: str) -> None:
            pending.discard(fut)
            room.release()
            self.answered += 1
            reply = fut.result()
            if isinstance(reply, Accepted):
                self.accepted.append(rid)
            else:
                code = getattr(reply, "code", type(reply).__name__)
                self.other[code] = self.other.get(code, 0) + 1

        while not self.stop.is_set():
            await room.acquire()
            now = int(time.time() * 1000)
            rid = f"{self.tag}-{n}"
            fut = gateway.submit_nowait(ReserveStock(
                reservation_id=rid, user=f"u-{n % 9973}", sku=self.names[n % len(self.names)],
                qty=1, now=now, deadline=now + 3_600_000))
            pending.add(fut)
            fut.add_done_callback(lambda f, rid=rid: answered(f, rid))
            n += 1
        if pending:
            await asyncio.wait(list(pending))

    def __enter__(self) -> _Load:
        self._done = self.client.start(self._drive())
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._done.result(timeout=120)


def _round(*, standbys: int, shards: int, skus: int, window: int, load_s: float,
           kill: str, num_cpus: int | None, ray_address: str | None) -> dict[str, Any]:
    """One runtime: throughput for `load_s`, then a kill under the same load and the gap."""
    with tempfile.TemporaryDirectory(prefix="saleday-bench-failover-") as tmp:
        url = f"sqlite:///{os.path.join(tmp, 'events.db')}"
        rt = _runtime(url, {"sku": shards}, standbys, num_cpus, ray_address)
        client: _Driver | None = None
        try:
            client = _Driver(rt)
            apart = None   # how many standbys run on another node than their primary
            if standbys:
                nodes = {s["stream"]: s["node"] for s in rt.status()}
                apart = sum(s["node"] != nodes[s["stream"]] for s in rt.standby_status())
            names = _on_sale(client, skus)
            on_first = next(s for s in names if rt.maps["sku"].shard_of(s) == 0)
            accepted: list[str] = []
            pids = {role: [s["pid"] for s in statuses] for role, statuses in (
                ("primary", rt.status()), ("standby", rt.standby_status()))}
            cpu_before = {role: _cpu_s(ps) for role, ps in pids.items()}
            with _Load(client, names, window, "t") as load:
                time.sleep(load_s)
                answered = load.answered
            cpu = {role: _cpu_s(ps) - cpu_before[role] for role, ps in pids.items()}
            accepted += load.accepted
            with _Load(client, names, window, "k") as load:
                time.sleep(min(0.5, load_s / 2))   # mid-load
                killed_at, gap = _kill_and_probe(rt, client, on_first, "probe", kill, accepted)
            accepted += load.accepted
            return {"commands_per_s": answered / load_s, "kill_to_answer_ms": gap,
                    **_promotion(rt, killed_at, cpu, standbys),
                    "standbys_on_another_node": apart,
                    "failovers": client.gateway.stats["failovers"],
                    "retries": client.gateway.stats["retries"],
                    "acknowledged": len(accepted), "lost": _lost(url, accepted)}
        finally:
            if client is not None:
                client.close()
            rt.stop(kill_shards=True)


HTTP_SHARDS = {"session": 1, "order": 1, "campaign": 1, "team": 1}
"""The other kinds the HTTP API needs beside the SKU shards (one shard each)."""
HTTP_CONNECTIONS = 64
"""At most this many orders outstanding over HTTP (`window` caps it): the proxy queues
what is beyond, and a probe behind a deep queue would measure the queue."""
KILL_AFTER_S = 2.0
"""How long the kill waits after the HTTP load starts: the generator's process imports
and connects first."""


def _http_round(*, standbys: int, shards: int, skus: int, window: int, load_s: float,
                kill: str, num_cpus: int | None, ray_address: str | None) -> dict[str, Any]:
    """As `_round`, through the HTTP API on Serve (`saleday serve --http`'s app on a
    loopback port, over every kind the API needs, `shards` of them SKU shards): the load
    is `saleday bench http`'s Python generator placing one-unit orders on
    `min(window, HTTP_CONNECTIONS)` connections; the probe is an order for a SKU of shard
    0, and the gap is the kill -> its 201. The replica's gateway is the one that finds the
    primary dead and fails it over. Orders are not matched against the log here (`lost`
    is None); `_round` matches every acknowledged reservation."""
    import httpx

    from saleday.bench.http import workload
    from saleday.bench.http_load import _pct, generate
    from saleday.bench.http_procs import wait_ready
    from saleday.http.local import local_settings, token_factory
    from saleday.http.serve import run_local, stop_local

    with tempfile.TemporaryDirectory(prefix="saleday-bench-failover-") as tmp:
        url = f"sqlite:///{os.path.join(tmp, 'events.db')}"
        rt = _runtime(url, {"sku": shards, **HTTP_SHARDS}, standbys, num_cpus, ray_address)
        client: _Driver | None = None
        served = False
        try:
            client = _Driver(rt)
            names = _on_sale(client, skus)
            # The per-user rate limit is not what is measured: it is set out of the way.
            settings = local_settings(rate_per_s=1e6, rate_burst=10**6)
            base = run_local(rt.config, settings, views=False, stock=False)
            served = True
            token_for = token_factory(settings)
            wait_ready(base)
            reqs = workload(skus=skus, users=20_000, n=20_000, seed=11, tag="",
                            token_for=token_for)
            orders = f"{base}/v1/orders"
            connections = min(window, HTTP_CONNECTIONS)
            statuses = [s for s in rt.status() if s["stream"].startswith("sku-")]
            pids = {"primary": [s["pid"] for s in statuses],
                    "standby": [s["pid"] for s in rt.standby_status()
                                if s["stream"].startswith("sku-")]}
            cpu_before = {role: _cpu_s(ps) for role, ps in pids.items()}
            out = generate(orders, reqs, concurrency=connections, duration_s=load_s)
            cpu = {role: _cpu_s(ps) - cpu_before[role] for role, ps in pids.items()}
            placed = out["statuses"].get(201, 0)
            rate = placed / out["elapsed_s"]
            lat = out["latencies"]   # sorted: what an order takes at this load
            order_ms = {"order_p50_ms": _pct(lat, 0.50), "order_p99_ms": _pct(lat, 0.99)}
            on_first = next(s for s in names if rt.maps["sku"].shard_of(s) == 0)
            during: dict[str, Any] = {}
            loader = threading.Thread(target=lambda: during.update(generate(
                orders, reqs, concurrency=connections, duration_s=KILL_AFTER_S + load_s)))
            loader.start()
            time.sleep(KILL_AFTER_S)
            killed_at = _kill(rt, kill)
            probe = httpx.post(orders, timeout=120, headers={
                "Authorization": f"Bearer {token_for('u-probe')}",
                "Idempotency-Key": f"probe-{standbys}-{killed_at}"},
                json={"lines": [{"sku": on_first, "qty": 1}]})
            gap = (time.perf_counter() - killed_at) * 1000
            if probe.status_code != 201:
                raise RuntimeError(f"the probe order after the kill was answered "
                                   f"{probe.status_code}: {probe.text[:300]}")
            loader.join(timeout=KILL_AFTER_S + load_s + 180)
            placed += during.get("statuses", {}).get(201, 0) + 1
            return {"commands_per_s": rate, "kill_to_answer_ms": gap,
                    **_promotion(rt, killed_at, cpu, standbys),
                    "standbys_on_another_node": None,
                    "failovers": len(rt.failover.failovers) if standbys else 0, "retries": None,
                    "acknowledged": placed, "lost": None, **order_ms}
        finally:
            if served:
                stop_local()
            if client is not None:
                client.close()
            rt.stop(kill_shards=True)


def _runtime(url: str, shards: dict[str, int], standbys: int, num_cpus: int | None,
             ray_address: str | None) -> Any:
    """A started runtime of a round: no ticks (a kill is found by traffic), a minute of
    retries, shards on the `saleday_shard` nodes of a multi-node Ray."""
    from saleday.cluster.runtime import Runtime, RuntimeConfig

    return Runtime(RuntimeConfig(store_url=url, shards=shards, standbys=standbys, tick_s=0,
                                 retry_for_s=60, num_cpus=num_cpus, ray_address=ray_address,
                                 shard_resource="saleday_shard" if ray_address else None
                                 )).start()


def _promotion(rt: Any, killed_at: float, cpu: dict[str, float],
               standbys: int) -> dict[str, Any]:
    """The last failover's `promote_ms` and `detect_ms` (from the kill until a gateway asked
    for it: `killed_at` and the failover actor's `asked_at` are both `perf_counter`, one
    monotonic clock on this machine), and the standbys' CPU per the primaries'."""
    promoted = rt.failover.failovers if rt.failover is not None else []
    return {"promote_ms": promoted[-1]["ms"] if promoted else None,
            "detect_ms": (round((promoted[-1]["asked_at"] - killed_at) * 1000, 1)
                          if promoted else None),
            "standby_cpu_per_primary_cpu": (round(cpu["standby"] / cpu["primary"], 3)
                                            if standbys and cpu["primary"] > 0 else None)}


def _on_sale(client: _Driver, skus: int) -> list[str]:
    """Put `skus` SKUs on sale with stock that never runs out; their names."""
    names = [f"sku-{i:04d}" for i in range(skus)]
    now = int(time.time() * 1000)
    setup = [c for sku in names for c in (
        AddStock(sku=sku, qty=10_000_000, now=now),
        ConfigureSale(sku=sku, tiers=((0, 9900),), per_user_limit=0, start=0,
                      end=now + 86_400_000, now=now))]
    assert all(isinstance(r, Accepted) for r in client.submit_many(setup))
    return names


def _kill(rt: Any, kill: str) -> float:
    """Kill shard 0's primary (`kill`: "pid", SIGKILL of its worker; "ray", `ray.kill`);
    when, by `perf_counter`."""
    from saleday.cluster import ray_api

    handle = rt.handles["sku"][0]
    pid = ray_api.get(handle.status.remote(), timeout=30)["pid"]
    started = time.perf_counter()
    if kill == "pid":
        os.kill(pid, signal.SIGKILL)
    else:
        ray_api.kill(handle, no_restart=False)
    return started


def _kill_and_probe(rt: Any, client: Any, sku: str, rid: str, kill: str,
                    accepted: list[str]) -> tuple[float, float]:
    """Kill shard 0's primary; when (perf_counter), and ms from the kill until a
    reservation for it is answered."""
    started = _kill(rt, kill)
    now = int(time.time() * 1000)
    reply = client.submit(ReserveStock(reservation_id=rid, user="u-probe", sku=sku, qty=1,
                                       now=now, deadline=now + 3_600_000))
    gap = (time.perf_counter() - started) * 1000
    if not isinstance(reply, Accepted):
        raise RuntimeError(f"the probe after the kill was answered {reply!r}")
    accepted.append(rid)
    return started, gap


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes `pids` have used, from /proc (this machine:
    the local Ray's workers, or the nodes of `--ray-nodes`); 0 where it cannot be read."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return total


def _lost(url: str, accepted: list[str]) -> int:
    """Acknowledged reservations that are not in the log exactly once."""
    store = open_store(url)
    try:
        counts: dict[str, int] = {}
        for stream in store.streams():
            for env in store.read(stream):
                if env.type == "inventory.stock_reserved":
                    rid = env.data["reservation_id"]
                    counts[rid] = counts.get(rid, 0) + 1
    finally:
        store.close()
    return sum(1 for rid in accepted if counts.get(rid) != 1)
