"""Members, presales and list prices over HTTP (docs/MEMBERS.md).

- `GET /v1/member`: the caller's own member — tier and its history, points (balance, held,
  earned, redeemed, expired, the lots and their expiry, the holds of unpaid orders), the
  orders in its history and its price-protection refunds. Only one's own: the route takes
  no user.
- `GET /v1/presales/{sku}`: a presale's terms, units left and the caller's own deposits.
- `POST /v1/presales/{sku}/deposits`: pay a deposit for `qty` units (flows/presale.py:
  the units are set aside on the SKU first, then the deposit recorded; a refused deposit
  gives them back); with an `Idempotency-Key` the deposit id derives from (user, key), so
  a retry pays once.
- `POST /v1/presales/{sku}/deposits/{deposit_id}/balance`: pay one's own deposit through
  (the exact balance, by `payment_id`); anyone else's deposit is a 404.
- Operator: `PUT /v1/admin/skus/{sku}/price` (a list price change: a drop is what price
  protection refunds) and `PUT /v1/admin/presales/{sku}` (open a presale).

The invoice choice and points at order placement are fields of `POST /v1/orders`
(routes_orders.py). Refusals are problem+json like every route's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from saleday.actors.presale import OpenPresale, PayBalance
from saleday.actors.price import SetPrice
from saleday.flows.presale import Presales
from saleday.http.auth import User
from saleday.http.idempotency import check_key
from saleday.http.models import (
    BalanceIn,
    DepositIn,
    DepositOut,
    HoldOut,
    LotOut,
    MemberOut,
    PresaleIn,
    PresaleOut,
    PriceIn,
    PriceOut,
    RefundOut,
    TakenBackOut,
)
from saleday.http.problems import ApiProblem, refusal_problem
from saleday.http.routes_admin import _command_id, admin
from saleday.http.routes_shop import PROBLEM, USER_ERRORS, IdKey, PathId, api_of, new_id

router = APIRouter(prefix="/v1", responses=USER_ERRORS)


@router.get("/member", tags=["members"])
async def my_member(request: Request, user: User) -> MemberOut:
    """The caller's member: tier, points and protection refunds."""
    m = await api_of(request).query("member", user)
    return MemberOut(
        user=user, tier=m.tier, tiers=[{"since_ms": at, "tier": t} for at, t in m.tiers],
        orders=len(m.orders), points_balance=m.balance, points_held=m.held,
        points_earned=m.earned, points_redeemed=m.redeemed, points_expired=m.expired,
        points_taken_back=sum(m.taken_back.values()),
        taken_back=[TakenBackOut(order_ref=ref, points=p)
                    for ref, p in sorted(m.taken_back.items())],
        lots=[LotOut(order_ref=ref, points=p, expires_at_ms=at) for ref, p, at in m.lots],
        holds=[HoldOut(order_id=hid, points=h[0], until_ms=h[2])
               for hid, h in sorted(m.holds.items())],
        protection_refunds=[RefundOut(order_ref=key.split("\x1f", 1)[0],
                                      sku=key.split("\x1f", 1)[1], refund_cents=cents)
                            for key, cents in sorted(m.protected.items())])


@router.get("/presales/{sku}", tags=["presales"], responses={404: PROBLEM})
async def read_presale(sku: PathId, request: Request, user: User) -> PresaleOut:
    """A presale's terms and units left, and the caller's deposits."""
    p = await api_of(request).query("presale", sku)
    if not p.opened:
        raise ApiProblem(404, "presale_not_found", f"no presale is open for {sku!r}", sku=sku)
    return _presale_out(p, user)


