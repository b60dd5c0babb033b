"""A progress line for a running simulation: sale clock, commands, rate, errors and Busy.

`RunProgress` wraps rich.progress. It draws only for a person watching a terminal (or
when forced), and `update` is cheap enough to call every few thousand commands: calls
closer together than `min_interval_s` return after one clock read.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

DAY_S = 86_400


def sale_clock(sim_t_s: float, opens_at_s: float = 0.0) -> str:
    """HH:MM:SS on the sale's wall clock, `sim_t_s` seconds after the window opened.

    `opens_at_s` is when the window opens, in seconds after midnight (0 for 11.11 at
    00:00); times before the opening wrap to the previous evening (23:59:50).
    """
    t = int((opens_at_s + sim_t_s) // 1) % DAY_S
    h, rest = divmod(t, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


class RunProgress:
    """Shows a run's progress while it runs; a no-op when disabled or not on a terminal."""

    def __init__(self, *, planned: int | None, sim_end_s: float | None = None,
                 enabled: bool = True, force: bool = False, console: Console | None = None,
                 opens_at_s: float = 0.0, min_interval_s: float = 0.1,
                 description: str = "sale day", sim_start_s: float = 0.0) -> None:
        """`planned` commands fill the bar; if unknown, the sale clock from `sim_start_s`
        (negative when the window opens before midnight) to `sim_end_s` does."""
        if console is None:
            on_terminal = sys.stdout.isatty()
            console = Console() if (enabled and (on_terminal or force)) else None
        else:
            on_terminal = console.is_terminal
        self.enabled = enabled and (force or on_terminal) and console is not None
        self.planned = planned
        self.sim_end_s = sim_end_s
        self.sim_start_s = sim_start_s
        self._by_clock = planned is None and sim_end_s is not None and sim_end_s > sim_start_s
        self.opens_at_s = opens_at_s
        self.min_interval_s = min_interval_s
        self._console = console
        self._description = description
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._started = 0.0
        self._last = -float("inf")
        self._pending: tuple[float, int, int, int] | None = None

    def __enter__(self) -> Self:
        self._started = time.perf_counter()
        if not self.enabled:
            return self
        self._progress = Progress(
            TextColumn("[bold]{task.description}[/bold] {task.fields[clock]}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[done]} commands"),
            TextColumn("{task.fields[rate]} cmd/s"),
            TextColumn("errors {task.fields[errors]} · busy {task.fields[busy]}"),
            TimeElapsedColumn(),
            console=self._console, refresh_per_second=4, transient=False)
        self._task = self._progress.add_task(
            self._description,
            total=self.sim_end_s - self.sim_start_s if self._by_clock else self.planned,
            clock=sale_clock(self.sim_start_s, self.opens_at_s),
            done=self._done(0), rate="0", errors="0", busy="0")
        self._progress.start()
        return self

    def update(self, sim_t_s: float, commands: int, errors: int = 0, busy: int = 0) -> None:
        """Where the run is: simulated seconds since the opening, commands done so far."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last < self.min_interval_s:
            self._pending = (sim_t_s, commands, errors, busy)
            return
        self._last = now
        self._pending = None
        self._show(now, sim_t_s, commands, errors, busy)

    def phase(self, name: str) -> None:
        """Name what the run does now that the sale's traffic is over (draining, auditing,
        charts): the bar keeps its place and shows the name instead of standing still."""
        if self._progress is None or self._task is None:
            return
        if self._pending is not None:
            self._show(time.perf_counter(), *self._pending)
            self._pending = None
        self._progress.update(self._task, description=name)

    def _show(self, now: float, sim_t_s: float, commands: int, errors: int, busy: int) -> None:
        assert self._progress is not None and self._task is not None
        elapsed = max(now - self._started, 1e-9)
        self._progress.update(self._task,
                              completed=sim_t_s - self.sim_start_s if self._by_clock else commands,
                              clock=sale_clock(sim_t_s, self.opens_at_s),
                              done=self._done(commands), rate=f"{commands / elapsed:,.0f}",
                              errors=f"{errors:,}", busy=f"{busy:,}")

    def _done(self, commands: int) -> str:
        return f"{commands:,}" if self.planned is None else f"{commands:,}/{self.planned:,}"

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is None:
            return
        if self._pending is not None:
            self._show(time.perf_counter(), *self._pending)
        self._progress.stop()
        self._progress = None
