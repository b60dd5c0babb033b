"""Checkout over HTTP: place, read and cancel an order, and the payment provider's callback.

An order may ask for an invoice (an electronic one earns double points once paid) and
redeem member points as a discount (held when placed, spent when paid, given back when
cancelled; docs/MEMBERS.md). Points worth more than what is left to pay are a 422
`points_exceed_total`; more than the balance a 409 `insufficient_points`.

Orders run `flows.checkout.Checkout` (a TCC flow whose every step id derives from the
order id). With an `Idempotency-Key` the order id derives from (user, key), so a retried
request drives the same order: a placed (or paid) order is answered as it stands, a
half-placed one is finished, a refused one is refused again (409 `order_cancelled`, with
the first refusal's code as its reason), and an order found with other lines or coupon is
a 409 idempotency conflict. Without a key the order id is new, so the order starts
together with its reservations (`Checkout.place(new_order=True)`: 3 round trips to the
shards, not 4; a sold-out order is released from what its start and cancel recorded, not
read back: 3, not 4). A user sees and cancels only their own orders; anyone else's is a 404, so order ids reveal nothing.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from saleday.actors.host import Busy, Unavailable
from saleday.actors.order import OrderCancelled
from saleday.http import webhook
from saleday.http.auth import User
from saleday.http.edge import Api
from saleday.http.idempotency import check_key, conflict
from saleday.http.lean import LeanRoute, lean
from saleday.http.models import LineOut, OrderIn, OrderOut, PaymentEventIn, PaymentOut
from saleday.http.problems import ApiProblem, refusal_problem
from saleday.http.routes_shop import PROBLEM, USER_ERRORS, IdKey, PathId, api_of, new_id

log = structlog.get_logger("saleday.http.orders")
MAX_CALLBACK_BYTES = 65_536

router = APIRouter(prefix="/v1", responses=USER_ERRORS)


def lean_routes() -> list[LeanRoute]:
    """The routes here that the app's `LeanLane` answers directly (placing an order)."""
    return [route for route in router.routes if isinstance(route, LeanRoute)]


@lean(router, "POST", "/orders", status_code=201, tags=["checkout"])
async def place_order(body: OrderIn, request: Request, response: Response, user: User,
                      idempotency_key: IdKey = None) -> OrderOut:
    """Place an order: reserve every line at its tier prices, lock the coupon, and answer
    the prices, the total and the payment deadline. Any refusal cancels what was held."""
    api = api_of(request)
    key = check_key(idempotency_key)
    api.keys.check(user, "orders", key, body)
    order_id = new_id("o", user, key)
    lines = tuple((line.sku, line.qty) for line in body.lines)
    coupon = body.coupon_id or ""
    if key is not None:
        found = await api.query("order", order_id)
        if found.status:
            if ((found.user, tuple(found.lines), found.coupon_id) != (user, lines, coupon)
                    or (found.status != "trying" and found.points != body.points)):
                raise conflict(key)
            if found.status in ("cancelled", "voided"):   # as the first answer said: refused
                raise refusal_problem(OrderCancelled(order_id=order_id,
                                                     reason=found.cancel_reason),
                                      order_id=order_id)
            if found.status != "trying":
                response.headers["Location"] = f"/v1/orders/{order_id}"
                return order_out(found)
    checkout, tap = api.checkout()
    invoice = body.invoice
    result = await checkout.place(order_id=order_id, user=user, lines=lines, coupon_id=coupon,
                                  now=api.now(), points=body.points, new_order=key is None,
                                  invoice=None if invoice is None else
                                  (invoice.kind, invoice.title, invoice.tax_id))
    if result.status == "placed":
        response.headers["Location"] = f"/v1/orders/{order_id}"
        return order_out(result.order)
    if result.status == "unavailable":
        raise refusal_problem(Unavailable(reason=result.reason), order_id=order_id,
                              retry_after_s=api.settings.retry_after_s)
    if result.reason == "points_exceed_total" and not tap.refusals:
        raise ApiProblem(422, "points_exceed_total", f"{body.points} points are worth more than "
                         f"what is left to pay; the order was cancelled", order_id=order_id,
                         points=body.points)
    raise tap.problem(Unavailable(reason=result.reason), order_id=order_id)


@router.get("/orders/{order_id}", tags=["checkout"], responses={404: PROBLEM})
async def read_order(order_id: PathId, request: Request, user: User) -> OrderOut:
    """One of the user's orders, as its shard holds it now."""
    return order_out(await _own_order(api_of(request), order_id, user))


