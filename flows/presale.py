"""A presale deposit as a try/confirm/cancel flow across the SKU and presale shards.

    deposit:  SetAsideStock (the SKU: the units leave the shelf for the holder, hold
              `presale/<deposit>`) -> PayDeposit (the presale) -> held
              the set-aside refused (SoldOut, UnknownSku, ...): refused, nothing recorded
              on the presale;
              the deposit refused (window closed, presale sold out, ...): ReturnSetAside
              (the units go back on the shelf) -> refused

The units are set aside BEFORE the deposit is recorded, so a flash buyer who comes in
between finds them gone: stock is reserved for deposit holders first (issue 15). Every
step's command id derives from the deposit (`presale/<sku>/<deposit>/set-aside` — the id
the follower in flows/presale_stock.py uses for the same step, so the follower's step is
answered as a repeat —, `deposit/<sku>/<deposit>`, `presale/<sku>/<deposit>/undo`), and
its events carry the deposit id as their correlation id, so a retried call does nothing
twice. A deposit step left undecided (the presale shard unavailable) is answered
`unavailable` and its set-aside kept: calling again with the same deposit id finishes it.
The balance (`set_aside -> sold`) and the forfeit (`set_aside -> available`) stay with
the follower: they move units already set aside, nothing can race them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from saleday.actors.decider import Rejection
from saleday.actors.host import Accepted
from saleday.actors.presale import PayDeposit
from saleday.actors.sku import ReturnSetAside, SetAsideStock
from saleday.flows.gateway import Gateway
from saleday.flows.presale_stock import hold_id, set_aside_command_id

log = structlog.get_logger("saleday.presale")


@dataclass(frozen=True, slots=True, kw_only=True)
class DepositResult:
    """Where a deposit stands after `Presales.deposit`."""

    deposit_id: str
    status: str
    """held (recorded, its units set aside), refused (nothing held), or unavailable (not
    decided: call again with the same deposit id)."""
    reason: str = ""
    refusal: Any = None
    """The shard's reply that refused or left the deposit undecided (None when held)."""


class Presales:
    """Drives deposits through the gateway; holds no state of its own."""

    def __init__(self, gateway: Gateway, *, busy_retries: int = 50) -> None:
        self.gateway = gateway
        self.busy_retries = busy_retries

    async def _submit(self, command: Any, command_id: str, deposit_id: str) -> Any:
        return await self.gateway.submit_retrying_busy(command, command_id=command_id,
                                                       busy_retries=self.busy_retries,
                                                       correlation_id=deposit_id)

    async def deposit(self, *, sku: str, deposit_id: str, user: str, qty: int,
                      now: int) -> DepositResult:
        """Set the units aside on the SKU, then record the deposit on the presale; give
        the units back if the presale refuses it."""
        cid, command = set_aside_step(sku, deposit_id, user, qty, now)
        held = await self._submit(command, cid, deposit_id)
        if not isinstance(held, Accepted):
            return _not_held(deposit_id, held)
        cid, command = deposit_step(sku, deposit_id, user, qty, now)
        paid = await self._submit(command, cid, deposit_id)
        if isinstance(paid, Accepted):
            return DepositResult(deposit_id=deposit_id, status="held")
        if isinstance(paid, Rejection):   # decided: no deposit, so no units set aside for it
            cid, command = return_step(sku, deposit_id, paid, now)
            _returned(sku, deposit_id, await self._submit(command, cid, deposit_id))
        return _not_held(deposit_id, paid)


Deposit = tuple[str, str, str, int, int]
"""(sku, deposit id, user, qty, now): one deposit to pay."""


async def deposit_in_rounds(submit_many: Any, deposits: list[Deposit]) -> list[DepositResult]:
    """`Presales.deposit` for many deposits at once, a step per round: every set-aside,
    then the deposits whose units were set aside, then the returns of those refused.
    `submit_many([(command id, command)])` answers each (the simulator's batch submitter);
    the set-asides are submitted in the order given."""
    results: dict[str, DepositResult] = {}
    held = await submit_many([set_aside_step(*d) for d in deposits])
    for (_, did, *_), reply in zip(deposits, held):
        if not isinstance(reply, Accepted):
            results[did] = _not_held(did, reply)
    going = [d for d in deposits if d[1] not in results]
    paid = await submit_many([deposit_step(*d) for d in going])
    undo = []
    for (sku, did, _, _, now), reply in zip(going, paid):
        if isinstance(reply, Accepted):
            results[did] = DepositResult(deposit_id=did, status="held")
            continue
        results[did] = _not_held(did, reply)
        if isinstance(reply, Rejection):
            undo.append((sku, did, return_step(sku, did, reply, now)))
    for (sku, did, _), reply in zip(undo, await submit_many([step for *_, step in undo])):
        _returned(sku, did, reply)
    return [results[d[1]] for d in deposits]


def set_aside_step(sku: str, deposit_id: str, user: str, qty: int,
                   now: int) -> tuple[str, SetAsideStock]:
    """The deposit's units leave the shelf for its holder (the try)."""
    return set_aside_command_id(sku, deposit_id), SetAsideStock(
        sku=sku, hold_id=hold_id(deposit_id), user=user, qty=qty, now=now)


def deposit_step(sku: str, deposit_id: str, user: str, qty: int,
                 now: int) -> tuple[str, PayDeposit]:
    """The deposit recorded on the presale (the confirm)."""
    return deposit_command_id(sku, deposit_id), PayDeposit(
        sku=sku, deposit_id=deposit_id, user=user, qty=qty, now=now)


def return_step(sku: str, deposit_id: str, refusal: Rejection,
                now: int) -> tuple[str, ReturnSetAside]:
    """The units of a deposit the presale refused go back on the shelf (the cancel)."""
    return f"presale/{sku}/{deposit_id}/undo", ReturnSetAside(
        sku=sku, hold_id=hold_id(deposit_id), reason=refusal.code, now=now)


def _returned(sku: str, deposit_id: str, reply: Any) -> None:
    if not isinstance(reply, Accepted):
        log.warning("presale_set_aside_not_returned", sku=sku, deposit=deposit_id,
                    reply=getattr(reply, "code", type(reply).__name__))


def deposit_command_id(sku: str, deposit_id: str) -> str:
    """The id of a deposit's `PayDeposit` (as the HTTP route has always used)."""
    return f"deposit/{sku}/{deposit_id}"


def _not_held(deposit_id: str, reply: Any) -> DepositResult:
    decided = isinstance(reply, Rejection)
    return DepositResult(deposit_id=deposit_id, status="refused" if decided else "unavailable",
                         reason=getattr(reply, "code", type(reply).__name__), refusal=reply)
