"""The member decider: order history, tier changes and the points ledger."""

from __future__ import annotations

from saleday.actors.decider import InvalidCommand
from saleday.actors.member import (
    DAY_MS,
    PROTECTION_DAYS,
    ChangeTier,
    ChooseInvoice,
    ClaimPriceProtection,
    EarnPoints,
    ExpirePoints,
    InsufficientPoints,
    InvoiceChosen,
    NotProtected,
    OrderRecorded,
    PointsEarned,
    PointsExpired,
    PointsRedeemed,
    PriceProtectionRefunded,
    RecordOrder,
    RedeemPoints,
    TierChanged,
    deadline_of,
    expire,
    member_decider,
    next_deadline,
)
from saleday.events.chain import canonical
from saleday.events.registry import registry
from tests.actors.given import given

USER = "alice"
T0 = 1_762_790_400_000   # 2025-11-10 16:00 UTC


def record(ref: str = "o1", at: int = T0, cents: int = 12_345,
           source: str = "import") -> RecordOrder:
    return RecordOrder(user=USER, order_ref=ref, ordered_at=at, amount_cents=cents,
                       source=source, now=T0)


def recorded(ref: str = "o1", at: int = T0, cents: int = 12_345,
             source: str = "import") -> OrderRecorded:
    return OrderRecorded(user=USER, order_ref=ref, ordered_at=at, amount_cents=cents,
                         source=source)


def earn(ref: str = "o1", cents: int = 10_099, invoice: str = "none", rate: int = 1,
         days: int = 365, now: int = T0) -> EarnPoints:
    return EarnPoints(user=USER, order_ref=ref, amount_cents=cents, invoice=invoice,
                      points_per_yuan=rate, valid_days=days, now=now)


def earned(ref: str = "o1", points: int = 100, cents: int = 10_099, invoice: str = "none",
           at: int = T0, days: int = 365) -> PointsEarned:
    return PointsEarned(user=USER, order_ref=ref, amount_cents=cents, invoice=invoice,
                        points=points, earned_at=at, expires_at=at + days * DAY_MS)


def redeem(rid: str = "r1", points: int = 30, now: int = T0 + 1) -> RedeemPoints:
    return RedeemPoints(user=USER, redemption_id=rid, points=points, now=now)


# --- history ------------------------------------------------------------------------


def test_an_order_is_recorded_in_the_history():
    """Recording an order adds it to the member's history."""
    then = given(member_decider).when(record()).then(recorded())
    assert then.state.orders["o1"] == (T0, 12_345, "import")


def test_the_same_order_twice_is_recorded_once():
    """A repeated order ref with the same terms decides nothing (an import run twice)."""
    given(member_decider, recorded()).when(record()).then()


def test_another_order_under_a_known_ref_is_refused():
    """A known order ref with other terms is an invalid command, not a second order."""
    given(member_decider, recorded()).when(record(cents=1)).then_rejected(InvalidCommand)


def test_an_order_from_an_unknown_source_or_with_a_negative_amount_is_refused():
    """Only imported and checkout orders with amounts >= 0 enter the history."""
    given(member_decider).when(record(source="fax")).then_rejected(InvalidCommand)
    given(member_decider).when(record(cents=-1)).then_rejected(InvalidCommand)


# --- tiers --------------------------------------------------------------------------


def test_a_new_tier_is_recorded_with_the_one_it_replaces():
    """A tier change names the previous tier, the rule and the time."""
    then = given(member_decider).when(ChangeTier(user=USER, tier="gold", rule="r", now=T0))
    then.then(TierChanged(user=USER, previous="regular", tier="gold", rule="r", changed_at=T0))
    assert then.state.tier == "gold"


def test_the_same_tier_again_decides_nothing():
    """Changing to the tier the member already has records nothing."""
    gold = TierChanged(user=USER, previous="regular", tier="gold", rule="r", changed_at=T0)
    given(member_decider, gold).when(ChangeTier(user=USER, tier="gold", rule="r",
                                                now=T0 + 5)).then()


