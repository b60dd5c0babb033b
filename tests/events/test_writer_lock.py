"""The SQLite log's writer lock (`events/writer_lock.py`): writers of one file take it in
turn, a writer that waits past its timeout gives up with `LockTimeout` and leaves the lock
free for the next, and a request given up never releases the lock under a later holder.

Two open file descriptions of one file contend for an `flock` as two processes do, so
each `WriterLock` here stands for a shard process."""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path

import pytest

from saleday.events.writer_lock import LockTimeout, WriterLock


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "events.db.writer-lock"


@pytest.fixture
def writer():
    """Makes writers (each its own open file description, as a process has); closes them."""
    made: list[WriterLock] = []

    def make(path: Path, timeout_s: float = 5.0) -> WriterLock:
        lock = WriterLock(open(path, "a+b"), timeout_s)  # noqa: SIM115 - closed below
        made.append(lock)
        return lock

    yield make
    for lock in made:
        lock.close()
        lock._file.close()


def free(path: Path) -> bool:
    """Whether another process could take the lock right now."""
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def test_a_free_lock_is_taken_and_given_back(lock_path, writer):
    a = writer(lock_path)
    with a.held():
        assert not free(lock_path)
    assert free(lock_path)


def test_a_waiting_writer_gets_the_lock_when_its_holder_lets_go(lock_path, writer):
    """Given a held lock, when another writer asks for it, then it waits, and holds it once
    the holder lets go; the two never hold it together."""
    a, b = writer(lock_path), writer(lock_path)
    order: list[str] = []
    asked = threading.Event()

    def second() -> None:
        asked.set()
        with b.held():
            order.append("b holds")
            assert not free(lock_path)

    with a.held():
        thread = threading.Thread(target=second)
        thread.start()
        asked.wait(5)
        order.append("a lets go")
    thread.join(5)
    assert order == ["a lets go", "b holds"]
    assert free(lock_path)


def test_a_writer_that_waits_too_long_gives_up_and_the_lock_stays_usable(lock_path, writer):
    """Given a lock held past a writer's timeout, when the writer asks, then it gives up
    with `LockTimeout`; once the holder lets go, the lock is free again (the request given
    up is released) and the same writer takes it."""
    a, b = writer(lock_path), writer(lock_path, timeout_s=0.2)
    with a.held():
        with pytest.raises(LockTimeout):
            with b.held():
                pytest.fail("held a lock another writer holds")
    with b.held():
        assert not free(lock_path)
    assert free(lock_path)


def test_a_request_given_up_never_frees_the_lock_under_its_next_holder(lock_path, writer):
    """Given a writer that gave up while its helper still waits for the lock, when the lock
    comes free and that writer takes it again at once, then it holds it for as long as it
    says: the helper's release of the request given up does not end its hold."""
    a, b = writer(lock_path), writer(lock_path, timeout_s=0.2)
    with a.held():
        with pytest.raises(LockTimeout):
            with b.held():
                pass
    for _ in range(50):
        with b.held():
            assert not free(lock_path)
            threading.Event().wait(0.002)   # room for a stray release to land
            assert not free(lock_path)


def test_threads_of_one_process_take_it_one_at_a_time(lock_path, writer):
    a = writer(lock_path)
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(200):
            with a.held():
                with guard:
                    inside += 1
                    most = max(most, inside)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert most == 1 and free(lock_path)


def test_a_child_forked_after_the_helper_started_takes_the_lock_in_turn(lock_path, writer):
    """Given a writer whose helper thread runs (it once waited for the lock), when the
    process forks, then the child (which has no helper thread) still takes the lock in turn
    when it is held and then let go."""
    import multiprocessing

    a, b = writer(lock_path), writer(lock_path, timeout_s=2.0)

    def wait_for_it() -> None:
        with a.held():
            pass

    with b.held():   # a waits through its helper
        waiting = threading.Thread(target=wait_for_it)
        waiting.start()
        threading.Event().wait(0.1)
    waiting.join(5)

    def child(out) -> None:
        try:
            with a.held():
                out.put("held")
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            out.put(repr(exc))

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    with b.held():   # the child must wait for it
        proc = ctx.Process(target=child, args=(out,))
        proc.start()
        threading.Event().wait(0.1)
    assert out.get(timeout=20) == "held"
    proc.join(10)
