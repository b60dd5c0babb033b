"""Members in a simulated sale day (the `members` scenario section; in-process engine).

`MembersPlan` is built from the scenario and the seed; every draw is a hash of the seed
and what it is about (`experiments.unit`), so the generator's traffic is unchanged and a
seed gives the same log. What it adds to the run:

- **setup** (before the window opens): each user with history gets its past orders
  (`RecordOrder`, source `import`, as `saleday import orders` records them) and the points
  they earned when paid (`EarnPoints` at the order's time, valid `points_valid_days`: the
  lots older than that lapse on the member shard's first tick); the RFM tier rule is
  applied to that history as of the day before the sale and each member's tier recorded
  (`ChangeTier` at the start of the sale's UTC day, as `saleday members tiers` does); the
  SKUs whose price will drop get their list price (`SetPrice`); each presale is opened
  (deposit window: `deposit_days` before midnight; balance window: midnight +
  `balance_window_s`) on a SKU of its own stocked with `presale_units` units (`AddStock`),
  and its deposits paid at times spread over the deposit window, through the deposit
  flow (`pay_deposits`, flows/presale.py: each deposit's units set aside on the SKU
  first, then the deposit recorded).
- **during the sale**: the orders choose an invoice (electronic, paper or none) and some
  redeem points (`Checkout.place(invoice=..., points=...)`: held, spent when paid, given
  back when not); the deposits paid through pay their balance at times in the balance
  window (`BalanceDue` items merged into the visit stream); the presale shard's timer
  forfeits the rest when the window closes.
- **after the sale** (`after_sale`): the presale's units on its SKU
  (`flows.presale_stock`, as `saleday serve`'s follower does it live): each deposit's
  set-aside again (a repeat: the flow did it), then sold (balance paid) or returned
  (forfeited), each hold's steps in log order; then points for every paid order (`flows.points`, double
  for an e-invoice), then price drops on the chosen SKUs 1..`drop_days_max` days later,
  then price protection (`flows.protection`) claims every paid line the drops reach; the
  member decider refunds within the period of the tier the member had when it paid, once
  per line; the clock moves to the last drop and the shards' timers run (points lapse).
- **the report** (`summary`): tiers, points earned / redeemed / expired, invoices,
  protection refunds and refusals, presale conversion.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from saleday.actors.member import DAY_MS, ChangeTier, EarnPoints, RecordOrder
from saleday.actors.presale import OpenPresale, PayBalance
from saleday.actors.price import SetPrice
from saleday.actors.sku import AddStock
from saleday.events import Tail, registry
from saleday.projections.rfm import TierRule, day_of, day_start_ms, rfm
from saleday.simulator.driver import SimClock
from saleday.simulator.experiments import unit
from saleday.simulator.generator import Sku
from saleday.simulator.scenario import Scenario

KINDS = {"member": 1, "price": 1, "presale": 1}
"""The shards a members scenario adds to the sale's."""


def member_kinds(sc: Scenario) -> dict[str, int]:
    return dict(KINDS) if sc.members is not None else {}


@dataclass(frozen=True, slots=True)
class BalanceDue:
    """A deposit paid through at `t_s` (merged into the visit stream by time)."""

    t_s: float
    sku: str
    deposit_id: str
    qty: int


