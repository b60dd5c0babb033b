"""The order decider: start, try, cancel, pay, expire, and refunds of stray payments."""

from __future__ import annotations

import pickle

import pytest

from saleday.actors.decider import InvalidCommand
from saleday.actors.order import (
    CancelOrder,
    CheckoutCancelled,
    CheckoutStarted,
    ExpireCheckout,
    OrderAlreadyPaid,
    OrderCancelled,
    OrderNotPaid,
    OrderNotStarted,
    OrderPlaced,
    OrderRefunded,
    OrderVoided,
    PaymentCaptured,
    PaymentMismatch,
    RecordPayment,
    RecordTry,
    RefundIssued,
    RefundOrder,
    StartCheckout,
    deadline_of,
    expire,
    next_deadline,
    order_decider,
)
from saleday.events.chain import canonical
from saleday.events.registry import registry
from tests.actors.given import given

ORDER = "o1"
USER = "alice"
NOW = 10_000
DEADLINE = 40_000
LINES = (("sku-a", 2), ("sku-b", 1))
PRICES = ((1_000, 1_500), (3_000,))
SUBTOTAL = 5_500


def start(lines=LINES, coupon: str = "c1", deadline: int = DEADLINE, now: int = NOW,
          user: str = USER, order: str = ORDER) -> StartCheckout:
    return StartCheckout(order_id=order, user=user, lines=lines, coupon_id=coupon,
                         payment_deadline=deadline, now=now)


def started(lines=LINES, coupon: str = "c1", deadline: int = DEADLINE,
            at: int = NOW) -> CheckoutStarted:
    return CheckoutStarted(order_id=ORDER, user=USER, lines=lines, coupon_id=coupon,
                           payment_deadline=deadline, started_at=at)


def record_try(prices=PRICES, coupon_value: int = 500, now: int = NOW + 1) -> RecordTry:
    return RecordTry(order_id=ORDER, line_prices=prices, coupon_value_cents=coupon_value, now=now)


def placed(prices=PRICES, subtotal: int = SUBTOTAL, discount: int = 500) -> OrderPlaced:
    return OrderPlaced(order_id=ORDER, user=USER, line_prices=prices, subtotal_cents=subtotal,
                       discount_cents=discount, total_cents=subtotal - discount)


TOTAL = SUBTOTAL - 500


def cancel(reason: str = "user_cancelled", now: int = NOW + 2) -> CancelOrder:
    return CancelOrder(order_id=ORDER, reason=reason, now=now)


def cancelled(reason: str = "user_cancelled", was_placed: bool = True) -> CheckoutCancelled:
    return CheckoutCancelled(order_id=ORDER, reason=reason, was_placed=was_placed)


def voided(reason: str = "user_cancelled") -> OrderVoided:
    return OrderVoided(order_id=ORDER, reason=reason)


def pay(pid: str = "p1", amount: int = TOTAL, now: int = NOW + 3) -> RecordPayment:
    return RecordPayment(order_id=ORDER, payment_id=pid, amount_cents=amount, now=now)


def captured(pid: str = "p1", amount: int = TOTAL) -> PaymentCaptured:
    return PaymentCaptured(order_id=ORDER, payment_id=pid, amount_cents=amount)


def refunded(pid: str = "p1", amount: int = TOTAL,
             reason: str = "order_cancelled") -> RefundIssued:
    return RefundIssued(order_id=ORDER, payment_id=pid, amount_cents=amount, reason=reason)


def order(*events):
    return given(order_decider, *events)


# --- start -----------------------------------------------------------------------------


def test_starting_a_checkout_records_its_terms():
    """A new checkout records its lines, coupon and payment deadline, and is trying."""
    outcome = order().when(start()).then(started())
    assert outcome.state.status == "trying" and outcome.state.lines == LINES


def test_a_checkout_may_have_no_coupon():
    """The coupon id may be empty."""
    order().when(start(coupon="")).then(started(coupon=""))


