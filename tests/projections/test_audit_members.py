"""The audit's member, price and presale rules: a log the system wrote passes them all,
and a hand-written log that breaks one is named by that rule."""

from __future__ import annotations

import asyncio

import pytest

from saleday.actors.member import ChangeTier, RedeemPoints
from saleday.actors.presale import OpenPresale, PayBalance, PayDeposit
from saleday.actors.price import SetPrice
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.cluster.local import LocalShards
from saleday.events import Tail, open_store, registry
from saleday.flows.checkout import Checkout
from saleday.flows.points import PointsEarning
from saleday.flows.presale_stock import PresaleStockFollower
from saleday.flows.protection import PriceProtection
from tests.projections.audit_logs import DAY, T0, audit, write

MEMBER_RULES = ("members.history", "members.tiers", "members.points", "members.protection",
                "prices.history", "presales.windows", "presales.money", "presales.stock",
                "presales.sku_holds")


def member_day(url: str) -> None:
    """Tiers, a checkout with an e-invoice, points earned and redeemed, a price drop refunded
    by the protection flow, and a presale with a paid, an unpaid and a forfeited deposit."""
    store = open_store(url)
    clock = {"now": T0}
    shards = LocalShards(store, {"sku": 1, "order": 1, "session": 1, "member": 1, "price": 1,
                                 "presale": 1}, partitions=8, clock=lambda: clock["now"],
                         autoflush=True)

    async def run() -> None:
        await shards.submit_many([
            AddStock(sku="sku-1", qty=10, now=T0),
            ConfigureSale(sku="sku-1", tiers=((0, 9_900),), per_user_limit=0, start=T0,
                          end=T0 + 400 * DAY, now=T0),
            SetPrice(sku="sku-1", price_cents=9_900, now=T0),
            AddStock(sku="pre-1", qty=10, now=T0),
            ChangeTier(user="ann", tier="diamond", rule="test", now=T0),
            OpenPresale(sku="pre-1", units=10, deposit_cents=5_000, deposit_value_cents=15_000,
                        price_cents=39_900, deposits_from=T0, balance_from=T0 + 2 * DAY,
                        balance_until=T0 + 3 * DAY, now=T0)])
        checkout = Checkout(shards)
        clock["now"] = T0 + 1
        placed = await checkout.place(order_id="o-1", user="ann", lines=(("sku-1", 2),),
                                      now=T0 + 1, invoice=("electronic", "ACME", "9131"))
        await checkout.payment_succeeded(order_id="o-1", payment_id="p-1",
                                         amount_cents=placed.total_cents, now=T0 + 2)
        await shards.submit_many([PayDeposit(sku="pre-1", deposit_id=f"d{i}", user=f"u{i}",
                                             qty=2, now=T0 + 5) for i in range(3)])
        clock["now"] = T0 + DAY
        await shards.submit(SetPrice(sku="sku-1", price_cents=7_000, now=T0 + DAY))
        earning, protection = PointsEarning(), PriceProtection()
        claims = []
        tail = Tail(store)
        while batch := tail.poll():
            for env in batch:
                event = registry.decode(env)
                earning.observe(env, event)
                claims += protection.observe(env, event)
        for cid, command in [*earning.claims(), *claims]:
            await shards.submit(command, command_id=cid)
        await shards.submit(RedeemPoints(user="ann", redemption_id="r1", points=100,
                                         now=T0 + DAY))
        clock["now"] = T0 + 2 * DAY + 1
        await shards.submit(PayBalance(sku="pre-1", deposit_id="d0", payment_id="b0",
                                       amount_cents=2 * 24_900, now=T0 + 2 * DAY + 1))
        clock["now"] = T0 + 3 * DAY
        shards.tick()
        await PresaleStockFollower(store, shards).run_once()   # the deposits' units on pre-1

    try:
        asyncio.run(run())
    finally:
        store.close()


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('members')}/events.db"
    member_day(url)
    return url


def test_a_log_of_members_prices_and_presales_passes_every_rule(day):
    """The system's own log holds every new invariant, and each new rule examined events."""
    report = audit(day)
    assert report.ok, [str(f) for f in report.findings[:10]]
    for kind in ("members.invoice_chosen", "members.points_earned", "members.points_redeemed",
                 "members.price_protection_refunded", "members.tier_changed",
                 "prices.price_changed", "presales.balance_paid", "presales.deposit_forfeited"):
        assert report.types.get(kind, 0) > 0, kind
    for rule in MEMBER_RULES:
        if rule != "members.history":
            assert report.rules[rule]["checks"] > 0, rule


