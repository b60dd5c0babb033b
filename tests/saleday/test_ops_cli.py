"""`saleday serve` and `saleday status` as an operator runs them: serve starts the shards and
stays up until SIGTERM; status shows each shard's node, state, version, epoch, lag,
restarts and health, exits 1 when one is not healthy, and nothing shows a password."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
import redis
from typer.testing import CliRunner

from saleday.cli.main import app
from saleday.events import NewEvent, open_store
from tests.helpers import RedisServer, free_port

PASSWORD = "ops-S3cret-never-print"
SALEDAY = [sys.executable, "-m", "saleday.cli.main"]
ROOT = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("SALEDAY_")}
    out.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(ROOT))
    return out


def saleday(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*SALEDAY, *args], check=False, capture_output=True, text=True,
                          timeout=timeout, env=env(), cwd=ROOT)


class Serve:
    """`saleday serve` in the background, its output read line by line."""

    def __init__(self, *args: str, extra_env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([*SALEDAY, "--log-level", "info", "serve", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**env(), **(extra_env or {})}, cwd=ROOT)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        for pipe in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe) -> None:  # type: ignore[no-untyped-def]
        for line in pipe:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"serve never printed {text!r}; output:\n{''.join(self.seen)[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code

    @property
    def output(self) -> str:
        return "".join(self.seen)


def statuses(address: str, store: str) -> tuple[int, list[dict], str]:
    """`saleday status --json` run in this process (its first call joins serve's Ray as a
    driver, which later calls reuse: a new process would join again, for seconds each)."""
    unset = {k: None for k in os.environ if k.startswith("SALEDAY_")}
    done = CliRunner().invoke(app, ["status", "--address", address, "--store", store, "--json"],
                              env=unset)
    return done.exit_code, json.loads(done.stdout), done.output


@pytest.mark.ray
@pytest.mark.redis
@pytest.mark.slow
def test_serve_then_status_shows_every_shard_and_stops_on_sigterm(tmp_path):
    """serve prints where each shard runs; status reports them healthy, then a writer
    behind a shard's back (lag), a restart (restarts, epoch) and a dead shard (exit 1);
    SIGTERM ends serve; the ACL password appears nowhere."""
    with RedisServer(tmp_path) as server:
        admin = redis.Redis(port=server.port)
        admin.execute_command("ACL", "SETUSER", "saleday", "on", f">{PASSWORD}", "~ops:*", "+@all")
        admin.close()
        store = f"redis://saleday:{PASSWORD}@127.0.0.1:{server.port}/0?prefix=ops"
        serve = Serve("--store", store, "--shards", "sku=2,session=1", "--num-cpus", "2",
                      "--health-every-s", "0.5", "--tick-s", "0.2")
        try:
            address = serve.wait_for("ray address:").split()[-1]
            serve.wait_for("session-000")
            serve.wait_for("shard_health")
            code, rows, text = statuses(address, store)
            assert code == 0, text
            assert [(r["stream"], r["kind"], r["health"]) for r in rows] == [
                ("session-000", "session", "ok"), ("sku-000", "sku", "ok"), ("sku-001", "sku", "ok")]
            assert all(r["node_ip"] and r["node_id"] and r["pid"] and r["epoch"] == 1 and
                       r["version"] == 0 and r["lag"] == 0 and r["restarts"] == 0 for r in rows)
            assert rows[0]["store"] == f"redis://saleday:***@127.0.0.1:{server.port}/0?prefix=ops"

            # Another writer appends behind sku-000's back: status shows it behind by one.
            log = open_store(store)
            log.append("sku-000", [NewEvent(type="inventory.stock_added", command_id="intruder",
                                            data={"sku": "x", "qty": 1}, recorded_at=1)], 0)
            log.close()
            code, rows, text = statuses(address, store)
            by = {r["stream"]: r for r in rows}
            assert code == 1 and by["sku-000"]["health"] == "behind" and by["sku-000"]["lag"] == 1

            # A restart is counted and recovers the stream; a shard killed for good is dead.
            # (as an operator's script would, from a driver of serve's Ray: this process)
            ray.kill(ray.get_actor("sku-000", namespace="saleday"), no_restart=False)
            ray.kill(ray.get_actor("session-000", namespace="saleday"), no_restart=True)
            deadline = time.monotonic() + 30
            while True:
                code, rows, text = statuses(address, store)
                by = {r["stream"]: r for r in rows}
                if by["sku-000"]["health"] == "ok" or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert by["sku-000"]["health"] == "ok", by["sku-000"]
            assert by["sku-000"]["restarts"] == 1 and by["sku-000"]["epoch"] == 2
            assert by["sku-000"]["version"] == 1 and by["sku-000"]["lag"] == 0
            assert by["session-000"]["health"] == "dead" and by["session-000"]["state"] == "DEAD"
            assert code == 1
            table = saleday("status", "--address", address, "--store", store)
            assert "session-000" in table.stdout and "dead" in table.stdout
            assert table.returncode == 1
            serve.wait_for("health='dead'")
        finally:
            ray.shutdown()  # this process leaves serve's Ray before serve ends
            stopped = serve.stop()
        assert stopped == 0, serve.output[-3000:]
        assert "serve_stopping" in serve.output
        for text in (serve.output, table.stdout, table.stderr, json.dumps(rows)):
            assert PASSWORD not in text


def test_serve_on_an_unreachable_store_says_so_without_the_password():
    """A store that does not answer stops serve at once with a readable error (exit 2),
    before Ray starts, and the URL in it is redacted."""
    runner = CliRunner()
    url = f"redis://app:{PASSWORD}@127.0.0.1:{free_port()}/0?connect_timeout=0.2"
    result = runner.invoke(app, ["serve", "--store", url], env={"SALEDAY_RAY_ADDRESS": ""})
    assert result.exit_code == 2
    assert "unavailable" in result.output and "app:***@127.0.0.1" in result.output
    assert PASSWORD not in result.output


def test_serve_refuses_a_malformed_shard_count():
    """`--shards sku` (no count) is a one-line error naming the setting."""
    result = CliRunner().invoke(app, ["serve", "--shards", "sku"])
    assert result.exit_code == 2
    assert "shards" in result.output and "kind=count" in result.output


def test_status_where_no_ray_answers_fails_at_once():
    """An address nothing listens on is a one-line error within seconds, not a long hang."""
    started = time.monotonic()
    result = CliRunner().invoke(app, ["status", "--address", f"127.0.0.1:{free_port()}"])
    assert result.exit_code == 2
    assert "no Ray cluster answers at 127.0.0.1:" in result.output
    assert time.monotonic() - started < 10


@pytest.mark.redis
def test_status_names_the_cluster_master_each_shard_writes_to(redis_cluster_store_url):
    """On a Redis Cluster, status reads each shard's log version and the master owning its
    stream's slot; eight SKU shards spread over more than one master."""
    from saleday.cli.ops import log_heads

    streams = [f"sku-{i:03d}" for i in range(8)]
    log = open_store(redis_cluster_store_url)
    try:
        for s in streams:
            log.append(s, [NewEvent(type="inventory.stock_added", command_id=f"{s}-1",
                                    data={"sku": s, "qty": 1}, recorded_at=1)], 0)
        expected = {s: (1, log.master_of(s)) for s in streams}
    finally:
        log.close()
    heads = log_heads(redis_cluster_store_url, streams)
    assert heads == expected
    assert len({master for _, master in heads.values()}) >= 2


