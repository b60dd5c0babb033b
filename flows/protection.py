"""Price protection following the log: paid checkout lines by SKU, and the claims a price
drop calls for.

`PriceProtection.observe(env, event)` is fed every event of the order, price and session streams,
in any interleaving across streams (each stream in order). It keeps the paid lines of
checkout orders (`orders.checkout_started` gives the user and the lines,
`orders.order_placed` the unit prices, `orders.payment_captured` the payment time, its
envelope's `recorded_at`) and the price drops (`prices.price_changed` to a lower price).
A paid order's lines are protected only once it is settled: checkout records
`sessions.order_status_changed` to "paid" on the user's stream after every hold, the
coupon and the points are confirmed. Until then the order may still be refunded as a
whole (a hold that ran out before its confirm, `flows.checkout._make_good`), and a
protection refund paid before that would pay back more than was captured.
Each (paid line, later drop) pair is seen once, when the second of the two arrives, and
becomes a `ClaimPriceProtection` for the member, with the command id
`protect:<order>:<sku>:<price stream>:<version>`. Only pairs that can pay are claimed: the
drop at or after the payment, within the longest protection period, below some unit's
price. An order refunded as a whole (`orders.order_refunded`) has nothing paid left to
protect: its lines are dropped, so no drop seen later claims for it (and the member
decider refuses a claim for it, "order_refunded", once the member follower's
`TakeBackPoints` has told it). The member decider then decides: the tier it had when it
paid, its period, and once per line.

`on_request(order_id, now)` is the claim a member makes for one paid order: each line
against its SKU's current price. Imported history has no lines, so it is never protected.
Pure: no I/O; the caller reads the log and submits the claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from saleday.actors.member import DAY_MS, PROTECTION_DAYS, ClaimPriceProtection
from saleday.actors.order import CheckoutStarted, OrderPlaced, OrderRefunded, PaymentCaptured
from saleday.actors.price import PriceChanged
from saleday.actors.session import OrderStatusChanged

Claim = tuple[str, ClaimPriceProtection]


@dataclass(frozen=True, slots=True)
class PaidLine:
    order_id: str
    user: str
    sku: str
    unit_prices: tuple[int, ...]
    paid_at: int


@dataclass(frozen=True, slots=True)
class Drop:
    sku: str
    price_cents: int
    changed_at: int
    key: str
    """`<price stream>:<version>`: names the drop in command ids."""


class PriceProtection:
    """The paid lines and price drops seen so far, and the claims they call for."""

    def __init__(self, windows: Sequence[tuple[str, int]] = PROTECTION_DAYS) -> None:
        self.windows = tuple((tier, days) for tier, days in windows)
        self.longest_ms = max((days for _, days in self.windows), default=0) * DAY_MS
        self._started: dict[str, tuple[str, tuple[tuple[str, int], ...]]] = {}
        self._prices: dict[str, tuple[tuple[int, ...], ...]] = {}
        self.lines: dict[str, list[PaidLine]] = {}
        self.drops: dict[str, list[Drop]] = {}
        self.prices: dict[str, tuple[int, int, str]] = {}
        """SKU -> (price, since, key) of its latest change seen."""
        self.paid: dict[str, list[PaidLine]] = {}
        """Order id -> its paid lines."""
        self._captured: dict[str, int] = {}
        """Order id -> when it was paid, until it is settled."""
        self._settled: set[str] = set()
        """Orders settled before their capture was seen (another stream, read first)."""

    def observe(self, env: Any, event: Any) -> list[Claim]:
        """The claims `event` completes (none for most events)."""
        match event:
            case CheckoutStarted():
                self._started[event.order_id] = (event.user, event.lines)
            case OrderPlaced():
                self._prices[event.order_id] = event.line_prices
            case PaymentCaptured():
                if event.order_id in self._settled:
                    self._settled.discard(event.order_id)
                    return self._paid(event.order_id, env.recorded_at)
                self._captured[event.order_id] = env.recorded_at
            case OrderStatusChanged(status="paid", order_id=order_id):
                if order_id in self._captured:
                    return self._paid(order_id, self._captured.pop(order_id))
                self._settled.add(order_id)
            case OrderRefunded():
                self._captured.pop(event.order_id, None)
                self._refunded(event.order_id)
            case PriceChanged():
                return self._changed(event, f"{env.stream}:{env.version}")
        return []

    def _paid(self, order_id: str, paid_at: int) -> list[Claim]:
        started, prices = self._started.pop(order_id, None), self._prices.pop(order_id, None)
        if started is None or prices is None:
            return []
        user, lines = started
        claims = []
        for (sku, _), units in zip(lines, prices):
            line = PaidLine(order_id, user, sku, tuple(units), paid_at)
            self.lines.setdefault(sku, []).append(line)
            self.paid.setdefault(order_id, []).append(line)
            claims += [self._claim(line, drop) for drop in self.drops.get(sku, ())
                       if self._may_pay(line, drop)]
        return claims

    def _refunded(self, order_id: str) -> None:
        """Forget the paid lines of an order refunded as a whole."""
        for line in self.paid.pop(order_id, ()):
            self.lines[line.sku] = [kept for kept in self.lines[line.sku] if kept is not line]

    def _changed(self, event: PriceChanged, key: str) -> list[Claim]:
        sku = event.sku
        latest = self.prices.get(sku)
        if latest is None or event.changed_at >= latest[1]:
            self.prices[sku] = (event.price_cents, event.changed_at, key)
        if not event.previous_cents or event.price_cents >= event.previous_cents:
            return []
        drop = Drop(sku, event.price_cents, event.changed_at, key)
        self.drops.setdefault(sku, []).append(drop)
        return [self._claim(line, drop) for line in self.lines.get(sku, ())
                if self._may_pay(line, drop)]

    def _may_pay(self, line: PaidLine, drop: Drop) -> bool:
        return (line.paid_at <= drop.changed_at <= line.paid_at + self.longest_ms
                and max(line.unit_prices) > drop.price_cents)

    def _claim(self, line: PaidLine, drop: Drop, prefix: str = "protect") -> Claim:
        return (f"{prefix}:{line.order_id}:{line.sku}:{drop.key}",
                ClaimPriceProtection(user=line.user, order_ref=line.order_id, sku=line.sku,
                                     unit_prices=line.unit_prices, paid_at=line.paid_at,
                                     price_cents=drop.price_cents, dropped_at=drop.changed_at,
                                     windows=self.windows, now=drop.changed_at))

    def on_request(self, order_id: str) -> list[Claim]:
        """A member's claim for one paid order: each line against its SKU's current price
        (no claim for a line whose SKU has no price recorded after the payment)."""
        claims = []
        for line in self.paid.get(order_id, ()):
            price = self.prices.get(line.sku)
            if price is None:
                continue
            drop = Drop(line.sku, price[0], price[1], price[2])
            claims.append(self._claim(line, drop, prefix="protect-request"))
        return claims
