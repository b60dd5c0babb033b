"""Stopping a run early: the traffic ends, what was started finishes, the log is audited.

A run's `RunOptions.stop` is an event that the composition root sets (on Ctrl-C or
SIGTERM: `saleday.cli.interrupt`). `until_stopped` ends the visit stream once it is set,
so every engine stops starting visits, lets the ones in flight finish, waits out their
holds as at the end of a sale, and hands back what it did; the run then audits the log and
writes its report, marked interrupted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from saleday.simulator.generator import Visit


class StopSignal(Protocol):
    """What `until_stopped` asks of a stop event (`threading.Event` is one)."""

    def is_set(self) -> bool: ...


def until_stopped(visits: Iterator[Visit], stop: StopSignal | None) -> Iterator[Visit]:
    """The visits of `visits` until `stop` is set (all of them when `stop` is None)."""
    if stop is None:
        yield from visits
        return
    for visit in visits:
        if stop.is_set():
            return
        yield visit
