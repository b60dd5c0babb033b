"""A shard host's timers: one per entity, at its earliest deadline.

A heap of `(due, entity)` with lazy deletion: an entry counts only while it matches the
entity's timer in `due`, so moving a timer earlier pushes a new entry and leaves the old
one to be skipped. Plain data: the host decides what is due and what to expire.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import Any


class Timers:
    """entity -> when its expire command is due, earliest first."""

    __slots__ = ("due", "_heap")

    def __init__(self) -> None:
        self.due: dict[str, int] = {}
        """entity -> the earliest time its expire command is due (one timer per entity)."""
        self._heap: list[tuple[int, str]] = []
        """(due, entity), lazily deleted: an entry counts only while it matches `due`."""

    def __len__(self) -> int:
        return len(self.due)

    def rebuild(self, states: Mapping[str, Any],
                next_deadline: Callable[[Any], int | None]) -> None:
        """One timer per entity whose state has something due, and nothing else."""
        self.due = {e: d for e, s in states.items() if (d := next_deadline(s)) is not None}
        self._heap = [(d, e) for e, d in self.due.items()]
        heapq.heapify(self._heap)

    def schedule(self, entity: str, due: int) -> None:
        """Make `entity`'s timer due at `due`, unless it is due earlier already."""
        current = self.due.get(entity)
        if current is None or due < current:
            self.due[entity] = due
            heapq.heappush(self._heap, (due, entity))

    def take_due(self, now: int) -> list[tuple[int, str]]:
        """Pop the timers due at `now` (one per entity); `put_back` undoes it."""
        due: list[tuple[int, str]] = []
        heap, timers = self._heap, self.due
        while heap and heap[0][0] <= now:
            at, entity = heapq.heappop(heap)
            if timers.get(entity) == at:
                del timers[entity]
                due.append((at, entity))
        return due

    def put_back(self, due: list[tuple[int, str]]) -> None:
        """Schedule again the timers `take_due` popped (their batch did not commit)."""
        for at, entity in due:
            self.schedule(entity, at)

    def next_due(self) -> int | None:
        """When the earliest timer is due (it may have been cancelled since), or None."""
        return self._heap[0][0] if self._heap else None
