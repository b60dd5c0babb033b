"""Points for paid orders, following the log: one `EarnPoints` per paid checkout order,
and one `TakeBackPoints` per paid order later refunded.

`PointsEarning.observe(env, event)` is fed the events of the order and member streams (in
any interleaving across streams). It keeps each checkout's user (`orders.checkout_started`),
each payment (`orders.payment_captured`: the amount captured, at its envelope's
`recorded_at`) and each invoice choice (`members.invoice_chosen`). `claims()` then gives,
for every paid order, `EarnPoints` at its payment time with the invoice it asked for
("none" when it asked for none), under the command id `points:<order>`; the member
decider earns once per order, double for an electronic invoice. A paid order refunded
as a whole (`orders.order_refunded`) earns nothing: `claims()` gives no `EarnPoints` for
it but `TakeBackPoints` at its refund time (`points-back:<order>`), which takes back what
is left of any points it earned before the refund was seen, and closes the order to
points and price protection. Call `claims()` after reading the log to its end: the
invoice is chosen before the order starts, so by then every paid order's choice has
been seen. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from saleday.actors.member import EarnPoints, InvoiceChosen, TakeBackPoints
from saleday.actors.order import CheckoutStarted, OrderRefunded, PaymentCaptured

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
        self.refunded: dict[str, tuple[str, int]] = {}
        """Order id -> (refund reason, refunded at) of paid orders refunded as a whole."""
        self.claimed: set[str] = set()
        """Command ids `new_claims` has given already."""

    def observe(self, env: Any, event: Any) -> None:
        match event:
            case CheckoutStarted():
                self.users[event.order_id] = event.user
            case PaymentCaptured():
                self.paid[event.order_id] = (event.amount_cents, env.recorded_at)
            case InvoiceChosen():
                self.invoices[event.order_ref] = event.invoice
            case OrderRefunded():
                self.refunded[event.order_id] = (event.reason, env.recorded_at)

    def claims(self) -> list[tuple[str, EarnPoints | TakeBackPoints]]:
        """`EarnPoints` for every paid order whose user is known and that was not refunded,
        then `TakeBackPoints` for every refunded one, each in order id order."""
        earn: list[tuple[str, EarnPoints | TakeBackPoints]] = [
            (f"points:{order_id}",
             EarnPoints(user=self.users[order_id], order_ref=order_id, amount_cents=cents,
                        invoice=self.invoices.get(order_id, "none"),
                        points_per_yuan=self.points_per_yuan, valid_days=self.valid_days,
                        now=paid_at))
            for order_id, (cents, paid_at) in sorted(self.paid.items())
            if order_id in self.users and order_id not in self.refunded]
        back = [(f"points-back:{order_id}",
                 TakeBackPoints(user=self.users[order_id], order_ref=order_id, reason=reason,
                                now=refunded_at))
                for order_id, (reason, refunded_at) in sorted(self.refunded.items())
                if order_id in self.users and order_id in self.paid]
        return earn + back

    def new_claims(self) -> list[tuple[str, EarnPoints | TakeBackPoints]]:
        """The claims of `claims()` not given by an earlier call (a live follower's step;
        call it once the log has been read to its end, as `claims()`)."""
        fresh = [(cid, c) for cid, c in self.claims() if cid not in self.claimed]
        self.claimed.update(cid for cid, _ in fresh)
        return fresh