MEMBER, PRICE, PRESALE = "member-000", "price-000", "presale-000"


def earned(points: int = 50, ref: str = "o1", invoice: str = "none") -> tuple:
    return (MEMBER, "members.points_earned", {"user": "ann", "order_ref": ref,
                                              "amount_cents": points * 100, "invoice": invoice,
                                              "points": points, "earned_at": T0,
                                              "expires_at": T0 + DAY})


def refund(cents: int) -> tuple:
    return (MEMBER, "members.price_protection_refunded",
            {"user": "ann", "order_ref": "o1", "sku": "A1", "unit_prices": [1000],
             "price_cents": 700, "refund_cents": cents, "tier": "diamond", "dropped_at": T0})


def taken_back(points: int, ref: str = "o1") -> tuple:
    return (MEMBER, "members.points_taken_back", {"user": "ann", "order_ref": ref,
                                                  "earned": 50, "points": points,
                                                  "reason": "hold_expired",
                                                  "taken_back_at": T0 + 2})


OPENED = (PRESALE, "presales.presale_opened",
          {"sku": "p", "units": 5, "deposit_cents": 100, "deposit_value_cents": 300,
           "price_cents": 1000, "deposits_from": T0, "balance_from": T0 + DAY,
           "balance_until": T0 + 2 * DAY})


SKU_P = "sku-000"
SKU_P_HOLD = [(SKU_P, "inventory.stock_added", {"sku": "p", "qty": 5}),
              (SKU_P, "inventory.stock_set_aside", {"sku": "p", "hold_id": "presale/d1",
                                                   "user": "u", "qty": 1, "set_aside_at": T0})]
"""Deposit d1's unit set aside on SKU p, as flows/presale_stock.py does it."""


def deposit(did: str = "d1", at: int = T0 + 1) -> tuple:
    return (PRESALE, "presales.deposit_paid", {"sku": "p", "deposit_id": did, "user": "u",
                                               "qty": 1, "deposit_cents": 100, "paid_at": at})


@pytest.mark.parametrize("rule,events", [
    ("members.points", [earned(), (MEMBER, "members.points_redeemed", {
        "user": "ann", "redemption_id": "r", "points": 60, "taken": [["o1", 60]],
        "redeemed_at": T0 + 1})]),
    ("members.points", [earned(), (MEMBER, "members.points_redeemed", {
        "user": "ann", "redemption_id": "r", "points": 10, "taken": [["o1", 10]],
        "redeemed_at": T0 + DAY})]),
    ("members.points", [earned(51, invoice="electronic")]),
    ("members.points", [earned(), (MEMBER, "members.points_held", {
        "user": "ann", "hold_id": "o9", "points": 60, "taken": [["o1", 60, T0 + DAY]],
        "held_at": T0 + 1, "until": T0 + 2})]),
    ("members.points", [earned(), (MEMBER, "members.points_held", {
        "user": "ann", "hold_id": "o9", "points": 30, "taken": [["o1", 30, T0 + DAY]],
        "held_at": T0 + 1, "until": T0 + 2}), (MEMBER, "members.points_redeemed", {
        "user": "ann", "redemption_id": "o9", "points": 40, "taken": [["o1", 40]],
        "redeemed_at": T0 + 2})]),
    ("members.points", [earned(), taken_back(40)]),
    ("members.points", [earned(), taken_back(50), taken_back(0)]),
    ("members.points", [taken_back(0), earned()]),
    ("members.protection", [taken_back(0), refund(300)]),
    ("members.protection", [refund(300), refund(300)]),
    ("members.protection", [refund(400)]),
    ("members.tiers", [(MEMBER, "members.tier_changed", {"user": "ann", "previous": "gold",
                                                         "tier": "diamond", "rule": "r",
                                                         "changed_at": T0})]),
    ("prices.history", [(PRICE, "prices.price_changed", {"sku": "A1", "previous_cents": 5,
                                                         "price_cents": 4, "changed_at": T0})]),
    ("presales.windows", [OPENED, deposit(at=T0 + DAY)]),
    ("presales.windows", [OPENED, deposit(), (PRESALE, "presales.deposit_forfeited", {
        "sku": "p", "deposit_id": "d1", "qty": 1, "deposit_cents": 100,
        "forfeited_at": T0 + DAY})]),
    ("presales.money", [OPENED, deposit(), (PRESALE, "presales.balance_paid", {
        "sku": "p", "deposit_id": "d1", "payment_id": "x", "qty": 1, "balance_cents": 900,
        "paid_at": T0 + DAY})]),
    ("presales.stock", [OPENED, deposit()]),
    ("presales.stock", [OPENED, deposit(), *SKU_P_HOLD, (PRESALE, "presales.balance_paid", {
        "sku": "p", "deposit_id": "d1", "payment_id": "x", "qty": 1, "balance_cents": 700,
        "paid_at": T0 + DAY + 1})]),
    ("presales.stock", [OPENED, *SKU_P_HOLD]),   # set aside, no deposit, never returned
    ("presales.sku_holds", [*SKU_P_HOLD, (SKU_P, "inventory.set_aside_sold", {
        "sku": "p", "hold_id": "presale/d1", "user": "u", "qty": 1, "sold_at": T0 + 3}),
        (SKU_P, "inventory.set_aside_returned", {
        "sku": "p", "hold_id": "presale/d1", "user": "u", "qty": 1, "reason": "",
        "returned_at": T0 + 4})]),
    ("stock.oversell", [(SKU_P, "inventory.stock_added", {"sku": "p", "qty": 1}),
                        (SKU_P, "inventory.stock_set_aside", {
                            "sku": "p", "hold_id": "h", "user": "u", "qty": 2,
                            "set_aside_at": T0})]),
])
def test_a_broken_member_price_or_presale_log_is_named_by_its_rule(tmp_path, rule, events):
    """Points spent beyond or after their lot, a take-back of other than what its lot holds,
    twice, or followed by earning or a protection refund for the refunded order, a doubled
    refund, a refund above the drop, a
    tier or price out of order, a deposit or forfeit out of its window, a wrong balance, a
    deposit whose units are not set aside on its SKU or stay set aside once paid through,
    units set aside for a deposit never recorded and not returned, a hold sold then
    returned, a set-aside beyond the shelf."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, events)
    report = audit(url)
    assert rule in {f.rule for f in report.findings}, [str(f) for f in report.findings]


def test_a_refunded_orders_points_taken_back_pass(tmp_path):
    """Earned 50, 20 spent, the 30 left of the lot taken back: the ledger adds up."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [earned(), (MEMBER, "members.points_redeemed", {
        "user": "ann", "redemption_id": "r", "points": 20, "taken": [["o1", 20]],
        "redeemed_at": T0 + 1}), taken_back(30)])
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings]


