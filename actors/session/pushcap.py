"""A user's push frequency cap: at most `cap` pushes delivered in a rolling window.

At most `cap` pushes are delivered in the rolling window `(now - window_ms, now]`, by the
delivery events' time. The state keeps only the deliveries of the last
`MAX_PUSH_WINDOW_MS` (the widest window a command may ask for), which is also how far back
a repeated push id is recognised.

A part of the session decider (`actors/session/__init__.py`), which checks the command's
fields and user first. Pure: no I/O, clock, randomness or logging.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

from saleday.actors.decider import Decider, InvalidCommand, Rejection
from saleday.events.registry import event_type

PUSH_KINDS = ("coupon", "ad")
DAY_MS = 86_400_000
MAX_PUSH_WINDOW_MS = 7 * DAY_MS
"""The widest frequency-cap window a command may ask for; deliveries older than this
(before the latest one) are dropped from the state."""
NON_NEGATIVE = ("cap",)

Pushes = tuple[tuple[int, str], ...]
"""`(at, push_id)` of the deliveries within `MAX_PUSH_WINDOW_MS` of the latest, oldest
first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordPush:
    """Deliver a push ("coupon" or "ad") unless `cap` were delivered in the last `window_ms`."""

    user: str
    push_id: str
    kind: str
    now: int
    cap: int = 3
    window_ms: int = DAY_MS


@event_type("sessions.push_delivered")
@dataclass(frozen=True, slots=True, kw_only=True)
class PushDelivered:
    """A push of `kind` went out to the user at `at`."""

    user: str
    push_id: str
    kind: str
    at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FrequencyCapped(Rejection):
    """`delivered_in_window` pushes already went out in the window; the cap is `cap`."""

    user: str
    push_id: str
    delivered_in_window: int
    cap: int


def decide(command: RecordPush, state: Pushes) -> list[PushDelivered] | Rejection:
    """The push delivered, unless the cap is reached (or it went out already)."""
    if command.kind not in PUSH_KINDS:
        return InvalidCommand(reason=f"push kind must be one of {PUSH_KINDS}, "
                                     f"not {command.kind!r}")
    if not 0 < command.window_ms <= MAX_PUSH_WINDOW_MS:
        return InvalidCommand(reason=f"window_ms must be in (0, {MAX_PUSH_WINDOW_MS}], "
                                     f"not {command.window_ms}")
    if any(push_id == command.push_id for _, push_id in state):
        return []
    now, start = command.now, command.now - command.window_ms
    in_window = sum(1 for at, _ in state if start < at <= now)
    if in_window >= command.cap:
        return FrequencyCapped(user=command.user, push_id=command.push_id,
                               delivered_in_window=in_window, cap=command.cap)
    return [PushDelivered(user=command.user, push_id=command.push_id, kind=command.kind, at=now)]


def evolve(state: Pushes, event: PushDelivered) -> Pushes:
    """`state` plus the delivery, oldest first, without those too old for any window."""
    at, oldest = event.at, event.at - MAX_PUSH_WINDOW_MS
    kept = tuple(p for p in state if p[0] > oldest) + ((at, event.push_id),)
    return kept if not state or state[-1][0] <= at else tuple(sorted(kept))


pushcap_decider: Decider[RecordPush, PushDelivered, Pushes] = Decider(
    kind="session.pushcap", initial=lambda user: (), decide=decide, evolve=evolve,
    entity_of=attrgetter("user"), commands=(RecordPush,), events=(PushDelivered,))
