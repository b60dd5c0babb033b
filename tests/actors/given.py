"""Given / when / then for any `Decider`, with no Ray and no store.

    given(sku_decider, StockAdded(sku="a", qty=5)).when(ReserveStock(...)).then(StockReserved(...))
    given(sku_decider).when(ReserveStock(...)).then_rejected(UnknownSku, sku="a")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from saleday.actors.decider import Decider, Rejection


def given(decider: Decider, *events: Any) -> Given:
    """Start a scenario from the events that already happened to one entity."""
    return Given(decider, events)


class Given:
    """The past of one entity: its events, and `when` to try a command against them."""

    def __init__(self, decider: Decider, events: Sequence[Any]) -> None:
        self.decider = decider
        self.events = tuple(events)

    def state_of(self, entity_id: str) -> Any:
        """The entity's state after the given events."""
        state = self.decider.initial(entity_id)
        for event in self.events:
            state = self.decider.evolve(state, event)
        return state

    @property
    def state(self) -> Any:
        """The state after the given events (the entity is named by the first event)."""
        assert self.events, "given() without events: use .when(command).state"
        return self.state_of(self.decider.entity_of(self.events[0]))

    def when(self, command: Any) -> Then:
        """Decide `command` against the state the given events lead to."""
        before = self.state_of(self.decider.entity_of(command))
        return Then(self.decider, before, self.decider.decide(command, before))


class Then:
    """What a command decided, with assertions that name what differs."""

    def __init__(self, decider: Decider, before: Any, result: Any) -> None:
        self.decider = decider
        self.before = before
        self.result = result

    def then(self, *expected: Any) -> Then:
        """Assert the command decided exactly `expected` (none: nothing happened)."""
        assert not isinstance(self.result, Rejection), f"rejected: {self.result.describe()}"
        assert list(self.result) == list(expected)
        return self

    def then_rejected(self, rejection: type[Rejection], **fields: Any) -> Then:
        """Assert the command was refused with a `rejection` carrying at least `fields`."""
        assert isinstance(self.result, rejection), \
            f"expected {rejection.__name__}, got {self.result!r}"
        actual = {name: getattr(self.result, name) for name in fields}
        assert actual == fields
        return self

    @property
    def events(self) -> list[Any]:
        """The decided events ([] when the command was refused)."""
        return [] if isinstance(self.result, Rejection) else list(self.result)

    @property
    def state(self) -> Any:
        """The state after the decided events (unchanged when the command was refused)."""
        state = self.before
        for event in self.events:
            state = self.decider.evolve(state, event)
        return state
