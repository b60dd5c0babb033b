"""The words of a shard host: a request, and what a shard answers to it.

`Accepted` (decided and durable), a `Rejection` by the rules (actors/decider.py), or a
`TransportFailure` (`Busy`, `Unavailable`): not decided, safe to retry with the same id.
`ShardFenced` is raised, not answered: the incarnation lost its stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from saleday.actors.decider import Coded, Rejection
from saleday.events.values import quick_init


@quick_init
@dataclass(frozen=True, slots=True)
class Request:
    """One command sent to a shard, with the id that makes its retry safe, and the ids its
    events carry: the flow it belongs to (`correlation_id`: an order, a visit, a team) and
    the recorded event that led to it (`causation_id`, an `events.event_ref`)."""

    command_id: str
    command: Any
    correlation_id: str = ""
    causation_id: str = ""


@quick_init
@dataclass(frozen=True, slots=True)
class Accepted:
    """The command was decided and its events (possibly none) are durable in the log."""

    events: tuple[Any, ...] = ()
    first_version: int = 0
    last_version: int = 0
    duplicate: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportFailure(Coded):
    """Not decided, for a reason outside the rules: the shard or its store could not be
    reached, or the shard shed load. Retrying with the same command id is safe. Not a
    `Rejection`: the rules never said no (callers that count refusals must not count these).
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class Unavailable(TransportFailure):
    """Not decided: the shard or its store could not be reached. Retry with the same id."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Busy(TransportFailure):
    """Not decided: the shard's queue is full (load shedding). Retry later."""

    shard: str


Reply = Accepted | Rejection | TransportFailure
"""What a shard (or a gateway in front of it) answers for each request: `Accepted`, a typed
`Rejection` by the rules, or a `TransportFailure` (`Busy`, `Unavailable`)."""


class ShardFenced(Exception):
    """This incarnation lost its stream to a newer one and must not decide anything."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000
