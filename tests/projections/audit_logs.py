"""Logs for the audit tests: real sale days driven through the deciders, and hand-written
logs (raw events appended with `store.append`, bypassing the deciders) that break a rule."""

from __future__ import annotations

import asyncio
from typing import Any

from saleday.bench.audit import SHARDS, SimClock, drive_sale, local_gateway
from saleday.events import NewEvent, open_store
from saleday.projections.audit import AuditReport, run_audit
from saleday.projections.store_source import StoreSource

T0 = 1_762_790_400_000
DAY = 86_400_000


def real_sale(url: str, *, orders: int = 240, seed: int = 7) -> dict[str, int]:
    """A small sale day on the real deciders and flows, every flow ended."""
    store = open_store(url)
    try:
        gw = local_gateway(store, SHARDS, SimClock(T0))
        return asyncio.run(drive_sale(gw, store, orders=orders, users=60, skus=6, stock=40,
                                      teams=8, grants=12, seed=seed, wave=32))
    finally:
        store.close()


def audit(url: str) -> AuditReport:
    source = StoreSource(url)
    try:
        return run_audit(source)
    finally:
        source.close()


Event = tuple[Any, ...]
"""`(stream, type, data)`, `(stream, type, data, recorded_at)` or with a command id too."""


def write(url: str, events: list[Event], *, cid_prefix: str = "cmd") -> dict[str, int]:
    """Append the events (command ids `cmd-1`, ... unless given; consecutive events of one
    stream sharing a command id go in one commit, as a decider records them); return the
    last version of each stream."""
    store = open_store(url)
    try:
        commit: list[NewEvent] = []
        stream = ""
        for i, e in enumerate(events, start=1):
            at = e[3] if len(e) > 3 else T0 + i
            cid = e[4] if len(e) > 4 else f"{cid_prefix}-{i}"
            if commit and (e[0] != stream or cid != commit[-1].command_id):
                store.append(stream, commit, None)
                commit = []
            stream = e[0]
            commit.append(NewEvent(type=e[1], data=e[2], command_id=cid, recorded_at=at))
        if commit:
            store.append(stream, commit, None)
        return store.streams()
    finally:
        store.close()


# --- payloads, as actors/*.py write them -------------------------------------------------

SKU = "sku-000"
SESSION = "session-000"
ORDER = "order-000"
CAMPAIGN = "campaign-000"
TEAM = "team-000"


def stocked(sku: str = "A1", qty: int = 5, tiers: tuple = ((0, 1000),), limit: int = 0) -> list[Event]:
    return [(SKU, "inventory.stock_added", {"sku": sku, "qty": qty}),
            (SKU, "inventory.sale_configured", {"sku": sku, "tiers": [list(t) for t in tiers],
                                                 "per_user_limit": limit, "start": T0,
                                                 "end": T0 + DAY})]


def reserved(rid: str, qty: int, prices: list[int], *, sku: str = "A1", user: str = "u1",
             tiers: list[int] | None = None, deadline: int = T0 + 60_000) -> Event:
    return (SKU, "inventory.stock_reserved", {
        "reservation_id": rid, "user": user, "sku": sku, "qty": qty, "unit_prices": prices,
        "tiers": tiers if tiers is not None else [0] * qty, "deadline": deadline,
        "reserved_at": T0})


def confirmed(rid: str, qty: int, amount: int, *, sku: str = "A1", user: str = "u1") -> Event:
    return (SKU, "inventory.reservation_confirmed", {"reservation_id": rid, "sku": sku,
                                                      "user": user, "qty": qty, "amount_cents": amount})


def released(rid: str, qty: int, *, sku: str = "A1", user: str = "u1") -> Event:
    return (SKU, "inventory.reservation_released", {"reservation_id": rid, "sku": sku, "user": user,
                                                     "qty": qty, "reason": "cancelled"})


def returned(rid: str, qty: int, amount: int, *, sku: str = "A1", user: str = "u1") -> Event:
    return (SKU, "inventory.sold_units_returned", {
        "reservation_id": rid, "sku": sku, "user": user, "qty": qty, "amount_cents": amount,
        "reason": "hold_expired", "returned_at": T0 + 50})


def session(user: str, at: int, inviter: str = "") -> list[Event]:
    cid = f"session/{user}/{at}"
    out: list[Event] = [(SESSION, "sessions.session_started", {
        "user": user, "session_id": f"s{at}", "utm_source": "", "utm_medium": "",
        "utm_campaign": "", "started_at": at}, at, cid)]
    if inviter:
        out.append((SESSION, "sessions.referral_attributed", {
            "user": user, "inviter": inviter, "utm_source": "", "utm_medium": "",
            "utm_campaign": "", "attributed_at": at}, at, cid))
    return out


