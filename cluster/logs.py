"""structlog set-up for the processes saleday runs: key-value events on stderr, or in a
file while a progress bar owns the terminal (`to_file`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import structlog

_file: TextIO | None = None
"""Where events go instead of stderr while `to_file` lasts."""


class _CurrentStderr:
    """Whatever `sys.stderr` is at the time of writing (tests and tools swap it), or the
    file of `to_file`."""

    def write(self, text: str) -> int:
        return (_file or sys.stderr).write(text)

    def flush(self) -> None:
        (_file or sys.stderr).flush()


@contextmanager
def to_file(path: Path) -> Iterator[Path]:
    """While it lasts, log events are appended to `path` instead of stderr (a warning
    printed under a progress bar would break it)."""
    global _file
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = _file
    with path.open("a", encoding="utf-8") as f:
        _file = f
        try:
            yield path
        finally:
            _file = previous


def configure(level: str = "info", *, json: bool = False) -> None:
    """Route structlog events to stderr as `event key=value ...` lines (or JSON lines)."""
    renderer = (structlog.processors.JSONRenderer() if json
                else structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(_CurrentStderr()),
        # Not cached: a later configure() (a CLI callback, a test) reaches every logger,
        # including those first used before it. Nothing logs per command, so it costs little.
        cache_logger_on_first_use=False,
    )
