"""The orders view: every checkout, from its start to its end, with the prices it got.

Rows:
- `order` (key = order id), from the order's own stream: user, lines, coupon, payment
  deadline, the status timeline `[[status, at], ...]` (trying, placed, paid, cancelled,
  voided, refund), unit prices per line, subtotal, discount, total, amount captured, the
  refunds `[[payment id, cents, reason], ...]`, the cancel reason and the current status.
- `reservation` (key = reservation id `<order id>/<line>`, the checkout's naming), from
  the SKU's stream: `[sku, qty, unit prices, tier of each unit, outcome, at]` with outcome
  held, confirmed, released, expired, voided (cancelled before it was tried) or returned
  (confirmed, then given back to the shelf when its order was refunded).
Parts of a split projection hold different keys (`disjoint`); a line is joined to its
reservation when the view is shown, so it does not matter which stream was read first.

The final status is the order's status, or `refunded` when money came back on an order
that was not paid (a payment that arrived after a cancel or the deadline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from saleday.events.envelope import Envelope
from saleday.projections.view import DISJOINT, View

_OUTCOMES = {
    "inventory.reservation_confirmed": "confirmed",
    "inventory.reservation_released": "released",
    "inventory.reservation_expired": "expired",
    "inventory.sold_units_returned": "returned",
}


def order_of_reservation(reservation_id: str) -> tuple[str, int] | None:
    """`(order id, line)` of a checkout's reservation id `<order id>/<line>`, else None."""
    order, sep, line = reservation_id.rpartition("/")
    if not sep or not order or not line.isdigit():
        return None
    return order, int(line)


class OrdersView(View):
    name = "orders"
    tables: ClassVar[dict[str, str]] = {"order": DISJOINT, "reservation": DISJOINT}

    def apply(self, env: Envelope) -> None:
        self.apply_batch((env,))

    def apply_batch(self, envs: Sequence[Envelope]) -> None:
        orders, reservations = self.t["order"], self.t["reservation"]
        dirty_o, dirty_r = self.dirty["order"], self.dirty["reservation"]
        for env in envs:
            kind = env.type
            if kind.startswith("inventory."):
                rid = env.data.get("reservation_id")
                if rid is None or "/" not in rid or order_of_reservation(rid) is None:
                    continue
                d = env.data
                if kind == "inventory.stock_reserved":
                    reservations[rid] = [d["sku"], d["qty"], list(d["unit_prices"]),
                                         list(d["tiers"]), "held", env.recorded_at]
                elif kind == "inventory.reservation_voided":
                    reservations[rid] = [d["sku"], 0, [], [], "voided", env.recorded_at]
                else:
                    row = reservations.get(rid)
                    if row is None:  # a log that starts mid-way; keep what the event says
                        row = reservations[rid] = [d["sku"], d["qty"], [], [], "", 0]
                    row[4] = _OUTCOMES[kind]
                    row[5] = env.recorded_at
                dirty_r.add(rid)
            elif kind.startswith("orders."):
                d = env.data
                oid = d["order_id"]
                row = orders.get(oid)
                if row is None:
                    row = orders[oid] = _new_order()
                at = env.recorded_at
                if kind == "orders.checkout_started":
                    row["user"] = d["user"]
                    row["lines"] = [list(line) for line in d["lines"]]
                    row["coupon"] = d["coupon_id"]
                    row["payment_deadline"] = d["payment_deadline"]
                    row["started_at"] = d["started_at"]
                    row["status"] = "trying"
                    row["timeline"].append(["trying", d["started_at"]])
                elif kind == "orders.order_placed":
                    row["line_prices"] = [list(p) for p in d["line_prices"]]
                    row["subtotal_cents"] = d["subtotal_cents"]
                    row["discount_cents"] = d["discount_cents"]
                    row["total_cents"] = d["total_cents"]
                    row["status"] = "placed"
                    row["timeline"].append(["placed", at])
                elif kind == "orders.payment_captured":
                    row["paid_cents"] += d["amount_cents"]
                    row["payment_id"] = d["payment_id"]
                    row["status"] = "paid"
                    row["timeline"].append(["paid", at])
                elif kind == "orders.checkout_cancelled":
                    row["status"] = "cancelled"
                    row["cancel_reason"] = d["reason"]
                    row["timeline"].append(["cancelled", at])
                elif kind == "orders.order_voided":
                    row["status"] = "voided"
                    row["cancel_reason"] = d["reason"]
                    row["timeline"].append(["voided", at])
                elif kind == "orders.refund_issued":
                    row["refunds"].append([d["payment_id"], d["amount_cents"], d["reason"]])
                    row["timeline"].append(["refund", at])
                elif kind == "orders.order_refunded":
                    row["refunds"].append([d["payment_id"], d["amount_cents"], d["reason"]])
                    row["status"] = "refunded"
                    row["timeline"].append(["refunded", at])
                dirty_o.add(oid)

    # -- reading ---------------------------------------------------------------------------

    def order(self, order_id: str) -> dict[str, Any] | None:
        row = self.t["order"].get(order_id)
        return None if row is None else self._shown(order_id, row)

    def by_user(self, user: str) -> list[dict[str, Any]]:
        orders = self.t["order"]
        return [self._shown(oid, orders[oid]) for oid in sorted(orders)
                if orders[oid]["user"] == user]

    def _shown(self, order_id: str, row: dict[str, Any]) -> dict[str, Any]:
        reservations = self.t["reservation"]
        lines = []
        prices = row["line_prices"]
        for i, (sku, qty) in enumerate(row["lines"]):
            held = reservations.get(f"{order_id}/{i}")
            lines.append({
                "sku": sku, "qty": qty,
                "unit_prices": prices[i] if i < len(prices) else (held[2] if held else []),
                "tiers": held[3] if held else [],
                "reservation": held[4] if held else "none"})
        refunded = sum(r[1] for r in row["refunds"])
        final = row["status"]
        if refunded and final != "paid":
            final = "refunded"
        return {"order_id": order_id, "user": row["user"], "status": final,
                "order_status": row["status"], "lines": lines, "coupon": row["coupon"],
                "subtotal_cents": row["subtotal_cents"], "discount_cents": row["discount_cents"],
                "total_cents": row["total_cents"], "paid_cents": row["paid_cents"],
                "refunded_cents": refunded,
                "refunds": [{"payment_id": p, "cents": c, "reason": r} for p, c, r in row["refunds"]],
                "cancel_reason": row["cancel_reason"], "payment_deadline": row["payment_deadline"],
                "started_at": row["started_at"], "timeline": row["timeline"]}

    def to_json(self) -> dict[str, Any]:
        orders = self.t["order"]
        shown = {oid: self._shown(oid, orders[oid]) for oid in sorted(orders)}
        by_status: dict[str, int] = {}
        for o in shown.values():
            by_status[o["status"]] = by_status.get(o["status"], 0) + 1
        return {"count": len(shown), "by_status": dict(sorted(by_status.items())),
                "orders": shown}


def _new_order() -> dict[str, Any]:
    return {"user": "", "lines": [], "coupon": "", "payment_deadline": 0, "started_at": 0,
            "status": "", "timeline": [], "line_prices": [], "subtotal_cents": 0,
            "discount_cents": 0, "total_cents": 0, "paid_cents": 0, "payment_id": "",
            "refunds": [], "cancel_reason": ""}
