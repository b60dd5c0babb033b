"""A throwaway local Redis Cluster for benchmarks: `masters` masters (one is allowed, unlike
`redis-cli --cluster create`) and optionally one replica each, on loopback ports in a temp
directory, stopped by their own pids.

Slots are split in contiguous ranges, except that the slot of each stream in `place` goes
to the master `place` names: what an operator does with `redis-cli --cluster reshard` so
that N shards on N masters do not share one by the luck of CRC16.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

SLOTS = 16384


def _free_pair() -> int:
    """A free port P <= 55535 whose cluster bus port P + 10000 is free too."""
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


def slot_owners(masters: int, place: dict[str, int], prefix: str) -> list[int]:
    """The master index owning each slot: contiguous ranges, then each placed stream's
    slot (its keys' hash tag `{stream}`) moved to its master."""
    owners = [slot * masters // SLOTS for slot in range(SLOTS)]
    for stream, master in place.items():
        owners[key_slot(f"{prefix}:{{{stream}}}:log".encode())] = master % masters
    return owners


class LocalCluster:
    """Start it with `with LocalCluster(...) as cluster:`; `cluster.url` is its store URL."""

    def __init__(self, masters: int, *, replicas: bool = False, appendfsync: str = "no-aof",
                 place: dict[str, int] | None = None, prefix: str = "saleday") -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not on PATH (the cluster bench starts its own)")
        if appendfsync not in ("no-aof", "always", "everysec", "no"):
            raise ValueError(f"appendfsync {appendfsync!r}: use no-aof, always, everysec or no")
        self.masters, self.replicas = masters, replicas
        self.appendfsync = appendfsync
        self.owners = slot_owners(masters, place or {}, prefix)
        self.dir = Path(tempfile.mkdtemp(prefix="saleday-bench-cluster-"))
        self.procs: list[subprocess.Popen] = []
        self.ports: list[int] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:self.masters]) + "/"

    def __enter__(self) -> LocalCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        aof = (["--appendonly", "no"] if self.appendfsync == "no-aof"
               else ["--appendonly", "yes", "--appendfsync", self.appendfsync])
        for i in range(self.masters * (2 if self.replicas else 1)):
            port = _free_pair()
            node_dir = self.dir / f"node-{i}"
            node_dir.mkdir()
            self.procs.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
                 "--save", "", *aof, "--cluster-enabled", "yes", "--cluster-config-file",
                 str(node_dir / "nodes.conf"), "--cluster-node-timeout", "2000",
                 "--repl-diskless-sync-delay", "0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
            self.ports.append(port)
        clients = [redis.Redis(port=p, socket_timeout=5, decode_responses=True) for p in self.ports]
        try:
            _until(lambda: all(_answers(c) for c in clients), "every node to answer PING")
            for m in range(self.masters):
                clients[m].execute_command("CLUSTER SET-CONFIG-EPOCH", m + 1)
                clients[m].execute_command("CLUSTER ADDSLOTS", *(
                    s for s, owner in enumerate(self.owners) if owner == m))
            for c in clients[1:]:
                c.execute_command("CLUSTER MEET", "127.0.0.1", self.ports[0])
            _until(lambda: all(len(c.cluster("NODES")) == len(clients) for c in clients),
                   "every node to know every other")
            ids = [c.execute_command("CLUSTER MYID") for c in clients]
            for r in range(self.masters, len(clients)):
                clients[r].execute_command("CLUSTER REPLICATE", ids[r - self.masters])
            _until(lambda: all(_healthy(c) for c in clients), "cluster_state:ok and replicas in sync")
        finally:
            for c in clients:
                c.close()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


def _healthy(client: redis.Redis) -> bool:
    if client.cluster("INFO").get("cluster_state") != "ok":
        return False
    repl: dict[str, Any] = client.info("replication")
    return repl["role"] == "master" or repl.get("master_link_status") == "up"


def _until(check: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"local Redis Cluster: gave up waiting for {what}")
        time.sleep(0.05)