def test_lines_from_the_wire_are_recorded_as_tuples():
    """Lines that crossed a msgpack wire as lists are recorded as tuples."""
    order().when(start(lines=[["sku-a", 2], ["sku-b", 1]])).then(started())


@pytest.mark.parametrize("past", [(started(),), (started(), placed()),
                                  (started(), placed(), captured())])
def test_a_repeated_start_with_the_same_terms_decides_nothing(past):
    """A retried start with identical terms is a no-op, whatever came after it."""
    order(*past).when(start(now=NOW + 50)).then()


@pytest.mark.parametrize("command", [start(lines=(("sku-a", 3),)), start(coupon=""),
                                     start(deadline=DEADLINE + 1), start(user="bob")])
def test_a_start_with_other_terms_is_invalid(command):
    """Starting an order again with different lines, coupon, deadline or user is invalid."""
    order(started()).when(command).then_rejected(InvalidCommand)


def test_cancel_before_start_blocks_the_late_start():
    """A cancel that arrived first leaves a tombstone: the late start is OrderCancelled."""
    order(voided("try_failed")).when(start()) \
        .then_rejected(OrderCancelled, order_id=ORDER, reason="try_failed")


def test_a_start_retried_after_cancel_is_order_cancelled():
    """A retried start of a cancelled order learns that it was cancelled."""
    order(started(), cancelled(was_placed=False)).when(start()) \
        .then_rejected(OrderCancelled, reason="user_cancelled")


@pytest.mark.parametrize("lines", [(), (("sku-a", 0),), (("sku-a", -1),), (("", 1),),
                                   (("sku-a", 1), ("sku-a", 2)), (("sku-a", 1.0),),
                                   (("sku-a", True),), (("sku-a",),), "sku-a", None])
def test_bad_lines_are_invalid(lines):
    """No lines, qty < 1 or not an int, an empty or repeated sku are InvalidCommand."""
    order().when(start(lines=lines)).then_rejected(InvalidCommand)


@pytest.mark.parametrize("deadline", [NOW, NOW - 1])
def test_a_deadline_not_after_now_is_invalid(deadline):
    """A checkout must leave time to pay."""
    order().when(start(deadline=deadline)).then_rejected(InvalidCommand)


# --- try -------------------------------------------------------------------------------


def test_a_successful_try_places_the_order_with_its_amounts():
    """The try's unit prices give the subtotal; the coupon takes its value off the total."""
    outcome = order(started()).when(record_try()).then(placed())
    state = outcome.state
    assert (state.status, state.subtotal_cents, state.discount_cents, state.total_cents) == \
        ("placed", 5_500, 500, 5_000)


def test_the_discount_is_at_most_the_subtotal():
    """A coupon worth more than the order makes it free, never negative."""
    order(started()).when(record_try(coupon_value=9_000)) \
        .then(placed(discount=SUBTOTAL))


def test_without_a_coupon_there_is_no_discount():
    """An order without a coupon ignores any coupon value the try reports."""
    order(started(coupon="")).when(record_try(coupon_value=500)).then(placed(discount=0))


def test_price_lists_from_the_wire_are_recorded_as_tuples():
    """Unit prices that crossed a msgpack wire as lists are recorded as tuples."""
    order(started()).when(record_try(prices=[[1_000, 1_500], [3_000]])).then(placed())


@pytest.mark.parametrize("past", [(placed(),), (placed(), captured())])
def test_a_repeated_try_decides_nothing(past):
    """A retried try of a placed (or paid) order is a no-op."""
    order(started(), *past).when(record_try(now=NOW + 20)).then()


def test_a_repeated_try_at_other_prices_is_invalid():
    """A placed order cannot be re-priced by a second try."""
    order(started(), placed()).when(record_try(prices=((1, 1), (1,)))) \
        .then_rejected(InvalidCommand)


@pytest.mark.parametrize("past", [(started(), cancelled(was_placed=False)),
                                  (voided("try_failed"),)])