@router.post("/presales/{sku}/deposits", status_code=201, tags=["presales"])
async def pay_deposit(sku: PathId, body: DepositIn, request: Request, user: User,
                      idempotency_key: IdKey = None) -> DepositOut:
    """Pay the deposit for `qty` units: they are set aside on the SKU first (a flash buyer
    cannot take them), then held for the caller until the balance window closes (paid
    through, or forfeited). A SKU without the units refuses it (409 `sold_out`), and so
    does the presale (closed, no units left, ...): its units then go back on the shelf."""
    api = api_of(request)
    key = check_key(idempotency_key)
    api.keys.check(user, f"deposits/{sku}", key, body)
    deposit_id = new_id("d", user, key)
    result = await Presales(api.tap()).deposit(sku=sku, deposit_id=deposit_id, user=user,  # type: ignore[arg-type]
                                               qty=body.qty, now=api.now())
    if result.status != "held":
        raise refusal_problem(result.refusal, retry_after_s=api.settings.retry_after_s,
                              deposit_id=deposit_id)
    return _deposit_out(await api.query("presale", sku), deposit_id)


@router.post("/presales/{sku}/deposits/{deposit_id}/balance", tags=["presales"],
             responses={404: PROBLEM})
async def pay_balance(sku: PathId, deposit_id: PathId, body: BalanceIn, request: Request,
                      user: User) -> DepositOut:
    """Pay one's own deposit through: exactly its balance, inside the balance window."""
    api = api_of(request)
    p = await api.query("presale", sku)
    held = p.deposits.get(deposit_id)
    if held is None or held[0] != user:
        raise ApiProblem(404, "deposit_not_found", f"you have no deposit {deposit_id!r} on "
                         f"{sku!r}", sku=sku, deposit_id=deposit_id)
    await api.submit(PayBalance(sku=sku, deposit_id=deposit_id, payment_id=body.payment_id,
                                amount_cents=body.amount_cents, now=api.now()),
                     f"balance/{sku}/{deposit_id}/{body.payment_id}")
    return _deposit_out(await api.query("presale", sku), deposit_id)


@admin.put("/skus/{sku}/price")
async def set_price(sku: PathId, body: PriceIn, request: Request,
                    idempotency_key: IdKey = None) -> PriceOut:
    """Change the SKU's list price now (a drop below what a protected member paid is
    refunded by price protection)."""
    api = api_of(request)
    await api.submit(SetPrice(sku=sku, price_cents=body.price_cents, now=api.now()),
                     _command_id(request, f"price/{sku}", idempotency_key, body))
    state = await api.query("price", sku)
    return PriceOut(sku=sku, price_cents=state.price_cents, since_ms=state.since)


@admin.put("/presales/{sku}")
async def open_presale(sku: PathId, body: PresaleIn, request: Request,
                       idempotency_key: IdKey = None) -> PresaleOut:
    """Open the SKU's presale: deposits in [deposits_from, balance_from), balances in
    [balance_from, balance_until)."""
    api = api_of(request)
    await api.submit(OpenPresale(
        sku=sku, units=body.units, deposit_cents=body.deposit_cents,
        deposit_value_cents=body.deposit_value_cents, price_cents=body.price_cents,
        deposits_from=body.deposits_from_ms, balance_from=body.balance_from_ms,
        balance_until=body.balance_until_ms, now=api.now()),
        _command_id(request, f"presale/{sku}", idempotency_key, body))
    return _presale_out(await api.query("presale", sku), "")


def _deposit_out(p: Any, deposit_id: str) -> DepositOut:
    _, qty, status = p.deposits[deposit_id]
    return DepositOut(sku=p.sku, deposit_id=deposit_id, qty=qty, status=status,
                      deposit_cents=p.deposit_cents * qty,
                      balance_cents=(p.price_cents - p.deposit_value_cents) * qty)


def _presale_out(p: Any, user: str) -> PresaleOut:
    return PresaleOut(sku=p.sku, opened=p.opened, units=p.units, units_left=p.left,
                      deposit_cents=p.deposit_cents, deposit_value_cents=p.deposit_value_cents,
                      price_cents=p.price_cents, deposits_from_ms=p.deposits_from,
                      balance_from_ms=p.balance_from, balance_until_ms=p.balance_until,
                      deposits=[_deposit_out(p, did) for did, d in sorted(p.deposits.items())
                                if user and d[0] == user])


__all__ = ["router"]
