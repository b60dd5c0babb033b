"""The seeded traffic generator: a scenario and a seed in, a stream of visits out.

A `Visit` is one user's session script on the simulated clock: arrival (with its UTM
source, or the inviter whose shared link brought them), an optional coupon claim, a
team opened or joined, the views and carts, and at most one order with its payment
outcome. The engines turn each visit into commands through the gateway's flows.

A window that opens before midnight (`traffic.lead_s`) brings visitors early: they browse,
claim coupons and open or join teams at their arrival, but nobody can buy before the sale
opens, so an order that would fall before 00:00 is placed just after it (its browse time
scaled by `EARLY_ORDER_SCALE`): the crowd waiting with full carts is the midnight step.

Everything random comes from one `numpy.random.Generator` seeded with `seed`, drawn in a
fixed order, so the same scenario and seed give the same visits, byte for byte. Arrays
are drawn up front (cheap even for millions of visits); `Visit` objects are built one
at a time as the stream is consumed, so memory stays flat.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from saleday.events.values import quick_init
from saleday.simulator.scenario import Scenario, Traffic

EARLY_ORDER_SCALE = 0.1
"""An order due before midnight is placed this share of its browse time after 00:00 (a
mean of 4 s with the default 40 s browse)."""


@dataclass(frozen=True, slots=True)
class Sku:
    sku: str
    stock: int
    price_cents: int
    tiers: tuple[tuple[int, int], ...]
    """((units, unit_price_cents), ...); the last tier has units 0 (the rest)."""

    @property
    def lowest_price(self) -> int:
        return min(p for _, p in self.tiers)


@quick_init
@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    lines: tuple[tuple[str, int], ...]
    t_s: float
    payment: str
    """success, fail, never (the callback never comes) or late (after the deadline)."""
    pay_t_s: float
    use_coupon: bool


@quick_init
@dataclass(frozen=True, slots=True)
class Visit:
    seq: int
    t_s: float
    user: str
    session_id: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    inviter: str
    claim: str
    """The campaign a coupon is claimed from ('' for none)."""
    team_create: str
    team_join: str
    views: int
    carts: int
    order: Order | None
    shares: bool


def catalog(scenario: Scenario, seed: int) -> list[Sku]:
    """The SKUs on sale, hottest first (index 0 is the most popular)."""
    s = scenario.skus
    rng = np.random.default_rng([seed, 1])
    stock = rng.integers(s.stock_min, s.stock_max + 1, s.count)
    price = rng.integers(s.price_min_cents // 100, s.price_max_cents // 100 + 1, s.count) * 100 - 1
    flash = rng.random(s.count) < s.flash_share
    out = []
    for i in range(s.count):
        p = int(max(price[i], 1))
        if flash[i]:
            tiers = ((s.flash_units, max(1, round(p * (1 - s.flash_discount)))), (0, p))
        else:
            tiers = ((0, p),)
        out.append(Sku(sku=f"P{i:05d}", stock=int(stock[i]), price_cents=p, tiers=tiers))
    return out


def popularity(scenario: Scenario) -> np.ndarray:
    ranks = np.arange(1, scenario.skus.count + 1, dtype=np.float64)
    weights = ranks ** -scenario.skus.zipf
    return weights / weights.sum()


def arrival_times(scenario: Scenario, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` arrival times (simulated s), sorted, drawn from the traffic curve."""
    grid, cdf = _arrival_cdf(scenario.traffic)
    return np.sort(np.interp(rng.random(n), cdf, grid))


@functools.lru_cache(maxsize=16)
def _arrival_cdf(tr: Traffic) -> tuple[np.ndarray, np.ndarray]:
    """The traffic curve's grid and its cumulative share of arrivals (read-only), the same
    for every seed of a scenario: `bench dst` computes it once, not once a seed (a Python
    call per grid point, ~30,000 for double11)."""
    span = tr.window_s - tr.start_s
    grid = np.linspace(float(tr.start_s), tr.window_s, min(span * 4, 200_000) + 1)
    rate = np.array([tr.rate(t) for t in grid])
    cdf = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    grid.flags.writeable = False
    cdf.flags.writeable = False
    return grid, cdf


_CHUNK = 8192
"""Rows of the random columns `visits` turns into Python values at a time."""