def test_a_try_after_cancel_is_order_cancelled(past):
    """A try that completes after the order was cancelled (or voided) is OrderCancelled."""
    order(*past).when(record_try()).then_rejected(OrderCancelled, order_id=ORDER)


def test_a_try_before_start_is_refused():
    """A try for an order never started is OrderNotStarted."""
    order().when(record_try()).then_rejected(OrderNotStarted, order_id=ORDER)


@pytest.mark.parametrize("prices", [((1_000, 1_500),), ((1_000,), (3_000,)),
                                    ((1_000, 1_500), (3_000,), (1,)), ((1_000, 1.5), (3_000,)),
                                    ((1_000, -1), (3_000,)), ((1_000, True), (3_000,)),
                                    "prices", ((1_000, 1_500), 3_000)])
def test_a_try_of_the_wrong_shape_is_invalid(prices):
    """Unit prices must match the lines: one tuple per line, one int >= 0 per unit."""
    order(started()).when(record_try(prices=prices)).then_rejected(InvalidCommand)


# --- cancel ----------------------------------------------------------------------------


@pytest.mark.parametrize("past, was_placed", [((started(),), False),
                                              ((started(), placed()), True)])
def test_a_trying_or_placed_order_can_be_cancelled(past, was_placed):
    """Cancelling a trying or placed order cancels it, saying whether it was placed."""
    outcome = order(*past).when(cancel()).then(cancelled(was_placed=was_placed))
    assert outcome.state.status == "cancelled"


def test_cancel_before_start_voids_the_order():
    """A cancel that arrives before the start records a tombstone."""
    outcome = order().when(cancel("try_failed")).then(voided("try_failed"))
    assert outcome.state.status == "voided"


@pytest.mark.parametrize("past", [(voided(),), (started(), cancelled(was_placed=False)),
                                  (started(), placed(), cancelled())])
def test_cancelling_again_decides_nothing(past):
    """A repeated cancel is a no-op."""
    order(*past).when(cancel("other")).then()


def test_a_paid_order_cannot_be_cancelled():
    """Cancelling a paid order is OrderAlreadyPaid."""
    order(started(), placed(), captured()).when(cancel()) \
        .then_rejected(OrderAlreadyPaid, order_id=ORDER)


# --- payment ---------------------------------------------------------------------------


def test_paying_the_total_pays_the_order():
    """A placed order paid exactly its total before its deadline is paid."""
    outcome = order(started(), placed()).when(pay()).then(captured())
    assert (outcome.state.status, outcome.state.captured_cents) == ("paid", TOTAL)


def test_paying_the_wrong_amount_is_a_mismatch():
    """A payment of anything but the total is PaymentMismatch."""
    order(started(), placed()).when(pay(amount=TOTAL - 1)) \
        .then_rejected(PaymentMismatch, order_id=ORDER, expected=TOTAL, got=TOTAL - 1)


def test_the_same_payment_again_decides_nothing():
    """A repeated payment callback is a no-op."""
    order(started(), placed(), captured()).when(pay(now=NOW + 99)).then()


def test_a_second_payment_of_a_paid_order_is_refunded_once():
    """Another payment for a paid order is refunded as a duplicate, once."""
    past = (started(), placed(), captured())
    outcome = order(*past).when(pay("p2")).then(refunded("p2", reason="duplicate_payment"))
    assert outcome.state.refunded_cents == TOTAL and outcome.state.captured_cents == TOTAL
    order(*past, refunded("p2", reason="duplicate_payment")).when(pay("p2")).then()


@pytest.mark.parametrize("past", [(started(), cancelled(was_placed=False)),
                                  (started(), placed(), cancelled()), (voided(),),
                                  (started(), placed(), cancelled("payment_timeout"))])
def test_a_payment_after_cancel_is_refunded_not_paid(past):
    """A payment landing on a cancelled or voided order is refunded; the order stays cancelled."""
    outcome = order(*past).when(pay(amount=123)).then(refunded(amount=123))
    assert outcome.state.status in ("cancelled", "voided")
    order(*past, refunded(amount=123)).when(pay(amount=123)).then()


