"""The operator's routes (behind the operator token): configure a sale, add stock, create a
campaign; and the views read from the projections.

An admin command's id comes from its `Idempotency-Key` (scoped to "operator"): send one
with every `stock` call, since adding stock twice is two restocks.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from saleday.actors.campaign import CreateCampaign
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.http.auth import Operator, User
from saleday.http.idempotency import check_key, scoped_id
from saleday.http.models import Accepted, CampaignIn, SaleIn, SkuOut, StockIn, ViewOut
from saleday.http.problems import ApiProblem
from saleday.http.routes_shop import PROBLEM, USER_ERRORS, IdKey, PathId, api_of, sku_out

router = APIRouter(prefix="/v1", responses=USER_ERRORS)
admin = APIRouter(prefix="/v1/admin", dependencies=[Operator], tags=["admin"],
                  responses=USER_ERRORS)


def _command_id(request: Request, route: str, key: str | None, body: object) -> str | None:
    key = check_key(key)
    api_of(request).keys.check("operator", route, key, body)
    return "admin-" + scoped_id("operator", route + "\x00" + key) if key else None


@admin.put("/skus/{sku}/sale")
async def configure_sale(sku: PathId, body: SaleIn, request: Request,
                         idempotency_key: IdKey = None) -> SkuOut:
    """Set the SKU's price tiers, per-user limit and sale window [start_ms, end_ms)."""
    api = api_of(request)
    await api.submit(ConfigureSale(sku=sku, tiers=tuple((t.units, t.price_cents) for t in body.tiers),
                                   per_user_limit=body.per_user_limit, start=body.start_ms,
                                   end=body.end_ms, now=api.now()),
                     _command_id(request, f"sale/{sku}", idempotency_key, body))
    return sku_out(await api.query("sku", sku), api.now())


@admin.post("/skus/{sku}/stock")
async def add_stock(sku: PathId, body: StockIn, request: Request,
                    idempotency_key: IdKey = None) -> SkuOut:
    """Put `qty` more units on the shelf."""
    api = api_of(request)
    await api.submit(AddStock(sku=sku, qty=body.qty, now=api.now()),
                     _command_id(request, f"stock/{sku}", idempotency_key, body))
    return sku_out(await api.query("sku", sku), api.now())


@admin.post("/campaigns", status_code=201)
async def create_campaign(body: CampaignIn, request: Request,
                          idempotency_key: IdKey = None) -> Accepted:
    """Open a coupon campaign (a budget of 0 means no limit of that kind)."""
    api = api_of(request)
    reply = await api.submit(CreateCampaign(
        campaign=body.campaign, value_cents=body.value_cents, min_spend_cents=body.min_spend_cents,
        valid_from=body.valid_from_ms, valid_until=body.valid_until_ms,
        budget_coupons=body.budget_coupons, budget_cents=body.budget_cents, now=api.now()),
        _command_id(request, "campaigns", idempotency_key, body))
    return Accepted(events=[type(e).__name__ for e in reply.events])


@router.get("/views/orders", tags=["reads"])
async def view_orders(request: Request, user: User) -> ViewOut:
    """The user's orders as the orders projection has them (status timeline, prices paid)."""
    view = await _view(request, "orders")
    return ViewOut(view="orders", data=view.by_user(user))


@router.get("/views/metrics", tags=["reads"], dependencies=[Operator])
async def view_metrics(request: Request) -> ViewOut:
    """The sale's metrics projection (funnel, payment success, coupon redemption, sell-outs,
    oversold units). Operator token."""
    view = await _view(request, "metrics")
    return ViewOut(view="metrics", data=view.to_json())


async def _view(request: Request, name: str):  # type: ignore[no-untyped-def]
    reader = api_of(request).views
    if reader is None:
        raise ApiProblem(503, "views_unavailable", "this server reads no projections",
                         headers={"Retry-After": "60"})
    return await reader.read(name)


__all__ = ["PROBLEM", "admin", "router"]
