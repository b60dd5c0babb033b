"""The one port the flows need: a `Gateway` that takes commands and answers queries.

Three things implement it: the batching Ray gateway (`saleday.cluster.gateway.Gateway`),
the shards in this process (`saleday.cluster.local.LocalShards`) and the simulator's
recorder (`saleday.simulator.driver.Recorder`). The flows are written against this
protocol only, so each of them runs the same checkout on any of the three.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from saleday.actors.host import Reply


@runtime_checkable
class Gateway(Protocol):
    """Commands in, one reply per command out; a command id makes a retry safe."""

    async def submit(self, command: Any, *, command_id: str | None = None,
                     correlation_id: str = "", causation_id: str = "") -> Reply:
        """Decide one command (a fresh id when none is given) and answer it. Its events carry
        `correlation_id` (the flow: an order, a visit, a team) and `causation_id` (the
        recorded event that led to it, `events.event_ref`)."""
        ...

    async def submit_retrying_busy(self, command: Any, *, command_id: str,
                                   busy_retries: int = 50, correlation_id: str = "",
                                   causation_id: str = "") -> Reply:
        """Submit under a caller-chosen id, riding out load shedding (`Busy`) with backoff."""
        ...

    async def submit_many(self, commands: Iterable[Any]) -> list[Reply]:
        """Submit several commands; the replies come back in their order."""
        ...

    async def query(self, kind: str, entity_id: str) -> Any:
        """The current, durable state of one entity."""
        ...