def test_units_set_aside_before_their_deposit_or_returned_without_one_pass(tmp_path):
    """The deposit flow's order (flows/presale.py): the set-aside first, then the deposit;
    and a deposit the presale refused, whose units were set aside and returned."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [OPENED, *SKU_P_HOLD, deposit(),
                (SKU_P, "inventory.stock_set_aside", {"sku": "p", "hold_id": "presale/d2",
                                                      "user": "v", "qty": 2,
                                                      "set_aside_at": T0 + 2}),
                (SKU_P, "inventory.set_aside_returned", {
                    "sku": "p", "hold_id": "presale/d2", "user": "v", "qty": 2,
                    "reason": "presale_closed", "returned_at": T0 + 2})])
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings]
    # the deposit as recorded, its units at the end, and d2's units returned without one
    assert report.rules["presales.stock"]["checks"] == 3


def test_a_protection_refund_on_an_order_later_refunded_as_a_whole_is_named(tmp_path):
    """Given a paid order whose line got a protection refund and which was then refunded as
    a whole, members.protection names the refund: the two pay back more than captured."""
    order = "order-000"
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [
        (order, "orders.checkout_started", {"order_id": "o1", "user": "ann",
                                            "lines": [["A1", 1]], "coupon_id": "",
                                            "payment_deadline": T0 + 60_000,
                                            "started_at": T0 - 10}),
        (order, "orders.order_placed", {"order_id": "o1", "user": "ann",
                                        "line_prices": [[1000]], "subtotal_cents": 1000,
                                        "discount_cents": 0, "total_cents": 1000}),
        (order, "orders.payment_captured", {"order_id": "o1", "payment_id": "p1",
                                            "amount_cents": 1000}),
        (PRICE, "prices.price_changed", {"sku": "A1", "previous_cents": 0,
                                         "price_cents": 700, "changed_at": T0}),
        refund(300),
        (order, "orders.order_refunded", {"order_id": "o1", "payment_id": "p1",
                                          "amount_cents": 1000, "reason": "hold_expired"}),
    ])
    report = audit(url)
    assert any(f.rule == "members.protection" and "refunded as a whole" in f.message
               for f in report.findings), [str(f) for f in report.findings]
