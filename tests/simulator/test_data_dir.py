"""A run and its data dir: no log is ever lost without being told, two runs never share a
log, and the views shown for a data dir are the last run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from saleday.cli.main import app

runner = CliRunner()
TINY = ["--engine", "inprocess", "--users", "60", "--no-progress", "--no-charts", "--json"]


def simulate(*args: str) -> tuple[int, dict, str]:
    result = runner.invoke(app, ["simulate", *TINY, *args])
    out = json.loads(result.stdout) if result.exit_code in (0, 1) else {}
    return result.exit_code, out, result.output


def audited(*args: str) -> dict:
    result = runner.invoke(app, ["audit", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_simulate_twice_in_one_folder_keeps_the_first_log_and_shows_the_second(tmp_path):
    """The second run in a data dir moves the first run's log aside (nothing deleted), and
    `audit --data` / `view --data` read the second run's log and views."""
    data = tmp_path / "saleday-data"
    code, first, output = simulate("--data", str(data), "--seed", "1")
    assert code == 0, output
    viewed = runner.invoke(app, ["view", "orders", "--data", str(data), "--json"])
    assert viewed.exit_code == 0, viewed.output
    code, second, output = simulate("--data", str(data), "--seed", "2")
    assert code == 0, output
    assert first["log_digest"] != second["log_digest"]
    assert audited("--data", str(data))["log_digest"] == second["log_digest"]
    kept = second["previous_run"]
    assert kept and Path(kept).parent == data / "previous-runs"
    assert audited("--store", f"sqlite:///{kept}/events.db")["log_digest"] == first["log_digest"]
    # The views of the data dir are the second run's (the first run's went aside with its log).
    orders = runner.invoke(app, ["view", "orders", "--data", str(data), "--json", "--top", "1000"])
    assert orders.exit_code == 0, orders.output
    fresh = runner.invoke(app, ["view", "orders", "--data", str(data), "--json", "--top", "1000",
                                "--rebuild"])
    assert json.loads(orders.stdout) == json.loads(fresh.stdout)
    assert json.loads(orders.stdout)["count"] == second["orders"]["started"]
    stock = json.loads(runner.invoke(app, ["view", "stock", "--data", str(data), "--json"]).stdout)
    assert all(row["available"] >= 0 for row in stock["skus"].values())


def test_an_explicit_store_that_holds_a_log_is_refused_unless_told(tmp_path):
    """`--store` naming a log with events exits 2 and leaves it as it was; with
    `--overwrite` the run moves it aside next to it and starts a new one."""
    url = f"sqlite:///{tmp_path / 'logs' / 'sale.db'}"
    code, first, output = simulate("--data", str(tmp_path / "d"), "--store", url, "--seed", "1")
    assert code == 0, output
    code, _, output = simulate("--data", str(tmp_path / "d"), "--store", url, "--seed", "2")
    assert code == 2 and "already holds a log" in output and "--overwrite" in output
    assert audited("--store", url)["log_digest"] == first["log_digest"]
    code, second, output = simulate("--data", str(tmp_path / "d"), "--store", url, "--seed", "2",
                                    "--overwrite")
    assert code == 0, output
    assert audited("--store", url)["log_digest"] == second["log_digest"]
    (kept,) = (tmp_path / "logs" / "previous-runs").iterdir()
    assert audited("--store", f"sqlite:///{kept / 'sale.db'}")["log_digest"] == first["log_digest"]


def test_a_second_run_on_a_log_in_use_is_refused_and_the_first_run_is_unharmed(tmp_path):
    """While one run writes a data dir's log, a second `simulate` on it exits 2 with a
    clear error; the first run finishes, its log intact and its audit clean."""
    data = tmp_path / "d"
    first = subprocess.Popen(
        [sys.executable, "-m", "saleday.cli.main", "simulate", *TINY[:2], "--users", "400",
         *TINY[4:], "--data", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SALEDAY_LOG_LEVEL": "warning"})
    try:
        deadline = time.monotonic() + 60
        while not (data / "events.db").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never opened its log"
            time.sleep(0.02)
        code, _, output = simulate("--data", str(data), "--seed", "2")
        still_running = first.poll() is None
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert still_running, "the first run ended before the second started: the test proves nothing"
    assert code == 2, output
    assert "another run is writing" in output
    assert first.returncode == 0, err
    report = json.loads(out)
    assert report["audit_ok"]
    assert audited("--data", str(data))["log_digest"] == report["log_digest"]


def test_a_redis_log_that_holds_events_is_refused_even_when_told(tmp_path, redis_store_url):
    """A Redis prefix that holds a log is never written over: exit 2, log as it was."""
    code, first, output = simulate("--data", str(tmp_path / "d"), "--store", redis_store_url)
    assert code == 0, output
    for extra in ([], ["--overwrite"]):
        code, _, output = simulate("--data", str(tmp_path / "d"), "--store", redis_store_url,
                                   "--seed", "2", *extra)
        assert code == 2 and "already holds a log" in output and "?prefix=" in output
    assert audited("--store", redis_store_url)["log_digest"] == first["log_digest"]


def test_a_file_that_is_not_a_log_is_moved_aside_never_deleted(tmp_path):
    """Whatever sits at the data dir's events.db, a run keeps it: a file that is not a
    saleday log is moved aside byte for byte, and the run writes its own log."""
    data = tmp_path / "d"
    data.mkdir()
    (data / "events.db").write_bytes(b"my notes, not a log")
    code, report, output = simulate("--data", str(data))
    assert code == 0, output
    assert (Path(report["previous_run"]) / "events.db").read_bytes() == b"my notes, not a log"


def test_a_redis_log_in_use_is_refused_and_freed_when_the_run_ends(tmp_path, redis_store_url):
    """While a run holds a Redis prefix (its lock key, with a TTL), a second run on that
    prefix exits 2 before writing anything; once it is released a run proceeds."""
    import redis

    from saleday.simulator.datadir import run_lock
    from tests.helpers import client_url

    with run_lock(redis_store_url):
        code, _, output = simulate("--data", str(tmp_path / "d"), "--store", redis_store_url)
        assert code == 2 and "another run is writing the log" in output, output
        client = redis.Redis.from_url(client_url(redis_store_url))
        prefix = redis_store_url.rsplit("prefix=", 1)[1]
        assert 0 < client.pttl(f"{prefix}:run-lock") <= 60_000
        assert list(client.scan_iter(match=f"{prefix}:*")) == [f"{prefix}:run-lock".encode()]
        client.close()
    code, report, output = simulate("--data", str(tmp_path / "d"), "--store", redis_store_url)
    assert code == 0 and report["audit_ok"], output
