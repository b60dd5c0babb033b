"""`saleday bench audit`: a sale-day log written by the real deciders, then audited.

`local_gateway` is `cluster.local.LocalShards` (the gateway's interface over shard hosts in
this process) batching as the Ray gateway does. The real flows
(`flows.checkout.Checkout`, `flows.sale_day.SaleDayFlows`, the `Reactor`) run on it
unchanged, so the log is the one the system writes, without Ray.

`drive_sale` plays mixed traffic on a simulated clock: stock and flash-sale tiers,
sessions with referrals, coupon grants, team-ups (filled and expired), and checkouts
that are paid, fail, are abandoned or pay late. `run` builds a log of about N events in
a temporary SQLite file, then times the audit (`projections.audit.run_audit` over the
store: read, verify the chain over the stored bytes, decode, fold, check) against the
baseline `saleday log verify` (`events.verify_commits`) over the same log, in one run.
"""

from __future__ import annotations

import asyncio
import gc
import random
import tempfile
import time
from typing import Any

from saleday.actors.campaign import CreateCampaign
from saleday.actors.session import ReceiveCoupon
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.cluster.local import LocalShards
from saleday.events import EventStore, open_store, verify_commits
from saleday.flows.checkout import Checkout
from saleday.flows.reactor import Reactor
from saleday.flows.sale_day import SaleDayFlows
from saleday.simulator.results import machine_info as machine

T0 = 1_762_790_400_000
"""2025-11-11T00:00:00+08:00 in ms: the simulated clock starts at midnight."""
DAY = 86_400_000