def test_a_tier_change_dated_before_the_last_one_is_refused():
    """Tier history is in time order, so the tier at a moment is well defined."""
    gold = TierChanged(user=USER, previous="regular", tier="gold", rule="r", changed_at=T0)
    given(member_decider, gold).when(ChangeTier(user=USER, tier="diamond", rule="r",
                                                now=T0 - 1)).then_rejected(InvalidCommand)


def test_an_unknown_tier_is_refused():
    """Only the documented tiers can be recorded."""
    given(member_decider).when(ChangeTier(user=USER, tier="platinum", rule="r", now=T0)) \
        .then_rejected(InvalidCommand)


def test_the_tier_at_a_moment_is_the_last_change_before_it():
    """A benefit reads the tier the log says the member had at that moment."""
    state = given(member_decider,
                  TierChanged(user=USER, previous="regular", tier="gold", rule="r", changed_at=T0),
                  TierChanged(user=USER, previous="gold", tier="diamond", rule="r",
                              changed_at=T0 + DAY_MS)).state
    assert [state.tier_at(t) for t in (T0 - 1, T0, T0 + DAY_MS - 1, T0 + DAY_MS)] == \
        ["regular", "gold", "gold", "diamond"]


# --- points -------------------------------------------------------------------------


def test_a_paid_order_earns_a_point_per_whole_yuan():
    """¥100.99 at one point per yuan earns 100 points, valid for the given days."""
    given(member_decider).when(earn()).then(earned())


def chosen(invoice: str, ref: str = "o1") -> InvoiceChosen:
    return InvoiceChosen(user=USER, order_ref=ref, invoice=invoice, title="ACME Ltd",
                         tax_id="91310000", chosen_at=T0 - 1)


def test_the_invoice_asked_at_checkout_is_recorded_once():
    """An invoice choice is recorded with its fields; the same again is nothing, another is
    invalid."""
    choose = ChooseInvoice(user=USER, order_ref="o1", invoice="electronic", title="ACME Ltd",
                           tax_id="91310000", now=T0 - 1)
    given(member_decider).when(choose).then(chosen("electronic"))
    given(member_decider, chosen("electronic")).when(choose).then()
    given(member_decider, chosen("paper")).when(choose).then_rejected(InvalidCommand)
    given(member_decider).when(ChooseInvoice(user=USER, order_ref="o1", invoice="ocr", title="",
                                             tax_id="", now=T0)).then_rejected(InvalidCommand)


def test_an_electronic_invoice_earns_double_points():
    """The same order with an electronic invoice earns twice the points."""
    given(member_decider, chosen("electronic")).when(earn(invoice="electronic", rate=3)) \
        .then(earned(points=600, invoice="electronic"))
    given(member_decider, chosen("paper")).when(earn(invoice="paper", rate=3)) \
        .then(earned(points=300, invoice="paper"))


def test_points_are_earned_for_the_invoice_the_order_asked_for():
    """Earning with another invoice than the one chosen (none if none was) is invalid."""
    given(member_decider).when(earn(invoice="electronic")).then_rejected(InvalidCommand)
    given(member_decider, chosen("paper")).when(earn(invoice="electronic")) \
        .then_rejected(InvalidCommand)


def test_an_order_earns_points_once():
    """Earning again for the same order ref decides nothing."""
    given(member_decider, earned()).when(earn()).then()


def test_an_order_under_one_yuan_earns_nothing():
    """Zero points are not an event."""
    given(member_decider).when(earn(cents=99)).then()


def test_an_unknown_invoice_or_validity_is_refused():
    """The invoice is none, paper or electronic; points are valid 1 to 3650 days."""
    given(member_decider).when(earn(invoice="ocr")).then_rejected(InvalidCommand)
    given(member_decider).when(earn(days=0)).then_rejected(InvalidCommand)


def test_a_redemption_takes_from_the_lot_that_expires_first():
    """Points are spent soonest-to-expire first, across lots."""
    then = given(member_decider, earned("late", 50, days=300), earned("early", 20, days=30)) \
        .when(redeem(points=30))
    then.then(PointsRedeemed(user=USER, redemption_id="r1", points=30,
                             taken=(("early", 20), ("late", 10)), redeemed_at=T0 + 1))
    assert then.state.balance == 40 and then.state.lots == (("late", 40, T0 + 300 * DAY_MS),)


