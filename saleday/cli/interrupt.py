"""Ctrl-C and SIGTERM during a run: the first stops the traffic, the second quits at once.

`stop_on_signals()` installs handlers for SIGINT and SIGTERM while a run lasts and yields
the event they set (`RunOptions.stop`): the run stops starting visits, lets the ones in
flight finish, audits the log and writes its report marked interrupted, and the command
exits 130, as a shell reports a process ended by Ctrl-C. A second signal exits 130 at
once, leaving the log as the store holds it (nothing acknowledged is lost; the next run
moves it aside). Under `--engine ray`, Ray takes SIGTERM over once it starts; Ctrl-C
works as above.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
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

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            os.write(2, b"\ninterrupted again: exiting now\n")
            os._exit(INTERRUPTED_EXIT)
        stop.set()
        name = signal.Signals(signum).name
        os.write(2, (f"\n{name}: stopping the traffic; draining, auditing and writing a "
                     f"partial report (press Ctrl-C again to quit at once)\n").encode())

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)
        sys.stderr.flush()
