"""Waiting for a live target's log to settle before it is audited.

A front door under test keeps working after the simulator's last request: its reactor
still delivers the follow-ups of the last facts (a campaign's grant, a red packet's
shares), a few tens of milliseconds later. The audit reads the log as it is, and names a
follow-up that has not arrived yet as never delivered. So before auditing a target's log
the simulator waits for it to go quiet: no stream's head moves for `quiet_s`. A log that
is still moving after `timeout_s` (others are using the target) is audited as it is.
"""

from __future__ import annotations

import time

import structlog

from saleday.events import open_store
from saleday.events.store import redact

log = structlog.get_logger("saleday.simulator")


def wait_for_quiet_log(url: str, *, quiet_s: float = 1.0, timeout_s: float = 30.0,
                       poll_s: float = 0.1) -> bool:
    """Wait until no stream of the log at `url` has moved for `quiet_s` (read-only);
    return whether it went quiet before `timeout_s`. A log that cannot be read is left
    to the audit, which says why."""
    try:
        store = open_store(url, read_only=True)
    except Exception:  # noqa: BLE001 - the audit opens it again and names the error
        return False
    started = time.monotonic()
    try:
        heads = store.streams()
        still_since = started
        while (now := time.monotonic()) - still_since < quiet_s:
            if now - started >= timeout_s:
                log.warning("target_log_still_moving", store=redact(url),
                            waited_s=round(now - started, 2))
                return False
            time.sleep(poll_s)
            moved = store.streams()
            if moved != heads:
                heads, still_since = moved, time.monotonic()
    finally:
        store.close()
    log.info("target_log_settled", store=redact(url),
             waited_s=round(time.monotonic() - started, 2))
    return True


__all__ = ["wait_for_quiet_log"]
