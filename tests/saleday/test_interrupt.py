"""Ctrl-C during `saleday simulate`: the traffic stops, the log is audited, a partial
report marked interrupted is written, and the command exits 130; a second Ctrl-C quits
at once. Driven as a user would: a subprocess and real signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saleday.events import EventLogError, open_store
from saleday.simulator.stopping import until_stopped

STARTED = b"simulation_started"


def start(data: Path, *extra: str) -> subprocess.Popen:
    """An in-process sale day too long to finish within the test, logging at info."""
    return subprocess.Popen(
        [sys.executable, "-m", "saleday.cli.main", "--log-level", "info", "simulate",
         "--engine", "inprocess", "--users", "20000", "--data", str(data), "--no-progress",
         *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_traffic(proc: subprocess.Popen, data: Path, timeout_s: float = 90) -> None:
    """Wait until the run said it started and its log holds visits (sessions)."""
    deadline = time.monotonic() + timeout_s
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if STARTED in line:
            break
    while time.monotonic() < deadline and proc.poll() is None:
        if sessions_logged(data):
            return
        time.sleep(0.1)
    proc.kill()
    pytest.fail("the run's traffic never started")


def sessions_logged(data: Path) -> bool:
    """Whether the run's log has recorded a visit yet (read-only; the run is writing)."""
    if not (data / "events.db").exists():
        return False
    try:
        store = open_store(f"sqlite:///{data}/events.db", read_only=True)
    except EventLogError:
        return False
    try:
        return any(s.startswith("session-") and v > 0 for s, v in store.streams().items())
    finally:
        store.close()


def test_sigint_stops_the_traffic_and_writes_a_partial_report(tmp_path):
    """One SIGINT: exit 130, the report and its JSON marked interrupted, the audit run."""
    proc = start(tmp_path, "--no-charts")
    wait_for_traffic(proc, tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    text = out.decode()
    assert "INTERRUPTED" in text and "audit: PASS" in text
    assert b"stopping the traffic" in err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["interrupted"] is True and report["audit_ok"] is True
    assert 0 < report["commands"]


def test_a_second_sigint_quits_at_once(tmp_path):
    """Two SIGINTs: exit 130 without waiting for the drain, the audit or a report."""
    proc = start(tmp_path)
    wait_for_traffic(proc, tmp_path)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert b"exiting now" in err and b"audit:" not in out


class Stop:
    def __init__(self, after: int) -> None:
        self.after, self.asked = after, 0

    def is_set(self) -> bool:
        self.asked += 1
        return self.asked > self.after


def test_the_stream_ends_once_stop_is_set():
    """No visit is taken from the stream after the stop; without a stop, all are."""
    assert list(until_stopped(iter(range(5)), Stop(after=2))) == [0, 1]
    assert list(until_stopped(iter(range(5)), None)) == [0, 1, 2, 3, 4]


SIGNALLED = """
from saleday.cli.interrupt import Signalled
signals = Signalled("stopping the loop")
print("ready", flush=True)
while not signals.wait(0.001):
    pass
print("stopped", flush=True)
import time
time.sleep(60)   # until the second signal
"""


def start_waiting() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SIGNALLED], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def test_a_waiting_loop_stops_on_a_signal_and_quits_on_the_second():
    """`saleday serve`'s wait (`Signalled`): the first SIGINT ends the wait, the second
    exits 130 at once."""
    proc = start_waiting()
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline() == b"stopped\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert b"stopping the loop" in err and b"exiting now" in err


def test_a_waiting_loop_under_a_barrage_of_signals_exits():
    """Signals every millisecond, some landing inside the handler of the one before: the
    process still exits 130 (a handler that set a `threading.Event` could block for ever
    on the lock of the `wait` it interrupted, as `serve` did)."""
    proc = start_waiting()
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.001)
    if proc.poll() is None:
        proc.kill()
        pytest.fail("the process hung under repeated signals")
    assert proc.wait() == 130
    proc.communicate()