class SimClock:
    """A clock the driver moves by hand (ms)."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def local_gateway(store: EventStore, shards: dict[str, int], clock: SimClock) -> LocalShards:
    """Shards in this process on `clock`: each shard's concurrent submissions decided as one
    batch as soon as the loop gets to them, as the Ray gateway batches them."""
    return LocalShards(store, shards, clock=clock, autoflush=True, snapshot_every=10**12)


SHARDS = {"sku": 2, "session": 2, "order": 2, "campaign": 1, "team": 1}


async def drive_sale(gw: LocalShards, store: EventStore, *, orders: int, users: int = 500,
                     skus: int = 40, stock: int = 60, teams: int = 20, grants: int = 40,
                     seed: int = 11, wave: int = 256) -> dict[str, int]:
    """Play a sale day on `gw`; every flow ends (paid, cancelled, expired) before returning.

    Returns counts of what was driven. Demand exceeds supply for the popular SKUs, so
    some checkouts are refused (sold out, limit) and cancelled, as on a real sale day.
    """
    rnd = random.Random(seed)
    clock = gw.clock
    flows, checkout = SaleDayFlows(gw), Checkout(gw)
    reactor = Reactor(store, gw)
    now = clock.now
    sku_ids = [f"sku-{i:04d}" for i in range(skus)]
    setup: list[Any] = [CreateCampaign(campaign="1111", value_cents=500, min_spend_cents=0,
                                       valid_from=now, valid_until=now + DAY,
                                       budget_coupons=grants + teams * 4 // 2,
                                       budget_cents=(grants + teams * 4) * 500, now=now)]
    for i, sku in enumerate(sku_ids):
        price = 1000 + 100 * (i % 50)
        setup += [AddStock(sku=sku, qty=stock, now=now),
                  ConfigureSale(sku=sku, tiers=((max(stock // 5, 1), price // 2), (0, price)),
                                per_user_limit=3, start=now, end=now + DAY, now=now)]
    await gw.submit_many(setup)
    user_ids = [f"u-{i:05d}" for i in range(users)]
    # sessions: the first tenth arrive on their own, the rest half of the time by invite
    for start in range(0, users, wave):
        clock.now += 10
        await asyncio.gather(*(flows.start_session(
            user=u, session_id="s1", utm_source=rnd.choice(("wechat", "weibo", "direct")),
            inviter=(user_ids[rnd.randrange(max(1, i // 2))]
                     if i >= users // 10 and rnd.random() < 0.5 else ""),
            now=clock.now) for i, u in enumerate(user_ids[start:start + wave], start)))
    counts = {"orders": 0, "paid": 0, "failed": 0, "abandoned": 0, "late": 0}
    # coupons: grants from the campaign, and a wallet coupon for a tenth of the users
    clock.now += 10
    await asyncio.gather(*(flows.grant_coupon(campaign="1111", grant_id=f"g-{i}",
                                              user=rnd.choice(user_ids), now=clock.now)
                           for i in range(grants)))
    await asyncio.gather(*(gw.submit(ReceiveCoupon(
        user=u, coupon_id=f"c-{u}", campaign="1111", value_cents=300, min_spend_cents=1000,
        valid_until=clock.now + DAY, now=clock.now), command_id=f"wallet/{u}")
        for u in user_ids[::10]))
    # team-ups: most fill (their pools split into share coupons), some expire
    clock.now += 10
    await asyncio.gather(*(flows.create_team(
        team=f"t-{i}", leader=user_ids[i], campaign="1111", pool_cents=2000, size=4,
        min_share_cents=100, expires=clock.now + 600_000, seed=rnd.getrandbits(64), now=clock.now)
        for i in range(teams)))
    for i in range(teams):
        joiners = rnd.sample(user_ids[teams:], 3 if i % 4 else 1)
        for u in joiners:
            clock.now += 1
            await flows.join_team(team=f"t-{i}", user=u, now=clock.now)
    await reactor.run_once()
    # checkouts, a wave at a time
    made = 0
    while made < orders:
        clock.now += 1000
        batch = range(made, min(orders, made + wave))
        await asyncio.gather(*(_one_order(checkout, rnd.random(), f"o-{k:07d}",
                                          rnd.choice(user_ids), sku_ids, rnd, clock, counts)
                               for k in batch))
        made += len(batch)
        counts["orders"] = made
        if made % (wave * 8) == 0:
            gw.tick()
    # the end of the day: every deadline passes, every timer fires, reactions finish
    clock.now += checkout.payment_window_ms + checkout.grace_ms + 700_000
    gw.tick()
    while await reactor.run_once():
        pass
    clock.now += DAY * 8
    gw.tick()
    return counts


async def _one_order(co: Checkout, fate: float, oid: str, user: str, sku_ids: list[str],
                     rnd: random.Random, clock: SimClock, counts: dict[str, int]) -> None:
    hot = int(len(sku_ids) * rnd.random() ** 3)  # popular SKUs first, a long tail after
    lines = [(sku_ids[hot], rnd.randint(1, 2))]
    if rnd.random() < 0.3:
        other = sku_ids[rnd.randrange(len(sku_ids))]
        if other != lines[0][0]:
            lines.append((other, 1))
    coupon = f"c-{user}" if user.endswith("0") and rnd.random() < 0.5 else ""
    placed = await co.place(order_id=oid, user=user, lines=tuple(lines), coupon_id=coupon,
                            now=clock.now)
    if placed.status != "placed":
        return
    if fate < 0.75:
        await co.payment_succeeded(order_id=oid, payment_id=f"p-{oid}",
                                   amount_cents=placed.total_cents, now=clock.now + 500)
        counts["paid"] += 1
        if fate < 0.02:  # the provider calls back twice with another payment: refunded
            await co.payment_succeeded(order_id=oid, payment_id=f"p2-{oid}",
                                       amount_cents=placed.total_cents, now=clock.now + 900)
    elif fate < 0.9:
        await co.payment_failed(order_id=oid, now=clock.now + 700)
        counts["failed"] += 1
    elif fate < 0.97:
        counts["abandoned"] += 1  # never paid: the order, stock and coupon expire on their own
    else:
        counts["late"] += 1  # paid after the deadline: cancelled and refunded
        await co.payment_succeeded(order_id=oid, payment_id=f"p-{oid}",
                                   amount_cents=placed.total_cents,
                                   now=clock.now + co.payment_window_ms + 1)


def build_log(url: str, *, events: int, seed: int = 11) -> dict[str, Any]:
    """Write a sale-day log of at least about `events` events to the store at `url`."""
    store = open_store(url)
    try:
        gw = local_gateway(store, SHARDS, SimClock())
        orders = max(events * 10 // 74, 10)  # about 7.4 events per checkout, all told
        users = max(min(orders // 2, 200_000), 50)
        skus = max(users // 25, 8)
        counts = asyncio.run(drive_sale(gw, store, orders=orders, users=users, skus=skus,
                                        stock=max(orders * 2 // skus, 60), teams=max(users // 50, 4),
                                        grants=max(users // 20, 4), seed=seed))
        counts["events"] = sum(store.streams().values())
        return counts
    finally:
        store.close()


def run(*, events: int = 300_000, repeat: int = 3, seed: int = 11) -> dict[str, Any]:
    """Build a log of ~`events` events, then the median audit and verify rates over it.

    Rates are events per second of wall-clock time and of this process's CPU time: on a
    shared machine the second says what one core does when it is not taken away.
    """
    import os

    from saleday.projections.audit import run_audit
    from saleday.projections.store_source import StoreSource

    with tempfile.TemporaryDirectory(prefix="saleday-bench-audit-") as tmp:
        url = f"sqlite:///{tmp}/events.db?synchronous=normal"
        t0 = time.perf_counter()
        built = build_log(url, events=events, seed=seed)
        build_s = time.perf_counter() - t0
        audits: list[tuple[int, int]] = []
        verifies: list[tuple[int, int]] = []
        report = None
        load = os.getloadavg()[0]
        for _ in range(repeat):
            gc.collect()
            verifies.append(_rates(_verify, url))
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            report = run_audit_once(run_audit, StoreSource, url)
            audits.append((int(report.events / (time.perf_counter() - wall)),
                           int(report.events / (time.process_time() - cpu))))
        assert report is not None
        audit, verify = _median(audits), _median(verifies)
        return {"events": report.events, "streams": len(report.streams), "traffic": built,
                "build_s": round(build_s, 1), "repeat": repeat,
                "audit_events_per_s": audit[0], "audit_events_per_s_cpu": audit[1],
                "verify_events_per_s": verify[0], "verify_events_per_s_cpu": verify[1],
                "audit_vs_verify": round(audit[1] / verify[1], 2),
                "ok": report.ok, "findings": len(report.findings),
                "first_findings": [str(f) for f in report.findings[:5]],
                "log_digest": report.log_digest,
                "machine": {**machine(), "load_avg_1m_at_start": round(load, 2),
                            "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}}


def run_audit_once(run_audit: Any, source: Any, url: str) -> Any:
    src = source(url)
    try:
        return run_audit(src)
    finally:
        src.close()


def _rates(fn: Any, url: str) -> tuple[int, int]:
    """(events per wall-clock second, events per CPU second) of `fn(url)`."""
    wall, cpu = time.perf_counter(), time.process_time()
    n = fn(url)
    return int(n / (time.perf_counter() - wall)), int(n / (time.process_time() - cpu))


def _median(rows: list[tuple[int, int]]) -> tuple[int, int]:
    walls, cpus = sorted(r[0] for r in rows), sorted(r[1] for r in rows)
    return walls[len(walls) // 2], cpus[len(cpus) // 2]


def _verify(url: str) -> int:
    """`saleday log verify`'s work over every stream; returns the events verified."""
    store = open_store(url)
    try:
        n = 0
        for stream in store.streams():
            version, _ = verify_commits(stream, store.read_commits(stream))
            n += version
        return n
    finally:
        store.close()
