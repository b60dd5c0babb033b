"""The words of an order: its commands, its events and its refusals.

What they mean, and the rules that decide them, are `actors/order/rules.py`'s; what an
order knows is `actors/order/state.py`'s. Events keep their wire names (`orders.*`): the
log stores those, never a module path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from saleday.actors.decider import Rejection
from saleday.events.registry import event_type

Lines = tuple[tuple[str, int], ...]
"""The order's lines `((sku, qty), ...)`, each sku once, qty >= 1."""
LinePrices = tuple[tuple[int, ...], ...]
"""Per line, the unit price (cents) of each reserved unit, in the reservation's order."""


# --- commands -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartCheckout:
    """Begin checking out `lines` for `user` with `coupon_id` ("" = none), to be paid
    before `payment_deadline`."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"payment_deadline"})
    """Not fingerprinted (actors/decider.py): the checkout derives it from `now`."""

    order_id: str
    user: str
    lines: Lines
    coupon_id: str
    payment_deadline: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordTry:
    """Every reservation and the coupon lock succeeded, at these unit prices and this
    coupon value: the order is placed."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"coupon_value_cents"})
    """Not fingerprinted (actors/decider.py): looked up in the wallet at drive time."""

    order_id: str
    line_prices: LinePrices
    coupon_value_cents: int
    now: int
    points: int = 0
    """Member points the user redeems on this order (held on its member already)."""
    points_cents: int = 0
    """What those points take off the total, in cents."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder:
    """Give the checkout up (a try step failed, the user cancelled, payment failed)."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"reason"})
    """Not fingerprinted (actors/decider.py): a cancel driven again may differ."""

    order_id: str
    reason: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordPayment:
    """The payment provider took `amount_cents` for the order under `payment_id`."""

    order_id: str
    payment_id: str
    amount_cents: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpireCheckout:
    """Cancel the order if it is still unpaid at its payment deadline."""

    order_id: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundOrder:
    """Give a paid order's money back: what it was paid for cannot be had (a hold or a
    coupon lock ran out before its confirmation arrived, and cannot be taken again)."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"reason"})
    """Not fingerprinted (actors/decider.py): a refund driven again may name another."""

    order_id: str
    reason: str
    now: int


OrderCommand = (StartCheckout | RecordTry | CancelOrder | RecordPayment | ExpireCheckout
                | RefundOrder)

COMMANDS = (StartCheckout, RecordTry, CancelOrder, RecordPayment, ExpireCheckout, RefundOrder)



# --- events ---------------------------------------------------------------------------


@event_type("orders.checkout_started")
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutStarted:
    """`user` began checking out `lines` with `coupon_id` ("" = none); it must be paid
    before `payment_deadline`."""

    order_id: str
    user: str
    lines: Lines
    coupon_id: str
    payment_deadline: int
    started_at: int


@event_type("orders.order_placed")
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderPlaced:
    """Stock and coupon are held: the order costs `total_cents` = subtotal - discount
    (the coupon) - the points applied (`PointsApplied`, when any)."""

    order_id: str
    user: str
    line_prices: LinePrices
    subtotal_cents: int
    discount_cents: int
    total_cents: int


@event_type("orders.points_applied")
@dataclass(frozen=True, slots=True, kw_only=True)
class PointsApplied:
    """`points` of the user's member points (held on the member) take `points_cents` off
    the order's total; recorded just before `OrderPlaced`, only when points are redeemed."""

    order_id: str
    points: int
    points_cents: int


@event_type("orders.order_voided")
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderVoided:
    """The order was cancelled before it started: it never will."""

    order_id: str
    reason: str


@event_type("orders.checkout_cancelled")
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutCancelled:
    """The checkout was given up (`was_placed`: after its try had succeeded)."""

    order_id: str
    reason: str
    was_placed: bool


@event_type("orders.payment_captured")
@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentCaptured:
    """The order was paid its total by `payment_id`."""

    order_id: str
    payment_id: str
    amount_cents: int


@event_type("orders.refund_issued")
@dataclass(frozen=True, slots=True, kw_only=True)
class RefundIssued:
    """`payment_id`'s `amount_cents` are to be returned: it paid for nothing it can have."""

    order_id: str
    payment_id: str
    amount_cents: int
    reason: str


@event_type("orders.order_refunded")
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRefunded:
    """The paid order is given up and its payment `payment_id` (`amount_cents`, all it
    captured) goes back: what it paid for could not be confirmed (`reason`)."""

    order_id: str
    payment_id: str
    amount_cents: int
    reason: str


OrderEvent = (CheckoutStarted | OrderPlaced | OrderVoided | CheckoutCancelled
              | PaymentCaptured | RefundIssued | OrderRefunded | PointsApplied)


# --- rejections -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCancelled(Rejection):
    """The order was cancelled (or voided before it started) for `reason`."""

    order_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderNotStarted(Rejection):
    """No checkout was started for this order."""

    order_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAlreadyPaid(Rejection):
    """The order is paid: it can no longer be cancelled."""

    order_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderNotPaid(Rejection):
    """Only a paid order can be refunded as a whole; this one is `status`."""

    order_id: str
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentMismatch(Rejection):
    """The payment's amount is not the order's total."""

    order_id: str
    expected: int
    got: int