def test_a_payment_before_the_try_completes_is_refunded():
    """A payment for an order still trying is refunded; the order keeps trying."""
    outcome = order(started()).when(pay(amount=700)).then(refunded(amount=700))
    assert outcome.state.status == "trying"
    order(started(), refunded(amount=700), placed()).when(pay(amount=700)).then()


def test_a_payment_for_an_unknown_order_is_refunded():
    """A payment for an order never started is refunded, not lost."""
    order().when(pay(amount=700)).then(refunded(amount=700, reason="unknown_order"))


@pytest.mark.parametrize("now", [DEADLINE, DEADLINE + 1])
def test_a_payment_at_or_after_the_deadline_cancels_and_refunds(now):
    """Paid at or after its deadline, before its expiry ran, an order is cancelled as the
    expiry would have, and the payment refunded."""
    outcome = order(started(), placed()).when(pay(now=now)) \
        .then(cancelled("payment_timeout"), refunded())
    assert outcome.state.status == "cancelled" and outcome.state.captured_cents == 0


def test_a_payment_just_before_the_deadline_pays():
    """One ms before the deadline, the payment still counts."""
    order(started(), placed()).when(pay(now=DEADLINE - 1)).then(captured())


# --- expiry ----------------------------------------------------------------------------


@pytest.mark.parametrize("past, was_placed", [((started(),), False),
                                              ((started(), placed()), True)])
def test_an_unpaid_order_is_cancelled_at_its_deadline(past, was_placed):
    """At its payment deadline a trying or placed order is cancelled for payment_timeout."""
    order(*past).when(ExpireCheckout(order_id=ORDER, now=DEADLINE)) \
        .then(cancelled("payment_timeout", was_placed=was_placed))
    order(*past).when(ExpireCheckout(order_id=ORDER, now=DEADLINE - 1)).then()


@pytest.mark.parametrize("past", [(), (voided(),), (started(), placed(), captured()),
                                  (started(), cancelled(was_placed=False))])
def test_expiry_leaves_other_orders_alone(past):
    """Expiry does nothing to an order not started, voided, paid or cancelled."""
    order(*past).when(ExpireCheckout(order_id=ORDER, now=DEADLINE + 5)).then()


def test_the_timer_is_the_payment_deadline_while_unpaid():
    """A start sets a timer at the deadline; it is due while trying or placed only."""
    assert deadline_of(started()) == DEADLINE
    assert deadline_of(placed()) is None
    assert next_deadline(order(started()).state) == DEADLINE
    assert next_deadline(order(started(), placed()).state) == DEADLINE
    assert next_deadline(order(started(), placed(), captured()).state) is None
    assert next_deadline(order(started(), cancelled()).state) is None
    assert next_deadline(order_decider.initial(ORDER)) is None
    assert expire(ORDER, 5) == ExpireCheckout(order_id=ORDER, now=5)
    assert order_decider.expire is expire


# --- malformed commands, wire names, snapshots -------------------------------------------


@pytest.mark.parametrize("command", [
    start(order=""), start(user=""), start(now=1.5), start(deadline=True),
    record_try(coupon_value=-1), cancel(reason=""), pay(pid=""), pay(amount=-5),
    pay(amount=2**64), ExpireCheckout(order_id=ORDER, now=None), start(order="o2"),
    "not a command",
])
def test_malformed_commands_are_invalid(command):
    """Wrong types, negative money, empty ids or reasons, or another order's command are
    InvalidCommand."""
    result = order_decider.decide(command, order_decider.initial(ORDER))
    assert isinstance(result, InvalidCommand), result


def test_every_event_is_loggable_under_its_wire_name():
    """Each event encodes under its orders.* wire name into a canonical payload."""
    events = [started(), placed(), voided(), cancelled(), captured(), refunded()]
    names = [registry.encode(e)[0] for e in events]
    assert names == ["orders.checkout_started", "orders.order_placed", "orders.order_voided",
                     "orders.checkout_cancelled", "orders.payment_captured",
                     "orders.refund_issued"]
    for event in events:
        name, _, data = registry.encode(event)
        canonical(data, name)