def coupon(kind: str, user: str = "u1", coupon_id: str = "c1", **extra: Any) -> Event:
    data: dict[str, Any] = {"user": user, "coupon_id": coupon_id}
    defaults = {
        "received": {"campaign": "1111", "value_cents": 300, "min_spend_cents": 0,
                     "valid_until": T0 + DAY, "received_at": T0},
        "locked": {"order_id": "o1", "until": T0 + 120_000},
        "redeemed": {"order_id": "o1", "value_cents": 300},
        "unlocked": {"order_id": "o1", "valid_until": T0 + DAY, "reason": "cancelled"},
        "returned": {"order_id": "o1", "value_cents": 300, "valid_until": T0 + DAY,
                     "returned_at": T0 + 60},
        "lapsed": {}}
    data.update(defaults[kind])
    data.update(extra)
    return (SESSION, f"sessions.coupon_{kind}", data)


def campaign(budget_coupons: int = 0, budget_cents: int = 0) -> Event:
    return (CAMPAIGN, "coupons.campaign_created", {
        "campaign": "1111", "value_cents": 500, "min_spend_cents": 0, "valid_from": T0,
        "valid_until": T0 + DAY, "budget_coupons": budget_coupons, "budget_cents": budget_cents})


def granted(coupon_id: str, user: str = "u1", value: int = 500) -> Event:
    return (CAMPAIGN, "coupons.coupon_granted", {
        "campaign": "1111", "coupon_id": coupon_id, "user": user, "value_cents": value,
        "min_spend_cents": 0, "valid_until": T0 + DAY})


def pool(kind: str, team: str = "t1", cents: int = 1000, coupons: int = 2) -> Event:
    return (CAMPAIGN, f"coupons.pool_{kind}", {"campaign": "1111", "team": team,
                                                "pool_cents": cents, "coupons": coupons})


def team(members: list[str], *, pool_cents: int = 1000, size: int = 2, min_share: int = 100,
         seed: int = 42) -> list[Event]:
    out: list[Event] = [(TEAM, "teams.team_created", {
        "team": "t1", "leader": members[0], "campaign": "1111", "pool_cents": pool_cents,
        "size": size, "min_share_cents": min_share, "expires": T0 + 600_000, "seed": seed})]
    out += [(TEAM, "teams.member_joined", {"team": "t1", "user": u, "position": i})
            for i, u in enumerate(members[1:], start=1)]
    return out


def completed(members: list[str]) -> Event:
    return (TEAM, "teams.team_completed", {"team": "t1", "campaign": "1111", "members": members})


def split(shares: list[tuple[str, int]], at: int = T0 + 100) -> Event:
    return (TEAM, "teams.red_packet_split", {"team": "t1", "campaign": "1111",
                                             "shares": [list(s) for s in shares]}, at)


SHARE_VALIDITY_MS = 7 * DAY


def share_received(user: str, cents: int, split_at: int = T0 + 100, **extra: Any) -> Event:
    """The wallet event that delivers team t1's share to `user` (flows/reactions.py)."""
    return coupon("received", user=user, coupon_id=f"share/t1/{user}", value_cents=cents,
                  valid_until=split_at + SHARE_VALIDITY_MS, **extra)


def grant_received(coupon_id: str, user: str = "u1", value: int = 500) -> Event:
    """The wallet event that delivers `granted(coupon_id, user, value)`."""
    return coupon("received", user=user, coupon_id=coupon_id, value_cents=value,
                  valid_until=T0 + DAY)


def expired(members: list[str], pool_cents: int = 1000) -> Event:
    return (TEAM, "teams.team_expired_unfilled", {"team": "t1", "campaign": "1111",
                                                  "members": members, "pool_cents": pool_cents})


def order(kind: str, oid: str = "o1", **data: Any) -> Event:
    base: dict[str, Any] = {"order_id": oid}
    defaults = {
        "checkout_started": {"user": "u1", "lines": [["A1", 1]], "coupon_id": "",
                             "payment_deadline": T0 + 60_000, "started_at": T0},
        "order_placed": {"user": "u1", "line_prices": [[1000]], "subtotal_cents": 1000,
                         "discount_cents": 0, "total_cents": 1000},
        "checkout_cancelled": {"reason": "payment_failed", "was_placed": True},
        "order_voided": {"reason": "cancelled"},
        "payment_captured": {"payment_id": "p1", "amount_cents": 1000},
        "refund_issued": {"payment_id": "p2", "amount_cents": 1000, "reason": "duplicate_payment"},
        "order_refunded": {"payment_id": "p1", "amount_cents": 1000, "reason": "hold_expired"}}
    base.update(defaults[kind])
    base.update(data)
    return (ORDER, f"orders.{kind}", base)