def test_a_redemption_above_the_balance_is_refused():
    """The balance never goes below zero."""
    given(member_decider, earned(points=20)).when(redeem(points=21)) \
        .then_rejected(InsufficientPoints, wanted=21, balance=20)


def test_a_repeated_redemption_decides_nothing_and_another_amount_is_refused():
    """A redemption id spends once; reusing it for another amount is invalid."""
    spent = PointsRedeemed(user=USER, redemption_id="r1", points=30, taken=(("o1", 30),),
                           redeemed_at=T0 + 1)
    given(member_decider, earned(), spent).when(redeem()).then()
    given(member_decider, earned(), spent).when(redeem(points=5)).then_rejected(InvalidCommand)


def test_lapsed_points_cannot_be_redeemed_and_lapse_in_the_same_decision():
    """A redemption after a lot's expiry sees it expire first and not count."""
    lapse_at = T0 + 30 * DAY_MS
    given(member_decider, earned("a", 20, days=30), earned("b", 50, days=300)) \
        .when(redeem(points=60, now=lapse_at)) \
        .then_rejected(InsufficientPoints, wanted=60, balance=50)
    given(member_decider, earned("a", 20, days=30), earned("b", 50, days=300)) \
        .when(redeem(points=10, now=lapse_at)) \
        .then(PointsExpired(user=USER, order_ref="a", points=20, expires_at=lapse_at),
              PointsRedeemed(user=USER, redemption_id="r1", points=10, taken=(("b", 10),),
                             redeemed_at=lapse_at))


def test_expiry_lapses_what_is_left_of_each_due_lot():
    """At expiry a lot lapses with its unredeemed rest; later lots stay."""
    spent = PointsRedeemed(user=USER, redemption_id="r1", points=5, taken=(("a", 5),),
                           redeemed_at=T0 + 1)
    then = given(member_decider, earned("a", 20, days=30), spent, earned("b", 50, days=300)) \
        .when(ExpirePoints(user=USER, now=T0 + 31 * DAY_MS))
    then.then(PointsExpired(user=USER, order_ref="a", points=15, expires_at=T0 + 30 * DAY_MS))
    s = then.state
    assert (s.earned, s.redeemed, s.expired, s.balance) == (70, 5, 15, 50)


def test_the_expiry_timer_is_the_earliest_lot():
    """The host's timer fires when the first lot lapses, and issues ExpirePoints."""
    state = given(member_decider, earned("a", 20, days=300), earned("b", 5, days=30)).state
    assert next_deadline(state) == T0 + 30 * DAY_MS
    assert deadline_of(earned(days=30)) == T0 + 30 * DAY_MS
    assert deadline_of(recorded()) is None
    assert expire(USER, 7) == ExpirePoints(user=USER, now=7)
    assert next_deadline(given(member_decider, recorded()).state) is None


def test_a_command_for_another_member_is_refused():
    """A command decided against another member's state is invalid."""
    then = given(member_decider, recorded()).when(record())
    assert then.events == []
    other = RecordOrder(user="bob", order_ref="o1", ordered_at=T0, amount_cents=1,
                        source="import", now=T0)
    assert isinstance(member_decider.decide(other, then.before), InvalidCommand)


def test_every_event_is_loggable_under_its_wire_name():
    """Each member event encodes under its members.* wire name into a canonical payload."""
    events = [recorded(), TierChanged(user=USER, previous="regular", tier="gold", rule="r",
                                      changed_at=T0), earned(),
              PointsRedeemed(user=USER, redemption_id="r", points=1, taken=(("o", 1),),
                             redeemed_at=T0),
              PointsExpired(user=USER, order_ref="o", points=1, expires_at=T0)]
    assert [registry.encode(e)[0] for e in events] == [
        "members.order_recorded", "members.tier_changed", "members.points_earned",
        "members.points_redeemed", "members.points_expired"]
    for event in events:
        name, _, data = registry.encode(event)
        canonical(data, name)