class MembersPlan:
    """What the members do before, during and after the sale."""

    def __init__(self, sc: Scenario, seed: int, skus: list[Sku], clock: SimClock) -> None:
        assert sc.members is not None
        m = self.m = sc.members
        self.seed, self.clock = seed, clock
        self.sale_ms = clock.ms(0)
        self.rule = TierRule.parse(m.tier_rule)
        self.windows = tuple(sorted(m.protection_days.items()))
        self.history: dict[str, list[tuple[str, int, int]]] = {}
        span = m.history_amount_max_cents - m.history_amount_min_cents
        for i in range(sc.users):
            user = f"u{i:07d}"
            if unit(seed, "history", user) >= m.history_share:
                continue
            n = 1 + int(unit(seed, "history-n", user) * m.history_orders_max)
            self.history[user] = [
                (f"hist-{user}-{k}",
                 self.sale_ms - DAY_MS - int(unit(seed, "history-at", user, k)
                                             * (m.history_days - 1) * DAY_MS),
                 m.history_amount_min_cents + int(unit(seed, "history-amount", user, k) ** 2
                                                  * span))
                for k in range(n)]
        self.as_of = day_of(self.sale_ms) - timedelta(days=1)
        rows = rfm({u: [(at, c) for _, at, c in orders] for u, orders in self.history.items()},
                   self.as_of, self.rule)
        self.tiers = {r["user"]: r["tier"] for r in rows}
        self.list_prices = {s.sku: s.tiers[-1][1] for s in skus
                            if unit(seed, "drop", s.sku) < m.drop_share}
        self.presales = [f"PRE{j:03d}" for j in range(m.presales)]
        self.deposits_from = self.sale_ms - m.deposit_days * DAY_MS
        self.balance_until = clock.ms(m.balance_window_s)
        self.deposits: list[tuple[str, str, str, int, int]] = []   # sku, id, user, qty, at
        for sku in self.presales:
            held = 0
            for k in range(m.presale_deposits):
                qty = 1 + (unit(seed, "deposit-qty", sku, k) < 0.2)
                if held + qty > m.presale_units:
                    break
                held += qty
                user = f"u{int(unit(seed, 'deposit-user', sku, k) * sc.users):07d}"
                at = self.deposits_from + int(unit(seed, "deposit-at", sku, k)
                                              * (self.sale_ms - self.deposits_from - 1))
                self.deposits.append((sku, f"{sku}-d{k:05d}", user, qty, at))
        self.counts: Counter[str] = Counter()
        """What the run did about members, as the client saw it (`summary`)."""

    # -- before the window --------------------------------------------------------------

    def setup_commands(self, now: int) -> list[tuple[str, Any]]:
        """History, its points, tiers, list prices, presales and their deposits."""
        return self.history_commands(now) + self.sale_commands(now)

    def history_commands(self, now: int) -> list[tuple[str, Any]]:
        """The members' past orders, the points they earned and the tiers they give."""
        m, out = self.m, []
        for user, orders in self.history.items():
            for ref, at, cents in orders:
                out.append((f"setup/history/{ref}", RecordOrder(
                    user=user, order_ref=ref, ordered_at=at, amount_cents=cents, source="import",
                    now=now)))
                if m.points_per_yuan and cents >= 100:
                    out.append((f"setup/points/{ref}", EarnPoints(
                        user=user, order_ref=ref, amount_cents=cents, invoice="none",
                        points_per_yuan=m.points_per_yuan, valid_days=m.points_valid_days,
                        now=at)))
        changed_at = day_start_ms(self.as_of + timedelta(days=1))
        for user, tier in sorted(self.tiers.items()):
            if tier != "regular":
                out.append((f"setup/tier/{user}", ChangeTier(
                    user=user, tier=tier, rule=f"rfm:{self.rule.text}", now=changed_at)))
        return out

    def sale_commands(self, now: int) -> list[tuple[str, Any]]:
        """List prices, presales and their deposits (timed on this plan's sale clock)."""
        m, out = self.m, []
        for sku, cents in sorted(self.list_prices.items()):
            out.append((f"setup/price/{sku}", SetPrice(sku=sku, price_cents=cents, now=now)))
        for sku in self.presales:
            out.append((f"setup/presale-stock/{sku}",
                        AddStock(sku=sku, qty=m.presale_units, now=now)))
            out.append((f"setup/presale/{sku}", OpenPresale(
                sku=sku, units=m.presale_units, deposit_cents=m.deposit_cents,
                deposit_value_cents=m.deposit_counts_as_cents, price_cents=m.presale_price_cents,
                deposits_from=self.deposits_from, balance_from=self.sale_ms,
                balance_until=self.balance_until, now=now)))
        return out

    async def pay_deposits(self, submit_many: Any) -> list[tuple[str, Any]]:
        """The deposits, through the deposit flow (flows/presale.py, in rounds: every
        deposit's units set aside on its SKU, then the deposits recorded, then the units
        of any the presale refused returned); once `sale_commands` are in. Answers each
        deposit's (command id, refusal or Accepted) for the setup check."""
        from saleday.actors.host import Accepted
        from saleday.flows.presale import deposit_command_id, deposit_in_rounds

        results = await deposit_in_rounds(submit_many, [(sku, did, user, qty, at)
                                                        for sku, did, user, qty, at
                                                        in self.deposits])
        return [(deposit_command_id(sku, r.deposit_id),
                 Accepted() if r.status == "held" else r.refusal)
                for (sku, *_), r in zip(self.deposits, results)]

    # -- during the sale ----------------------------------------------------------------

    def balances(self) -> list[BalanceDue]:
        """The deposits paid through, at their times in the balance window (sorted)."""
        window = self.m.balance_window_s
        due = [BalanceDue(t_s=round(unit(self.seed, "balance-at", did) * window * 0.95, 3),
                          sku=sku, deposit_id=did, qty=qty)
               for sku, did, _, qty, _ in self.deposits
               if unit(self.seed, "balance", did) < self.m.balance_rate]
        return sorted(due, key=lambda b: (b.t_s, b.deposit_id))

    def merged(self, visits: Iterator[Any]) -> Iterator[Any]:
        """The visits with the balances merged in, in time order."""
        return heapq.merge(visits, self.balances(), key=lambda item: item.t_s)

    @staticmethod
    def is_balance(item: Any) -> bool:
        return type(item) is BalanceDue

    async def pay_balance(self, gw: Any, b: BalanceDue, now: int) -> None:
        m = self.m
        amount = (m.presale_price_cents - m.deposit_counts_as_cents) * b.qty
        reply = await gw.submit_retrying_busy(
            PayBalance(sku=b.sku, deposit_id=b.deposit_id, payment_id=f"bal-{b.deposit_id}",
                       amount_cents=amount, now=now), command_id=f"balance/{b.deposit_id}")
        self.counts["balances_sent"] += 1
        self.counts[f"balance_{type(reply).__name__}"] += 1

    async def checkout_terms(self, gw: Any, user: str, order_id: str, floor_cents: int,
                             coupon_id: str) -> dict[str, Any]:
        """The invoice an order asks for and the points it redeems (`Checkout.place`'s
        `invoice` and `points`); none of either leaves the order as it was."""
        m, terms = self.m, {}
        u = unit(self.seed, "invoice", order_id)
        kind = ("electronic" if u < m.invoice_electronic else
                "paper" if u < m.invoice_electronic + m.invoice_paper else "none")
        self.counts[f"invoice_{kind}"] += 1
        if kind != "none":
            terms["invoice"] = (kind, f"title {user}", "")
        if unit(self.seed, "redeem", order_id) < m.redeem_share:
            member = await gw.query("member", user)
            coupon = 0
            if coupon_id:
                wallet = await gw.query("session", user)
                held = wallet.coupons.get(coupon_id)
                coupon = held.value_cents if held is not None else 0
            cap = int(max(0, floor_cents - coupon) * m.redeem_max_share) // m.cents_per_point
            points = min(member.balance, cap)
            if points > 0:
                terms["points"] = points
                self.counts["orders_redeeming"] += 1
        return terms

    # -- after the sale -----------------------------------------------------------------

    def drops(self) -> list[tuple[str, SetPrice]]:
        """The price drops after the sale, in time order."""
        m, out = self.m, []
        for sku, cents in sorted(self.list_prices.items()):
            cut = m.drop_min + unit(self.seed, "drop-by", sku) * (m.drop_max - m.drop_min)
            day = 1 + int(unit(self.seed, "drop-day", sku) * m.drop_days_max)
            at = self.sale_ms + day * DAY_MS + int(unit(self.seed, "drop-ms", sku) * 3_600_000)
            out.append((f"drop/{sku}", SetPrice(sku=sku, price_cents=max(1, round(cents * (1 - cut))),
                                                now=at)))
        return sorted(out, key=lambda item: (item[1].now, item[0]))

    async def after_sale(self, submit_many: Any, store: Any, tick: Any) -> None:
        """Points for paid orders, the price drops, protection claims, then the timers at
        the last drop (see the module docstring). `submit_many([(id, command)])` answers
        each; `tick(at_ms)` runs the shards' timers due by then (in-process: moving their
        clock there)."""
        from saleday.flows.points import PointsEarning
        from saleday.flows.protection import PriceProtection

        m = self.m
        earning = PointsEarning(points_per_yuan=max(1, m.points_per_yuan),
                                valid_days=m.points_valid_days)
        protection = PriceProtection(self.windows)
        tail = Tail(store, include=lambda s: s.startswith(("order-", "member-", "price-",
                                                           "session-")))

        def follow() -> list[tuple[str, Any]]:
            claims = []
            while batch := tail.poll():
                for env in batch:
                    event = registry.decode(env)
                    earning.observe(env, event)
                    claims += protection.observe(env, event)
            return claims

        presale_tail = Tail(store, include=lambda s: s.startswith("presale-"))
        await self._presale_stock(submit_many, presale_tail)
        follow()
        if m.points_per_yuan:
            await self._submit(submit_many, earning.claims(), "points_claims")
        drops = self.drops()
        await self._submit(submit_many, drops, "drops")
        await self._submit(submit_many, follow(), "protection_claims")
        tick(drops[-1][1].now if drops else self.balance_until)
        await self._presale_stock(submit_many, presale_tail)

    async def _presale_stock(self, submit_many: Any, tail: Tail) -> None:
        """Each deposit's units on its SKU (`flows.presale_stock`) for the presale events
        recorded since the last call: a hold's steps in log order (its set-aside first),
        the holds side by side."""
        from saleday.flows.presale_stock import presale_stock_steps

        rounds: list[list[tuple[str, Any]]] = []
        seen: Counter[str] = Counter()
        while batch := tail.poll():
            for env in batch:
                for cid, command in presale_stock_steps(env, registry.decode(env)):
                    k = seen[command.hold_id]
                    seen[command.hold_id] += 1
                    if k == len(rounds):
                        rounds.append([])
                    rounds[k].append((cid, command))
        for steps in rounds:
            await self._submit(submit_many, steps, "presale_stock")

    async def _submit(self, submit_many: Any, commands: list[tuple[str, Any]],
                      what: str) -> None:
        replies = await submit_many(commands)
        self.counts[what] += len(commands)
        for reply in replies:
            code = getattr(reply, "code", None) or type(reply).__name__
            if code != "Accepted":
                reason = getattr(reply, "reason", "")
                self.counts[f"{what}_refused:{code}{':' + reason if reason else ''}"] += 1

    # -- the report ---------------------------------------------------------------------

    def summary(self, store: Any) -> dict[str, Any]:
        """The report's members figures, folded from the member, price and presale streams
        (and the client's counts)."""
        tiers: dict[str, str] = {}
        points = Counter()
        by_invoice: Counter[str] = Counter()
        refunds = Counter()
        presale = Counter()
        redeemed_orders = 0
        tail = Tail(store, include=lambda s: s.startswith(("member-", "presale-", "price-",
                                                            "sku-")))
        while batch := tail.poll():
            for env in batch:
                d, kind = env.data, env.type
                match kind:
                    case "members.tier_changed":
                        tiers[d["user"]] = d["tier"]
                    case "members.points_earned":
                        points["earned"] += d["points"]
                        by_invoice[d["invoice"]] += d["points"]
                    case "members.points_redeemed":
                        points["redeemed"] += d["points"]
                        redeemed_orders += 1
                    case "members.points_expired":
                        points["expired"] += d["points"]
                    case "members.points_taken_back":
                        points["taken_back"] += d["points"]
                    case "members.points_held":
                        points["held_at_checkout"] += d["points"]
                    case "members.points_released":
                        points["released"] += d["points"]
                    case "members.price_protection_refunded":
                        refunds["lines_refunded"] += 1
                        refunds["refund_cents"] += d["refund_cents"]
                        refunds[f"refunded_{d['tier']}"] += 1
                    case "prices.price_changed":
                        refunds["price_drops"] += d["price_cents"] < d["previous_cents"]
                    case "presales.deposit_paid":
                        presale["deposits"] += 1
                        presale["units_deposited"] += d["qty"]
                        presale["deposit_cents"] += d["deposit_cents"]
                    case "presales.balance_paid":
                        presale["balances_paid"] += 1
                        presale["balance_cents"] += d["balance_cents"]
                    case "presales.deposit_forfeited":
                        presale["forfeited"] += 1
                        presale["forfeited_cents"] += d["deposit_cents"]
                    case "inventory.stock_set_aside":
                        presale["units_set_aside"] += d["qty"]
                    case "inventory.set_aside_sold":
                        presale["units_sold"] += d["qty"]
                    case "inventory.set_aside_returned":
                        presale["units_returned"] += d["qty"]
        members = set(self.history) | set(tiers)
        tier_counts = Counter(tiers.get(u, "regular") for u in members)
        c = self.counts
        refused = {k.split(":", 1)[1]: v for k, v in c.items()
                   if k.startswith("protection_claims_refused:")}
        deposits = presale["deposits"]
        return {
            "members_with_history": len(self.history),
            "history_orders": sum(len(o) for o in self.history.values()),
            "tiers": {t: tier_counts.get(t, 0) for t in ("diamond", "gold", "silver", "regular")},
            "tier_rule": self.rule.text, "tiers_as_of": self.as_of.isoformat(),
            "points": {"earned": points["earned"], "redeemed": points["redeemed"],
                       "expired": points["expired"], "taken_back": points["taken_back"],
                       "balance": points["earned"] - points["redeemed"] - points["expired"]
                       - points["taken_back"],
                       "held_at_checkout": points["held_at_checkout"],
                       "released": points["released"],
                       "orders_redeeming": redeemed_orders,
                       "earned_by_invoice": dict(sorted(by_invoice.items()))},
            "invoices": {k: c.get(f"invoice_{k}", 0) for k in ("electronic", "paper", "none")},
            "protection": {"price_drops": refunds["price_drops"],
                           "claims": c.get("protection_claims", 0),
                           "lines_refunded": refunds["lines_refunded"],
                           "refund_cents": refunds["refund_cents"],
                           "refunded_by_tier": {t: refunds[f"refunded_{t}"]
                                                for t in ("diamond", "gold", "silver")
                                                if refunds[f"refunded_{t}"]},
                           "refused": dict(sorted(refused.items()))},
            "presale": {"presales": len(self.presales), "deposits": deposits,
                        "units_deposited": presale["units_deposited"],
                        "balances_paid": presale["balances_paid"],
                        "forfeited": presale["forfeited"],
                        "conversion": round(presale["balances_paid"] / deposits, 4)
                        if deposits else None,
                        "deposit_cents": presale["deposit_cents"],
                        "balance_cents": presale["balance_cents"],
                        "forfeited_cents": presale["forfeited_cents"],
                        "stock": {"set_aside": presale["units_set_aside"],
                                  "sold": presale["units_sold"],
                                  "returned": presale["units_returned"]}},
        }
