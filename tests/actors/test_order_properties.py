"""Properties of the order decider over any interleaving of its commands for one order.

Starts, tries, cancels, payments (right, wrong, repeated, duplicate) and expiries arrive
in any order, retried or not, while time moves forward. Checked from the decided events:
money adds up (every payment is kept or refunded, never both; what is kept is exactly
the total of a paid order and nothing otherwise), each payment id is captured or
refunded at most once, an order is never both paid and cancelled, replaying the log
rebuilds the state, and every event is loggable.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from saleday.actors.decider import InvalidCommand, Rejection, fold
from saleday.actors.order import (
    CancelOrder,
    CheckoutCancelled,
    CheckoutStarted,
    ExpireCheckout,
    OrderPlaced,
    OrderVoided,
    PaymentCaptured,
    RecordPayment,
    RecordTry,
    RefundIssued,
    StartCheckout,
    decide,
    evolve,
    order_decider,
)
from saleday.events.chain import canonical
from saleday.events.registry import registry

ORDER = "o1"
LINES = (("sku-a", 2), ("sku-b", 1))
TOTAL = "total"
"""An amount drawn as TOTAL pays whatever the order's total is when the payment arrives."""

UNIT_PRICES = st.integers(0, 5_000)
RARELY = st.sampled_from((False, False, False, False, True))
START = st.tuples(st.just("start"), st.sampled_from(("", "c1")), st.integers(1, 3_000), RARELY)
TRY = st.tuples(st.just("try"), st.tuples(st.tuples(UNIT_PRICES, UNIT_PRICES),
                                          st.tuples(UNIT_PRICES)),
                st.integers(0, 12_000), RARELY)
PAY = st.tuples(st.just("pay"), st.sampled_from(("p1", "p2", "p3")),
                st.one_of(st.just(TOTAL), st.just(TOTAL), st.integers(0, 12_000)))
STEPS = st.one_of(
    st.tuples(st.just("tick"), st.integers(0, 1_500)),
    START, START, TRY, TRY, PAY, PAY,
    st.tuples(st.just("cancel"), st.sampled_from(("user_cancelled", "try_failed"))),
    st.tuples(st.just("expire")),
)
"""Steps of the checkout: starts, tries and payments come more often than the rest, so
many runs get as far as paid."""


def command_for(step: tuple, now: int, state) -> object | None:
    """The command a step stands for at `now`, or None for a tick."""
    match step:
        case ("start", coupon, ttl, other_lines):
            lines = (("sku-a", 1),) if other_lines else LINES
            return StartCheckout(order_id=ORDER, user="u1", lines=lines, coupon_id=coupon,
                                 payment_deadline=now + ttl, now=now)
        case ("try", prices, coupon_value, bad_shape):
            prices = prices[:1] if bad_shape else prices
            return RecordTry(order_id=ORDER, line_prices=prices,
                             coupon_value_cents=coupon_value, now=now)
        case ("cancel", reason):
            return CancelOrder(order_id=ORDER, reason=reason, now=now)
        case ("pay", payment_id, amount):
            amount = state.total_cents if amount == TOTAL else amount
            return RecordPayment(order_id=ORDER, payment_id=payment_id, amount_cents=amount,
                                 now=now)
        case ("expire",):
            return ExpireCheckout(order_id=ORDER, now=now)
    return None


@settings(max_examples=400, deadline=None)
@given(placed_first=st.booleans(), start=START, try_=TRY, steps=st.lists(STEPS, max_size=30))
def test_any_interleaving_keeps_the_money_and_the_lifecycle_straight(placed_first, start, try_,
                                                                     steps):
    """Whatever order the checkout's commands arrive in, money adds up, each payment is
    settled once, paid and cancelled exclude each other, and replay rebuilds the state."""
    if placed_first:  # half the runs begin with a start and a try, to get past them often
        steps = [start, try_, *steps]
    now, state, log = 1_000, order_decider.initial(ORDER), []
    for step in steps:
        if step[0] == "tick":
            now += step[1]
            continue
        command = command_for(step, now, state)
        result = decide(command, state)
        if isinstance(result, Rejection):
            assert type(result) is not Rejection
            if isinstance(result, InvalidCommand):
                assert type(command) in (StartCheckout, RecordTry), result
            continue
        for event in result:
            name, _, data = registry.encode(event)
            canonical(data, name)
            state = evolve(state, event)
            log.append(event)
        if type(command) is ExpireCheckout:
            assert state.status not in ("trying", "placed") or state.payment_deadline > now

    types = [type(e) for e in log]
    assert types.count(CheckoutStarted) <= 1 and types.count(OrderPlaced) <= 1
    assert types.count(PaymentCaptured) <= 1
    assert types.count(CheckoutCancelled) + types.count(OrderVoided) <= 1
    paid = PaymentCaptured in types
    assert not (paid and (CheckoutCancelled in types or OrderVoided in types)), \
        "both paid and cancelled"
    if OrderVoided in types:
        assert CheckoutStarted not in types, "started after it was voided"
    if OrderPlaced in types:
        assert types.index(CheckoutStarted) < types.index(OrderPlaced)
    if paid:
        assert types.index(OrderPlaced) < types.index(PaymentCaptured)

    settled = Counter(e.payment_id for e in log if type(e) in (PaymentCaptured, RefundIssued))
    assert all(n == 1 for n in settled.values()), "a payment settled twice"
    received = sum(e.amount_cents for e in log if type(e) in (PaymentCaptured, RefundIssued))
    refunded = sum(e.amount_cents for e in log if type(e) is RefundIssued)
    captured = sum(e.amount_cents for e in log if type(e) is PaymentCaptured)
    kept = received - refunded
    assert kept >= 0 and kept == captured == state.captured_cents
    assert refunded == state.refunded_cents
    if paid:
        assert state.status == "paid" and captured == state.total_cents
        assert state.total_cents == state.subtotal_cents - state.discount_cents >= 0
    else:
        assert captured == 0

    assert fold(order_decider, ORDER, log) == state
