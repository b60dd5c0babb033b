"""A local Ray started the product's way (`ray_api.start_ray()`) listens on loopback only
and keeps Ray's token authentication, with its token readable by its owner only.

The Ray runs in a subprocess, so it is its own Ray with its own environment (no
`RAY_AUTH_MODE`, a private HOME for the token), and every listening socket of every
process it started is read from /proc."""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LISTEN = "0A"

SCRIPT = """
import json, os, sys
from saleday.cluster import ray_api
ray_api.start_ray(num_cpus=1)
import ray

@ray.remote
def pid():
    return os.getpid()

worker = ray.get(pid.remote(), timeout=120)
print(json.dumps({"pid": os.getpid(), "worker": worker,
                  "auth_mode": os.environ.get("RAY_AUTH_MODE"),
                  "node_ip": ray.util.get_node_ip_address()}), flush=True)
sys.stdin.read()  # hold Ray up until the test has looked
ray.shutdown()
"""


def descendants(root: int) -> set[int]:
    """`root` and every process below it, from the parent pids in /proc."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_line = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat_line.rsplit(")", 1)[1].split()[1])
    found, todo = {root}, [root]
    while todo:
        pid = todo.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in found:
                found.add(child)
                todo.append(child)
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _address(hex_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_ip)
    # /proc/net/tcp* print the address as 32-bit words in host (little-endian) order
    return ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))


def listeners() -> dict[str, tuple[str, int]]:
    """inode -> (address, port) of every listening TCP socket on the machine."""
    out = {}
    for family in ("tcp", "tcp6"):
        path = Path(f"/proc/net/{family}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == LISTEN:
                hex_ip, hex_port = local.split(":")
                out[inode] = (str(_address(hex_ip)), int(hex_port, 16))
    return out


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_a_local_ray_listens_on_loopback_only_and_keeps_token_auth(tmp_path: Path) -> None:
    """Every socket a local Ray listens on is loopback, token auth stays on, and the token
    Ray uses is a 0600 file."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "SALEDAY_"))}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            pytest.fail(f"the local Ray did not start: {proc.stderr.read()[-3000:]}")
        started = json.loads(line)
        pids = descendants(started["pid"])
        assert started["worker"] in pids
        sockets = listeners()
        bound = {(pid, sockets[inode]) for pid in pids for inode in socket_inodes(pid)
                 if inode in sockets}
        assert bound, "found no listening socket of the Ray processes"
        assert {pid for pid, _ in bound} >= {started["pid"], started["worker"]}
        exposed = sorted((pid, addr) for pid, addr in bound if not is_loopback(addr[0]))
        assert exposed == [], f"listening beyond loopback: {exposed}"
        assert is_loopback(started["node_ip"])
        assert started["auth_mode"] == "token"
        token = tmp_path / ".ray" / "auth_token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        assert len(token.read_text()) == 64
    finally:
        if proc.poll() is None:
            proc.communicate(input="", timeout=60)


def test_serve_without_a_place_for_rays_token_is_a_one_line_error(tmp_path: Path) -> None:
    """When Ray cannot write its token (HOME is not a directory), serve says so and how to
    proceed, exit 2, and no traceback; it does not fall back to running without auth."""
    home = tmp_path / "not-a-dir"
    home.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SALEDAY_"))}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    done = subprocess.run([sys.executable, "-m", "saleday.cli.main", "serve", "--store",
                           f"sqlite:///{tmp_path}/events.db", "--shards", "sku=1"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 2
    assert "cannot start a local Ray" in done.stderr and "RAY_AUTH_TOKEN_PATH" in done.stderr
    assert "Traceback" not in done.stderr
