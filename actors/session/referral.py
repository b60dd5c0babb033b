"""A user's sessions and referral: who invited the user, decided once, at first touch.

A session id is started once. A user's FIRST session (first touch) may attribute the user
to an inviter, and only then: later sessions never change who invited whom. The gateway
passes `inviter_since`, the time the inviter was first seen (their `first_seen`, 0 if
never), and attribution needs `0 < inviter_since < now`: the inviter was seen strictly
before the invitee's first touch. Every attribution edge therefore goes from an
earlier-seen user to a later-seen one, so first-seen times rise strictly along any path of
the referral graph and no path can return to where it started: the graph has no cycles
(nor self-loops, which are also refused outright), and since each user is attributed at
most once it is a forest.

A part of the session decider (`actors/session/__init__.py`), which checks the command's
fields and user first. Pure: no I/O, clock, randomness or logging.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import ClassVar, assert_never

import immutables

from saleday.actors.decider import Decider, compact_pickle
from saleday.actors.fields import fast_replace
from saleday.events.registry import event_type
from saleday.events.values import quick_init

MAY_BE_EMPTY = ("utm_source", "utm_medium", "utm_campaign", "inviter")
"""The str fields of `StartSession` that may be empty."""
NON_NEGATIVE = ("inviter_since",)


@dataclass(frozen=True, slots=True, kw_only=True)
class StartSession:
    """The user opened a session, arriving through these UTM tags and perhaps an invite
    from `inviter`, who was first seen at `inviter_since` (0 = never)."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"inviter_since"})
    """Not fingerprinted (actors/decider.py): looked up by the flow at drive time."""

    user: str
    session_id: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    now: int
    inviter: str = ""
    inviter_since: int = 0


@event_type("sessions.session_started")
@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted:
    """The user started session `session_id` through these UTM tags (possibly empty)."""

    user: str
    session_id: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    started_at: int


@event_type("sessions.referral_attributed")
@dataclass(frozen=True, slots=True, kw_only=True)
class ReferralAttributed:
    """On the user's first touch, the user was attributed to `inviter` (seen earlier)."""

    user: str
    inviter: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    attributed_at: int


ReferralEvent = SessionStarted | ReferralAttributed


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Referral:
    """The user's sessions (id -> start) and who invited them ("" = nobody).

    `first_seen` is the start of the first session (0 before it): the gateway passes it
    as `inviter_since` when this user invites someone.
    """

    first_seen: int
    inviter: str
    sessions: immutables.Map[str, int]


EMPTY = Referral(first_seen=0, inviter="", sessions=immutables.Map())
"""A user never seen."""


def decide(command: StartSession, state: Referral) -> list[ReferralEvent]:
    """The session started (once per id), and on first touch perhaps its referral."""
    if command.session_id in state.sessions:
        return []
    c = command
    events: list[ReferralEvent] = [SessionStarted(
        user=c.user, session_id=c.session_id, utm_source=c.utm_source, utm_medium=c.utm_medium,
        utm_campaign=c.utm_campaign, started_at=c.now)]
    first_touch = not state.sessions
    if first_touch and c.inviter and c.inviter != c.user and 0 < c.inviter_since < c.now:
        events.append(ReferralAttributed(
            user=c.user, inviter=c.inviter, utm_source=c.utm_source, utm_medium=c.utm_medium,
            utm_campaign=c.utm_campaign, attributed_at=c.now))
    return events


replace = fast_replace(Referral)


def evolve(state: Referral, event: ReferralEvent) -> Referral:
    """The sessions and referral after `event`."""
    match event:
        case SessionStarted():
            first_seen = state.first_seen if state.sessions else event.started_at
            return replace(state, first_seen=first_seen,
                           sessions=state.sessions.set(event.session_id, event.started_at))
        case ReferralAttributed():
            return replace(state, inviter=event.inviter)
        case _:
            assert_never(event)


referral_decider: Decider[StartSession, ReferralEvent, Referral] = Decider(
    kind="session.referral", initial=lambda user: EMPTY, decide=decide, evolve=evolve,
    entity_of=attrgetter("user"), commands=(StartSession,),
    events=(SessionStarted, ReferralAttributed))
