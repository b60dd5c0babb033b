"""A presale's units come from its SKU's stock: the presale's events drive the SKU's.

The presale decider (actors/presale.py, entity = the SKU) decides deposits, balances and
forfeits; each of those calls for one step on the same SKU's stock (actors/sku), under a
command id derived from the deposit:

| presale event | SKU command (command id) | SKU event |
|---|---|---|
| `presales.deposit_paid` | `SetAsideStock` (`presale/<sku>/<deposit>/set-aside`) | `inventory.stock_set_aside` |
| `presales.balance_paid` | `SellSetAside` (`presale/<sku>/<deposit>/sell`) | `inventory.set_aside_sold` |
| `presales.deposit_forfeited` | `ReturnSetAside` (`presale/<sku>/<deposit>/return`) | `inventory.set_aside_returned` |

The deposit flow (flows/presale.py) takes the set-aside itself BEFORE it records the
deposit, under the same command id and hold id, so for the deposits it pays the follower's
set-aside is a repeat that decides nothing; the follower's set-aside is the only one for a
deposit recorded without the flow (`saleday presale deposit`). The balance's sale and the
forfeit's return are the follower's alone: they move units already set aside, nothing
races them.

The hold id on the SKU is `presale/<deposit id>`. Units are set aside **as deposits are
paid**, not all at once when the presale opens: the presale's `units` is a ceiling on
deposits, and the units nobody put a deposit on stay on the shelf for flash buyers; the
units a deposit holds leave the shelf for its holder (as a shop locks a presale's stock
when the deposit is paid) and come back only if it is forfeited.

`presale_stock_steps` is pure; `PresaleStockFollower` tails the presale streams and
submits the steps through a `Gateway`, one SKU's steps in log order (a sale or return
must come after its set-aside), the SKUs side by side. Every id is derived, and the SKU
decider answers a repeat as a duplicate (or decides nothing), so the follower may start
again from the beginning of the log, next to `saleday serve`'s other followers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from saleday.actors.host import Accepted
from saleday.actors.presale import BalancePaid, DepositForfeited, DepositPaid
from saleday.actors.sku import ReturnSetAside, SellSetAside, SetAsideStock
from saleday.events import Envelope, EventStore, Tail, event_ref, registry
from saleday.flows.gateway import Gateway
from saleday.flows.sale_day import follow_until, submit

log = structlog.get_logger("saleday.flows")


def hold_id(deposit_id: str) -> str:
    """The SKU hold that keeps a deposit's units."""
    return f"presale/{deposit_id}"


def set_aside_command_id(sku: str, deposit_id: str) -> str:
    """The id of the step that sets a deposit's units aside (the deposit flow in
    flows/presale.py takes it first, under this same id)."""
    return f"presale/{sku}/{deposit_id}/set-aside"


def presale_stock_steps(env: Envelope, event: Any) -> list[tuple[str, Any]]:
    """The SKU command (with its id) that a presale fact calls for; none for the others."""
    match event:
        case DepositPaid(sku=sku, deposit_id=did):
            return [(set_aside_command_id(sku, did), SetAsideStock(
                sku=sku, hold_id=hold_id(did), user=event.user, qty=event.qty,
                now=event.paid_at))]
        case BalancePaid(sku=sku, deposit_id=did):
            return [(f"presale/{sku}/{did}/sell",
                     SellSetAside(sku=sku, hold_id=hold_id(did), now=event.paid_at))]
        case DepositForfeited(sku=sku, deposit_id=did):
            return [(f"presale/{sku}/{did}/return", ReturnSetAside(
                sku=sku, hold_id=hold_id(did), reason="deposit_forfeited",
                now=event.forfeited_at))]
    return []


class PresaleStockFollower:
    """Follows the presale streams and moves each deposit's units on its SKU."""

    def __init__(self, store: EventStore, gateway: Gateway) -> None:
        self.tail = Tail(store, include=lambda stream: stream.startswith("presale-"))
        self.gateway = gateway
        self.submitted = 0
        self.refused = 0

    async def run_once(self) -> int:
        """Submit what everything recorded since the last call calls for; return how many."""
        per_sku: dict[str, list[tuple[str, Any, Envelope]]] = {}
        while batch := await asyncio.to_thread(self.tail.poll):
            for env in batch:
                for cid, command in presale_stock_steps(env, registry.decode(env)):
                    per_sku.setdefault(command.sku, []).append((cid, command, env))
        counts = await asyncio.gather(*(self._in_order(steps) for steps in per_sku.values()))
        done = sum(counts)
        self.submitted += done
        return done

    async def _in_order(self, steps: list[tuple[str, Any, Envelope]]) -> int:
        for cid, command, env in steps:
            reply = await submit(self.gateway, command, cid, correlation_id=env.correlation_id,
                                 causation_id=event_ref(env.stream, env.version))
            if not isinstance(reply, Accepted):
                self.refused += 1
                log.warning("presale_stock_refused", command_id=cid,
                            reply=getattr(reply, "code", type(reply).__name__),
                            reason=getattr(reply, "reason", ""))
        return len(steps)

    async def run(self, stop: asyncio.Event, *, poll_s: float = 0.2) -> None:
        """Follow until `stop` is set."""
        await follow_until(self.run_once, stop, poll_s)
