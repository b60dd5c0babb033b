"""What every route shares: the gateway, the clock, the limits, and how a reply is answered.

`Api` is the app's state (`request.app.state.api`). `submit` sends one command and turns
anything but `Accepted` into its problem. `Tap` is the gateway the flows see for one
request: it remembers the refusals it passed (the flows report only a refusal's code,
the API answers with its fields) and gives the request's FIRST command only
`busy_retries` tries while its shard sheds load, so an overloaded shard answers 503 Busy at
once, while the later steps of a flow already under way ride it out as the gateway does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from saleday.actors.host import Accepted, Unavailable
from saleday.flows.checkout import Checkout
from saleday.flows.sale_day import SaleDayFlows
from saleday.http.auth import VerifiedTokens
from saleday.http.idempotency import EdgeKeys
from saleday.http.metrics import HttpMetrics
from saleday.http.problems import refusal_problem
from saleday.http.ratelimit import TokenBucket
from saleday.http.settings import HttpSettings
from saleday.http.warroom import WarRoom
from saleday.http.webhook import SeenSignatures

log = structlog.get_logger("saleday.http")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Tap:
    """The gateway as one request's flows see it."""

    def __init__(self, gateway: Any, busy_retries: int, retry_after_s: int = 1) -> None:
        self.gateway = gateway
        self.busy_retries = busy_retries
        self.retry_after_s = retry_after_s
        self.refusals: list[Any] = []
        self._first = True

    async def submit_retrying_busy(self, command: Any, *, command_id: str,
                                   busy_retries: int = 50, correlation_id: str = "",
                                   causation_id: str = "") -> Any:
        if self._first:
            self._first = False
            busy_retries = min(busy_retries, self.busy_retries)
        reply = await self.gateway.submit_retrying_busy(command, command_id=command_id,
                                                        busy_retries=busy_retries,
                                                        correlation_id=correlation_id,
                                                        causation_id=causation_id)
        if not isinstance(reply, Accepted):
            self.refusals.append(reply)
        return reply

    async def submit(self, command: Any, *, command_id: str | None = None,
                     correlation_id: str = "", causation_id: str = "") -> Any:
        return await self.gateway.submit(command, command_id=command_id,
                                         correlation_id=correlation_id, causation_id=causation_id)

    async def query(self, kind: str, entity_id: str) -> Any:
        return await read(self.gateway, kind, entity_id)

    def problem(self, fallback: Any = None, **extra: Any):  # type: ignore[no-untyped-def]
        """The problem of the first refusal this request met (or of `fallback`)."""
        return refusal_problem(self.refusals[0] if self.refusals else fallback,
                               retry_after_s=self.retry_after_s, **extra)


@dataclass
class Api:
    """The app's state: one per app (so one per Serve replica)."""

    gateway: Any
    settings: HttpSettings
    views: Any = None
    clock: Callable[[], int] = wall_ms
    stock: Any = None
    """The live stock feed (`live.StockFeed`) this replica's sockets follow, or None."""
    limiter: TokenBucket = field(init=False)
    keys: EdgeKeys = field(init=False)
    seen: SeenSignatures = field(init=False)
    metrics: HttpMetrics = field(init=False)
    warroom: WarRoom = field(init=False)
    tokens: VerifiedTokens = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.tokens = VerifiedTokens(s, capacity=s.idempotency_records)
        self.limiter = TokenBucket(s.rate_per_s, s.rate_burst)
        self.keys = EdgeKeys(s.idempotency_records)
        self.seen = SeenSignatures(s.idempotency_records)
        self.metrics = HttpMetrics(self.gateway)
        self.warroom = WarRoom()

    def now(self) -> int:
        return self.clock()

    def tap(self) -> Tap:
        return Tap(self.gateway, self.settings.busy_retries, self.settings.retry_after_s)

    def checkout(self) -> tuple[Checkout, Tap]:
        tap = self.tap()
        return Checkout(tap, payment_window_ms=self.settings.payment_window_ms), tap  # type: ignore[arg-type]

    def flows(self) -> tuple[SaleDayFlows, Tap]:
        tap = self.tap()
        return SaleDayFlows(tap), tap  # type: ignore[arg-type]

    async def submit(self, command: Any, command_id: str | None = None) -> Accepted:
        """Submit one command; its refusal (or Busy, Unavailable) raises as a problem."""
        if command_id is None:
            reply = await self.gateway.submit(command)
        else:
            reply = await self.gateway.submit_retrying_busy(
                command, command_id=command_id, busy_retries=self.settings.busy_retries)
        if not isinstance(reply, Accepted):
            raise refusal_problem(reply, retry_after_s=self.settings.retry_after_s)
        return reply

    async def query(self, kind: str, entity: str) -> Any:
        return await read(self.gateway, kind, entity)


async def read(gateway: Any, kind: str, entity: str) -> Any:
    """An entity's state from its shard; a shard that cannot answer is a 503 `unavailable`
    (a read has no retry of its own in the gateway: it fails after the call timeout)."""
    try:
        return await gateway.query(kind, entity)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the shard's, not the client's
        log.warning("read_failed", kind=kind, error=f"{type(exc).__name__}: {exc}"[:300])
        raise refusal_problem(Unavailable(reason="")) from None
