"""The lock that queues the writers of one SQLite log file, across threads and processes.

SQLite's own busy handler polls with sleeps of up to 100 ms, which several shard processes
writing one file turn into tail latency; so writers first take an `flock` on a side file.
Polling that lock with short sleeps was no better under contention: a waiter asleep when
the lock came free lost it to the writer that had just let it go, again and again (four
processes appending one-event commits: p99 25 ms with the lock taken at once by whoever
came back first, 4 ms when each waits its turn in the kernel; `saleday bench` profiles,
Dec 1, docs/DESIGN_NOTES.md).

So a writer that finds the lock held blocks in `flock` (the kernel hands the lock over
the moment it is free) -- on a helper thread, because `flock` has no timeout and a writer
must give up after `timeout_s` (a process stopped while it holds the lock must not stall
the others forever): the writer waits for the helper up to its deadline. A request given
up is released by the helper as soon as it gets the lock. The lock is the open file
description's, so the helper's `flock` makes it the process's, and the writer unlocks it.
While the helper has a request in hand, writers queue behind it rather than try the lock
themselves: a second `flock` on the same description would succeed at once (it is a
conversion, not a new lock), and the helper's release of a given-up request would then
release the lock under a writer that believes it holds it.
"""

from __future__ import annotations

import fcntl
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO


class LockTimeout(Exception):
    """The lock stayed held for longer than the timeout."""


class _Request:
    """One writer's wait for the helper: `signal` is released when the lock is taken for it
    (a bare lock wakes the writer sooner than an `Event`, whose condition takes two)."""

    __slots__ = ("taken", "abandoned", "mutex", "signal")

    def __init__(self) -> None:
        self.taken = False
        self.abandoned = False
        self.mutex = threading.Lock()
        self.signal = threading.Lock()
        self.signal.acquire()


class WriterLock:
    """An exclusive `flock` on `file`, taken in turn, within `timeout_s` or `LockTimeout`."""

    def __init__(self, file: IO[bytes], timeout_s: float) -> None:
        self._file = file
        self.timeout_s = timeout_s
        self._fresh()

    def _fresh(self) -> None:
        """This process's own helper state (again in a child forked from a writer: the
        helper thread, and any writer that was waiting, stayed in the parent)."""
        self._pid = os.getpid()
        self._threads = threading.Lock()   # one thread of this process at a time
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._helper: threading.Thread | None = None
        self._pending = 0   # requests handed to the helper and not yet settled by it
        self._pending_lock = threading.Lock()

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._pid != os.getpid():
            self._fresh()
        if not self._threads.acquire(timeout=self.timeout_s):
            raise LockTimeout(f"another thread held the write lock for {self.timeout_s} s")
        try:
            self._take()
            try:
                yield
            finally:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _take(self) -> None:
        if not self._pending:   # (only the helper lowers it, and only to settle a request)
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return   # free: the common case costs one call
            except BlockingIOError:
                pass
        request = _Request()
        with self._pending_lock:
            self._pending += 1
        self._helping().put(request)
        if request.signal.acquire(timeout=self.timeout_s):
            return
        with request.mutex:
            if request.taken:   # taken just as the wait ended
                return
            request.abandoned = True
        raise LockTimeout(f"the write lock stayed held for {self.timeout_s} s")

    def _helping(self) -> queue.SimpleQueue[_Request | None]:
        if self._helper is None:
            self._helper = threading.Thread(target=self._help, daemon=True,
                                            name="sqlite-writer-lock")
            self._helper.start()
        return self._requests

    def _help(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX)
            except (OSError, ValueError):   # the file was closed under it: the store closed
                return
            with request.mutex:
                if request.abandoned:   # its writer gave up: let the next one have it
                    try:
                        fcntl.flock(self._file, fcntl.LOCK_UN)
                    except (OSError, ValueError):
                        return
                with self._pending_lock:
                    self._pending -= 1
                if not request.abandoned:
                    request.taken = True
                    request.signal.release()

    def close(self) -> None:
        """Stop the helper (a helper blocked in `flock` ends when it gets the lock)."""
        if self._helper is not None:
            self._requests.put(None)
            self._helper = None
