"""Reading every stream of a store from per-stream positions: catch-up, then live.

Projections keep a position per stream (the last version they applied). A `Tail`
reads what lies past those positions across all streams, in stream order within each
stream (there is no order across streams), and then keeps polling for new commits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping

from saleday.events.envelope import Envelope
from saleday.events.store import EventStore


class Tail:
    """A cursor over all streams of `store`; `positions` advance as batches are returned."""

    def __init__(self, store: EventStore, positions: Mapping[str, int] | None = None, *,
                 batch_size: int = 10_000, include: Callable[[str], bool] | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.store = store
        self.positions: dict[str, int] = dict(positions or {})
        self.batch_size = batch_size
        self.include = include
        self._turn = 0

    def lag(self) -> dict[str, int]:
        """Events per stream that are recorded but not yet returned."""
        return {s: v - self.positions.get(s, 0) for s, v in self._heads().items()
                if v > self.positions.get(s, 0)}

    def poll(self) -> list[Envelope]:
        """Return up to `batch_size` new events, taking streams in turn so none starves."""
        heads = self._heads()
        behind = [s for s in sorted(heads) if heads[s] > self.positions.get(s, 0)]
        if not behind:
            return []
        self._turn = (self._turn + 1) % len(behind)
        out: list[Envelope] = []
        for stream in behind[self._turn:] + behind[:self._turn]:
            room = self.batch_size - len(out)
            if room <= 0:
                break
            events = self.store.read(stream, self.positions.get(stream, 0) + 1, room)
            if events:
                self.positions[stream] = events[-1].version
                out.extend(events)
        return out

    def follow(self, *, poll_interval: float = 0.05, stop: threading.Event | None = None,
               idle_timeout: float | None = None) -> Iterator[list[Envelope]]:
        """Yield batches as they come: first the backlog, then new commits, until `stop`
        is set or nothing new arrived for `idle_timeout` seconds."""
        idle_since = time.monotonic()
        while stop is None or not stop.is_set():
            batch = self.poll()
            if batch:
                idle_since = time.monotonic()
                yield batch
                continue
            if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                return
            if stop is not None:
                stop.wait(poll_interval)
            else:
                time.sleep(poll_interval)

    def _heads(self) -> dict[str, int]:
        heads = self.store.streams()
        if self.include is not None:
            heads = {s: v for s, v in heads.items() if self.include(s)}
        return heads
