"""A shard host's causes: which recorded event set each pending deadline.

An expiry is caused by the event that set the deadline it ends: a `ReservationExpired`
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
from saleday.events import event_ref

Cause = tuple[str, str]
"""`(causation_id, correlation_id)`: the event that set a deadline, and its flow."""
NO_CAUSE: Cause = ("", "")


class Causes:
    """Per entity, per timer: the event that set its deadline."""

    decider: Decider
    stream: str
    states: dict[str, Any]
    _causes: dict[str, dict[str, Cause]]
    """entity -> timer (`timer_of`, "" for the entity's one timer) -> its cause."""

    def cause_of_expiry(self, entity: str, event: Any) -> Cause:
        """The cause an expiry event of `entity` carries (`NO_CAUSE` when unknown)."""
        timers = self._causes.get(entity)
        if timers is None:
            return NO_CAUSE
        return timers.get(self.decider.timer_of(event) or "", NO_CAUSE)

    def note_recorded(self, event: Any, version: int, correlation_id: str) -> None:
        """After `event` is durable at `version`: remember the deadline it sets, or forget
        the timer it settles."""
        decider = self.decider
        entity = decider.entity_of(event)
        timer = decider.timer_of(event)
        deadline = decider.deadline_of(event)
        if deadline is not None:
            self._causes.setdefault(entity, {})[timer or ""] = (
                event_ref(self.stream, version), correlation_id)
            return
        timers = self._causes.get(entity)
        if timers is None:
            return
        if timer is not None:
            timers.pop(timer, None)
        elif decider.next_deadline(self.states[entity]) is None:
            timers.clear()
        if not timers:
            del self._causes[entity]

    def causes_picture(self) -> dict[str, dict[str, list[str]]]:
        """The map as plain data for a snapshot."""
        return {entity: {timer: list(cause) for timer, cause in timers.items()}
                for entity, timers in self._causes.items()}

    def load_causes(self, picture: Any) -> None:
        """Take the map back from a snapshot's plain data (missing in older snapshots)."""
        self._causes = {entity: {timer: (ref, corr) for timer, (ref, corr) in timers.items()}
                        for entity, timers in (picture or {}).items()}
