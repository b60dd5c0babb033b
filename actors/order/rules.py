"""The rules of an order: what each command decides, and how its events fold.

- `StartCheckout` (gateway, when the user submits the cart, before any reservation):
  records the lines, coupon and payment deadline. A repeat with the same terms decides
  nothing; other terms are an `InvalidCommand`. If a cancel got here first, the order is
  voided and the late start is refused (`OrderCancelled`), so the gateway does not go
  on to reserve stock for an order that was given up.
- `RecordTry` (gateway, once every reservation and the coupon lock succeeded): records
  the unit prices the reservations got and the coupon's value; the order is placed
  with `total = subtotal - min(coupon value, subtotal)`, the amount the user must pay.
- `CancelOrder` (gateway, when a try step failed or the user gave up): a trying or
  placed order is cancelled (the gateway then releases the reservations and unlocks the
  coupon). Arriving before the start, it leaves a tombstone (`OrderVoided`) that blocks
  the late start. A paid order cannot be cancelled (`OrderAlreadyPaid`): that is a refund.
- `RecordPayment` (payment callback, then the gateway confirms reservations and redeems
  the coupon): a placed order paid its exact total before its deadline is paid. A
  payment that lands anywhere else is refunded, never lost and never resurrecting an
  order: on a cancelled, voided or still-trying order ("order_cancelled"), on an order
  already paid by another payment ("duplicate_payment"), on an order never started
  ("unknown_order"), or on a placed order whose deadline has passed, which is then
  cancelled as its expiry would have ("payment_timeout") and refunded. Each payment id is
  captured or refunded at most once; a repeat decides nothing.
- `ExpireCheckout` (the shard's timer at `payment_deadline`): a trying or placed order
  not paid by then is cancelled ("payment_timeout").
- `RefundOrder` (gateway, when a paid order's confirmation was refused because its hold
  or coupon lock ran out first, and could not be taken again): the paid order is
  refunded, all it captured goes back (`OrderRefunded`, paid -> refunded). A repeat on a
  refunded order decides nothing; any other order is refused (`OrderNotPaid`): an unpaid
  order is cancelled, not refunded.

Money is integer cents: captured - refunded >= 0, and a paid order captured exactly its
total, once.

The words (commands, events, refusals) are `actors/order/words.py`'s, the state
`actors/order/state.py`'s; `actors/order/__init__.py` makes them the `order_decider`.
Pure: no I/O, clock, randomness or logging. `now` and ids arrive in the commands.
"""


from __future__ import annotations

from typing import assert_never

from saleday.actors.decider import InvalidCommand, Rejection
from saleday.actors.fields import INT64_MAX, Intake, fast_replace
from saleday.actors.lifecycle import OPEN, OrderStatus
from saleday.actors.order.state import OrderState
from saleday.actors.order.words import (
    COMMANDS,
    CancelOrder,
    CheckoutCancelled,
    CheckoutStarted,
    ExpireCheckout,
    LinePrices,
    Lines,
    OrderAlreadyPaid,
    OrderCancelled,
    OrderCommand,
    OrderEvent,
    OrderNotPaid,
    OrderNotStarted,
    OrderPlaced,
    OrderRefunded,
    OrderVoided,
    PaymentCaptured,
    PaymentMismatch,
    PointsApplied,
    RecordPayment,
    RecordTry,
    RefundIssued,
    RefundOrder,
    StartCheckout,
)

_INTAKE = Intake("order", COMMANDS, entity="order_id", noun="order", optional_strs=("coupon_id",),
                 non_negative=("amount_cents", "coupon_value_cents", "points", "points_cents"))
"""Each command's int and str fields and its order, checked before any business rule."""


# --- decide ---------------------------------------------------------------------------


def decide(command: OrderCommand, state: OrderState) -> list[OrderEvent] | Rejection:
    """The facts `command` establishes against `state`, or why it is refused."""
    refused = _INTAKE.refusal(command, state.order_id)
    if refused is not None:
        return refused
    match command:
        case StartCheckout():
            return _start(command, state)
        case RecordTry():
            return _record_try(command, state)
        case CancelOrder():
            return _cancel(command, state)
        case RecordPayment():
            return _pay(command, state)
        case ExpireCheckout():
            return _expire_due(command, state)
        case RefundOrder():
            return _refund_order(command, state)
        case _:
            return _INTAKE.not_taken(command)


