"""The SKU's returns: a refunded order's confirmed reservation gives its sold units back to
the shelf, their tiers and the user's limit, once (given/when/then)."""

from __future__ import annotations

import pytest

from saleday.actors.decider import InvalidCommand
from saleday.actors.sku import (
    AlreadyConfirmed,
    NotSold,
    ReleaseReservation,
    ReservationConfirmed,
    ReservationReleased,
    ReservationVoided,
    ReserveStock,
    ReturnSoldUnits,
    SaleConfigured,
    SoldUnitsReturned,
    StockAdded,
    StockReserved,
    UnknownSku,
    sku_decider,
)
from tests.actors.given import given

SKU = "sku-1"
NOW, DEADLINE = 1_500, 1_800
HALF_THEN_FULL = ((2, 4950), (0, 9900))


def reserved(rid: str = "o1/0", prices=(4950, 4950), tiers=(0, 0),
             user: str = "alice") -> StockReserved:
    return StockReserved(reservation_id=rid, user=user, sku=SKU, qty=len(prices),
                         unit_prices=tuple(prices), tiers=tuple(tiers), deadline=DEADLINE,
                         reserved_at=NOW)


def confirmed(rid: str = "o1/0", qty: int = 2, cents: int = 9900,
              user: str = "alice") -> ReservationConfirmed:
    return ReservationConfirmed(reservation_id=rid, sku=SKU, user=user, qty=qty,
                                amount_cents=cents)


def returned(rid: str = "o1/0", qty: int = 2, cents: int = 9900,
             user: str = "alice") -> SoldUnitsReturned:
    return SoldUnitsReturned(reservation_id=rid, sku=SKU, user=user, qty=qty,
                             amount_cents=cents, reason="hold_expired", returned_at=NOW + 10)


def give_back(rid: str = "o1/0") -> ReturnSoldUnits:
    return ReturnSoldUnits(reservation_id=rid, sku=SKU, reason="hold_expired", now=NOW + 10)


def on_sale(*events, limit: int = 0):
    """A SKU of 10 units whose first 2 sell at half price, then `events`."""
    return given(sku_decider, StockAdded(sku=SKU, qty=10),
                 SaleConfigured(sku=SKU, tiers=HALF_THEN_FULL, per_user_limit=limit,
                                start=1_000, end=2_000), *events)


def buckets(g) -> tuple[int, int, int, int]:
    s = g.state
    assert s.available + s.reserved + s.set_aside + s.sold == s.stocked
    return s.stocked, s.available, s.reserved, s.sold


def test_a_refunded_sale_returns_its_units_to_the_shelf():
    """Returning a confirmed reservation records its units, user and price, and moves them
    from sold back to available."""
    on_sale(reserved(), confirmed()).when(give_back()).then(returned())
    assert buckets(on_sale(reserved(), confirmed())) == (10, 8, 0, 2)
    assert buckets(on_sale(reserved(), confirmed(), returned())) == (10, 10, 0, 0)


def test_a_return_happens_once():
    """A second return of the same reservation decides nothing."""
    on_sale(reserved(), confirmed(), returned()).when(give_back()).then()


def test_returned_half_price_units_are_offered_at_half_price_again():
    """The returned units go back to the tier they were sold from."""
    g = on_sale(reserved(), confirmed(), returned())
    assert g.state.tier_taken == (0, 0)
    g.when(ReserveStock(reservation_id="o2/0", user="bob", sku=SKU, qty=2, now=NOW + 20,
                        deadline=DEADLINE)).then(
        StockReserved(reservation_id="o2/0", user="bob", sku=SKU, qty=2,
                      unit_prices=(4950, 4950), tiers=(0, 0), deadline=DEADLINE,
                      reserved_at=NOW + 20))


def test_returned_units_free_the_users_limit():
    """A user at the per-user limit may buy again once the refunded units are returned."""
    g = on_sale(reserved(), confirmed(), limit=2)
    assert g.state.per_user.get("alice") == 2
    assert "alice" not in on_sale(reserved(), confirmed(), returned(), limit=2).state.per_user


def test_a_held_reservation_is_not_returned_but_released():
    """A reservation not yet confirmed is refused `NotSold` (held): a release gives it back."""
    on_sale(reserved()).when(give_back()).then_rejected(NotSold, reason="held")


@pytest.mark.parametrize(("past", "reason"), [
    ((), "unknown_reservation"),
    ((reserved(), ReservationReleased(reservation_id="o1/0", sku=SKU, user="alice", qty=2,
                                      reason="cancelled")), "unknown_reservation"),
    ((ReservationVoided(reservation_id="o1/0", sku=SKU, reason="cancelled", voided_at=NOW),),
     "voided"),
], ids=["never-reserved", "released", "voided"])
def test_a_reservation_never_sold_is_refused(past, reason):
    """Nothing sold under the id (never reserved, released, or voided) is refused `NotSold`."""
    on_sale(*past).when(give_back()).then_rejected(NotSold, reason=reason)


def test_an_unknown_sku_returns_nothing():
    """A return for a SKU never stocked is refused `UnknownSku`."""
    given(sku_decider).when(give_back()).then_rejected(UnknownSku, sku=SKU)


def test_a_returned_reservation_still_cannot_be_released():
    """After its return the reservation stays confirmed: a release is `AlreadyConfirmed`."""
    on_sale(reserved(), confirmed(), returned()).when(
        ReleaseReservation(reservation_id="o1/0", sku=SKU, user="alice", reason="x",
                           now=NOW + 20)).then_rejected(AlreadyConfirmed)


def test_only_the_returned_reservation_moves():
    """Returning one of two sold reservations leaves the other sold."""
    g = on_sale(reserved(), confirmed(),
                reserved("o2/0", prices=(9900,), tiers=(1,), user="bob"),
                confirmed("o2/0", qty=1, cents=9900, user="bob"), returned())
    assert buckets(g) == (10, 9, 0, 1)
    assert g.state.tier_taken == (0, 1)
    g.when(give_back("o2/0")).then(returned("o2/0", qty=1, cents=9900, user="bob"))


def test_a_malformed_return_is_invalid():
    """A return whose reason is not a string is an InvalidCommand."""
    result = sku_decider.decide(ReturnSoldUnits(reservation_id="o1/0", sku=SKU, reason=None,
                                                now=NOW), on_sale(reserved(), confirmed()).state)
    assert isinstance(result, InvalidCommand), result


@pytest.mark.parametrize("history", [(reserved(), confirmed()),
                                     (reserved(), confirmed(), returned())],
                         ids=["sold", "sold_then_returned"])
def test_a_sold_reservation_id_cannot_be_reserved_again(history):
    """A reservation id that was sold (and maybe returned) is refused as DuplicateReservation,
    so a retry under a new command id never sells its units twice."""
    from saleday.actors.sku import DuplicateReservation

    again = ReserveStock(reservation_id="o1/0", user="alice", sku=SKU, qty=1, deadline=DEADLINE,
                         now=NOW + 20)
    on_sale(*history).when(again).then_rejected(DuplicateReservation, reservation_id="o1/0")
