"""What the report needs from the log that no view keeps: stock over time for the top SKUs.

`SaleTally` is a `View` folded in the audit's own pass over the log (so a run reads its
log once): the remaining stock of the hottest SKUs after every change, thinned to at most
`points` per SKU, the moment each SKU first sold out, and when teams formed, completed,
expired and paid out shares (for the team-up chart).
"""

from __future__ import annotations

from typing import Any

from saleday.events.envelope import Envelope
from saleday.projections.view import View

TEAM_SERIES = ("formed", "completed", "expired", "shares")
_TEAM_EVENTS = {"teams.team_created": "formed", "teams.team_completed": "completed",
                "teams.team_expired_unfilled": "expired"}


class SaleTally(View):
    name = "sale_tally"

    def __init__(self, top: list[str]) -> None:
        self.top = list(top)
        self._top = set(top)
        self.available: dict[str, int] = {}
        self.series: dict[str, list[tuple[int, int]]] = {sku: [] for sku in top}
        self.sold_out_at: dict[str, int] = {}
        self.cancelled: dict[str, int] = {}
        """Orders cancelled, by reason (payment_failed, expired, sold_out, ...)."""
        self.shares = 0
        self.cents_split = 0
        self.team_times: dict[str, list[int]] = {k: [] for k in TEAM_SERIES}
        """Event times (ms) of teams formed, completed, expired, and of each share paid."""

    def apply(self, env: Envelope) -> None:
        t = env.type
        if not t.startswith("inventory."):
            if t == "orders.checkout_cancelled":
                reason = env.data["reason"]
                self.cancelled[reason] = self.cancelled.get(reason, 0) + 1
            elif t == "teams.red_packet_split":
                shares = env.data["shares"]
                self.shares += len(shares)
                self.cents_split += sum(cents for _, cents in shares)
                self.team_times["shares"].extend([env.recorded_at] * len(shares))
            elif t in _TEAM_EVENTS:
                self.team_times[_TEAM_EVENTS[t]].append(env.recorded_at)
            return
        d = env.data
        sku = d["sku"]
        if t == "inventory.stock_added":
            delta = d["qty"]
        elif t == "inventory.stock_reserved":
            delta = -d["qty"]
        elif t in ("inventory.reservation_released", "inventory.reservation_expired",
                   "inventory.set_aside_returned", "inventory.sold_units_returned"):
            delta = d["qty"]
        elif t == "inventory.stock_set_aside":
            delta = -d["qty"]
        else:
            return
        left = self.available.get(sku, 0) + delta
        self.available[sku] = left
        if left <= 0 and sku not in self.sold_out_at and t == "inventory.stock_reserved":
            self.sold_out_at[sku] = env.recorded_at
        if sku in self._top:
            self.series[sku].append((env.recorded_at, left))

    def depletion(self, points: int = 200) -> dict[str, list[tuple[int, int]]]:
        out = {}
        for sku, series in self.series.items():
            step = max(1, len(series) // points)
            thinned = series[::step]
            if series and thinned[-1] != series[-1]:
                thinned.append(series[-1])
            out[sku] = thinned
        return out

    def to_json(self) -> dict[str, Any]:
        return {"available": dict(sorted(self.available.items())),
                "sold_out_at": dict(sorted(self.sold_out_at.items())),
                "cancelled": dict(sorted(self.cancelled.items())),
                "shares": self.shares, "cents_split": self.cents_split}