def test_the_status_table_shows_every_shard_and_its_master_whole_in_132_columns():
    """Piped at 132 columns, status's table shows each shard's name, health, master and
    version without cutting them (a cut `session-0…` names no shard); other cells may
    shrink."""
    from rich.console import Console

    from saleday.cli.ops import _table

    rows = [{"stream": s, "kind": s.split("-")[0], "health": "dead", "state": "DEAD",
             "node_ip": "10.100.200.123", "node_id": "f" * 56, "pid": 1234567,
             "master": "10.100.200.201:6379", "version": 1_234_567, "epoch": 12, "lag": 0,
             "timers": 12_345, "restarts": 3} for s in ("session-000", "sku-000")]
    console = Console(width=132)
    with console.capture() as out:
        console.print(_table(rows, title="saleday shards"))
    text = out.get()
    assert all(len(line) <= 132 for line in text.splitlines())
    for s in ("session-000", "sku-000"):
        line = next(line for line in text.splitlines() if s in line)
        assert "dead" in line and "10.100.200.201:6379" in line and "1234567" in line


@pytest.mark.ray
@pytest.mark.slow
def test_serve_http_on_a_local_ray_stops_on_ctrl_c_quietly(tmp_path):
    """Ctrl-C ends `serve --http` on its own local Ray with exit 0, Serve and the shards
    going with that Ray: no "graceful_shutdown failed" from Ray's raylet (Serve's
    controller killed itself under a task Ray would retry)."""
    serve = Serve("--http", "--dev-secrets", "--num-cpus", "2", "--port", str(free_port()),
                  extra_env={"SALEDAY_DATA_DIR": str(tmp_path)})
    try:
        serve.wait_for("serving;", timeout=120)
    finally:
        stopped = serve.stop(signal.SIGINT)
    assert stopped == 0, serve.output[-3000:]
    assert "serve_stopping" in serve.output
    assert "graceful_shutdown" not in serve.output, serve.output[-3000:]
    assert (tmp_path / "http-secrets.json").exists()   # its data dir, not the checkout's


def test_serve_refuses_a_log_another_run_is_writing(tmp_path):
    """A second serve on a local Ray, on a log another run holds (a first serve, a
    simulate), is refused at once with the holder's pid (exit 2), before any shard of its
    own could fence the first one's; once the log is free, the lock is its to take."""
    from saleday.simulator.datadir import run_lock

    url = f"sqlite:///{tmp_path}/events.db"
    with run_lock(url):
        result = CliRunner().invoke(app, ["serve", "--store", url],
                                    env={"SALEDAY_RAY_ADDRESS": ""})
    assert result.exit_code == 2, result.output
    assert "another run is writing the log" in result.output
    assert f"pid {os.getpid()}" in result.output
    with run_lock(url):   # the refused serve left the lock free
        pass
