"""The war room: the page at `/` and the summary it polls, `/v1/warroom`.

The page (static files in `saleday/http/static`, no build step, no library) shows the
sale-day monitoring wall: orders/s and commands/s, latency p50/p99 against 500 ms,
payment success against 99.5 %, coupon redemption against 40 %, the hottest SKUs'
stock counting down (pushed over `/v1/stock/live`), red packets, the referral K-factor
and the Busy/429 rates. `/v1/warroom` summarises the metrics and referrals projections,
this replica's live stock and its own request metrics (rates and percentiles are this
replica's, as `/metrics` is). It needs the operator token unless
`SALEDAY_HTTP_WARROOM_PUBLIC=true`; the page takes the token from `#token=...` in its
address (kept in the tab's sessionStorage, never sent in a URL) or asks for it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from saleday.http.auth import bearer, operator
from saleday.http.models import Problem
from saleday.http.problems import PROBLEM_JSON, ApiProblem

STATIC = Path(__file__).parent / "static"
TARGETS = {"latency_p99_ms": ("<=", 500.0), "payment_success": (">=", 0.995),
           "coupon_redemption": (">=", 0.40), "oversold_units": ("<=", 0)}
"""The seed's monitoring wall: P99 < 500 ms, payment success > 99.5 %, coupon redemption
> 40 %; and the invariant that nothing is oversold."""
HOT_SKUS = 8
CACHE_S = 0.5
RATE_SPAN_S = 3.0
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "warroom.html", media_type="text/html", headers={
        "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"})


@router.get("/v1/warroom", tags=["reads"], responses={401: {
    "description": "A problem (RFC 9457): the operator token is needed.",
    "content": {PROBLEM_JSON: {"schema": Problem.model_json_schema()}}}})
async def warroom(request: Request) -> dict[str, Any]:
    """The war room's figures: rates, latency, the wall's targets (each met or not), the
    hottest SKUs, red packets and referrals. Operator token (unless the war room is public)."""
    api = request.app.state.api
    if not api.settings.warroom_public:
        await operator(request, await bearer(request))
    room: WarRoom = api.warroom
    return await room.summary(api)


class WarRoom:
    """One replica's summary, computed at most every `CACHE_S` however many pages poll."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=64)

    async def summary(self, api: Any) -> dict[str, Any]:
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < CACHE_S:
                return self._cached[1]
            out = await self._compute(api, now)
            self._cached = (now, out)
            return out

    async def _compute(self, api: Any, now: float) -> dict[str, Any]:
        recent = api.metrics.recent.stats()
        metrics, referrals, views = None, None, "none"
        if api.views is not None:
            try:
                metrics = await api.views.summarize("metrics", lambda v: v.to_json())
                referrals = await api.views.summarize("referrals", _referrals)
                views = "ok"
            except ApiProblem:
                views = "unavailable"
        totals = metrics["totals"] if metrics else {}
        submitted = _submitted(api.gateway)
        orders_per_s, gateway_per_s = self._rate(now, totals.get("orders_placed", 0), submitted)
        commands_per_s = gateway_per_s if submitted is not None else recent["writes_per_s"]
        p99 = recent["p99_ms"]
        pay = metrics["payment_success_rate"] if metrics else None
        coupons = metrics["coupon_redemption_rate"] if metrics else None
        oversold = metrics["oversold_units"] if metrics else None
        return {
            "server_time_ms": api.now(),
            "views": views,
            "rates": {"orders_per_s": orders_per_s, "commands_per_s": commands_per_s,
                      "commands_from": "gateway" if submitted is not None else "requests",
                      **{k: recent[k] for k in ("requests_per_s", "busy_per_s",
                                                "rate_limited_per_s", "busy_ratio",
                                                "rate_limited_ratio")}},
            "latency": {k: recent[k] for k in ("p50_ms", "p99_ms", "window_s", "sampled")},
            "targets": [target("latency_p99_ms", "Latency p99", p99, "ms"),
                        target("payment_success", "Payment success", pay, "ratio"),
                        target("coupon_redemption", "Coupon redemption", coupons, "ratio"),
                        target("oversold_units", "Oversold units", oversold, "units")],
            "orders": {k: totals.get(k, 0) for k in ("orders_placed", "orders_paid",
                                                     "orders_cancelled", "orders_voided",
                                                     "payments_failed", "sessions")},
            "red_packets": {"created": totals.get("teams_created", 0),
                            "completed": totals.get("teams_completed", 0),
                            "expired": totals.get("teams_expired", 0)},
            "referrals": referrals or {"k_factor": None, "invited": 0, "users_seen": 0},
            "skus": _hottest(api.stock, metrics),
            "stock_sockets": api.stock.connections if api.stock is not None else 0,
        }

    def _rate(self, now: float, placed: int, submitted: int | None) -> tuple[float, float]:
        """Orders and commands a second over the last few seconds of samples."""
        samples = self._samples
        samples.append((now, placed, submitted or 0))
        while len(samples) > 2 and now - samples[1][0] >= RATE_SPAN_S:
            samples.popleft()
        t0, placed0, submitted0 = samples[0]
        span = now - t0
        if span < 0.2:
            return 0.0, 0.0
        return (round(max(0, placed - placed0) / span, 2),
                round(max(0, (submitted or 0) - submitted0) / span, 2))


def target(name: str, label: str, value: float | int | None, unit: str) -> dict[str, Any]:
    """A wall target: its value, its bound, and whether it is met (None: no data yet)."""
    op, bound = TARGETS[name]
    ok = None if value is None else (value <= bound if op == "<=" else value >= bound)
    return {"name": name, "label": label, "value": value, "op": op, "target": bound,
            "unit": unit, "ok": ok}


def _referrals(view: Any) -> dict[str, Any]:
    users = set(view.t["user"]) | set(view.t["invite"])
    return {"k_factor": view.k_factor(), "invited": len(view.t["invite"]),
            "users_seen": len(users)}


def _submitted(gateway: Any) -> int | None:
    stats = getattr(gateway, "stats", None)
    if isinstance(stats, dict) and "submitted" in stats:
        return int(stats["submitted"])
    return None


def _hottest(feed: Any, metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    by_sku = metrics["skus"] if metrics else {}
    rows = []
    if feed is not None:
        for c in feed.hottest(HOT_SKUS):
            rows.append({"sku": c.sku, "stocked": c.stocked, "available": c.available,
                         "reserved": c.reserved, "sold": c.sold, "version": c.version})
    else:
        ranked = sorted(by_sku.items(), key=lambda kv: (kv[1]["available"] - kv[1]["stocked"],
                                                        kv[0]))[:HOT_SKUS]
        rows = [{"sku": sku, "stocked": m["stocked"], "available": m["available"],
                 "reserved": None, "sold": None, "version": None} for sku, m in ranked]
    for row in rows:
        m = by_sku.get(row["sku"], {})
        row["sale_start_ms"] = m.get("sale_start") or None
        row["sold_out_at_ms"] = m.get("sold_out_at")
        row["sold_out_after_s"] = m.get("sold_out_after_s")
    return rows