def _start(command: StartCheckout, state: OrderState) -> list[OrderEvent] | Rejection:
    lines = _normalized_lines(command.lines)
    if isinstance(lines, str):
        return InvalidCommand(reason=lines)
    if state.status == OrderStatus.VOIDED:
        return OrderCancelled(order_id=command.order_id, reason=state.cancel_reason)
    if state.status != OrderStatus.NONE:
        terms = (state.user, state.lines, state.coupon_id, state.payment_deadline)
        if terms != (command.user, lines, command.coupon_id, command.payment_deadline):
            return InvalidCommand(reason=f"order {command.order_id!r} was started with "
                                         f"other terms")
        if state.status == OrderStatus.CANCELLED:
            return OrderCancelled(order_id=command.order_id, reason=state.cancel_reason)
        return []
    if command.payment_deadline <= command.now:
        return InvalidCommand(reason=f"payment deadline {command.payment_deadline} is not "
                                     f"after now ({command.now})")
    return [CheckoutStarted(order_id=command.order_id, user=command.user, lines=lines,
                            coupon_id=command.coupon_id,
                            payment_deadline=command.payment_deadline, started_at=command.now)]


def _record_try(command: RecordTry, state: OrderState) -> list[OrderEvent] | Rejection:
    order_id = command.order_id
    if state.status in (OrderStatus.CANCELLED, OrderStatus.VOIDED):
        return OrderCancelled(order_id=order_id, reason=state.cancel_reason)
    if state.status == OrderStatus.NONE:
        return OrderNotStarted(order_id=order_id)
    prices = _normalized_prices(command.line_prices, state.lines)
    if isinstance(prices, str):
        return InvalidCommand(reason=prices)
    subtotal = sum(map(sum, prices))
    if subtotal > INT64_MAX:
        return InvalidCommand(reason=f"the subtotal {subtotal} does not fit a 64-bit int")
    discount = min(command.coupon_value_cents, subtotal) if state.coupon_id else 0
    points, points_cents = command.points, command.points_cents
    if (points == 0) != (points_cents == 0) or points_cents > subtotal - discount:
        return InvalidCommand(reason=f"{points} points worth {points_cents} cents cannot be "
                                     f"taken off {subtotal - discount}")
    if state.status != OrderStatus.TRYING:   # placed (or paid) already: a retry
        if (prices, discount, points_cents) != (state.line_prices, state.discount_cents,
                                                state.points_cents):
            return InvalidCommand(reason=f"order {order_id!r} was placed at other prices")
        return []
    placed = OrderPlaced(order_id=order_id, user=state.user, line_prices=prices,
                         subtotal_cents=subtotal, discount_cents=discount,
                         total_cents=subtotal - discount - points_cents)
    if points:
        return [PointsApplied(order_id=order_id, points=points, points_cents=points_cents),
                placed]
    return [placed]


def _cancel(command: CancelOrder, state: OrderState) -> list[OrderEvent] | Rejection:
    match state.status:
        case OrderStatus.NONE:
            return [OrderVoided(order_id=command.order_id, reason=command.reason)]
        case OrderStatus.TRYING | OrderStatus.PLACED:
            return [CheckoutCancelled(order_id=command.order_id, reason=command.reason,
                                      was_placed=state.status == OrderStatus.PLACED)]
        case OrderStatus.PAID:
            return OrderAlreadyPaid(order_id=command.order_id)
        case OrderStatus.CANCELLED | OrderStatus.VOIDED | OrderStatus.REFUNDED:
            return []  # over already
        case _:
            assert_never(state.status)


def _pay(command: RecordPayment, state: OrderState) -> list[OrderEvent] | Rejection:
    order_id, payment_id, amount = command.order_id, command.payment_id, command.amount_cents
    if payment_id == state.payment_id or payment_id in state.refunds:
        return []
    match state.status:
        case OrderStatus.PLACED if command.now >= state.payment_deadline:
            return [CheckoutCancelled(order_id=order_id, reason="payment_timeout",
                                      was_placed=True),
                    _refund(command, "order_cancelled")]
        case OrderStatus.PLACED if amount != state.total_cents:
            return PaymentMismatch(order_id=order_id, expected=state.total_cents, got=amount)
        case OrderStatus.PLACED:
            return [PaymentCaptured(order_id=order_id, payment_id=payment_id,
                                    amount_cents=amount)]
        case OrderStatus.PAID:
            return [_refund(command, "duplicate_payment")]
        case OrderStatus.NONE:
            return [_refund(command, "unknown_order")]
        case (OrderStatus.TRYING | OrderStatus.CANCELLED | OrderStatus.VOIDED
              | OrderStatus.REFUNDED):
            return [_refund(command, "order_cancelled")]
        case _:
            assert_never(state.status)


def _refund(command: RecordPayment, reason: str) -> RefundIssued:
    return RefundIssued(order_id=command.order_id, payment_id=command.payment_id,
                        amount_cents=command.amount_cents, reason=reason)