def visits(scenario: Scenario, seed: int) -> Iterator[Visit]:
    """The visits of a sale day, in arrival order."""
    sc = scenario
    n = sc.visits
    rng = np.random.default_rng([seed, 2])
    times = arrival_times(sc, n, rng)
    # Every user visits at least once (when there are enough visits); the rest revisit.
    users = rng.permutation(sc.users)[:n]
    if n > sc.users:
        users = np.concatenate([users, rng.integers(0, sc.users, n - sc.users)])
        rng.shuffle(users)
    views = rng.poisson(sc.funnel.views_per_visit, n)
    carts = rng.binomial(views, sc.funnel.view_to_cart)
    ordered = rng.binomial(carts, sc.funnel.cart_to_order)
    pop = popularity(sc)
    lines_needed = int(np.minimum(ordered, 3).sum())
    line_skus = rng.choice(sc.skus.count, size=max(lines_needed, 1), p=pop)
    browse = rng.exponential(max(sc.funnel.browse_s, 1e-9), n)
    pay_delay = rng.exponential(max(sc.funnel.payment_delay_s, 1e-9), n)
    pay_u = rng.random(n)
    shared = rng.random(n) < sc.referrals.shared_arrival_rate
    shares = rng.random(n) < sc.referrals.share_rate
    pick = rng.random(n)
    create = rng.random(n) < sc.team_up.create_rate
    join = rng.random(n) < sc.team_up.join_rate
    claim_u = rng.random(n)
    src_names = list(sc.referrals.utm_sources)
    src_p = np.array([sc.referrals.utm_sources[k] for k in src_names], dtype=np.float64)
    src = rng.choice(len(src_names), size=n, p=src_p / src_p.sum()) if src_names else np.zeros(n, int)

    claims = [(c.name, c.claim_rate) for c in sc.campaigns if c.claim_rate > 0]
    sharers: deque[tuple[str, float]] = deque(maxlen=4096)   # recent sharers (user, since)
    open_teams: deque[list] = deque()                        # [team, leader, expires_s, slots]
    f = sc.funnel
    line_at = 0
    columns = (times, users, shared, pick, src, claim_u, join, create, ordered, browse, pay_u,
               pay_delay, shares, views, carts)
    for start in range(0, n, _CHUNK):
        # Each name now holds its column's next chunk as Python values: indexing a list is
        # a fifth of the cost of indexing an array (and gives the same floats and ints),
        # and chunks keep the lists' memory small beside the arrays'.
        (times, users, shared, pick, src, claim_u, join, create, ordered, browse, pay_u,
         pay_delay, shares, views, carts) = (c[start:start + _CHUNK].tolist() for c in columns)
        for j in range(len(times)):
            i = start + j
            t = times[j]
            user = f"u{users[j]:07d}"
            inviter, source, medium, campaign = "", "", "", ""
            if shared[j] and sharers:
                inviter, _ = sharers[int(pick[j] * len(sharers))]
                if inviter == user:
                    inviter = ""
                else:
                    source, medium, campaign = "share", "social", f"{sc.name}-share"
            if not inviter and src_names:
                source, medium, campaign = src_names[src[j]], "organic", sc.name
            claim = ""
            if claims:
                acc = 0.0
                for name, rate in claims:
                    acc += rate
                    if claim_u[j] < acc:
                        claim = name
                        break
            team_create = team_join = ""
            while open_teams and (open_teams[0][2] <= t or open_teams[0][3] <= 0):
                open_teams.popleft()
            if join[j] and open_teams:
                slot = open_teams[int(pick[j] * len(open_teams))]
                if slot[1] != user:
                    team_join = slot[0]
                    slot[3] -= 1
            if create[j] and not team_join:
                team_create = f"T{i:08d}"
                open_teams.append([team_create, user, t + sc.team_up.expires_s, sc.team_up.size - 1])
            order = None
            k = min(ordered[j], 3)
            if k:
                skus = tuple(sorted({f"P{int(s):05d}" for s in line_skus[line_at:line_at + k]}))
                line_at += k
                t_order = t + browse[j]
                if t_order < 0:   # the sale is not open yet: buy as it opens
                    t_order = browse[j] * EARLY_ORDER_SCALE
                t_order = min(t_order, float(sc.traffic.window_s))
                u = pay_u[j]
                if u < f.payment_success:
                    payment, pay_t = "success", t_order + pay_delay[j]
                elif u < f.payment_success + f.payment_never_returns:
                    payment, pay_t = "never", t_order
                else:
                    payment, pay_t = "fail", t_order + pay_delay[j]
                order = Order(order_id=f"O{i:08d}", lines=tuple((s, 1) for s in skus), t_s=t_order,
                              payment=payment, pay_t_s=pay_t, use_coupon=True)
            if shares[j]:
                sharers.append((user, t))
            yield Visit(seq=i, t_s=t, user=user, session_id=f"S{i:08d}", utm_source=source,
                        utm_medium=medium, utm_campaign=campaign, inviter=inviter, claim=claim,
                        team_create=team_create, team_join=team_join, views=views[j],
                        carts=carts[j], order=order, shares=shares[j])
