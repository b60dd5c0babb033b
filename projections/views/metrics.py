"""The metrics view: throughput per second of event time, sell-out times, the funnel,
payment success, coupon redemption, and oversold units (which must be 0).

Rows:
- `second` (key = `recorded_at // 1000`): `[reservations, units reserved, orders placed,
  payments captured]` — several streams add to a second, so parts are summed.
- `sku` (key = SKU): `[stocked, available, sale start, sold out at, oversold units]`, from
  the SKU's own stream. "Sold out at" is the event time at which available first reached
  0 (0: never); oversold units are units reserved beyond what was available.
- `totals` (key `all`): event counters, summed across parts.

Rates are derived when the view is shown, never stored: payment success = orders paid /
orders placed; coupon redemption = coupons redeemed / coupons received in wallets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from saleday.events.envelope import Envelope
from saleday.projections.view import DISJOINT, SUM, View

RES, UNITS, PLACED, PAID = range(4)
STOCKED, AVAILABLE, START, SOLD_OUT_AT, OVERSOLD = range(5)

_COUNTED = {
    "sessions.session_started": "sessions",
    "sessions.referral_attributed": "referrals",
    "inventory.reservation_confirmed": "reservations_confirmed",
    "inventory.reservation_voided": "reservations_voided",
    "orders.checkout_started": "checkouts_started",
    "orders.order_voided": "orders_voided",
    "orders.checkout_cancelled": "orders_cancelled",
    "sessions.coupon_received": "coupons_received",
    "sessions.coupon_locked": "coupons_locked",
    "sessions.coupon_redeemed": "coupons_redeemed",
    "sessions.coupon_lapsed": "coupons_lapsed",
    "sessions.coupon_returned": "coupons_returned",
    "coupons.coupon_granted": "coupons_granted",
    "teams.team_created": "teams_created",
    "teams.team_completed": "teams_completed",
    "teams.team_expired_unfilled": "teams_expired",
}
"""Events counted by type alone (name of their counter in `totals`)."""


class MetricsView(View):
    name = "metrics"
    tables: ClassVar[dict[str, str]] = {"second": SUM, "sku": DISJOINT, "totals": SUM}

    def apply(self, env: Envelope) -> None:
        self.apply_batch((env,))

    def apply_batch(self, envs: Sequence[Envelope]) -> None:
        seconds, skus = self.t["second"], self.t["sku"]
        dirty_s, dirty_k = self.dirty["second"], self.dirty["sku"]
        totals = self.t["totals"].get("all")
        if totals is None:
            totals = self.t["totals"]["all"] = {}
        counted = _COUNTED
        for env in envs:
            kind = env.type
            d = env.data
            if kind == "inventory.stock_reserved":
                qty = d["qty"]
                sku = d["sku"]
                row = skus.get(sku) or _new_sku(skus, sku)
                available = row[AVAILABLE] - qty
                row[AVAILABLE] = available
                if available < 0:
                    row[OVERSOLD] += min(qty, -available)
                elif available == 0 and not row[SOLD_OUT_AT] and row[STOCKED]:
                    row[SOLD_OUT_AT] = env.recorded_at
                dirty_k.add(sku)
                key = str(env.recorded_at // 1000)
                sec = seconds.get(key)
                if sec is None:
                    sec = seconds[key] = [0, 0, 0, 0]
                sec[RES] += 1
                sec[UNITS] += qty
                dirty_s.add(key)
                totals["reservations"] = totals.get("reservations", 0) + 1
                totals["units_reserved"] = totals.get("units_reserved", 0) + qty
            elif kind == "inventory.reservation_released" or kind == "inventory.reservation_expired":
                sku = d["sku"]
                row = skus.get(sku) or _new_sku(skus, sku)
                row[AVAILABLE] += d["qty"]
                dirty_k.add(sku)
                name = ("reservations_released" if kind == "inventory.reservation_released"
                        else "reservations_expired")
                totals[name] = totals.get(name, 0) + 1
            elif kind == "inventory.sold_units_returned":   # a refunded order's sold units
                sku = d["sku"]
                row = skus.get(sku) or _new_sku(skus, sku)
                row[AVAILABLE] += d["qty"]
                dirty_k.add(sku)
                totals["reservations_returned"] = totals.get("reservations_returned", 0) + 1
            elif kind in counted:
                name = counted[kind]
                totals[name] = totals.get(name, 0) + 1
                if kind == "orders.checkout_cancelled" and d["reason"] == "payment_failed":
                    totals["payments_failed"] = totals.get("payments_failed", 0) + 1
            elif kind == "orders.order_placed":
                self._per_second(env, PLACED)
                totals["orders_placed"] = totals.get("orders_placed", 0) + 1
            elif kind == "orders.payment_captured":
                self._per_second(env, PAID)
                totals["orders_paid"] = totals.get("orders_paid", 0) + 1
                totals["captured_cents"] = totals.get("captured_cents", 0) + d["amount_cents"]
            elif kind == "orders.refund_issued" or kind == "orders.order_refunded":
                totals["refunds"] = totals.get("refunds", 0) + 1
                totals["refunded_cents"] = totals.get("refunded_cents", 0) + d["amount_cents"]
            elif kind == "inventory.stock_added":
                sku = d["sku"]
                row = skus.get(sku) or _new_sku(skus, sku)
                row[STOCKED] += d["qty"]
                row[AVAILABLE] += d["qty"]
                dirty_k.add(sku)
            elif kind == "inventory.sale_configured":
                sku = d["sku"]
                row = skus.get(sku) or _new_sku(skus, sku)
                if not row[START]:
                    row[START] = d["start"]
                dirty_k.add(sku)
        if totals:
            self.dirty["totals"].add("all")

    def _per_second(self, env: Envelope, column: int) -> None:
        key = str(env.recorded_at // 1000)
        sec = self.t["second"].get(key)
        if sec is None:
            sec = self.t["second"][key] = [0, 0, 0, 0]
        sec[column] += 1
        self.dirty["second"].add(key)

    # -- reading ---------------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        return dict(self.t["totals"].get("all", {}))

    def to_json(self) -> dict[str, Any]:
        tot = self.totals()
        get = tot.get
        seconds = self.t["second"]
        per_second = [{"second": int(k), "reservations": v[RES], "units_reserved": v[UNITS],
                       "orders_placed": v[PLACED], "payments": v[PAID]}
                      for k, v in sorted(seconds.items(), key=lambda kv: int(kv[0]))]
        peak = max(per_second, key=lambda r: (r["reservations"], -r["second"]), default=None)
        skus = {}
        for sku in sorted(self.t["sku"]):
            row = self.t["sku"][sku]
            sold_out = row[SOLD_OUT_AT]
            skus[sku] = {
                "stocked": row[STOCKED], "available": row[AVAILABLE], "sale_start": row[START],
                "sold_out_at": sold_out or None,
                "sold_out_after_s": (round((sold_out - row[START]) / 1000, 3)
                                     if sold_out and row[START] else None),
                "oversold_units": row[OVERSOLD]}
        return {
            "totals": {k: tot[k] for k in sorted(tot)},
            "funnel": {"sessions": get("sessions", 0), "reservations": get("reservations", 0),
                       "orders_placed": get("orders_placed", 0),
                       "orders_paid": get("orders_paid", 0)},
            "payment_success_rate": _rate(get("orders_paid", 0), get("orders_placed", 0)),
            "coupon_redemption_rate": _rate(get("coupons_redeemed", 0), get("coupons_received", 0)),
            "reservations_released": get("reservations_released", 0),
            "reservations_expired": get("reservations_expired", 0),
            "oversold_units": sum(r[OVERSOLD] for r in self.t["sku"].values()),
            "skus_sold_out": sum(1 for r in self.t["sku"].values() if r[SOLD_OUT_AT]),
            "peak_second": peak,
            "per_second": per_second,
            "skus": skus,
        }


def _new_sku(skus: dict[str, Any], sku: str) -> list[int]:
    row = skus[sku] = [0, 0, 0, 0, 0]
    return row


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None
