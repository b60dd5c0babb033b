"""Members, prices and presales: the points ledger, protection refunds, tiers, deposits.

Checked from the events alone (their writers are actors/member/, actors/price.py and
actors/presale.py); each rule is explained in docs/AUDIT.md and docs/MEMBERS.md.
"""

from __future__ import annotations

from saleday.projections.rules.common import RulesBase


class Ledger:
    """One member's points as the audit folds them, and what else it checks per member."""

    __slots__ = ("earned", "expired", "lots", "orders", "protected", "redeemed", "tier",
                 "tier_at", "invoices", "holds", "spent", "taken_back")

    def __init__(self) -> None:
        self.lots: dict[str, list[int]] = {}   # order ref -> [points left, expires_at]
        self.earned = self.redeemed = self.expired = 0
        self.orders: set[str] = set()
        self.protected: set[tuple[str, str]] = set()
        self.tier, self.tier_at = "regular", 0
        self.invoices: dict[str, str] = {}
        self.holds: dict[str, dict] = {}    # hold id (an order) -> the points_held data
        self.spent: dict[str, tuple] = {}   # hold id -> (points, stream, version) when spent
        self.taken_back: dict[str, int] = {}   # refunded order ref -> the points taken back


class MemberRules(RulesBase):
    """members.*, prices.* and presales.* events."""

    def __init__(self) -> None:
        super().__init__()
        self.members: dict[str, Ledger] = {}
        self.prices: dict[str, list[tuple[int, int]]] = {}
        self.refunds: list[tuple[str, int, dict]] = []
        self.presales: dict[str, dict] = {}

    def members_at_end(self) -> None:
        """The checks that need the whole log: ledgers, refunds against orders, presales."""
        self._points_at_end()
        self._protection_at_end()
        self._presales_at_end()

    def _member(self, user: str) -> Ledger:
        ledger = self.members.get(user)
        if ledger is None:
            ledger = self.members[user] = Ledger()
        return ledger

    # --- history, tiers, invoices ------------------------------------------------------

    def order_recorded(self, env: tuple) -> None:
        d = env[8]
        m = self._member(d["user"])
        if d["order_ref"] in m.orders:
            self.fail("members.history", env[0], env[1],
                      f"order {d['order_ref']!r} recorded twice for {d['user']!r}")
        if d["amount_cents"] < 0 or d["source"] not in ("import", "checkout"):
            self.fail("members.history", env[0], env[1], f"order {d['order_ref']!r} has a "
                      f"negative amount or an unknown source")
        m.orders.add(d["order_ref"])

    def tier_changed(self, env: tuple) -> None:
        d = env[8]
        m = self._member(d["user"])
        if d["previous"] != m.tier or d["changed_at"] < m.tier_at or d["tier"] == m.tier:
            self.fail("members.tiers", env[0], env[1],
                      f"{d['user']!r} moved {d['previous']!r} -> {d['tier']!r} at "
                      f"{d['changed_at']}, but was {m.tier!r} since {m.tier_at}")
        m.tier, m.tier_at = d["tier"], d["changed_at"]

    def invoice_chosen(self, env: tuple) -> None:
        d = env[8]
        m = self._member(d["user"])
        if d["order_ref"] in m.invoices or d["invoice"] not in ("none", "paper", "electronic"):
            self.fail("members.points", env[0], env[1],
                      f"invoice for {d['order_ref']!r} chosen twice or of unknown kind")
        m.invoices[d["order_ref"]] = d["invoice"]

    # --- points ----------------------------------------------------------------------

    def points_earned(self, env: tuple) -> None:
        d = env[8]
        m = self._member(d["user"])
        self._count("members.points", 1)
        ref = d["order_ref"]
        chosen = m.invoices.get(ref, "none")
        if ref in m.lots or d["points"] < 1 or d["invoice"] != chosen or (
                d["invoice"] == "electronic" and d["points"] % 2):
            self.fail("members.points", env[0], env[1],
                      f"{d['user']!r} earned {d['points']} for {ref!r} (invoice {d['invoice']!r}, "
                      f"chosen {chosen!r}): twice, not positive, or not doubled as chosen")
        if ref in m.taken_back:
            self.fail("members.points", env[0], env[1],
                      f"{d['user']!r} earned {d['points']} for {ref!r} after it was refunded")
        m.lots[ref] = [d["points"], d["expires_at"]]
        m.earned += d["points"]

    def points_held(self, env: tuple) -> None:
        d = env[8]
        m = self._member(d["user"])
        at, hid = d["held_at"], d["hold_id"]
        taken = 0
        for ref, points, expires_at in d["taken"]:
            lot = m.lots.get(ref)
            if (lot is None or points < 1 or points > lot[0] or lot[1] <= at
                    or lot[1] != expires_at):
                self.fail("members.points", env[0], env[1],
                          f"{d['user']!r} held {points} from lot {ref!r}, which does not "
                          f"hold them unexpired at {at}")
                continue
            lot[0] -= points
            taken += points
        if hid in m.holds or hid in m.spent or taken != d["points"] or taken < 1:
            self.fail("members.points", env[0], env[1],
                      f"{d['user']!r} held {d['points']} for {hid!r}: twice, or the lots gave "
                      f"{taken}")
        m.holds[hid] = d

    def points_released(self, env: tuple) -> None:
        d = env[8]
        m = self._member(d["user"])
        hold = m.holds.pop(d["hold_id"], None)
        if hold is None or [list(t) for t in hold["taken"]] != [list(t) for t in d["taken"]]:
            self.fail("members.points", env[0], env[1],
                      f"{d['user']!r} released {d['hold_id']!r}, which holds no such points")
            return
        for ref, points, expires_at in d["taken"]:
            lot = m.lots.setdefault(ref, [0, expires_at])
            lot[0] += points

    def points_redeemed(self, env: tuple) -> None:
        d = env[8]
        m = self._member(d["user"])
        hold = m.holds.pop(d["redemption_id"], None)
        if hold is not None:   # a checkout's hold spent: its points left the lots when held
            if (hold["points"] != d["points"]
                    or [[r, p] for r, p, _ in hold["taken"]] != [list(t) for t in d["taken"]]):
                self.fail("members.points", env[0], env[1],
                          f"{d['user']!r} spent hold {d['redemption_id']!r} as {d['points']} "
                          f"points, but it held {hold['points']}")
            m.spent[d["redemption_id"]] = (d["points"], env[0], env[1])
            m.redeemed += d["points"]
            return
        at = d["redeemed_at"]
        taken = 0
        for ref, points in d["taken"]:
            lot = m.lots.get(ref)
            if lot is None or points < 1 or points > lot[0] or lot[1] <= at:
                self.fail("members.points", env[0], env[1],
                          f"{d['user']!r} redeemed {points} from lot {ref!r}, which does not "
                          f"hold them unexpired at {at}")
                continue
            lot[0] -= points
            taken += points
        if taken != d["points"] or sum(p for p, _ in m.lots.values()) < 0:
            self.fail("members.points", env[0], env[1],
                      f"{d['user']!r} redeemed {d['points']} but the lots gave {taken}")
        m.redeemed += d["points"]

    def points_expired(self, env: tuple) -> None:
        d = env[8]
        m = self._member(d["user"])
        lot = m.lots.get(d["order_ref"])
        if lot is None or lot[0] != d["points"] or lot[1] != d["expires_at"] or lot[0] < 1:
            self.fail("members.points", env[0], env[1],
                      f"{d['user']!r}'s lot {d['order_ref']!r} expired {d['points']} points, "
                      f"not what was left of it")
        if lot is not None:
            lot[0] = 0
        m.expired += d["points"]

    def points_taken_back(self, env: tuple) -> None:
        """A refunded order's points: what is left of its lot leaves the balance, once."""
        d = env[8]
        m = self._member(d["user"])
        self._count("members.points", 1)
        ref = d["order_ref"]
        lot = m.lots.get(ref)
        left = lot[0] if lot is not None else 0
        if ref in m.taken_back or d["points"] != left:
            self.fail("members.points", env[0], env[1],
                      f"{d['user']!r} took back {d['points']} points of refunded order {ref!r}: "
                      + ("twice" if ref in m.taken_back else f"its lot holds {left}"))
        if lot is not None:
            lot[0] -= d["points"]
        m.taken_back[ref] = d["points"]

    # --- price protection ------------------------------------------------------------

    def price_changed(self, env: tuple) -> None:
        d = env[8]
        history = self.prices.setdefault(d["sku"], [])
        last_at, last = history[-1] if history else (0, 0)
        if d["previous_cents"] != last or d["changed_at"] < last_at or d["price_cents"] < 1:
            self.fail("prices.history", env[0], env[1],
                      f"{d['sku']!r} changed from {d['previous_cents']} at {d['changed_at']}, but "
                      f"its price was {last} since {last_at}")
        history.append((d["changed_at"], d["price_cents"]))

    def protection_refunded(self, env: tuple) -> None:
        d = env[8]
        m = self._member(d["user"])
        line = (d["order_ref"], d["sku"])
        refund = sum(max(0, u - d["price_cents"]) for u in d["unit_prices"])
        if line in m.protected or refund != d["refund_cents"] or refund < 1:
            self.fail("members.protection", env[0], env[1],
                      f"{d['user']!r} refunded {d['refund_cents']} on {line}: twice, or not "
                      f"the drop below the units paid ({refund})")
        if d["order_ref"] in m.taken_back:
            self.fail("members.protection", env[0], env[1],
                      f"{d['user']!r} refunded {d['refund_cents']} on {line}, an order "
                      "refunded as a whole already")
        m.protected.add(line)
        self.refunds.append((env[0], env[1], d))

    def _protection_at_end(self) -> None:
        """Each refund names a real paid line at its prices and a real drop of its SKU."""
        for stream, version, d in self.refunds:
            self._count("members.protection", 1)
            o = self.orders.get(d["order_ref"])
            paid = o is not None and bool(o.captured)
            units = None
            if paid:
                for (sku, _), prices in zip(o.lines, o.line_prices):
                    if sku == d["sku"]:
                        units = list(prices)
            if units != list(d["unit_prices"]) or o.user != d["user"]:
                self.fail("members.protection", stream, version,
                          f"refund on {d['order_ref']!r}/{d['sku']!r}: no such paid line of "
                          f"{d['user']!r} at those prices")
            if o is not None and o.status == "refunded":
                self.fail("members.protection", stream, version,
                          f"refund on {d['order_ref']!r}/{d['sku']!r}: the order was refunded "
                          "as a whole, so this paid back more than it captured")
            if (d["dropped_at"], d["price_cents"]) not in self.prices.get(d["sku"], ()):
                self.fail("members.protection", stream, version,
                          f"refund on {d['order_ref']!r}/{d['sku']!r}: {d['sku']!r} has no "
                          f"price change to {d['price_cents']} at {d['dropped_at']}")

    def _points_at_end(self) -> None:
        for user, m in self.members.items():
            balance = sum(p for p, _ in m.lots.values())
            held = sum(h["points"] for h in m.holds.values())
            self._count("members.points", 1)
            back = sum(m.taken_back.values())
            if balance < 0 or balance + held != m.earned - m.redeemed - m.expired - back:
                self.fail("members.points", "member", None,
                          f"{user!r}: balance {balance} + held {held} is not earned {m.earned} "
                          f"- redeemed {m.redeemed} - expired {m.expired} - taken back {back}")
            for hid, (points, stream, version) in m.spent.items():
                o = self.orders.get(hid)
                if o is not None and (not o.captured or o.points[0] != points
                                      or o.user != user):
                    self.fail("members.points", stream, version,
                              f"{user!r} spent {points} points held for order {hid!r}, which "
                              f"did not apply them or was not paid")
        for o in self.orders.values():
            if o.status == "refunded" and o.user in self.members:
                m = self.members[o.user]
                if o.oid in m.lots and o.oid not in m.taken_back:
                    self.fail("members.points", o.stream, o.version,
                              f"order {o.oid!r} was refunded but {o.user!r} keeps the points "
                              f"it earned (never taken back)")
            if o.points[0] and o.captured and o.status == "paid":
                m = self.members.get(o.user)
                if m is None or m.spent.get(o.oid, (0,))[0] != o.points[0]:
                    self.fail("members.points", o.stream, o.version,
                              f"order {o.oid!r} was paid with {o.points[0]} points that "
                              f"{o.user!r} never spent")

    # --- presales --------------------------------------------------------------------

    def presale_opened(self, env: tuple) -> None:
        d = env[8]
        if d["sku"] in self.presales:
            self.fail("presales.money", env[0], env[1], f"presale {d['sku']!r} opened twice")
        self.presales[d["sku"]] = {"terms": d, "deposits": {}, "held": 0, "paid_in": 0}

    def _presale(self, env: tuple) -> dict | None:
        p = self.presales.get(env[8]["sku"])
        if p is None:
            self.fail("presales.windows", env[0], env[1],
                      f"{env[2]} for presale {env[8]['sku']!r}, which was never opened")
        return p

    def deposit_paid(self, env: tuple) -> None:
        p, d = self._presale(env), env[8]
        if p is None:
            return
        t = p["terms"]
        if not t["deposits_from"] <= d["paid_at"] < t["balance_from"]:
            self.fail("presales.windows", env[0], env[1],
                      f"deposit {d['deposit_id']!r} paid outside the deposit window")
        if d["deposit_cents"] != t["deposit_cents"] * d["qty"] or d["deposit_id"] in p["deposits"]:
            self.fail("presales.money", env[0], env[1],
                      f"deposit {d['deposit_id']!r}: twice, or not deposit x qty")
        p["held"] += d["qty"]
        if p["held"] > t["units"]:
            self.fail("presales.money", env[0], env[1],
                      f"presale {d['sku']!r} holds {p['held']} units of {t['units']}")
        p["deposits"][d["deposit_id"]] = [d["qty"], d["deposit_cents"], "held", d["user"]]
        p["paid_in"] += d["deposit_cents"]

    def balance_paid(self, env: tuple) -> None:
        p, d = self._presale(env), env[8]
        if p is None:
            return
        t = p["terms"]
        dep = p["deposits"].get(d["deposit_id"])
        if not t["balance_from"] <= d["paid_at"] < t["balance_until"]:
            self.fail("presales.windows", env[0], env[1],
                      f"balance of {d['deposit_id']!r} paid outside the balance window")
        want = (t["price_cents"] - t["deposit_value_cents"]) * d["qty"]
        if dep is None or dep[2] != "held" or d["balance_cents"] != want or dep[0] != d["qty"]:
            self.fail("presales.money", env[0], env[1],
                      f"balance of {d['deposit_id']!r}: no held deposit, or not (price - "
                      f"deposit value) x qty = {want}")
        else:
            dep[2] = "paid"
        p["paid_in"] += d["balance_cents"]

    def deposit_forfeited(self, env: tuple) -> None:
        p, d = self._presale(env), env[8]
        if p is None:
            return
        dep = p["deposits"].get(d["deposit_id"])
        if d["forfeited_at"] < p["terms"]["balance_until"]:
            self.fail("presales.windows", env[0], env[1],
                      f"deposit {d['deposit_id']!r} forfeited before the balance window closed")
        if dep is None or dep[2] != "held" or dep[0] != d["qty"] or dep[1] != d["deposit_cents"]:
            self.fail("presales.money", env[0], env[1],
                      f"deposit {d['deposit_id']!r} forfeited but not held as recorded")
        else:
            dep[2] = "forfeited"
            p["held"] -= d["qty"]

    def _presales_at_end(self) -> None:
        self._presale_stock_at_end()
        for sku, p in self.presales.items():
            self._count("presales.money", 1)
            t = p["terms"]
            owed = sum(dep[1] + (t["price_cents"] - t["deposit_value_cents"]) * dep[0]
                       if dep[2] == "paid" else dep[1] for dep in p["deposits"].values())
            if owed != p["paid_in"]:
                self.fail("presales.money", f"presale:{sku}", None,
                          f"deposits + balances paid in {p['paid_in']}, the deposits' outcomes "
                          f"say {owed}")

    def _presale_stock_at_end(self) -> None:
        """Each deposit's units on its SKU (flows/presale.py and flows/presale_stock.py,
        hold `presale/<deposit>`): set aside for its holder while the deposit is held, sold
        once its balance is paid, returned once it is forfeited. The deposit flow sets the
        units aside BEFORE it records the deposit, so the order of the two in the log does
        not matter here; units set aside for a deposit the presale never recorded (it
        refused it) must have been returned."""
        want = {"held": "held", "paid": "confirmed", "forfeited": "released"}
        said = {"held": "set aside", "confirmed": "sold", "released": "returned"}
        for sku, p in self.presales.items():
            self._count("presales.stock", len(p["deposits"]))
            for did, (qty, _, status, user) in p["deposits"].items():
                h = self.set_asides.get((sku, f"presale/{did}"))
                if h is not None and h[0] == want[status] and (h[1], h[2]) == (user, qty):
                    continue
                self.fail("presales.stock", f"presale:{sku}", None,
                          f"deposit {did!r} ({qty} units of {user!r}) is {status}, but on SKU "
                          f"{sku!r} its units are "
                          + ("not set aside" if h is None else
                             f"{said[h[0]]} ({h[2]} units of {h[1]!r})"))
        for (sku, hold), h in self.set_asides.items():
            p = self.presales.get(sku)
            if p is None or not hold.startswith("presale/") or hold[8:] in p["deposits"]:
                continue
            self._count("presales.stock", 1)
            if h[0] != "released":
                self.fail("presales.stock", f"presale:{sku}", None,
                          f"{h[2]} units of {h[1]!r} {said[h[0]]} on SKU {sku!r} under "
                          f"{hold!r}, but presale {sku!r} has no deposit {hold[8:]!r}")
