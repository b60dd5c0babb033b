"""Test helpers shared by the suites: Redis servers, URLs, event builders, and waiting on a
condition (never on a fixed sleep).

Kept in a plain module (not conftest) so that `multiprocessing` children started with
'spawn' can import the worker functions by name.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from saleday.events import ChainVerifier, ConcurrencyError, NewEvent, open_store

# Options of the store URL that redis-py does not understand.
STORE_URL_OPTIONS = ("prefix", "connect_timeout", "socket_timeout", "wait_replicas",
                     "wait_timeout_ms")


# -- waiting on a condition -----------------------------------------------------------


class WaitTimedOut(AssertionError):
    """What a test awaited did not happen within its timeout."""


def _what(predicate: Callable[[], Any], what: str | None) -> str:
    return what or (predicate.__doc__ or "").strip() or getattr(predicate, "__name__", repr(predicate))


def wait_until(predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.01,
               what: str | None = None) -> Any:
    """Call `predicate` until it returns something truthy, and return that; raise
    `WaitTimedOut` naming `what` was awaited (default: the predicate's docstring or name)
    if `timeout` seconds pass first. Exceptions from the predicate are not caught.

    The timeout is a generous bound for a loaded machine, not a duration the test relies on:
    a passing test returns as soon as the condition holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimedOut(f"waited {timeout} s for {_what(predicate, what)}; "
                               f"it did not happen (last value: {value!r})")
        time.sleep(interval)


async def eventually(predicate: Callable[[], Any], *, timeout: float = 30.0,
                     interval: float = 0.01, what: str | None = None) -> Any:
    """`wait_until` for async tests: `predicate` may be a plain or an async function, and the
    event loop keeps running between calls."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimedOut(f"waited {timeout} s for {_what(predicate, what)}; "
                               f"it did not happen (last value: {value!r})")
        await asyncio.sleep(interval)


# -- Redis availability ---------------------------------------------------------------


def redis_required() -> bool:
    return os.environ.get("SALEDAY_REQUIRE_REDIS", "") == "1"


def no_redis(reason: str) -> None:
    """Skip the test (or fail it, when SALEDAY_REQUIRE_REDIS=1) for want of Redis."""
    if redis_required():
        pytest.fail(f"{reason} (and SALEDAY_REQUIRE_REDIS=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def redis_server_executable() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        no_redis("Redis tests need SALEDAY_REDIS_URL or `redis-server` on PATH; neither is available")
    return exe  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_cluster_port() -> int:
    """A free port P below 55536 whose cluster bus port P + 10000 is free too."""
    import random

    for _ in range(200):
        port = random.randint(20_000, 45_000)
        try:
            for p in (port, port + 10_000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def ping(url: str, timeout: float = 0.5) -> bool:
    import redis

    client = redis.Redis.from_url(client_url(url), socket_connect_timeout=timeout,
                                  socket_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


# -- URLs -----------------------------------------------------------------------------


def with_query(url: str, **options: str) -> str:
    """Return `url` with `options` set in its query string (replacing any present)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in options]
    query.extend(options.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def client_url(url: str) -> str:
    """`url` without the store-only options, for a plain redis-py client."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in STORE_URL_OPTIONS]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def redis_client(url: str):
    """A plain redis-py client for a store URL; a cluster client for `redis+cluster://`."""
    import redis

    if url.startswith("redis+cluster:"):
        from redis.cluster import ClusterNode, RedisCluster

        from saleday.events.store import cluster_seeds

        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster_seeds(url)],
                            socket_connect_timeout=2, socket_timeout=10)
    return redis.Redis.from_url(client_url(url), socket_connect_timeout=2, socket_timeout=10)


def prefix_of(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query)).get("prefix", "saleday")


def delete_prefix(url: str) -> None:
    """Delete every key of the store prefix that `url` names (SCAN + DEL)."""
    client = redis_client(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix_of(url)}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
    finally:
        client.close()


# -- a redis-server subprocess --------------------------------------------------------


class RedisServer:
    """A redis-server subprocess on a free port, in `directory`, that tests may kill.

    `extra_args` are appended to the command line and override the defaults
    (`--save "" --appendonly no`), e.g. `("--appendonly", "yes", "--appendfsync", "always")`.
    """

    def __init__(self, directory: str | os.PathLike, *extra_args: str, port: int | None = None,
                 start: bool = True, ready_timeout: float = 15.0) -> None:
        self.executable = redis_server_executable()
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self._log = None
        if start:
            self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        defaults = {"--save": "", "--appendonly": "no"}
        for opt in self.extra_args:
            defaults.pop(opt, None)
        cmd = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
               "--dir", str(self.dir), "--daemonize", "no"]
        for opt, value in defaults.items():
            cmd += [opt, value]
        return cmd + self.extra_args

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        log_path = self.dir / "redis-server.log"
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(self._command(), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: "
                                   f"{log_path.read_text(errors='replace')[-2000:]}")
            if ping(self.url, timeout=0.2):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within "
                           f"{self.ready_timeout}s")

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no final fsync) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def restart(self) -> None:
        """Start the server again on the same port and directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- events ---------------------------------------------------------------------------


def ev(i: int = 0, *, command_id: str | None = None, type: str = "test.happened",
       data: dict | None = None, **kw) -> NewEvent:
    """A small valid event; its command id defaults to `cmd-<i>`."""
    return NewEvent(type=type, data={"i": i} if data is None else data,
                    command_id=command_id or f"cmd-{i}", recorded_at=1_700_000_000_000 + i, **kw)


def verify(store, stream: str) -> list:
    """Read the whole stream, check its chain, and return the envelopes."""
    envs = store.read(stream)
    ChainVerifier(stream).feed(envs)
    return envs


# -- multiprocessing workers (spawned: keep them importable and self-contained) --------


def append_own_stream(url: str, stream: str, commits: int) -> int:
    """Append `commits` two-event commits to `stream`, each at the expected version."""
    store = open_store(url)
    try:
        for c in range(commits):
            store.append(stream, [ev(2 * c, command_id=f"{stream}-{c}-a"),
                                  ev(2 * c + 1, command_id=f"{stream}-{c}-b")], 2 * c)
        return store.head(stream).version
    finally:
        store.close()


def race_same_stream(url: str, stream: str, writer: str, commits: int,
                     start_at: float = 0.0) -> int:
    """Append `commits` one-event commits to a contended stream, retrying on conflicts;
    return the number of conflicts seen. Writers wait for wall-clock `start_at` so that
    processes spawned at different speeds really race."""
    store = open_store(url)
    store.head(stream)  # connect before the start line
    conflicts = 0
    while time.time() < start_at:
        time.sleep(0.001)
    try:
        for c in range(commits):
            event = ev(c, command_id=f"{writer}-{c}", data={"writer": writer, "c": c})
            while True:
                version = store.head(stream).version
                try:
                    store.append(stream, [event], version)
                    break
                except ConcurrencyError as exc:
                    assert exc.actual > version
                    conflicts += 1
        return conflicts
    finally:
        store.close()


def assert_audit_passes(url: str) -> None:
    """The auditor's replay of the whole log (chains, stock, tiers, dedup) finds nothing."""
    from saleday.projections.audit import run_audit
    from saleday.projections.store_source import StoreSource

    source = StoreSource(url)
    try:
        report = run_audit(source)
    finally:
        source.close()
    assert report.ok, [str(f) for f in report.findings[:5]]
    assert report.events == sum(report.streams.values())


def now_ms() -> int:
    return time.time_ns() // 1_000_000



# -- a local Redis Cluster ------------------------------------------------------------


class LocalRedisCluster:
    """A Redis Cluster of `masters` masters with one replica each, on loopback ports in
    `directory`: one `RedisServer` per node with `--cluster-enabled yes`, joined by
    `redis-cli --cluster create`. `stop()` stops every node by its own process.

    `node_timeout_ms` is the cluster's `cluster-node-timeout`: small, so a fault test does
    not wait long for the cluster to notice a dead node."""

    def __init__(self, directory: str | os.PathLike, *, masters: int = 3,
                 node_timeout_ms: int = 1000, extra_args: tuple[str, ...] = ()) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            no_redis("Redis Cluster tests need `redis-cli` on PATH (it creates the cluster)")
        self.dir = Path(directory)
        self.nodes: list[RedisServer] = []
        try:
            for i in range(2 * masters):
                node_dir = self.dir / f"node-{i}"
                self.nodes.append(RedisServer(
                    node_dir, "--cluster-enabled", "yes",
                    "--cluster-config-file", str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout", str(node_timeout_ms),
                    "--repl-diskless-sync-delay", "0", *extra_args,
                    port=free_cluster_port()))
            hosts = [f"127.0.0.1:{n.port}" for n in self.nodes]
            done = subprocess.run([cli, "--cluster", "create", *hosts, "--cluster-replicas", "1",
                                   "--cluster-yes"], capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]}"
                                   f"{done.stderr[-2000:]}")
            wait_until(self.ready, timeout=60, what="the Redis Cluster to be ready")
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """A store URL naming every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes) + "/"

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def info(self, server: RedisServer, section: str) -> dict[str, str]:
        import redis

        client = redis.Redis(port=server.port, socket_timeout=2, decode_responses=True)
        try:
            found = client.cluster("INFO") if section == "cluster" else client.info(section)
            return {k: str(v) for k, v in found.items()}
        finally:
            client.close()

    def ready(self) -> bool:
        """Every live node says cluster_state:ok and every live replica's link is up."""
        for n in self.nodes:
            if n.proc is None or n.proc.poll() is not None:
                continue
            try:
                if self.info(n, "cluster").get("cluster_state") != "ok":
                    return False
                repl = self.info(n, "replication")
            except Exception:  # noqa: BLE001 - a node still starting: not ready yet
                return False
            if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                return False
        return True

    def replica_of(self, master: RedisServer) -> RedisServer:
        """The live node that replicates `master`."""
        import redis

        for n in self.nodes:
            if n is master or n.proc is None or n.proc.poll() is not None:
                continue
            client = redis.Redis(port=n.port, socket_timeout=2, decode_responses=True)
            try:
                repl = client.info("replication")
            finally:
                client.close()
            if repl.get("role") == "slave" and int(repl.get("master_port", 0)) == master.port:
                return n
        raise LookupError(f"no replica of 127.0.0.1:{master.port}")

    def cut_off(self, replica: RedisServer, master: RedisServer) -> None:
        """Leave `replica` behind `master` from now on: close its replication link and
        SIGSTOP it before it reconnects (a stopped replica alone still catches up from
        the kernel's socket buffers), until the master counts no replica. SIGCONT it later."""
        import redis

        rep = redis.Redis(port=replica.port, socket_timeout=2)
        mas = redis.Redis(port=master.port, socket_timeout=2)
        try:
            for _ in range(20):
                rep.client_kill_filter(_type="master")
                replica.proc.send_signal(signal.SIGSTOP)
                try:
                    wait_until(lambda: mas.info("replication")["connected_slaves"] == 0,
                               timeout=2, what="the master to count no replica")
                    return
                except WaitTimedOut:
                    replica.proc.send_signal(signal.SIGCONT)  # it reconnected first: again
            raise RuntimeError(f"could not cut 127.0.0.1:{replica.port} off its master")
        finally:
            rep.close()
            mas.close()

    def promote(self, replica: RedisServer) -> None:
        """`CLUSTER FAILOVER TAKEOVER` on `replica` and wait until it is a master."""
        import redis

        client = redis.Redis(port=replica.port, socket_timeout=2, decode_responses=True)
        try:
            client.execute_command("CLUSTER FAILOVER", "TAKEOVER")
            wait_until(lambda: client.info("replication")["role"] == "master", timeout=30,
                       what=f"127.0.0.1:{replica.port} to become a master")
        finally:
            client.close()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def __enter__(self) -> LocalRedisCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
