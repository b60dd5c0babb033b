"""A shard host's causes: which recorded event set each pending deadline.

An expiry is caused by the event that set the deadline it ends (named as
`events.event_ref` names an event, `stream@version`): a `ReservationExpired`
by its `StockReserved`, an order's expiry by its `CheckoutStarted`, a lapsed coupon by
its `CouponReceived`. The host keeps, per entity and per timer (the decider's `timer_of`,
or the entity's one timer), the `event_ref` and correlation id of the event that set the
deadline, and stamps both on the expiry's events. An entry goes when an event settles its
timer (a confirm, a release, the expiry itself) or when the entity has nothing due any
more; the map travels in snapshots, so an expiry after a recovery still names its cause.

Part of `ShardHost` (actors/host/shard.py), whose attributes it reads as annotated below.
"""

from __future__ import annotations

from typing import Any

from saleday.actors.decider import Decider
from saleday.events import parse_event_ref

Cause = tuple[str, str]
"""`(causation_id, correlation_id)`: the event that set a deadline, and its flow."""
NO_CAUSE: Cause = ("", "")
_Kept = tuple[int, str]
"""What the map keeps per timer: the version of the event that set it (in this host's own
stream, where its entity lives) and its correlation id (the event's own str object):
about 100 bytes a pending deadline."""


class Causes:
    """Per entity, per timer: the event that set its deadline."""

    decider: Decider
    stream: str
    states: dict[str, Any]
    _causes: dict[str, dict[str, _Kept]]
    """entity -> timer (`timer_of`, "" for the entity's one timer) -> its cause."""

    def cause_of_expiry(self, entity: str, event: Any) -> Cause:
        """The cause an expiry event of `entity` carries (`NO_CAUSE` when unknown)."""
        timers = self._causes.get(entity)
        kept = None if timers is None else timers.get(self.decider.timer_of(event) or "")
        if kept is None:
            return NO_CAUSE
        return f"{self.stream}@{kept[0]}", kept[1]

    def note_recorded(self, event: Any, version: int, correlation_id: str) -> None:
        """After `event` is durable at `version`: remember the deadline it sets, or forget
        the timer it settles. (The common event, which neither sets a deadline nor belongs
        to an entity with one pending, costs two calls and a dict lookup.)"""
        decider = self.decider
        entity = decider.entity_of(event)
        if decider.deadline_of(event) is not None:
            timers = self._causes.get(entity)
            if timers is None:
                timers = self._causes[entity] = {}
            timers[decider.timer_of(event) or ""] = (version, correlation_id)
            return
        timers = self._causes.get(entity)
        if timers is None:
            return
        timer = decider.timer_of(event)
        if timer is not None:
            timers.pop(timer, None)
        elif decider.next_deadline(self.states[entity]) is None:
            timers.clear()
        if not timers:
            del self._causes[entity]

    def causes_picture(self) -> dict[str, dict[str, list[Any]]]:
        """The map as plain data for a snapshot."""
        return {entity: {timer: list(kept) for timer, kept in timers.items()}
                for entity, timers in self._causes.items()}

    def load_causes(self, picture: Any) -> None:
        """Take the map back from a snapshot's plain data (missing in older snapshots; an
        early form kept the whole `stream@version`)."""
        causes: dict[str, dict[str, _Kept]] = {}
        for entity, timers in (picture or {}).items():
            kept = {}
            for timer, (version, corr) in timers.items():
                if type(version) is not int:
                    ref = parse_event_ref(version)
                    if ref is None:
                        continue
                    version = ref[1]
                kept[timer] = (version, corr)
            if kept:
                causes[entity] = kept
        self._causes = causes
