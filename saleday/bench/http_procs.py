"""The processes a `saleday bench http` row runs and reads: uvicorn servers on loopback
ports, their CPU time, the gateway's counters from an app's /metrics, the environment a
fresh Ray or a saleday app is started with, and the Redis key prefixes a row writes under
and deletes after (`saleday.bench.http` runs the rows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from saleday.http.local import free_port


def wait_ready(url: str, timeout_s: float = 60.0, proc: Any = None) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not get ready in {timeout_s:g} s")


@contextmanager
def uvicorn_server(factory: str, env: dict[str, str] | None = None
                   ) -> Iterator[tuple[str, int]]:
    """`uvicorn --factory saleday.bench.http_apps:<factory>` on a free loopback port:
    (its base URL, its process id)."""
    port = free_port()
    errors = tempfile.TemporaryFile()   # the server's stderr: shown only when it fails to start
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", f"saleday.bench.http_apps:{factory}",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "--no-access-log", "--loop", "uvloop", "--http", "httptools"],
        env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=errors)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(url, proc=proc)
        except RuntimeError as exc:
            errors.seek(0)
            tail = errors.read()[-2000:].decode(errors="replace").strip()
            raise RuntimeError(f"{exc}; its stderr ends: {tail}" if tail else str(exc)) from None
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        errors.close()


def gateway_counts(url: str) -> dict[str, float]:
    """The gateway's counters (submitted, batches, ...) from the app's /metrics: commands
    per batch is how many requests share each shard call, and so each shard commit."""
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return parse_gateway_counts(text)


def parse_gateway_counts(text: str) -> dict[str, float]:
    """`saleday_gateway_commands_total{what=...}` of a /metrics text, by `what`."""
    out = {}
    for line in text.splitlines():
        if line.startswith("saleday_gateway_commands_total{"):
            what = line.split('what="', 1)[1].split('"', 1)[0]
            out[what] = float(line.rsplit(" ", 1)[1])
    return out


def cpu_s(pids: list[int]) -> float | None:
    """The CPU seconds (user + system) the processes have used so far; None where the
    system keeps no /proc (then no row carries CPU figures)."""
    try:
        ticks = 0
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])   # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def with_prefix(redis_url: str, prefix: str) -> str:
    """`redis_url` with the store's `prefix` option set."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(redis_url)
    query = dict(parse_qsl(parts.query), prefix=prefix)
    return urlunsplit(parts._replace(query=urlencode(query)))


def delete_prefix(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])
    finally:
        client.close()


def saleday_env(runtime: Any, settings: Any) -> dict[str, str]:
    from saleday.cluster import ray_api

    env = {"SALEDAY_RAY_ADDRESS": ray_api.gcs_address(),
           "SALEDAY_STORE_URL": runtime.config.store_url,
           "SALEDAY_SHARDS": json.dumps(runtime.config.shards),
           "SALEDAY_HTTP_RATE_PER_S": str(settings.rate_per_s),
           "SALEDAY_HTTP_RATE_BURST": str(settings.rate_burst)}
    for name in ("jwt_secret", "webhook_secret", "operator_token"):
        env[f"SALEDAY_HTTP_{name.upper()}"] = settings.secret(name)
    return env


@contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """Set variables for a fresh Ray (its processes read Serve's options at start)."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
