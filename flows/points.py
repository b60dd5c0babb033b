"""Points for paid orders, following the log: one `EarnPoints` per paid checkout order.

`PointsEarning.observe(env, event)` is fed the events of the order and member streams (in
any interleaving across streams). It keeps each checkout's user (`orders.checkout_started`),
each payment (`orders.payment_captured`: the amount captured, at its envelope's
`recorded_at`) and each invoice choice (`members.invoice_chosen`). `claims()` then gives,
for every paid order, `EarnPoints` at its payment time with the invoice it asked for
("none" when it asked for none), under the command id `points:<order>`; the member
decider earns once per order, double for an electronic invoice. Call `claims()` after
reading the log to its end: the invoice is chosen before the order starts, so by then
every paid order's choice has been seen. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from saleday.actors.member import EarnPoints, InvoiceChosen
from saleday.actors.order import CheckoutStarted, PaymentCaptured

POINTS_PER_YUAN = 1
VALID_DAYS = 365


class PointsEarning:
    """Paid orders and invoice choices seen so far, and the points they earn."""

    def __init__(self, *, points_per_yuan: int = POINTS_PER_YUAN,
                 valid_days: int = VALID_DAYS) -> None:
        self.points_per_yuan = points_per_yuan
        self.valid_days = valid_days
        self.users: dict[str, str] = {}
        self.paid: dict[str, tuple[int, int]] = {}
        """Order id -> (amount captured, paid at)."""
        self.invoices: dict[str, str] = {}
        self.claimed: set[str] = set()
        """Orders `new_claims` has given already."""

    def observe(self, env: Any, event: Any) -> None:
        match event:
            case CheckoutStarted():
                self.users[event.order_id] = event.user
            case PaymentCaptured():
                self.paid[event.order_id] = (event.amount_cents, env.recorded_at)
            case InvoiceChosen():
                self.invoices[event.order_ref] = event.invoice

    def claims(self) -> list[tuple[str, EarnPoints]]:
        """`EarnPoints` for every paid order whose user is known, in order id order."""
        return [(f"points:{order_id}",
                 EarnPoints(user=self.users[order_id], order_ref=order_id, amount_cents=cents,
                            invoice=self.invoices.get(order_id, "none"),
                            points_per_yuan=self.points_per_yuan, valid_days=self.valid_days,
                            now=paid_at))
                for order_id, (cents, paid_at) in sorted(self.paid.items())
                if order_id in self.users]

    def new_claims(self) -> list[tuple[str, EarnPoints]]:
        """The claims of `claims()` not given by an earlier call (a live follower's step;
        call it once the log has been read to its end, as `claims()`)."""
        fresh = [(cid, c) for cid, c in self.claims() if c.order_ref not in self.claimed]
        self.claimed.update(c.order_ref for _, c in fresh)
        return fresh