# --- price protection ---------------------------------------------------------------

DIAMOND = TierChanged(user=USER, previous="regular", tier="diamond", rule="r", changed_at=T0)
PAID_AT = T0 + DAY_MS


def claim(price: int = 7_000, dropped_at: int = PAID_AT + 200 * DAY_MS,
          units=(9_900, 9_900), paid_at: int = PAID_AT, windows=PROTECTION_DAYS,
          sku: str = "sku-1") -> ClaimPriceProtection:
    return ClaimPriceProtection(user=USER, order_ref="o1", sku=sku, unit_prices=units,
                                paid_at=paid_at, price_cents=price, dropped_at=dropped_at,
                                windows=windows, now=dropped_at)


def test_a_diamond_member_gets_the_drop_refunded_within_365_days():
    """A drop 200 days after a diamond member paid refunds the drop on each unit."""
    given(member_decider, DIAMOND).when(claim()).then(PriceProtectionRefunded(
        user=USER, order_ref="o1", sku="sku-1", unit_prices=(9_900, 9_900), price_cents=7_000,
        refund_cents=5_800, tier="diamond", dropped_at=PAID_AT + 200 * DAY_MS))


def test_a_line_is_refunded_once():
    """A second drop on a refunded line is refused, however deep."""
    first = given(member_decider, DIAMOND).when(claim()).events
    given(member_decider, DIAMOND, *first).when(claim(price=1)) \
        .then_rejected(NotProtected, reason="already_refunded")
    given(member_decider, DIAMOND, *first).when(claim(sku="sku-2")).then(PriceProtectionRefunded(
        user=USER, order_ref="o1", sku="sku-2", unit_prices=(9_900, 9_900), price_cents=7_000,
        refund_cents=5_800, tier="diamond", dropped_at=PAID_AT + 200 * DAY_MS))


def test_protection_follows_the_tier_the_member_had_when_it_paid():
    """Gold protects 30 days, regular not at all; a later promotion does not reach back."""
    gold = TierChanged(user=USER, previous="regular", tier="gold", rule="r", changed_at=T0)
    given(member_decider, gold).when(claim(dropped_at=PAID_AT + 200 * DAY_MS)) \
        .then_rejected(NotProtected, reason="outside_period")
    assert given(member_decider, gold).when(claim(dropped_at=PAID_AT + 30 * DAY_MS)).events
    promoted_later = TierChanged(user=USER, previous="regular", tier="diamond", rule="r",
                                 changed_at=PAID_AT + 1)
    given(member_decider, promoted_later).when(claim()) \
        .then_rejected(NotProtected, reason="tier_not_protected")


def test_no_refund_without_a_drop_or_before_the_payment():
    """A price at or above what was paid, or a drop before paying, refunds nothing; units
    bought at different prices are refunded only what each paid above the new price."""
    given(member_decider, DIAMOND).when(claim(price=9_900)) \
        .then_rejected(NotProtected, reason="no_drop")
    given(member_decider, DIAMOND).when(claim(price=5_000, units=(4_950, 6_000))).then(
        PriceProtectionRefunded(user=USER, order_ref="o1", sku="sku-1", unit_prices=(4_950, 6_000),
                                price_cents=5_000, refund_cents=1_000, tier="diamond",
                                dropped_at=PAID_AT + 200 * DAY_MS))
    given(member_decider, DIAMOND).when(claim(dropped_at=PAID_AT - 1)) \
        .then_rejected(NotProtected, reason="outside_period")


def test_protection_periods_are_configurable_and_checked():
    """The windows name tiers and days; a malformed window is an invalid command."""
    assert given(member_decider).when(claim(windows=(("regular", 365),))).events
    given(member_decider).when(claim(windows=(("vip", 3),))).then_rejected(InvalidCommand)
    given(member_decider).when(claim(units=())).then_rejected(InvalidCommand)
    given(member_decider).when(claim(units=(-1,))).then_rejected(InvalidCommand)
