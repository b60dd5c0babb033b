"""Ctrl-C and SIGTERM during a run: the first stops the traffic, the second quits at once.

`stop_on_signals()` installs handlers for SIGINT and SIGTERM while a run lasts and yields
the event they set (`RunOptions.stop`): the run stops starting visits, lets the ones in
flight finish, audits the log and writes its report marked interrupted, and the command
exits 130, as a shell reports a process ended by Ctrl-C. A second signal exits 130 at
once, leaving the log as the store holds it (nothing acknowledged is lost; the next run
moves it aside). Under `--engine ray`, Ray takes SIGTERM over once it starts; Ctrl-C
works as above. `saleday serve` waits on the same handlers (`Signalled.wait`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

INTERRUPTED_EXIT = 130
"""The exit status of a run stopped by a signal (128 + SIGINT)."""


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """While it lasts, SIGINT and SIGTERM set the yielded event; a second one exits 130."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop   # signals reach the main thread only
        return
    signals = Signalled("stopping the traffic; draining, auditing and writing a partial "
                        "report", also=stop.set)
    try:
        yield stop
    finally:
        signals.restore()
        sys.stderr.flush()


class Signalled:
    """SIGINT and SIGTERM, from when it is made until `restore()`: the first asks to stop
    (`count`, `wait`; `also` is called then, e.g. an event's `set` for other threads), the
    second exits 130 at once.

    The count comes first and `wait` takes no lock. A handler runs on the main thread
    between two bytecodes; `serve`'s handler set a `threading.Event` while that thread was
    inside the same event's `wait`, and a second signal landing in the first's handler
    blocked for ever on the event's own lock. Counted first, a second signal exits before
    it could block; `wait` sleeps in short slices, which a signal interrupts."""

    def __init__(self, stopping: str = "stopping", *, also: Callable[[], None] | None = None
                 ) -> None:
        self.count = 0
        self.stopping = stopping
        self.also = also
        self._saved = {sig: signal.signal(sig, self._handler)
                       for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handler(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count > 1:
            os.write(2, b"\ninterrupted again: exiting now\n")
            os._exit(INTERRUPTED_EXIT)
        if self.also is not None:
            self.also()
        name = signal.Signals(signum).name
        os.write(2, f"\n{name}: {self.stopping} (press Ctrl-C again to quit at once)\n".encode())

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds`; True as soon as a signal came."""
        deadline = time.monotonic() + seconds
        while not self.count:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.1))
        return True

    def restore(self) -> None:
        """Put back the handlers there were before."""
        for sig, previous in self._saved.items():
            signal.signal(sig, previous)
