"""Points and price protection as live followers of the log (`saleday serve --http` runs it
when the member kind is served).

`MemberFollower` tails the order, member, price and session streams from where it last read and
submits, through a `Gateway`, what `saleday members points` and `saleday members protect`
would: `EarnPoints` for each paid checkout order (`flows.points`: double for an
e-invoice; command id `points:<order>`) and `ClaimPriceProtection` for each paid line a
later price drop reaches (`flows.protection`; `protect:<order>:<sku>:<price stream>:<version>`).
Points are claimed only once a step has read the log to its end, so the invoice an order
chose (recorded before the order started) has been seen. The ids are the commands', so a
follower started again from the beginning of the log, or alongside the commands, records
nothing twice: the member decider answers a repeat as a duplicate, and decides each claim
(the tier when the member paid, its period, once per line).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from saleday.actors.host import Accepted
from saleday.actors.member import PROTECTION_DAYS
from saleday.events import EventStore, Tail, registry
from saleday.flows.gateway import Gateway
from saleday.flows.points import POINTS_PER_YUAN, VALID_DAYS, PointsEarning
from saleday.flows.protection import PriceProtection
from saleday.flows.sale_day import follow_until, submit

log = structlog.get_logger("saleday.flows")

STREAMS = ("order-", "member-", "price-", "session-")


class MemberFollower:
    """Follows the order, member, price and session streams; earns points and claims protection."""

    def __init__(self, store: EventStore, gateway: Gateway, *,
                 points_per_yuan: int = POINTS_PER_YUAN, valid_days: int = VALID_DAYS,
                 windows: Sequence[tuple[str, int]] = PROTECTION_DAYS) -> None:
        self.tail = Tail(store, include=lambda stream: stream.startswith(STREAMS))
        self.gateway = gateway
        self.earning = PointsEarning(points_per_yuan=points_per_yuan, valid_days=valid_days)
        self.protection = PriceProtection(windows)
        self.submitted = 0
        self.refused = 0

    async def run_once(self) -> int:
        """Read everything recorded since the last call, then submit the points and claims
        it calls for; return the commands submitted."""
        steps: list[tuple[str, Any]] = []
        while batch := await asyncio.to_thread(self.tail.poll):
            for env in batch:
                event = registry.decode(env)
                self.earning.observe(env, event)
                steps += self.protection.observe(env, event)
        steps = self.earning.new_claims() + steps
        replies = await asyncio.gather(*(submit(self.gateway, command, cid)
                                         for cid, command in steps))
        for (cid, _), reply in zip(steps, replies):
            if not isinstance(reply, Accepted):
                self.refused += 1
                log.info("member_follow_up_refused", command_id=cid,
                         reply=getattr(reply, "code", type(reply).__name__),
                         reason=getattr(reply, "reason", ""))
        self.submitted += len(steps)
        return len(steps)

    async def run(self, stop: asyncio.Event, *, poll_s: float = 0.2) -> None:
        """Follow until `stop` is set."""
        await follow_until(self.run_once, stop, poll_s)