def test_every_command_and_event_is_about_the_order():
    """The entity of every command and event is its order id."""
    assert order_decider.entity_of(start()) == ORDER == order_decider.entity_of(refunded())
    assert order_decider.kind == "order"


def test_state_pickles_compactly_and_equal():
    """A folded state survives a pickle round trip unchanged (shard snapshots)."""
    state = order(started(), placed(), captured(), refunded("p2", reason="duplicate_payment")).state
    assert pickle.loads(pickle.dumps(state)) == state


# --- a paid order refunded as a whole ------------------------------------------------------


def refund_order(reason: str = "hold_expired", now: int = NOW + 5) -> RefundOrder:
    return RefundOrder(order_id=ORDER, reason=reason, now=now)


def test_a_paid_order_whose_holds_ran_out_is_refunded_all_it_captured():
    """Given a paid order, when the checkout refunds it (its hold ran out and could not be
    taken again), then the whole captured payment goes back and the order is refunded."""
    outcome = order(started(), placed(), captured()).when(refund_order()).then(
        OrderRefunded(order_id=ORDER, payment_id="p1", amount_cents=TOTAL, reason="hold_expired"))
    state = outcome.state
    assert (state.status, state.refunded_cents, state.refunds["p1"]) == ("refunded", TOTAL, TOTAL)


def test_refunding_a_refunded_order_again_decides_nothing_and_a_late_payment_is_refunded():
    """A repeat of the refund decides nothing; another payment is refunded on its own."""
    past = (started(), placed(), captured(),
            OrderRefunded(order_id=ORDER, payment_id="p1", amount_cents=TOTAL,
                          reason="hold_expired"))
    order(*past).when(refund_order(reason="other")).then()
    order(*past).when(pay("p1")).then()
    order(*past).when(pay("p2")).then(refunded("p2"))


@pytest.mark.parametrize("past", [(), (started(),), (started(), placed()),
                                  (started(), placed(), cancelled())])
def test_only_a_paid_order_can_be_refunded_as_a_whole(past):
    """An order not paid is cancelled, never refunded: OrderNotPaid."""
    order(*past).when(refund_order()).then_rejected(OrderNotPaid, order_id=ORDER)
# --- member points ---------------------------------------------------------------------


def test_points_redeemed_on_the_order_take_their_value_off_the_total():
    """Points held on the member are recorded first, then the order is placed for the
    subtotal minus the coupon minus the points' value; it must be paid exactly that."""
    from saleday.actors.order import PointsApplied
    try_ = RecordTry(order_id=ORDER, line_prices=PRICES, coupon_value_cents=500, now=NOW + 1,
                     points=700, points_cents=700)
    then = order(started()).when(try_).then(
        PointsApplied(order_id=ORDER, points=700, points_cents=700),
        OrderPlaced(order_id=ORDER, user=USER, line_prices=PRICES, subtotal_cents=SUBTOTAL,
                    discount_cents=500, total_cents=SUBTOTAL - 500 - 700))
    assert then.state.points == 700
    order(started(), PointsApplied(order_id=ORDER, points=700, points_cents=700),
          OrderPlaced(order_id=ORDER, user=USER, line_prices=PRICES, subtotal_cents=SUBTOTAL,
                      discount_cents=500, total_cents=SUBTOTAL - 1_200)) \
        .when(pay(amount=TOTAL)).then_rejected(PaymentMismatch)


def test_points_worth_more_than_what_is_left_to_pay_are_refused():
    """The points can take the total to zero, never below; points without a value (or a
    value without points) are malformed."""
    for points, cents in ((5_001, 5_001), (1, 0), (0, 1)):
        order(started()).when(RecordTry(order_id=ORDER, line_prices=PRICES,
                                        coupon_value_cents=500, now=NOW + 1, points=points,
                                        points_cents=cents)).then_rejected(InvalidCommand)
