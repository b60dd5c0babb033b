"""The members view: each user's paid orders, recorded tiers and points, for RFM.

Tables (all `disjoint`: each key comes from one stream):

- `history` (key = user, from the member streams): `{order_ref: [ordered_at, cents]}` of
  `members.order_recorded` (imported history, or checkout orders recorded on the member);
- `checkout` (key = order id, from the order streams): `[user, total cents, paid_at]` of
  `orders.order_placed`, with `paid_at` (the `orders.payment_captured` event's
  `recorded_at`) null until paid, and null again once the order is refunded
  (`orders.order_refunded`: a refunded order is not a purchase);
- `tier` (key = user): `[[changed_at, tier], ...]` of `members.tier_changed`;
- `points` (key = user): `[earned, redeemed, expired, taken_back]` of the points events
  (`taken_back`: what refunded orders' `members.points_taken_back` removed).

A paid checkout order counts for RFM exactly as an imported order does, at its payment
time and its total. An order recorded on the member under the checkout's order id counts
once (`orders_by_user`). The RFM arithmetic is `projections/rfm.py`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from saleday.events.envelope import Envelope
from saleday.projections.view import DISJOINT, View

EARNED, REDEEMED, EXPIRED, TAKEN_BACK = range(4)
_POINTS = {"members.points_earned": EARNED, "members.points_redeemed": REDEEMED,
           "members.points_expired": EXPIRED, "members.points_taken_back": TAKEN_BACK}


class MembersView(View):
    name = "members"
    tables: ClassVar[dict[str, str]] = {"history": DISJOINT, "checkout": DISJOINT,
                                        "tier": DISJOINT, "points": DISJOINT}

    def apply(self, env: Envelope) -> None:
        self.apply_batch((env,))

    def apply_batch(self, envs: Sequence[Envelope]) -> None:
        history, checkout, tiers, points = (self.t["history"], self.t["checkout"],
                                            self.t["tier"], self.t["points"])
        dirty = self.dirty
        for env in envs:
            kind = env.type
            if kind.startswith("members."):
                d = env.data
                user = d["user"]
                if kind == "members.order_recorded":
                    history.setdefault(user, {})[d["order_ref"]] = [d["ordered_at"],
                                                                    d["amount_cents"]]
                    dirty["history"].add(user)
                elif kind == "members.tier_changed":
                    tiers.setdefault(user, []).append([d["changed_at"], d["tier"]])
                    dirty["tier"].add(user)
                else:
                    slot = _POINTS.get(kind)
                    if slot is None:
                        continue
                    row = points.setdefault(user, [0, 0, 0, 0])
                    if len(row) < 4:   # a row of a checkpoint from before taken_back
                        row.extend([0] * (4 - len(row)))
                    row[slot] += d["points"]
                    dirty["points"].add(user)
            elif kind == "orders.order_placed":
                d = env.data
                checkout[d["order_id"]] = [d["user"], d["total_cents"], None]
                dirty["checkout"].add(d["order_id"])
            elif kind == "orders.payment_captured":
                d = env.data
                row = checkout.get(d["order_id"])
                if row is not None:
                    row[1], row[2] = d["amount_cents"], env.recorded_at
                    dirty["checkout"].add(d["order_id"])
            elif kind == "orders.order_refunded":
                row = checkout.get(env.data["order_id"])
                if row is not None:
                    row[2] = None
                    dirty["checkout"].add(env.data["order_id"])

    # -- reading -------------------------------------------------------------------------

    def orders_by_user(self) -> dict[str, list[tuple[int, int]]]:
        """Every user's paid orders `(ordered_at, cents)`: recorded history and paid
        checkouts, each order ref once."""
        out: dict[str, dict[str, tuple[int, int]]] = {}
        for order_id, (user, cents, paid_at) in self.t["checkout"].items():
            if paid_at is not None:
                out.setdefault(user, {})[order_id] = (paid_at, cents)
        for user, refs in self.t["history"].items():
            mine = out.setdefault(user, {})
            for ref, (at, cents) in refs.items():
                mine[ref] = (at, cents)
        return {user: list(refs.values()) for user, refs in out.items()}

    def recorded_tier(self, user: str, at: int | None = None) -> str:
        """The tier the log recorded for `user` (at `at` ms, or the latest)."""
        current = "regular"
        for changed_at, tier in self.t["tier"].get(user, ()):
            if at is not None and changed_at > at:
                break
            current = tier
        return current

    def points_of(self, user: str) -> dict[str, int]:
        earned, redeemed, expired, taken_back = (
            list(self.t["points"].get(user, ())) + [0, 0, 0, 0])[:4]
        return {"earned": earned, "redeemed": redeemed, "expired": expired,
                "taken_back": taken_back,
                "balance": earned - redeemed - expired - taken_back}

    def to_json(self) -> dict[str, Any]:
        return {table: {key: rows[key] for key in sorted(rows)} for table, rows in self.t.items()}
