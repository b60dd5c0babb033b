"""The order lifecycle that the order decider and the user's session share."""

from __future__ import annotations

import pickle

from saleday.actors.lifecycle import BY_VALUE, NEXT, OPEN, TRACKED, TRACKED_NEXT, OrderStatus
from saleday.actors.order import StartCheckout, order_decider
from saleday.actors.session import (
    OrderStatusChanged,
    TrackOrder,
    session_decider,
)
from saleday.events.chain import canonical
from saleday.events.registry import registry
from tests.actors.given import given


def test_the_session_sees_the_lifecycle_from_placed_on():
    """What a session lets a tracked order move to is the lifecycle restricted to the
    statuses a user sees, entered at placed (the table the session used to spell out)."""
    assert {k.value: tuple(v.value for v in vs) for k, vs in TRACKED_NEXT.items()} == {
        "": ("placed",), "placed": ("paid", "cancelled"), "paid": ("refunded",),
        "cancelled": ("refunded",), "refunded": ()}


def test_orders_move_forward_only():
    """No status can be reached again from where it leads (the lifecycle has no cycle)."""
    def reachable(status: OrderStatus) -> set[OrderStatus]:
        out: set[OrderStatus] = set()
        todo = list(NEXT[status])
        while todo:
            s = todo.pop()
            if s not in out:
                out.add(s)
                todo.extend(NEXT[s])
        return out

    assert all(s not in reachable(s) for s in OrderStatus)
    assert set(NEXT) == set(OrderStatus)


def test_open_orders_are_trying_or_placed():
    """The checkouts a cancel or a deadline can still end are the trying and placed ones."""
    assert OPEN == {OrderStatus.TRYING, OrderStatus.PLACED}
    assert set(TRACKED) == {OrderStatus.PLACED, OrderStatus.PAID, OrderStatus.CANCELLED,
                            OrderStatus.REFUNDED}


def test_a_status_read_back_as_a_plain_string_acts_as_the_member():
    """A status that came back as its plain string (a payload, a snapshot) compares,
    hashes, matches and formats as the member."""
    for status in OrderStatus:
        plain = str(status)
        assert type(plain) is str and plain == status and hash(plain) == hash(status)
        assert BY_VALUE[plain] is status and f"{status}" == plain
        assert TRACKED_NEXT.get(plain) == TRACKED_NEXT.get(status)
    match "placed":
        case OrderStatus.PLACED:
            pass
        case _:
            raise AssertionError("a plain string did not match its member")


def test_payloads_carry_plain_strings():
    """A tracked status goes into the log as the plain string the command carried."""
    events = (given(session_decider).when(TrackOrder(user="u", order_id="o", status="placed",
                                                     amount_cents=1, now=5)).events)
    assert events == [OrderStatusChanged(user="u", order_id="o", status="placed",
                                         amount_cents=1, at=5)]
    _, _, payload = registry.encode(events[0])
    assert type(payload["status"]) is str
    assert canonical(payload) == payload


def test_a_status_member_in_a_command_is_refused_before_the_log():
    """A command carrying a status member, not its plain string, is malformed: the log's
    encoding would refuse a str subclass in a payload."""
    result = session_decider.decide(
        TrackOrder(user="u", order_id="o", status=OrderStatus.PLACED, amount_cents=1, now=5),
        session_decider.initial("u"))
    assert result.code == "invalid_command" and "must be a str" in result.reason


def test_an_order_state_holds_the_member_and_pickles_it():
    """An order's state holds an `OrderStatus`, and a snapshot round trip keeps it."""
    state = given(order_decider).when(StartCheckout(
        order_id="o", user="u", lines=(("a", 1),), coupon_id="", payment_deadline=99,
        now=5)).state
    assert state.status is OrderStatus.TRYING
    assert pickle.loads(pickle.dumps(state)).status is OrderStatus.TRYING
