"""What an order knows: its terms, where it stands, and the money that moved.

Snapshots name this class (actors/state_codec.py encodes a state by its class's qualified
name and declared fields), so its name and fields are part of the snapshot format: a
field is added last, with a default.
"""

from __future__ import annotations

from dataclasses import dataclass

import immutables

from saleday.actors.decider import compact_pickle
from saleday.actors.lifecycle import OrderStatus
from saleday.actors.order.words import LinePrices, Lines
from saleday.events.values import quick_init


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderState:
    """One order: its terms, where it stands, and the money that moved.

    `payment_id` is the payment that paid it ("" until paid); `refunds` maps each
    refunded payment id to its amount.
    """

    order_id: str
    status: OrderStatus
    user: str
    lines: Lines
    coupon_id: str
    payment_deadline: int
    started_at: int
    line_prices: LinePrices
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    cancel_reason: str
    payment_id: str
    captured_cents: int
    refunds: immutables.Map[str, int]
    refunded_cents: int
    points: int = 0
    """Member points redeemed on the order (held on its member until paid or given up)."""
    points_cents: int = 0
    """What they took off the total."""


_EMPTY: immutables.Map = immutables.Map()


def initial(order_id: str) -> OrderState:
    """An order nothing happened to yet."""
    return OrderState(order_id=order_id, status=OrderStatus.NONE, user="", lines=(),
                      coupon_id="", payment_deadline=0, started_at=0, line_prices=(),
                      subtotal_cents=0, discount_cents=0, total_cents=0, cancel_reason="",
                      payment_id="", captured_cents=0, refunds=_EMPTY, refunded_cents=0)
