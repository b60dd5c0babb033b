"""The order decider: one checkout, from its try through payment to its end, and the
money that moved for it (entity id = the order id).

Checkout is a TCC flow driven by the gateway with deterministic command ids: Try
(reserve stock at the SKU shards, lock the coupon at the user's session shard), Confirm
on payment, Cancel on failure or at the payment deadline. Every step may be retried or
arrive out of order, so every command here is idempotent and none can undo a fact.

    none ──StartCheckout──▶ trying ──RecordTry──▶ placed ──RecordPayment──▶ paid
      │                        │                     │                       │
      └─CancelOrder─▶ voided   └──CancelOrder / ExpireCheckout──▶ cancelled  RefundOrder
                                                                             ▼
                                                                          refunded

(the statuses and their moves are `actors/lifecycle.py`'s, which the session shares)
One decider in three modules:

- `words`  its commands, events and refusals         `actors/order/words.py`
- `state`  what an order knows (the class snapshots name)   `actors/order/state.py`
- `rules`  what each command decides, how events fold, the payment-deadline timer
           `actors/order/rules.py` (the rules in words are its docstring)

Every name a caller needs is importable from here. Pure: no I/O, clock, randomness or
logging; `now` and ids arrive in the commands.
"""

from __future__ import annotations

from saleday.actors.decider import Decider
from saleday.actors.order.rules import (
    deadline_of,
    decide,
    entity_of,
    evolve,
    expire,
    next_deadline,
)
from saleday.actors.order.state import OrderState, initial
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

order_decider: Decider[OrderCommand, OrderEvent, OrderState] = Decider(
    kind="order", initial=initial, decide=decide, evolve=evolve, entity_of=entity_of,
    commands=COMMANDS, deadline_of=deadline_of, next_deadline=next_deadline, expire=expire)

__all__ = [
    "COMMANDS", "CancelOrder", "CheckoutCancelled", "CheckoutStarted", "ExpireCheckout",
    "LinePrices", "Lines", "OrderAlreadyPaid", "OrderCancelled", "OrderCommand", "OrderEvent",
    "OrderNotPaid", "OrderNotStarted", "OrderPlaced", "OrderRefunded", "OrderState",
    "OrderVoided", "PaymentCaptured", "PaymentMismatch", "PointsApplied", "RecordPayment",
    "RecordTry", "RefundIssued", "RefundOrder", "StartCheckout",
    "deadline_of", "decide", "entity_of", "evolve", "expire", "initial", "next_deadline",
    "order_decider",
]
