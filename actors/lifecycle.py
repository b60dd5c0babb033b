"""The order lifecycle: the statuses of an order and where each may move, written once for
the order decider and for the user's session, which tracks the user's orders.

    none ─start─▶ trying ─try─▶ placed ─pay─▶ paid ─────refund─────▶ refunded
      │              │             │                                    ▲
      │              └─────────────┴─cancel / expire─▶ cancelled ─refund─┘
      └─cancel─▶ voided

- The order decider (`actors/order/`) moves an order from none to paid, cancelled or
  voided (cancelled before it started). Refunds are money there, not a status: a payment
  refunded on a paid order (a duplicate) or on a cancelled one leaves the status as is.
- A user's session (`actors/session/tracking.py`) sees an order from the moment it is
  placed (`TRACKED`), and as `refunded` once money went back on a paid or cancelled order:
  `TRACKED_NEXT` is the lifecycle restricted to what the user sees.

Statuses are a `StrEnum`: a member is equal to (and hashes as) its string, so a status
read back as a plain string (a payload, a snapshot) compares, matches and looks up alike.
Compare statuses with `==`, `in` or `match`, never with `is`. Event payloads carry plain
strings, never members (the log's encoding refuses a str subclass).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class OrderStatus(StrEnum):
    """Where an order stands."""

    NONE = ""
    """Nothing happened to the order yet (or the session does not track it yet)."""
    TRYING = "trying"
    """The checkout started: stock and coupon are being held."""
    PLACED = "placed"
    """Everything is held: the order waits for its payment."""
    PAID = "paid"
    CANCELLED = "cancelled"
    VOIDED = "voided"
    """Cancelled before its checkout started: it never will."""
    REFUNDED = "refunded"
    """As the user sees it: money went back on a paid or cancelled order."""


NEXT: Mapping[OrderStatus, tuple[OrderStatus, ...]] = {
    OrderStatus.NONE: (OrderStatus.TRYING, OrderStatus.VOIDED),
    OrderStatus.TRYING: (OrderStatus.PLACED, OrderStatus.CANCELLED),
    OrderStatus.PLACED: (OrderStatus.PAID, OrderStatus.CANCELLED),
    OrderStatus.PAID: (OrderStatus.REFUNDED,),
    OrderStatus.CANCELLED: (OrderStatus.REFUNDED,),
    OrderStatus.VOIDED: (),
    OrderStatus.REFUNDED: (),
}
"""The statuses each status may move to: orders move forward only."""

OPEN = frozenset(s for s, nexts in NEXT.items() if OrderStatus.CANCELLED in nexts)
"""Trying or placed: a checkout still running, which a cancel or its deadline ends."""

TRACKED = (OrderStatus.PLACED, OrderStatus.PAID, OrderStatus.CANCELLED, OrderStatus.REFUNDED)
"""The statuses a user's session tracks: an order from the moment it is placed."""

TRACKED_NEXT: Mapping[OrderStatus, tuple[OrderStatus, ...]] = {
    OrderStatus.NONE: (OrderStatus.PLACED,),
    **{s: tuple(n for n in NEXT[s] if n in TRACKED) for s in TRACKED},
}
"""The tracked statuses each tracked status may move to (none: not tracked yet, so only
placed): `NEXT` restricted to `TRACKED`."""

BY_VALUE: Mapping[str, OrderStatus] = {s.value: s for s in OrderStatus}
"""The status named by a plain string (as a payload carries it)."""
