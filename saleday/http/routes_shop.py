"""The shopper's routes: sessions, coupon claims and the wallet, team-ups, store visits, SKUs.

Each route is one flow or command of `flows.sale_day.SaleDayFlows` / the session decider,
with its command id derived from the user and the `Idempotency-Key` (or from what the
flow is about, where the flow already makes it idempotent: one claim per user per
campaign, one join per user per team).
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request

from saleday.actors.host import Accepted
from saleday.actors.session import ReportLocation, StoreVisited
from saleday.http.auth import User
from saleday.http.edge import Api
from saleday.http.idempotency import check_key, fresh_id, scoped_id
from saleday.http.models import (
    ClaimIn,
    ClaimOut,
    CouponOut,
    Problem,
    SessionIn,
    SessionOut,
    SkuOut,
    TeamIn,
    TeamOut,
    TierOut,
    VisitIn,
    VisitOut,
)
from saleday.http.problems import PROBLEM_JSON, ApiProblem

PROBLEM = {"description": "A problem (RFC 9457).",
           "content": {PROBLEM_JSON: {"schema": Problem.model_json_schema()}}}
USER_ERRORS: dict[int | str, dict[str, Any]] = {
    s: PROBLEM for s in (401, 409, 422, 429, 503)}
IdKey = Annotated[str | None, Header(alias="Idempotency-Key", description=(
    "Makes a retry safe: the same key (per user) with the same body is done once; "
    "with another body it is a 409."))]
PathId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._@:-]{1,64}$")]

router = APIRouter(prefix="/v1", responses=USER_ERRORS)


def api_of(request: Request) -> Api:
    return request.app.state.api


def new_id(prefix: str, user: str, key: str | None) -> str:
    """The id of what a request creates: from (user, key) when the client sent a key, so a
    retry finds it again; else a fresh one, in time order (`fresh_id`)."""
    return f"{prefix}-{scoped_id(user, key) if key else fresh_id()}"


@router.post("/sessions", status_code=201, tags=["sessions"])
async def start_session(body: SessionIn, request: Request, user: User,
                        idempotency_key: IdKey = None) -> SessionOut:
    """Record an arrival: its UTM tags and, on a user's first session, who invited them."""
    api = api_of(request)
    key = check_key(idempotency_key)
    api.keys.check(user, "sessions", key, body)
    session_id = new_id("s", user, key)
    flows, tap = api.flows()
    reply = await flows.start_session(user=user, session_id=session_id,
                                      utm_source=body.utm_source, utm_medium=body.utm_medium,
                                      utm_campaign=body.utm_campaign, inviter=body.inviter,
                                      now=api.now())
    if not isinstance(reply, Accepted):
        raise tap.problem(reply)
    state = await api.query("session", user)
    return SessionOut(user=user, session_id=session_id, first_seen_ms=state.first_seen,
                      invited_by=state.inviter)


@router.post("/coupons/claims", status_code=201, tags=["coupons"])
async def claim_coupon(body: ClaimIn, request: Request, user: User,
                       idempotency_key: IdKey = None) -> ClaimOut:
    """Claim the campaign's coupon (once per user and campaign); it reaches the wallet
    shortly after, by reaction."""
    api = api_of(request)
    key = check_key(idempotency_key)
    api.keys.check(user, "claims", key, body)
    grant_id = f"claim:{body.campaign}:{user}"
    flows, tap = api.flows()
    reply = await flows.grant_coupon(campaign=body.campaign, grant_id=grant_id, user=user,
                                     now=api.now())
    if not isinstance(reply, Accepted):
        raise tap.problem(reply)
    out = ClaimOut(campaign=body.campaign, coupon_id=grant_id)
    for event in reply.events:
        if type(event).__name__ == "CouponGranted":
            out = ClaimOut(campaign=body.campaign, coupon_id=event.coupon_id,
                           value_cents=event.value_cents, min_spend_cents=event.min_spend_cents,
                           valid_until_ms=event.valid_until)
    return out


@router.get("/coupons", tags=["coupons"])
async def wallet(request: Request, user: User) -> list[CouponOut]:
    """The coupons in the user's wallet."""
    state = await api_of(request).query("session", user)
    return [CouponOut(coupon_id=cid, campaign=c.campaign, value_cents=c.value_cents,
                      min_spend_cents=c.min_spend_cents, valid_until_ms=c.valid_until,
                      status=c.status, order_id=c.order_id)
            for cid, c in sorted(state.coupons.items())]


