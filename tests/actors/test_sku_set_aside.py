"""The SKU's presale set-asides: a deposit's units leave the shelf for its holder, are
sold when the balance is paid, go back when the deposit is forfeited (given/when/then)."""

from __future__ import annotations

from saleday.actors.decider import InvalidCommand
from saleday.actors.sku import (
    ConfigureSale,
    ReserveStock,
    ReturnSetAside,
    SaleConfigured,
    SellSetAside,
    SetAsideNotHeld,
    SetAsideReturned,
    SetAsideSold,
    SetAsideStock,
    SoldOut,
    StockAdded,
    StockReserved,
    StockSetAside,
    UnknownSku,
    sku_decider,
)
from tests.actors.given import given

SKU = "sku-1"
HOLD = "presale/d-1"
NOW = 500   # before the flash sale's window: a presale sets aside before the sale


def set_aside(qty: int = 3, hold: str = HOLD, user: str = "alice") -> SetAsideStock:
    return SetAsideStock(sku=SKU, hold_id=hold, user=user, qty=qty, now=NOW)


def was_set_aside(qty: int = 3, hold: str = HOLD, user: str = "alice") -> StockSetAside:
    return StockSetAside(sku=SKU, hold_id=hold, user=user, qty=qty, set_aside_at=NOW)


def buckets(g) -> tuple[int, int, int, int, int]:
    s = g.state
    assert s.available + s.reserved + s.set_aside + s.sold == s.stocked
    return s.stocked, s.available, s.reserved, s.set_aside, s.sold


def test_a_deposit_sets_aside_units_off_the_shelf_before_the_sale():
    """No sale window, tier or limit applies: the units leave `available` for `set_aside`."""
    g = given(sku_decider, StockAdded(sku=SKU, qty=10))
    g.when(set_aside(3)).then(was_set_aside(3))
    assert buckets(given(sku_decider, StockAdded(sku=SKU, qty=10), was_set_aside(3))) == (
        10, 7, 0, 3, 0)


def test_set_aside_units_cannot_be_reserved_by_flash_buyers():
    """With 10 stocked and 8 set aside, a flash buyer asking for 3 finds 2."""
    g = given(sku_decider, StockAdded(sku=SKU, qty=10), was_set_aside(8),
              SaleConfigured(sku=SKU, tiers=((0, 100),), per_user_limit=0, start=1000, end=2000))
    g.when(ReserveStock(reservation_id="r", user="bob", sku=SKU, qty=3, deadline=1900,
                        now=1500)).then_rejected(SoldOut, requested=3, available=2)


def test_more_than_the_shelf_holds_is_refused_and_an_unknown_sku_too():
    """Setting aside more units than are available is refused as sold out, and an unknown SKU
    is refused too."""
    given(sku_decider, StockAdded(sku=SKU, qty=2)).when(set_aside(3)).then_rejected(
        SoldOut, requested=3, available=2)
    given(sku_decider).when(set_aside(1)).then_rejected(UnknownSku, sku=SKU)


def test_a_shelf_emptied_by_flash_buyers_leaves_nothing_to_set_aside():
    """Units flash buyers have reserved cannot be set aside: a deposit finds only what is left."""
    reserved = StockReserved(reservation_id="r", user="bob", sku=SKU, qty=9, unit_prices=(1,) * 9,
                             tiers=(0,) * 9, deadline=1900, reserved_at=1500)
    g = given(sku_decider, StockAdded(sku=SKU, qty=10),
              SaleConfigured(sku=SKU, tiers=((0, 1),), per_user_limit=0, start=1000, end=2000),
              reserved)
    g.when(set_aside(2)).then_rejected(SoldOut, requested=2, available=1)


def test_the_same_hold_again_decides_nothing_and_other_terms_are_refused():
    """Setting the same hold aside again decides nothing; the same hold with another quantity is
    invalid."""
    g = given(sku_decider, StockAdded(sku=SKU, qty=10), was_set_aside(3))
    g.when(set_aside(3)).then()
    g.when(set_aside(4)).then_rejected(InvalidCommand)


def test_a_paid_balance_sells_the_held_units_once():
    """A paid balance sells the set-aside units once; selling again decides nothing and a sold hold
    cannot be returned."""
    g = given(sku_decider, StockAdded(sku=SKU, qty=10), was_set_aside(3))
    sold = SetAsideSold(sku=SKU, hold_id=HOLD, user="alice", qty=3, sold_at=900)
    g.when(SellSetAside(sku=SKU, hold_id=HOLD, now=900)).then(sold)
    after = given(sku_decider, StockAdded(sku=SKU, qty=10), was_set_aside(3), sold)
    assert buckets(after) == (10, 7, 0, 0, 3)
    after.when(SellSetAside(sku=SKU, hold_id=HOLD, now=901)).then()
    after.when(ReturnSetAside(sku=SKU, hold_id=HOLD, reason="x", now=901)).then_rejected(
        SetAsideNotHeld, hold_id=HOLD, reason="sold")


def test_a_forfeited_deposit_returns_its_units_to_the_shelf_once():
    """A forfeited deposit's units go back on the shelf once; a returned hold is neither sold nor
    set aside again."""
    g = given(sku_decider, StockAdded(sku=SKU, qty=10), was_set_aside(3))
    back = SetAsideReturned(sku=SKU, hold_id=HOLD, user="alice", qty=3,
                            reason="deposit_forfeited", returned_at=2500)
    g.when(ReturnSetAside(sku=SKU, hold_id=HOLD, reason="deposit_forfeited",
                          now=2500)).then(back)
    after = given(sku_decider, StockAdded(sku=SKU, qty=10), was_set_aside(3), back)
    assert buckets(after) == (10, 10, 0, 0, 0)
    after.when(ReturnSetAside(sku=SKU, hold_id=HOLD, reason="again", now=2501)).then()
    after.when(SellSetAside(sku=SKU, hold_id=HOLD, now=2501)).then_rejected(
        SetAsideNotHeld, reason="returned")
    after.when(set_aside(3)).then()   # a closed hold is not set aside again


def test_a_sale_or_return_of_a_hold_never_set_aside_is_refused():
    """Selling or returning a hold that was never set aside is refused as an unknown hold."""
    g = given(sku_decider, StockAdded(sku=SKU, qty=10))
    g.when(SellSetAside(sku=SKU, hold_id="presale/nope", now=1)).then_rejected(
        SetAsideNotHeld, reason="unknown_hold")
    g.when(ReturnSetAside(sku=SKU, hold_id="presale/nope", reason="", now=1)).then_rejected(
        SetAsideNotHeld, reason="unknown_hold")


def test_reconfiguring_the_sale_keeps_the_set_aside_units():
    """Configuring the sale after a set-aside leaves the set-aside units held, not back on sale."""
    g = given(sku_decider, StockAdded(sku=SKU, qty=10), was_set_aside(4))
    cfg = ConfigureSale(sku=SKU, tiers=((0, 100),), per_user_limit=1, start=1000, end=2000,
                        now=NOW)
    g.when(cfg).then(SaleConfigured(sku=SKU, tiers=((0, 100),), per_user_limit=1, start=1000,
                                    end=2000))
    assert buckets(given(sku_decider, StockAdded(sku=SKU, qty=10), was_set_aside(4),
                         SaleConfigured(sku=SKU, tiers=((0, 100),), per_user_limit=1,
                                        start=1000, end=2000))) == (10, 6, 0, 4, 0)
