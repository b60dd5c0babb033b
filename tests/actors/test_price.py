"""The price decider: each change of a SKU's list price is an event, in time order."""

from __future__ import annotations

from saleday.actors.decider import InvalidCommand
from saleday.actors.price import PriceChanged, SetPrice, price_decider
from saleday.events.registry import registry
from tests.actors.given import given

SKU = "sku-1"


def test_a_price_change_records_the_previous_price():
    """Setting a price records what it was and what it is now."""
    given(price_decider).when(SetPrice(sku=SKU, price_cents=9_900, now=5)).then(
        PriceChanged(sku=SKU, previous_cents=0, price_cents=9_900, changed_at=5))
    given(price_decider, PriceChanged(sku=SKU, previous_cents=0, price_cents=9_900,
                                      changed_at=5)) \
        .when(SetPrice(sku=SKU, price_cents=7_000, now=9)) \
        .then(PriceChanged(sku=SKU, previous_cents=9_900, price_cents=7_000, changed_at=9))


def test_the_same_price_decides_nothing_and_backdating_or_zero_is_refused():
    """A repeat is no change; a change before the last one, or a price of 0, is invalid."""
    set_ = PriceChanged(sku=SKU, previous_cents=0, price_cents=9_900, changed_at=5)
    given(price_decider, set_).when(SetPrice(sku=SKU, price_cents=9_900, now=6)).then()
    given(price_decider, set_).when(SetPrice(sku=SKU, price_cents=1, now=4)) \
        .then_rejected(InvalidCommand)
    given(price_decider).when(SetPrice(sku=SKU, price_cents=0, now=4)) \
        .then_rejected(InvalidCommand)


def test_price_changes_are_logged_as_prices_price_changed():
    """The event's wire name is stable."""
    assert registry.encode(PriceChanged(sku=SKU, previous_cents=0, price_cents=1,
                                        changed_at=0))[0] == "prices.price_changed"
