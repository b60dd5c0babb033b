"""The story of one order, visit, team or user across streams, from the log alone.

`trace(read, subject)` reads the log twice (`read()` gives the source's batches afresh):
1. the events *about* the subject: its correlation id is the subject (an order id, a
   visit's session id, a team id), or a payload field names it (`user`, `order_id`,
   `team`, `leader`, `session_id`); their correlation ids are the flows it took part in
   (a user's orders and visits, the teams they joined);
2. every event of those flows, and every event caused, directly or through a chain of
   causation ids, by one of them (a split's share coupons, an expiry's release).
The story is in event-time order; at one time, a cause before what it caused, then by
stream and version. Pure: the source does the
reading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from saleday.events import Envelope, event_ref

NAMING_FIELDS = ("user", "order_id", "team", "leader", "session_id")
"""Payload fields that name the subject of an event."""
SHARED_FLOWS = frozenset({"", "setup"})
"""Correlation ids that are not one flow (no id; the sale's setup): never followed."""


@dataclass(frozen=True, slots=True)
class Trace:
    """What `trace` found: the subject, the flows it followed, and the events in order."""

    subject: str
    flows: tuple[str, ...]
    events: tuple[Envelope, ...]

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "flows": list(self.flows),
                "events": [{"stream": e.stream, "version": e.version, "type": e.type,
                            "recorded_at": e.recorded_at, "command_id": e.command_id,
                            "correlation_id": e.correlation_id, "causation_id": e.causation_id,
                            "data": e.data} for e in self.events]}


def _envelopes(batches: Iterable[Any]) -> Iterable[Envelope]:
    for item in batches:
        if type(item) is tuple:   # (stream, envelopes); a chain finding is not an event
            yield from item[1]


def _names(env: Envelope, subject: str) -> bool:
    if env.correlation_id == subject:
        return True
    data = env.data
    return any(data.get(key) == subject for key in NAMING_FIELDS)


def trace(read: Callable[[], Iterable[Any]], subject: str) -> Trace:
    """Every event of `subject`'s story (see the module's docstring), in event-time order."""
    flows = {subject}
    for env in _envelopes(read()):
        if _names(env, subject):
            flows.add(env.correlation_id)
    flows -= SHARED_FLOWS
    story: dict[str, Envelope] = {}
    caused: dict[str, list[Envelope]] = {}
    for env in _envelopes(read()):
        if env.correlation_id in flows or _names(env, subject):
            story[event_ref(env.stream, env.version)] = env
        elif env.causation_id:
            caused.setdefault(env.causation_id, []).append(env)
    frontier = list(story)
    while frontier:   # follow causation from the story to what it caused, transitively
        ref = frontier.pop()
        for env in caused.pop(ref, ()):
            own = event_ref(env.stream, env.version)
            if own not in story:
                story[own] = env
                frontier.append(own)
    depth: dict[str, int] = {}

    def depth_of(ref: str) -> int:   # how many causes up the story an event sits
        if ref not in depth:
            cause = story[ref].causation_id
            depth[ref] = depth_of(cause) + 1 if cause in story and cause != ref else 0
        return depth[ref]

    ordered = sorted(story.values(), key=lambda e: (
        e.recorded_at, depth_of(event_ref(e.stream, e.version)), e.stream, e.version))
    return Trace(subject=subject, flows=tuple(sorted(flows)), events=tuple(ordered))
