"""Before a target's log is audited, the simulator waits for it to go quiet: the front
door's reactor still delivers the last facts' follow-ups after the last request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from saleday.events import NewEvent, open_store
from saleday.simulator.settle import wait_for_quiet_log


def _event(i: int) -> NewEvent:
    return NewEvent(type="settle.tested", data={"i": i}, command_id=f"c{i}", recorded_at=i)


def test_the_wait_outlasts_a_follow_up_that_lands_after_the_last_request(tmp_path: Path):
    """Given a log whose last follow-up lands 0.3 s later, the wait returns only after it
    (and a quiet second), so the audit sees it."""
    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    store.append("campaign-c1", [_event(1)], expected_version=0)
    late = threading.Timer(0.3, lambda: store.append("session-u1", [_event(2)],
                                                     expected_version=0))
    late.start()
    started = time.monotonic()
    assert wait_for_quiet_log(url, quiet_s=0.6, timeout_s=10.0)
    assert time.monotonic() - started >= 0.85
    late.join()
    assert store.streams() == {"campaign-c1": 1, "session-u1": 1}
    store.close()


def test_a_log_that_keeps_moving_is_audited_as_it_is_after_the_timeout(tmp_path: Path):
    """Given a target that others keep writing to, the wait gives up at its timeout and
    says the log did not go quiet."""
    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    stop = threading.Event()

    def busy() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            store.append("session-u1", [_event(i)], expected_version=i - 1)
            time.sleep(0.05)

    writer = threading.Thread(target=busy)
    writer.start()
    try:
        started = time.monotonic()
        assert not wait_for_quiet_log(url, quiet_s=0.5, timeout_s=1.0)
        assert 1.0 <= time.monotonic() - started < 3.0
    finally:
        stop.set()
        writer.join()
        store.close()


def test_a_log_that_cannot_be_read_is_left_to_the_audit(tmp_path: Path):
    """Given no log at the URL, the wait returns at once; the audit names the error."""
    started = time.monotonic()
    assert not wait_for_quiet_log(f"sqlite:///{tmp_path}/missing.db", timeout_s=5.0)
    assert time.monotonic() - started < 1.0
