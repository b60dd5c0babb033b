"""Orders: settlement against their reservations and coupon, and the money (order streams)."""

from __future__ import annotations

from saleday.projections.rules.common import (
    _DEADLINE,
    _PRICES,
    _QTY,
    CONFIRMED,
    LOCKED,
    OPEN,
    RulesBase,
)


class Order:
    __slots__ = (
        "captured",
        "coupon",
        "deadline",
        "discount",
        "line_prices",
        "lines",
        "oid",
        "placed",
        "points",
        "refunds",
        "started_at",
        "status",
        "stream",
        "subtotal",
        "total",
        "user",
        "version",
    )

    def __init__(self, oid: str, stream: str, version: int) -> None:
        self.oid, self.stream, self.version = oid, stream, version
        self.user = self.coupon = self.status = ""
        self.lines: list = []
        self.deadline = self.started_at = self.subtotal = self.discount = self.total = 0
        self.line_prices: list = []
        self.captured: list[tuple[str, int]] = []
        self.refunds: dict[str, int] = {}
        self.placed = False
        self.points = (0, 0)   # member points applied, and what they took off (cents)



class OrderRules(RulesBase):
    """orders.* events, checked against the SKU and wallet records at the end."""

    # --- orders ------------------------------------------------------------------------

    def _order(self, env: tuple, what: str) -> Order | None:
        o = self.orders.get(env[8]["order_id"])
        if o is None or not o.status:
            self.fail("orders.settlement", env[0], env[1],
                      f"order {env[8]['order_id']!r} {what} before its checkout started")
        return o

    def checkout_started(self, env: tuple) -> None:
        d = env[8]
        oid = d["order_id"]
        o = self.orders.get(oid)
        if o is not None and o.status:  # (an order only refunded so far has no status)
            self.fail("orders.settlement", env[0], env[1],
                      f"order {oid!r} started after it was already {o.status}")
            return
        if o is None:
            o = self.orders[oid] = Order(oid, env[0], env[1])
        o.stream, o.version = env[0], env[1]
        o.user, o.lines, o.coupon = d["user"], d["lines"], d["coupon_id"]
        o.deadline, o.started_at, o.status = d["payment_deadline"], d["started_at"], "trying"

    def points_applied(self, env: tuple) -> None:
        o = self._order(env, "applied points")
        if o is None:
            return
        d = env[8]
        if o.status != "trying" or o.points != (0, 0) or d["points"] < 1 or d["points_cents"] < 1:
            self.fail("orders.money", env[0], env[1],
                      f"order {o.oid!r} applied {d['points']} points ({d['points_cents']} cents) "
                      f"while {o.status}, twice, or not positive")
        o.points = (d["points"], d["points_cents"])

    def order_placed(self, env: tuple) -> None:
        o = self._order(env, "placed")
        if o is None:
            return
        d = env[8]
        oid = o.oid
        if o.status != "trying":
            self.fail("orders.settlement", env[0], env[1], f"order {oid!r} placed while {o.status}")
        lp = d["line_prices"]
        problems = []
        if d["user"] != o.user:
            problems.append(f"placed for user {d['user']!r}, started by {o.user!r}")
        if len(lp) != len(o.lines) or any(len(p) != q for p, (_, q) in zip(lp, o.lines)):
            problems.append(f"line prices {lp} do not give one price per unit of {o.lines}")
        if sum(map(sum, lp)) != d["subtotal_cents"]:
            problems.append(f"subtotal {d['subtotal_cents']} is not the sum of the line prices")
        if not 0 <= d["discount_cents"] <= d["subtotal_cents"] or (d["discount_cents"] and not o.coupon):
            problems.append(f"discount {d['discount_cents']} on a subtotal of {d['subtotal_cents']}"
                            + ("" if o.coupon else " without a coupon"))
        if d["total_cents"] != d["subtotal_cents"] - d["discount_cents"] - o.points[1]:
            problems.append(f"total {d['total_cents']} is not subtotal {d['subtotal_cents']} - "
                            f"discount {d['discount_cents']} - points {o.points[1]}")
        if problems:
            self.fail("orders.money", env[0], env[1], f"order {oid!r}: " + "; ".join(problems))
        o.status, o.placed = "placed", True
        o.line_prices, o.subtotal = lp, d["subtotal_cents"]
        o.discount, o.total = d["discount_cents"], d["total_cents"]

    def order_voided(self, env: tuple) -> None:
        oid = env[8]["order_id"]
        o = self.orders.get(oid)
        if o is not None and o.status:
            self.fail("orders.settlement", env[0], env[1],
                      f"order {oid!r} voided after it started ({o.status})")
            return
        if o is None:
            o = self.orders[oid] = Order(oid, env[0], env[1])
        o.status = "voided"

    def checkout_cancelled(self, env: tuple) -> None:
        o = self._order(env, "cancelled")
        if o is None:
            return
        if o.status not in ("trying", "placed") or env[8]["was_placed"] != (o.status == "placed"):
            self.fail("orders.settlement", env[0], env[1],
                      f"order {o.oid!r} cancelled (was_placed={env[8]['was_placed']}) while {o.status}")
        o.status = "cancelled"

    def payment_captured(self, env: tuple) -> None:
        o = self._order(env, "captured a payment")
        if o is None:
            return
        d = env[8]
        if o.status != "placed" or d["amount_cents"] != o.total:
            self.fail("orders.money", env[0], env[1],
                      f"order {o.oid!r} captured {d['amount_cents']} cents ({d['payment_id']!r}) "
                      f"while {o.status}, total {o.total}")
        o.captured.append((d["payment_id"], d["amount_cents"]))
        o.status = "paid"

    def refund_issued(self, env: tuple) -> None:
        d = env[8]
        oid, pid = d["order_id"], d["payment_id"]
        o = self.orders.get(oid)
        if o is None:
            o = self.orders[oid] = Order(oid, env[0], env[1])  # a payment for an unknown order
        if pid in o.refunds or any(pid == p for p, _ in o.captured):
            self.fail("orders.money", env[0], env[1],
                      f"order {oid!r}: payment {pid!r} refunded after it was "
                      + ("refunded already" if pid in o.refunds else "captured"))
        o.refunds[pid] = d["amount_cents"]


    def order_refunded(self, env: tuple) -> None:
        """A paid order given up after the fact gives back exactly the payment it captured."""
        o = self._order(env, "refunded")
        if o is None:
            return
        d = env[8]
        pid = d["payment_id"]
        if o.status != "paid" or [(pid, d["amount_cents"])] != o.captured:
            self.fail("orders.money", env[0], env[1],
                      f"order {o.oid!r} refunded {d['amount_cents']} cents of {pid!r} while "
                      f"{o.status}, having captured {o.captured}")
        o.refunds[pid] = d["amount_cents"]
        o.status = "refunded"

    def _orders_at_end(self, last_time: int) -> None:
        self._count("orders.settlement", len(self.orders))
        self._count("orders.money", len(self.orders))
        for o in self.orders.values():
            if o.lines:
                self._order_lines(o, last_time)
            if o.coupon:
                self._order_coupon(o, last_time)
            if o.status == "paid" and len(o.captured) != 1:
                self.fail("orders.money", o.stream, o.version,
                          f"order {o.oid!r} is paid but captured {len(o.captured)} payments")

    def _order_lines(self, o: Order, last_time: int) -> None:
        for i, (sku, _) in enumerate(o.lines):
            rid = f"{o.oid}/{i}"
            r = self.res.get((sku, rid))
            if r is not None and o.placed and i < len(o.line_prices) \
                    and list(r[_PRICES]) != list(o.line_prices[i]):
                self.fail("orders.money", o.stream, o.version,
                          f"order {o.oid!r} line {i} ({sku!r}) priced {list(o.line_prices[i])} but "
                          f"reservation {rid!r} holds it at {list(r[_PRICES])}")
            if o.status == "paid":
                if r is None:
                    self.fail("orders.settlement", o.stream, o.version,
                              f"order {o.oid!r} is paid but line {i} ({sku!r}) was never reserved "
                              f"(no reservation {rid!r})")
                elif r[0] is not CONFIRMED and not (r[0] is OPEN and r[_DEADLINE] > last_time):
                    self.fail("orders.settlement", o.stream, o.version,
                              f"order {o.oid!r} is paid but its reservation {rid!r} of SKU {sku!r} "
                              f"was {r[0]}, not confirmed")
            elif o.status in ("cancelled", "voided") and r is not None and r[0] is CONFIRMED:
                self.fail("orders.settlement", o.stream, o.version,
                          f"order {o.oid!r} is {o.status} but its reservation {rid!r} of SKU "
                          f"{sku!r} was confirmed (sold), not released")
            elif o.status == "refunded" and r is not None and r[0] is CONFIRMED:
                self.fail("orders.settlement", o.stream, o.version,
                          f"order {o.oid!r} is refunded but its reservation {rid!r} of SKU "
                          f"{sku!r} still holds {r[_QTY]} sold units (never returned)")

    def _order_coupon(self, o: Order, last_time: int) -> None:
        c = self.coupons.get((o.user, o.coupon))
        if c is None:
            if o.status == "paid":
                self.fail("orders.settlement", o.stream, o.version,
                          f"order {o.oid!r} is paid with coupon {o.coupon!r}, which user "
                          f"{o.user!r} never received")
            return
        redeemed_by = c[6]
        if o.status == "paid":
            if redeemed_by != o.oid and not (c[0] is LOCKED and c[3] == o.oid and o.deadline > last_time):
                self.fail("orders.settlement", o.stream, o.version,
                          f"order {o.oid!r} is paid but its coupon {o.coupon!r} was not redeemed "
                          f"by it ({c[0]}" + (f" by {redeemed_by!r})" if redeemed_by else ")"))
        elif o.status in ("cancelled", "voided") and redeemed_by == o.oid:
            self.fail("orders.settlement", o.stream, o.version,
                      f"order {o.oid!r} is {o.status} but redeemed coupon {o.coupon!r}")
        elif o.status == "refunded" and redeemed_by == o.oid and c[2] > last_time:
            self.fail("orders.settlement", o.stream, o.version,
                      f"order {o.oid!r} is refunded but keeps coupon {o.coupon!r} redeemed, "
                      f"though it is valid until {c[2]} (never returned)")
        for oid, stream, version in c[8]:
            if oid == o.oid and o.status != "refunded":
                self.fail("coupons.redemption", stream, version,
                          f"coupon {o.coupon!r} of user {o.user!r} returned by order {oid!r}, "
                          f"which is {o.status}, not refunded")
        if redeemed_by == o.oid:
            at = c[7]
            if o.started_at >= c[2]:
                self.fail("coupons.redemption", at[0], at[1],
                          f"coupon {o.coupon!r} of user {o.user!r} redeemed by order {o.oid!r} "
                          f"checked out at {o.started_at}, after it was valid (until {c[2]})")
        if o.placed and o.discount != min(c[1], o.subtotal):
            self.fail("orders.money", o.stream, o.version,
                      f"order {o.oid!r} took {o.discount} cents off for coupon {o.coupon!r}, "
                      f"worth {c[1]} on a subtotal of {o.subtotal}")

