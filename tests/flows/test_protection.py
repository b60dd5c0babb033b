"""Following the log for price protection: each (paid line, later drop) pair is claimed once,
once the paid order is settled (never while it may still be refunded as a whole)."""

from __future__ import annotations

from types import SimpleNamespace

from saleday.actors.member import DAY_MS
from saleday.actors.order import CheckoutStarted, OrderPlaced, OrderRefunded, PaymentCaptured
from saleday.actors.price import PriceChanged
from saleday.actors.session import OrderStatusChanged
from saleday.flows.protection import PriceProtection

T0 = 1_762_790_400_000


def env(stream: str, version: int, at: int) -> SimpleNamespace:
    return SimpleNamespace(stream=stream, version=version, recorded_at=at)


ORDER = [
    (env("order-000", 1, T0), CheckoutStarted(order_id="o1", user="alice",
                                              lines=(("sku-1", 2), ("sku-2", 1)), coupon_id="",
                                              payment_deadline=T0 + 60_000, started_at=T0)),
    (env("order-000", 2, T0), OrderPlaced(order_id="o1", user="alice",
                                          line_prices=((4_950, 9_900), (500,)),
                                          subtotal_cents=15_350, discount_cents=0,
                                          total_cents=15_350)),
    (env("order-000", 3, T0 + 5), PaymentCaptured(order_id="o1", payment_id="p1",
                                                  amount_cents=15_350)),
]
SETTLED = (env("session-000", 9, T0 + 6), OrderStatusChanged(user="alice", order_id="o1",
                                                             status="paid", amount_cents=15_350,
                                                             at=T0 + 6))
ORDER.append(SETTLED)
DROP = (env("price-000", 2, T0 + DAY_MS),
        PriceChanged(sku="sku-1", previous_cents=9_900, price_cents=7_000,
                     changed_at=T0 + DAY_MS))


def claims_of(events) -> list:
    rules = PriceProtection()
    return [c for e, ev in events for c in rules.observe(e, ev)]


def test_a_drop_after_payment_claims_the_line_whatever_order_the_streams_are_read_in():
    """The pair is claimed when its second half arrives, payment first or drop first."""
    after = claims_of([*ORDER, DROP])
    before = claims_of([DROP, *ORDER])
    assert after == before
    ((cid, claim),) = after
    assert cid == "protect:o1:sku-1:price-000:2"
    assert (claim.user, claim.order_ref, claim.sku, claim.unit_prices, claim.paid_at,
            claim.price_cents, claim.dropped_at) == ("alice", "o1", "sku-1", (4_950, 9_900),
                                                     T0 + 5, 7_000, T0 + DAY_MS)


def test_rises_drops_before_payment_and_drops_past_every_period_claim_nothing():
    """Only a drop at or after the payment, within the longest period, below a unit, counts."""
    rise = (env("price-000", 3, T0 + DAY_MS), PriceChanged(sku="sku-1", previous_cents=7_000,
                                                           price_cents=12_000,
                                                           changed_at=T0 + DAY_MS))
    early = (env("price-000", 1, T0), PriceChanged(sku="sku-1", previous_cents=12_000,
                                                   price_cents=1, changed_at=T0))
    late = (env("price-000", 4, T0 + 400 * DAY_MS),
            PriceChanged(sku="sku-1", previous_cents=12_000, price_cents=1,
                         changed_at=T0 + 400 * DAY_MS))
    shallow = (env("price-001", 1, T0 + DAY_MS), PriceChanged(sku="sku-2", previous_cents=900,
                                                              price_cents=500,
                                                              changed_at=T0 + DAY_MS))
    assert claims_of([*ORDER, rise, early, late, shallow]) == []


def test_a_request_claims_each_line_of_a_paid_order_at_the_current_price():
    """On request, every line of the order is claimed against its SKU's latest price."""
    rules = PriceProtection()
    for e, ev in [*ORDER, DROP]:
        rules.observe(e, ev)
    ((cid, claim),) = rules.on_request("o1")     # sku-2 has no price in the log
    assert cid.startswith("protect-request:o1:sku-1:") and claim.price_cents == 7_000
    assert rules.on_request("o-unknown") == []


REFUND = (env("order-000", 4, T0 + 10), OrderRefunded(order_id="o1", payment_id="p1",
                                                     amount_cents=15_350, reason="hold_expired"))


def test_a_refunded_order_is_protected_no_more():
    """Once the order is refunded as a whole, neither a later drop nor a request claims it."""
    rules = PriceProtection()
    assert [c for e, ev in [*ORDER, REFUND, DROP] for c in rules.observe(e, ev)] == []
    assert rules.on_request("o1") == []
    assert rules.lines == {"sku-1": [], "sku-2": []}


def test_a_paid_order_is_protected_only_once_settled_in_whichever_order_the_streams_come():
    """A drop reaching an order paid but not yet settled claims nothing until the session
    records it paid; the settle read before the payment claims the same."""
    unsettled = ORDER[:-1]
    assert claims_of([*unsettled, DROP]) == []
    assert claims_of([*unsettled, DROP, SETTLED]) == claims_of([*ORDER, DROP])
    assert claims_of([SETTLED, DROP, *unsettled]) == claims_of([*ORDER, DROP])


def test_an_order_refunded_before_it_settled_is_never_protected():
    """Given an order paid, then a drop, then its refund as a whole (a hold ran out before
    its confirm), no claim is made: a protection refund would pay back more than the
    payment captured, on top of the order's refund."""
    rules = PriceProtection()
    seen = [c for e, ev in [*ORDER[:-1], DROP, REFUND] for c in rules.observe(e, ev)]
    assert seen == [] and rules.on_request("o1") == []