def _refund_order(command: RefundOrder, state: OrderState) -> list[OrderEvent] | Rejection:
    if state.status == OrderStatus.REFUNDED:
        return []
    if state.status != OrderStatus.PAID:
        return OrderNotPaid(order_id=command.order_id, status=str(state.status))
    return [OrderRefunded(order_id=command.order_id, payment_id=state.payment_id,
                          amount_cents=state.captured_cents, reason=command.reason)]


def _expire_due(command: ExpireCheckout, state: OrderState) -> list[OrderEvent]:
    if state.status not in OPEN or state.payment_deadline > command.now:
        return []
    return [CheckoutCancelled(order_id=command.order_id, reason="payment_timeout",
                              was_placed=state.status == OrderStatus.PLACED)]


# --- malformed lines and prices ------------------------------------------------------


def _normalized_lines(lines: object) -> Lines | str:
    """`lines` as a tuple of `(sku, qty)` pairs, or what is wrong with them."""
    if type(lines) not in (tuple, list) or not lines:
        return "lines must be a non-empty sequence of (sku, qty) pairs"
    out = []
    for i, line in enumerate(lines):
        if (type(line) not in (tuple, list) or len(line) != 2 or type(line[0]) is not str
                or not line[0] or type(line[1]) is not int or not 1 <= line[1] <= INT64_MAX):
            return f"line {i} must be (sku, qty >= 1), not {line!r}"
        out.append((line[0], line[1]))
    if len({sku for sku, _ in out}) != len(out):
        return "each sku may appear on one line only"
    return tuple(out)


def _normalized_prices(line_prices: object, lines: Lines) -> LinePrices | str:
    """`line_prices` as a tuple of per-line unit-price tuples matching `lines`, or what
    is wrong with them."""
    if type(line_prices) not in (tuple, list) or len(line_prices) != len(lines):
        return f"line_prices must give the unit prices of each of the {len(lines)} lines"
    out = []
    for (sku, qty), prices in zip(lines, line_prices):
        if (type(prices) not in (tuple, list) or len(prices) != qty
                or not all(type(p) is int and 0 <= p <= INT64_MAX for p in prices)):
            return f"line {sku!r} needs {qty} unit prices (ints >= 0), not {prices!r}"
        out.append(tuple(prices))
    return tuple(out)


# --- evolve ---------------------------------------------------------------------------


replace = fast_replace(OrderState)


def evolve(state: OrderState, event: OrderEvent) -> OrderState:
    """The state after `event`. No validation: the event already happened."""
    match event:
        case CheckoutStarted():
            return replace(state, status=OrderStatus.TRYING, user=event.user, lines=event.lines,
                           coupon_id=event.coupon_id, payment_deadline=event.payment_deadline,
                           started_at=event.started_at)
        case OrderPlaced():
            return replace(state, status=OrderStatus.PLACED, line_prices=event.line_prices,
                           subtotal_cents=event.subtotal_cents,
                           discount_cents=event.discount_cents, total_cents=event.total_cents)
        case OrderVoided():
            return replace(state, status=OrderStatus.VOIDED, cancel_reason=event.reason)
        case CheckoutCancelled():
            return replace(state, status=OrderStatus.CANCELLED, cancel_reason=event.reason)
        case PaymentCaptured():
            return replace(state, status=OrderStatus.PAID, payment_id=event.payment_id,
                           captured_cents=state.captured_cents + event.amount_cents)
        case RefundIssued():
            return replace(state, refunds=state.refunds.set(event.payment_id, event.amount_cents),
                           refunded_cents=state.refunded_cents + event.amount_cents)
        case OrderRefunded():
            return replace(state, status=OrderStatus.REFUNDED, cancel_reason=event.reason,
                           refunds=state.refunds.set(event.payment_id, event.amount_cents),
                           refunded_cents=state.refunded_cents + event.amount_cents)
        case PointsApplied():
            return replace(state, points=event.points, points_cents=event.points_cents)
        case _:
            assert_never(event)


# --- what a shard host needs ----------------------------------------------------------


def entity_of(x: OrderCommand | OrderEvent) -> str:
    """The order a command or an event is about."""
    return x.order_id


def deadline_of(event: OrderEvent) -> int | None:
    """A started checkout is due to be paid by its payment deadline."""
    return event.payment_deadline if type(event) is CheckoutStarted else None


def next_deadline(state: OrderState) -> int | None:
    """The payment deadline while the order is trying or placed."""
    return state.payment_deadline if state.status in OPEN else None


def expire(order_id: str, now: int) -> ExpireCheckout:
    """The command a host issues once an order's payment deadline is due."""
    return ExpireCheckout(order_id=order_id, now=now)