@router.post("/orders/{order_id}/cancel", tags=["checkout"], responses={404: PROBLEM})
async def cancel_order(order_id: PathId, request: Request, user: User) -> OrderOut:
    """Cancel one of the user's unpaid orders and release what it holds."""
    api = api_of(request)
    await _own_order(api, order_id, user)
    checkout, tap = api.checkout()
    result = await checkout.cancel(order_id=order_id, reason="user_cancelled", now=api.now())
    if result.status != "cancelled":
        raise tap.problem(Unavailable(reason=result.reason), order_id=order_id)
    return order_out(await api.query("order", order_id))


async def _own_order(api: Api, order_id: str, user: str):  # type: ignore[no-untyped-def]
    order = await api.query("order", order_id)
    if not order.status or order.user != user:
        raise ApiProblem(404, "order_not_found", f"you have no order {order_id!r}",
                         order_id=order_id)
    return order


def order_out(o) -> OrderOut:  # type: ignore[no-untyped-def]
    prices = list(o.line_prices) + [()] * (len(o.lines) - len(o.line_prices))
    return OrderOut(order_id=o.order_id, user=o.user, status=o.status,
                    lines=[LineOut(sku=sku, qty=qty, unit_prices=list(p))
                           for (sku, qty), p in zip(o.lines, prices)],
                    coupon_id=o.coupon_id, subtotal_cents=o.subtotal_cents,
                    discount_cents=o.discount_cents, total_cents=o.total_cents,
                    payment_deadline_ms=o.payment_deadline, cancel_reason=o.cancel_reason,
                    paid_cents=o.captured_cents, refunded_cents=o.refunded_cents,
                    points=o.points, points_cents=o.points_cents)


@router.post("/payments/callback", tags=["payments"], responses={
    401: PROBLEM, 413: PROBLEM, 422: PROBLEM, 503: PROBLEM},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": PaymentEventIn.model_json_schema()}}},
        "parameters": [{"name": webhook.HEADER, "in": "header", "required": True,
                        "schema": {"type": "string"},
                        "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of "
                                       "'<t>.' + body> (docs/API.md)"}]})
async def payment_callback(request: Request) -> PaymentOut:
    """The payment provider reports a payment's outcome. Signed (see docs/API.md): a forged,
    stale or replayed callback changes nothing. A refusal (say an amount that is not the
    order's total) is answered 200 with status `refused`, since sending it again cannot
    help; only 503 asks the provider to retry."""
    api = api_of(request)
    body = await request.body()
    if len(body) > MAX_CALLBACK_BYTES:
        raise ApiProblem(413, "too_large", f"a callback is at most {MAX_CALLBACK_BYTES} bytes")
    try:
        t, v1 = webhook.verify(request.headers.get(webhook.HEADER), body,
                               api.settings.secret("webhook_secret"), now_s=api.now() / 1000,
                               tolerance_s=api.settings.webhook_tolerance_s)
    except webhook.BadSignature as exc:
        log.warning("callback_rejected", reason=str(exc))
        raise ApiProblem(401, "bad_signature", str(exc)) from None
    try:
        event = PaymentEventIn.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
    signature = f"{t}:{v1}"
    if not api.seen.first_time(signature):
        return PaymentOut(order_id=event.order_id, status="replayed",
                          reason="this callback was received before")
    checkout, tap = api.checkout()
    try:
        if event.type == "payment.succeeded":
            result = await checkout.payment_succeeded(
                order_id=event.order_id, payment_id=event.payment_id,
                amount_cents=event.amount_cents, now=api.now())
        else:
            result = await checkout.payment_failed(order_id=event.order_id, now=api.now())
    except BaseException:
        api.seen.forget(signature)   # not done: the provider's retry must be acted on
        raise
    not_decided = [r for r in tap.refusals if isinstance(r, Busy | Unavailable)]
    if result.status == "unavailable" or (result.status == "refused" and not_decided):
        api.seen.forget(signature)   # the provider's retry must be acted on
        raise refusal_problem(not_decided[0] if not_decided else Unavailable(reason=""),
                              order_id=event.order_id, retry_after_s=api.settings.retry_after_s)
    log.info("callback_handled", order=event.order_id, kind=event.type, status=result.status)
    return PaymentOut(order_id=event.order_id, status=result.status, reason=result.reason)
