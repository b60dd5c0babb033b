"""structlog set-up for the processes saleday runs: key-value events on stderr."""

from __future__ import annotations

import logging
import sys

import structlog


class _CurrentStderr:
    """Whatever `sys.stderr` is at the time of writing (tests and tools swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


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