@router.post("/teams", status_code=201, tags=["teams"])
async def create_team(body: TeamIn, request: Request, user: User,
                      idempotency_key: IdKey = None) -> TeamOut:
    """Open a team-up led by the user, its red packet drawn from the campaign's budget."""
    api = api_of(request)
    key = check_key(idempotency_key)
    api.keys.check(user, "teams", key, body)
    team = new_id("t", user, key)
    now = api.now()
    seed = int(hashlib.sha256(team.encode()).hexdigest()[:16], 16)
    flows, tap = api.flows()
    reply = await flows.create_team(team=team, leader=user, campaign=body.campaign,
                                    pool_cents=body.pool_cents, size=body.size,
                                    min_share_cents=body.min_share_cents,
                                    expires=now + body.expires_in_s * 1000, seed=seed, now=now)
    if not isinstance(reply, Accepted):
        raise tap.problem(reply)
    return await _team(api, team)


@router.post("/teams/{team}/members", status_code=201, tags=["teams"],
             responses={404: PROBLEM})
async def join_team(team: PathId, request: Request, user: User) -> TeamOut:
    """Join a team (once); the last member to join completes it and splits the packet."""
    api = api_of(request)
    flows, tap = api.flows()
    reply = await flows.join_team(team=team, user=user, now=api.now())
    if not isinstance(reply, Accepted):
        raise tap.problem(reply)
    return await _team(api, team)


@router.get("/teams/{team}", tags=["teams"], responses={404: PROBLEM})
async def read_team(team: PathId, request: Request, user: User) -> TeamOut:
    """A team: its members, and whether it completed or expired."""
    return await _team(api_of(request), team)


async def _team(api: Api, team: str) -> TeamOut:
    t = await api.query("team", team)
    if not t.created:
        raise ApiProblem(404, "team_not_found", f"no team {team!r}", team=team)
    return TeamOut(team=team, leader=t.leader, campaign=t.campaign, pool_cents=t.pool_cents,
                   size=t.size, members=list(t.members), completed=t.completed,
                   expired=t.expired, expires_ms=t.expires, shares=[list(s) for s in t.shares])


@router.post("/visits", tags=["visits"])
async def visit(body: VisitIn, request: Request, user: User) -> VisitOut:
    """Report where the user is; entering a store's geofence (first time) records a visit,
    which earns that store's coupon."""
    api = api_of(request)
    stores = tuple((s.store_id, round(s.lat * 1e6), round(s.lon * 1e6), s.campaign, s.radius_m)
                   for s in api.settings.stores)
    reply = await api.submit(ReportLocation(user=user, lat_e6=round(body.lat * 1e6),
                                            lon_e6=round(body.lon * 1e6), now=api.now(),
                                            stores=stores), f"visit/{fresh_id()}/{user}")
    return VisitOut(visited=[e.store_id for e in reply.events if isinstance(e, StoreVisited)])


@router.get("/skus/{sku}", tags=["reads"], responses={404: PROBLEM})
async def read_sku(sku: PathId, request: Request) -> SkuOut:
    """A SKU's stock, the price of its next unit, its sale window and the server's time
    (for the countdown). Needs no token."""
    api = api_of(request)
    state = await api.query("sku", sku)
    if not state.known:
        raise ApiProblem(404, "unknown_sku", f"no SKU {sku!r}", sku=sku)
    return sku_out(state, api.now())


def sku_out(s: Any, now: int) -> SkuOut:
    price = tier = left = None
    for i, (units, cents) in enumerate(s.tiers):
        taken = s.tier_taken[i] if i < len(s.tier_taken) else 0
        if units == 0 or taken < units:
            price, tier, left = cents, i, (None if units == 0 else units - taken)
            break
    return SkuOut(sku=s.sku, stocked=s.stocked, available=s.available, reserved=s.reserved,
                  sold=s.sold, set_aside=s.set_aside, price_cents=price, tier=tier, tier_units_left=left,
                  tiers=[TierOut(units=u, price_cents=c,
                                 taken=s.tier_taken[i] if i < len(s.tier_taken) else 0)
                         for i, (u, c) in enumerate(s.tiers)],
                  per_user_limit=s.per_user_limit, sale_start_ms=s.start, sale_end_ms=s.end,
                  sale_open=s.configured and s.start <= now < s.end, server_time_ms=now)
