"""Turning visits into commands: the flows a visitor drives, and what they are counted as.

The `Driver` plays one `Visit` through the system's own client flows
(`flows.sale_day.SaleDayFlows` for sessions, coupon claims and team-ups;
`flows.checkout.Checkout` for orders and payments), so a simulation exercises exactly
the code a real front end would. It works over any gateway with the `Gateway`'s API
(`submit_retrying_busy`, `query`): the Ray one, or the in-process one of
`simulator.inprocess`. Waiting for simulated time is the engine's business
(`wait_until`), so the same visit runs paced by the wall clock or on a virtual clock.

`Recorder` sits between the flows and the gateway and counts every command: when it was
offered (simulated time), how long its reply took (wall), and what the reply was.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from saleday.actors.decider import Rejection
from saleday.actors.host import Accepted, Busy, Unavailable
from saleday.flows.checkout import Checkout
from saleday.flows.sale_day import SaleDayFlows
from saleday.simulator.generator import Sku, Visit
from saleday.simulator.scenario import Scenario


@dataclass(frozen=True, slots=True)
class SimClock:
    """Simulated seconds since midnight <-> the milliseconds the system sees."""

    start_ms: int
    compression: float

    def ms(self, t_s: float) -> int:
        return self.start_ms + round(t_s * 1000 / self.compression)

    def span_ms(self, seconds: float) -> int:
        return max(1, round(seconds * 1000 / self.compression))

    def sim_s(self, ms: int) -> float:
        return (ms - self.start_ms) * self.compression / 1000


@dataclass
class Bucket:
    offered: int = 0
    served: int = 0
    busy: int = 0
    errors: int = 0
    rejected: int = 0
    latencies: array = field(default_factory=lambda: array("f"))


@dataclass
class KindStats:
    """One command type (or HTTP route) over a run: replies, refusals, failures, latencies."""

    count: int = 0
    busy: int = 0
    unavailable: int = 0
    rejections: Counter = field(default_factory=Counter)
    latencies: array = field(default_factory=lambda: array("f"))


class Recorder:
    """A `Gateway` (saleday.flows.gateway) around another: counts and times every command
    the flows submit."""

    def __init__(self, gateway: Any, now_s: Callable[[], float], *, bucket_s: float) -> None:
        self.gateway = gateway
        self.now_s = now_s
        self.bucket_s = bucket_s
        self.buckets: dict[int, Bucket] = defaultdict(Bucket)
        self.latencies = array("f")
        self.commands = 0
        self.busy = 0
        self.unavailable = 0
        self.rejections: Counter[str] = Counter()
        self.by_type: Counter[str] = Counter()
        self.kinds: dict[str, KindStats] = {}
        """Per command type (HTTP: per route): the figures of the per-type table."""

    # `submit` and `submit_retrying_busy` hand back `record`'s coroutine rather than being
    # coroutines that await it: one frame fewer on every command's way out and back.
    def submit(self, command: Any, *, command_id: str | None = None,
               correlation_id: str = "", causation_id: str = "") -> Awaitable[Any]:
        return self.record(type(command).__name__, self.gateway.submit(
            command, command_id=command_id, correlation_id=correlation_id,
            causation_id=causation_id))

    def submit_retrying_busy(self, command: Any, *, command_id: str, busy_retries: int = 50,
                             correlation_id: str = "", causation_id: str = "") -> Awaitable[Any]:
        return self.record(type(command).__name__, self.gateway.submit_retrying_busy(
            command, command_id=command_id, busy_retries=busy_retries,
            correlation_id=correlation_id, causation_id=causation_id))

    async def submit_many(self, commands: Iterable[Any]) -> list[Any]:
        return list(await asyncio.gather(*(self.submit(c) for c in commands)))

    async def record(self, kind: str, call: Awaitable[Any]) -> Any:
        """Count and time one reply (to a command, or to an HTTP request of `kind`) in the
        bucket of the moment it was sent."""
        bucket = self.buckets[int(self.now_s() // self.bucket_s)]
        bucket.offered += 1
        self.commands += 1
        self.by_type[kind] += 1
        stats = self.kinds.get(kind)
        if stats is None:
            stats = self.kinds[kind] = KindStats()
        stats.count += 1
        started = time.perf_counter()
        reply = await call
        ms = (time.perf_counter() - started) * 1000
        if isinstance(reply, Busy):
            bucket.busy += 1
            self.busy += 1
            stats.busy += 1
        elif isinstance(reply, Unavailable):
            bucket.errors += 1
            self.unavailable += 1
            stats.unavailable += 1
        else:
            bucket.served += 1
            bucket.latencies.append(ms)
            self.latencies.append(ms)
            stats.latencies.append(ms)
            if isinstance(reply, Rejection):
                bucket.rejected += 1
                self.rejections[reply.code] += 1
                stats.rejections[reply.code] += 1
        return reply

    async def query(self, kind: str, entity_id: str) -> Any:
        return await self.gateway.query(kind, entity_id)


@dataclass
class Outcomes:
    """What the visits did, as the client saw it."""

    visits: int = 0
    views: int = 0
    carts: int = 0
    orders_started: int = 0
    orders: Counter = field(default_factory=Counter)
    coupon_used: int = 0
    teams_opened: int = 0
    joins: int = 0
    claims: int = 0
    late_payments: int = 0


GRACE_FLOOR_MS = 5_000


class Driver:
    """Plays visits through the system's flows."""

    def __init__(self, gateway: Recorder, scenario: Scenario, clock: SimClock, skus: list[Sku],
                 wait_until: Callable[[float], Awaitable[None]],
                 stamp: Callable[[float], int] | None = None, *, flows: Any = None,
                 checkout: Any = None,
                 wallet: Callable[[str], Awaitable[Any]] | None = None) -> None:
        self.gw = gateway
        self.sc = scenario
        self.clock = clock
        self.wait_until = wait_until
        self.stamp = stamp or clock.ms
        """The `now` a step carries: its time on the sale clock, or (on a real system that
        lags behind the schedule) the moment it is actually sent, as a front end stamps."""
        self.prices = {s.sku: s.lowest_price for s in skus}
        # The HTTP engine brings its own flows, checkout and wallet (requests to the API);
        # the others play the system's flows over the gateway.
        self.flows = flows or SaleDayFlows(gateway)  # type: ignore[arg-type]
        self.wallet = wallet or (lambda user: self.gw.query("session", user))
        # The grace covers the system's own latency between the order taking a payment
        # and the confirms reaching the SKU shards: it is not sale time, so it is not
        # compressed below GRACE_FLOOR_MS.
        self.checkout = checkout or Checkout(
            gateway,  # type: ignore[arg-type]
            payment_window_ms=clock.span_ms(scenario.funnel.payment_window_s),
            grace_ms=max(clock.span_ms(60), GRACE_FLOOR_MS))
        self.out = Outcomes()
        self.is_late: Callable[[str], bool] = lambda order_id: False
        """Orders whose payment callback is held back past its deadline (a fault)."""
        self.extras: Any = None
        """Exposures, their true effect, browsing events (`simulator.experiments.Extras`)."""
        self.members: Any = None
        """The invoice and points of each order, presale balances (`simulator.members`)."""

    async def visit(self, v: Visit) -> None:
        if self.members is not None and self.members.is_balance(v):   # a presale balance
            await self.wait_until(v.t_s)
            await self.members.pay_balance(self.gw, v, self.stamp(v.t_s))
            return
        o, sc = self.out, self.sc
        o.visits += 1
        o.views += v.views
        o.carts += v.carts
        now = self.stamp(v.t_s)
        await self.flows.start_session(user=v.user, session_id=v.session_id,
                                       utm_source=v.utm_source, utm_medium=v.utm_medium,
                                       utm_campaign=v.utm_campaign, inviter=v.inviter, now=now)
        if v.claim:
            o.claims += 1
            await self.flows.grant_coupon(campaign=v.claim, grant_id=v.session_id, user=v.user,
                                          now=now)
        if v.team_create:
            tu = sc.team_up
            reply = await self.flows.create_team(
                team=v.team_create, leader=v.user, campaign=tu.campaign, pool_cents=tu.pool_cents,
                size=tu.size, min_share_cents=tu.min_share_cents,
                expires=now + self.clock.span_ms(tu.expires_s), seed=_team_seed(v), now=now)
            o.teams_opened += isinstance(reply, Accepted)
        if v.team_join:
            reply = await self.flows.join_team(team=v.team_join, user=v.user, now=now)
            o.joins += isinstance(reply, Accepted)
        order = v.order
        extras = self.extras
        if extras is not None and extras.active:
            if not await extras.arrive(self.gw, v, now):
                order = None
            end_s = order.t_s if order is not None else v.t_s + sc.funnel.browse_s
            browsing = extras.browsing(v, now, self.stamp(end_s))
            if browsing:
                await self.wait_until(end_s)
                await extras.send(self.gw, v, browsing)
        if order is None:
            return
        await self.wait_until(order.t_s)
        now = self.stamp(order.t_s)
        coupon = await self._pick_coupon(v.user, order.lines, now) if order.use_coupon else ""
        o.orders_started += 1
        terms = {} if self.members is None else await self.members.checkout_terms(
            self.gw, v.user, order.order_id, self._floor(order.lines), coupon)
        placed = await self.checkout.place(order_id=order.order_id, user=v.user,
                                           lines=order.lines, coupon_id=coupon, now=now, **terms)
        o.orders[placed.status] += 1
        if placed.status != "placed":
            return
        o.coupon_used += bool(coupon)
        payment = order.payment
        pay_t = order.pay_t_s
        if payment != "never" and self.is_late(order.order_id):
            payment = "success"
            pay_t = order.t_s + sc.funnel.payment_window_s + 30
            o.late_payments += 1
        if payment == "never":
            o.orders["no_callback"] += 1
            return
        await self.wait_until(pay_t)
        now = self.stamp(pay_t)
        if payment == "success":
            paid = await self.checkout.payment_succeeded(
                order_id=order.order_id, payment_id=f"{order.order_id}/pay",
                amount_cents=placed.total_cents, now=now)
        else:
            paid = await self.checkout.payment_failed(order_id=order.order_id, now=now)
            o.orders["payment_failed"] += 1
        o.orders[f"after_payment:{paid.status}"] += 1

    def _floor(self, lines: tuple[tuple[str, int], ...]) -> int:
        """The lowest subtotal the order can have (every unit at its SKU's lowest price)."""
        return sum(self.prices.get(sku, 0) * qty for sku, qty in lines)

    async def _pick_coupon(self, user: str, lines: tuple[tuple[str, int], ...], now: int) -> str:
        """A held coupon the order surely qualifies for (its lowest possible subtotal)."""
        floor = self._floor(lines)
        wallet = await self.wallet(user)
        best = ""
        best_value = 0
        for coupon_id, c in sorted(wallet.coupons.items()):
            if (c.status == "held" and c.min_spend_cents <= floor and now < c.valid_until
                    and c.value_cents > best_value):
                best, best_value = coupon_id, c.value_cents
        return best


def _team_seed(v: Visit) -> int:
    return (v.seq * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) % (1 << 64)
