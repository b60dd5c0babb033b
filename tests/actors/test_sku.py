"""The SKU decider: stock, flash-sale tiers, per-user limits and reservations."""

from __future__ import annotations

import pytest

from saleday.actors.decider import InvalidCommand
from saleday.actors.sku import (
    MAX_UNITS_PER_RESERVATION,
    AddStock,
    AlreadyConfirmed,
    ConfigureSale,
    ConfirmReservation,
    DeadlinePassed,
    DuplicateReservation,
    ExpireReservations,
    InvalidQuantity,
    LimitExceeded,
    NotReservationOwner,
    QuantityTooLarge,
    ReleaseReservation,
    ReservationConfirmed,
    ReservationExpired,
    ReservationNotFound,
    ReservationReleased,
    ReservationVoided,
    ReserveStock,
    SaleConfigured,
    SaleNotOpen,
    SoldOut,
    StockAdded,
    StockReserved,
    UnknownSku,
    VoidedBeforeTry,
    deadline_of,
    expire,
    sku_decider,
)
from tests.actors.given import given

SKU = "sku-1"
START, END = 1_000, 2_000
NOW = 1_500
DEADLINE = NOW + 300
HALF_THEN_FULL = ((2, 4950), (0, 9900))


def stock_added(qty: int = 10) -> StockAdded:
    return StockAdded(sku=SKU, qty=qty)


def sale_configured(tiers=((0, 9900),), limit: int = 0, start: int = START,
                    end: int = END) -> SaleConfigured:
    return SaleConfigured(sku=SKU, tiers=tiers, per_user_limit=limit, start=start, end=end)


def configure(tiers=((0, 9900),), limit: int = 0, start: int = START, end: int = END,
              now: int = NOW) -> ConfigureSale:
    return ConfigureSale(sku=SKU, tiers=tiers, per_user_limit=limit, start=start, end=end, now=now)


def reserve(rid: str = "r1", qty: int = 1, user: str = "alice", now: int = NOW,
            deadline: int = DEADLINE) -> ReserveStock:
    return ReserveStock(reservation_id=rid, user=user, sku=SKU, qty=qty, now=now, deadline=deadline)


def stock_reserved(rid: str = "r1", prices=(9900,), tiers=None, user: str = "alice",
                   deadline: int = DEADLINE, at: int = NOW) -> StockReserved:
    return StockReserved(reservation_id=rid, user=user, sku=SKU, qty=len(prices),
                         unit_prices=tuple(prices), tiers=tuple(tiers or (0,) * len(prices)),
                         deadline=deadline, reserved_at=at)


def on_sale(*events, qty: int = 10, tiers=((0, 9900),), limit: int = 0):
    """A stocked SKU with an open sale, then `events`."""
    return given(sku_decider, stock_added(qty), sale_configured(tiers, limit), *events)


# --- stock and reservations -------------------------------------------------------------


def test_adding_stock_records_it():
    """Adding stock to a new SKU records the units and makes the SKU known."""
    outcome = given(sku_decider).when(AddStock(sku=SKU, qty=5, now=0)).then(stock_added(5))
    assert outcome.state.known and outcome.state.available == 5 == outcome.state.stocked


def test_reserving_takes_units_off_the_shelf():
    """Reserving holds the units for the user until the deadline, at the tier price."""
    outcome = on_sale().when(reserve(qty=2)).then(stock_reserved(prices=(9900, 9900)))
    state = outcome.state
    assert (state.available, state.reserved, state.sold) == (8, 2, 0)
    assert state.per_user["alice"] == 2


def test_reserving_more_than_available_is_sold_out():
    """Reserving more than the available stock is rejected as SoldOut."""
    on_sale(qty=3).when(reserve(qty=4)).then_rejected(SoldOut, requested=4, available=3)


def test_reserved_units_are_not_available_to_others():
    """Units held by one reservation cannot be reserved by another."""
    (on_sale(stock_reserved("r1", prices=(9900,) * 3), qty=3)
     .when(reserve("r2", user="bob")).then_rejected(SoldOut, requested=1, available=0))


def test_confirming_sells_the_units():
    """Confirming a held reservation sells its units for the sum of its unit prices."""
    outcome = (on_sale(stock_reserved(prices=(9900, 9900)))
               .when(ConfirmReservation(reservation_id="r1", sku=SKU, now=NOW + 1))
               .then(ReservationConfirmed(reservation_id="r1", sku=SKU, user="alice", qty=2,
                                          amount_cents=19800)))
    state = outcome.state
    assert (state.available, state.reserved, state.sold) == (8, 0, 2)
    assert "r1" not in state.reservations and state.per_user["alice"] == 2


def test_confirming_after_the_deadline_is_refused():
    """A reservation paid after its deadline is refused; its expiry will release it."""
    (on_sale(stock_reserved())
     .when(ConfirmReservation(reservation_id="r1", sku=SKU, now=DEADLINE + 1))
     .then_rejected(DeadlinePassed, reservation_id="r1", deadline=DEADLINE))


def test_confirming_at_the_deadline_is_accepted():
    """A reservation can still be confirmed at the very millisecond of its deadline."""
    (on_sale(stock_reserved())
     .when(ConfirmReservation(reservation_id="r1", sku=SKU, now=DEADLINE))
     .then(ReservationConfirmed(reservation_id="r1", sku=SKU, user="alice", qty=1,
                                amount_cents=9900)))


def test_confirming_twice_finds_no_reservation():
    """A confirmed reservation is no longer held, so confirming it again is refused."""
    confirmed = ReservationConfirmed(reservation_id="r1", sku=SKU, user="alice", qty=1,
                                     amount_cents=9900)
    (on_sale(stock_reserved(), confirmed)
     .when(ConfirmReservation(reservation_id="r1", sku=SKU, now=NOW))
     .then_rejected(ReservationNotFound, reservation_id="r1"))


def test_releasing_returns_the_units():
    """Releasing a held reservation puts its units back on the shelf."""
    outcome = (on_sale(stock_reserved(prices=(9900, 9900)))
               .when(ReleaseReservation(reservation_id="r1", sku=SKU, user="alice",
                                        reason="payment_failed", now=NOW + 1))
               .then(ReservationReleased(reservation_id="r1", sku=SKU, user="alice", qty=2,
                                         reason="payment_failed")))
    state = outcome.state
    assert (state.available, state.reserved, state.sold) == (10, 0, 0)
    assert "alice" not in state.per_user and not state.reservations


def test_releasing_a_reservation_never_made_voids_its_id():
    """A cancel that overtakes its try closes the reservation id instead of failing."""
    (on_sale().when(ReleaseReservation(reservation_id="nope", sku=SKU, user="alice", reason="x",
                                       now=NOW))
     .then(ReservationVoided(reservation_id="nope", sku=SKU, reason="x", voided_at=NOW)))


def test_a_try_after_its_cancel_is_refused():
    """Once an id is voided, reserving under it is refused: nothing is left hanging."""
    voided = ReservationVoided(reservation_id="r1", sku=SKU, reason="payment_failed", voided_at=NOW)
    on_sale(voided).when(reserve("r1")).then_rejected(VoidedBeforeTry, sku=SKU, reservation_id="r1")


def test_a_repeated_void_does_nothing():
    """Releasing an already voided id again records nothing."""
    voided = ReservationVoided(reservation_id="r1", sku=SKU, reason="x", voided_at=NOW)
    (on_sale(voided).when(ReleaseReservation(reservation_id="r1", sku=SKU, user="alice", reason="x",
                                             now=NOW)).then())


def test_only_the_owner_can_release_a_reservation():
    """A release naming another user than the reservation's is refused and changes nothing."""
    outcome = (on_sale(stock_reserved())
               .when(ReleaseReservation(reservation_id="r1", sku=SKU, user="mallory", reason="x",
                                        now=NOW))
               .then_rejected(NotReservationOwner, reservation_id="r1", user="mallory"))
    assert outcome.state.reservations["r1"].user == "alice"


def test_a_confirmed_reservation_cannot_be_released():
    """Releasing a reservation that was paid for is refused; nothing is voided or returned."""
    confirmed = ReservationConfirmed(reservation_id="r1", sku=SKU, user="alice", qty=1,
                                     amount_cents=9900)
    outcome = (on_sale(stock_reserved(), confirmed)
               .when(ReleaseReservation(reservation_id="r1", sku=SKU, user="alice", reason="x",
                                        now=NOW))
               .then_rejected(AlreadyConfirmed, reservation_id="r1"))
    assert (outcome.state.sold, outcome.state.available) == (1, 9)


def test_a_reservation_may_hold_up_to_the_maximum_units():
    """Reserving more than MAX_UNITS_PER_RESERVATION units is refused as QuantityTooLarge."""
    big = on_sale(qty=10**8)
    big.when(reserve(qty=MAX_UNITS_PER_RESERVATION + 1)).then_rejected(
        QuantityTooLarge, qty=MAX_UNITS_PER_RESERVATION + 1, limit=MAX_UNITS_PER_RESERVATION)
    on_sale(qty=10**8).when(reserve(qty=10**7)).then_rejected(QuantityTooLarge, qty=10**7)
    outcome = on_sale(qty=10**8).when(reserve(qty=MAX_UNITS_PER_RESERVATION))
    assert outcome.state.reserved == MAX_UNITS_PER_RESERVATION


@pytest.mark.parametrize("command", [
    reserve(now=-1, deadline=DEADLINE),
    reserve(deadline=-5, now=-10),
    ConfigureSale(sku=SKU, tiers=((0, 1),), per_user_limit=0, start=-10, end=END, now=NOW),
    ConfirmReservation(reservation_id="r1", sku=SKU, now=-1),
    ExpireReservations(sku=SKU, now=-(2**63)),
], ids=repr)
def test_negative_times_are_invalid(command):
    """A negative `now`, deadline or sale window is an InvalidCommand, not a fact."""
    assert isinstance(sku_decider.decide(command, on_sale().state), InvalidCommand)


def test_a_held_reservation_id_cannot_be_reused():
    """Reserving under an id that is already held is refused as DuplicateReservation."""
    (on_sale(stock_reserved()).when(reserve("r1", user="bob"))
     .then_rejected(DuplicateReservation, reservation_id="r1"))


# --- unknown SKUs and bad input --------------------------------------------------------


@pytest.mark.parametrize("command", [
    reserve(),
    ConfirmReservation(reservation_id="r1", sku=SKU, now=NOW),
    ReleaseReservation(reservation_id="r1", sku=SKU, user="alice", reason="x", now=NOW),
])
def test_an_unknown_sku_is_refused(command):
    """Reserving, confirming or releasing on a SKU never stocked nor configured is UnknownSku."""
    given(sku_decider).when(command).then_rejected(UnknownSku, sku=SKU)


def test_expiring_an_unknown_sku_does_nothing():
    """Expiring reservations of an unknown SKU decides nothing."""
    given(sku_decider).when(ExpireReservations(sku=SKU, now=NOW)).then()


def test_a_sale_is_needed_before_reserving():
    """A stocked SKU without a configured sale refuses reservations as SaleNotOpen."""
    (given(sku_decider, stock_added()).when(reserve())
     .then_rejected(SaleNotOpen, now=NOW, start=0, end=0))


@pytest.mark.parametrize("qty", [0, -1])
def test_reserving_less_than_one_unit_is_invalid(qty):
    """Reserving fewer than one unit is rejected as InvalidQuantity."""
    on_sale().when(reserve(qty=qty)).then_rejected(InvalidQuantity, sku=SKU, qty=qty)


def test_quantity_is_checked_before_the_sku_is_known():
    """An invalid quantity is reported even for an unknown SKU."""
    given(sku_decider).when(reserve(qty=0)).then_rejected(InvalidQuantity, qty=0)


@pytest.mark.parametrize("qty", ["1", True, 1.0, None, 2**64])
def test_a_quantity_that_is_not_an_int_is_malformed(qty):
    """A quantity given as a str, bool, float, None or an int past 64 bits is an InvalidCommand."""
    on_sale().when(reserve(qty=qty)).then_rejected(InvalidCommand)


@pytest.mark.parametrize("command", [
    AddStock(sku=SKU, qty=-1, now=0),
    AddStock(sku=SKU, qty="5", now=0),
    AddStock(sku=SKU, qty=5, now=0.5),
    AddStock(sku=SKU, qty=False, now=0),
    reserve(user=""),
    reserve(rid=7),
    reserve(deadline=NOW),
    ConfirmReservation(reservation_id="r1", sku=SKU, now="now"),
    ReleaseReservation(reservation_id="r1", sku=SKU, user="alice", reason=None, now=NOW),
    ExpireReservations(sku=SKU, now=None),
    AddStock(sku="another-sku", qty=1, now=0),
    "reserve please",
], ids=repr)
def test_malformed_commands_are_invalid(command):
    """Wrong field types, negative stock, a deadline not after now, a command for another SKU
    or an object that is no command at all is an InvalidCommand."""
    result = sku_decider.decide(command, on_sale().state)
    assert isinstance(result, InvalidCommand), result


def test_adding_no_stock_is_an_invalid_quantity():
    """Adding zero units is rejected as InvalidQuantity."""
    given(sku_decider).when(AddStock(sku=SKU, qty=0, now=0)).then_rejected(InvalidQuantity, qty=0)


@pytest.mark.parametrize("tiers", [
    (),
    ((5, 4950),),
    ((0, 4950), (0, 9900)),
    ((-1, 4950), (0, 9900)),
    ((5, -1), (0, 9900)),
    ((5, 49.5), (0, 9900)),
    ((5, 4950, 1), (0, 9900)),
    ((True, 4950), (0, 9900)),
    "((5, 4950), (0, 9900))",
    None,
], ids=repr)
def test_bad_tiers_are_invalid(tiers):
    """Tiers that are empty, not int pairs, priced below zero, or whose last tier is bounded
    or whose earlier tiers are empty are an InvalidCommand."""
    given(sku_decider, stock_added()).when(configure(tiers)).then_rejected(InvalidCommand)


@pytest.mark.parametrize("start, end, limit", [(2_000, 2_000, 0), (2_000, 1_000, 0),
                                               (START, END, -1)])
def test_an_empty_window_or_negative_limit_is_invalid(start, end, limit):
    """A sale window with start >= end, or a negative per-user limit, is an InvalidCommand."""
    (given(sku_decider, stock_added()).when(configure(start=start, end=end, limit=limit))
     .then_rejected(InvalidCommand))


# --- tiers ------------------------------------------------------------------------------


def test_configuring_a_sale_records_tiers_as_tuples():
    """A sale configured with lists records its tiers as tuples of int pairs."""
    (given(sku_decider, stock_added()).when(configure([[2, 4950], [0, 9900]]))
     .then(sale_configured(HALF_THEN_FULL)))


def test_configuring_a_sale_makes_the_sku_known():
    """A sale may be configured before any stock arrives; the SKU is then known but sold out."""
    outcome = given(sku_decider).when(configure()).then(sale_configured())
    assert outcome.state.known
    (given(sku_decider, sale_configured()).when(reserve())
     .then_rejected(SoldOut, requested=1, available=0))


def test_first_units_sell_at_the_first_tier_price():
    """The first N units are priced at the first tier."""
    (on_sale(tiers=HALF_THEN_FULL).when(reserve(qty=2))
     .then(stock_reserved(prices=(4950, 4950), tiers=(0, 0))))


def test_units_after_the_first_tier_sell_at_the_next_price():
    """Once the first tier is taken, units are priced at the next tier."""
    (on_sale(stock_reserved("r0", prices=(4950, 4950), tiers=(0, 0), user="bob"),
             tiers=HALF_THEN_FULL)
     .when(reserve(qty=1)).then(stock_reserved(prices=(9900,), tiers=(1,))))


def test_a_reservation_spanning_two_tiers_gets_both_prices_in_order():
    """A reservation crossing a tier boundary pays the lower price first, then the higher."""
    outcome = (on_sale(stock_reserved("r0", prices=(4950,), tiers=(0,), user="bob"),
                       tiers=HALF_THEN_FULL)
               .when(reserve(qty=3))
               .then(stock_reserved(prices=(4950, 9900, 9900), tiers=(0, 1, 1))))
    assert outcome.state.tier_taken == (2, 2)


def test_three_tiers_fill_in_order():
    """Units fill each bounded tier in turn before the last one."""
    (on_sale(tiers=((1, 100), (2, 200), (0, 300)))
     .when(reserve(qty=5))
     .then(stock_reserved(prices=(100, 200, 200, 300, 300), tiers=(0, 1, 1, 2, 2))))


def test_a_released_half_price_unit_is_offered_at_half_price_again():
    """Released units return to their tier, so the next buyer gets the lower price again."""
    released = ReservationReleased(reservation_id="r0", sku=SKU, user="bob", qty=2, reason="x")
    outcome = (on_sale(stock_reserved("r0", prices=(4950, 4950), tiers=(0, 0), user="bob"),
                       released, tiers=HALF_THEN_FULL)
               .when(reserve(qty=3))
               .then(stock_reserved(prices=(4950, 4950, 9900), tiers=(0, 0, 1))))
    assert outcome.state.tier_taken == (2, 1)


def test_sold_units_keep_their_tier_taken():
    """Confirmed units stay in their tier, so at most N units ever sell at the first price."""
    confirmed = ReservationConfirmed(reservation_id="r0", sku=SKU, user="bob", qty=2,
                                     amount_cents=9900)
    (on_sale(stock_reserved("r0", prices=(4950, 4950), tiers=(0, 0), user="bob"), confirmed,
             tiers=HALF_THEN_FULL)
     .when(reserve(qty=1)).then(stock_reserved(prices=(9900,), tiers=(1,))))


# --- per-user limits ---------------------------------------------------------------------


def test_a_user_cannot_hold_more_than_the_limit():
    """Reserving past the per-user limit is rejected as LimitExceeded."""
    (on_sale(stock_reserved(prices=(9900,)), limit=2)
     .when(reserve("r2", qty=2)).then_rejected(LimitExceeded, user="alice", limit=2, held=1))


def test_confirmed_units_count_towards_the_limit():
    """Units a user already bought count against the limit as well as held ones."""
    confirmed = ReservationConfirmed(reservation_id="r1", sku=SKU, user="alice", qty=2,
                                     amount_cents=19800)
    (on_sale(stock_reserved(prices=(9900, 9900)), confirmed, limit=2)
     .when(reserve("r2")).then_rejected(LimitExceeded, held=2))


def test_released_units_free_the_limit():
    """Once a reservation is released, its units no longer count against the user's limit."""
    released = ReservationReleased(reservation_id="r1", sku=SKU, user="alice", qty=2, reason="x")
    (on_sale(stock_reserved(prices=(9900, 9900)), released, limit=2)
     .when(reserve("r2", qty=2)).then(stock_reserved("r2", prices=(9900, 9900))))


def test_the_limit_is_per_user():
    """One user's units do not count against another user's limit."""
    (on_sale(stock_reserved(prices=(9900, 9900)), limit=2)
     .when(reserve("r2", qty=2, user="bob"))
     .then(stock_reserved("r2", prices=(9900, 9900), user="bob")))


def test_the_limit_is_checked_before_stock():
    """A request over both the limit and the stock is reported as LimitExceeded."""
    on_sale(qty=1, limit=2).when(reserve(qty=3)).then_rejected(LimitExceeded, held=0)


def test_a_zero_limit_means_no_limit():
    """A per-user limit of 0 lets one user reserve the whole stock."""
    on_sale(limit=0).when(reserve(qty=10)).then(stock_reserved(prices=(9900,) * 10))


# --- the sale window ---------------------------------------------------------------------


@pytest.mark.parametrize("now", [START - 1, END, END + 1])
def test_reserving_outside_the_window_is_refused(now):
    """Reserving before the sale starts, at its end or after it is rejected as SaleNotOpen."""
    (on_sale().when(reserve(now=now, deadline=now + 300))
     .then_rejected(SaleNotOpen, now=now, start=START, end=END))


def test_reserving_at_the_start_is_accepted():
    """The window includes its first millisecond."""
    (on_sale().when(reserve(now=START, deadline=START + 300))
     .then(stock_reserved(deadline=START + 300, at=START)))


# --- expiry -------------------------------------------------------------------------------


def test_due_reservations_expire_in_deadline_order():
    """Expiry releases every reservation due by now, earliest deadline first, then by id."""
    held = (stock_reserved("r-late", deadline=NOW + 30, user="a"),
            stock_reserved("r-b", deadline=NOW + 10, user="b"),
            stock_reserved("r-a", deadline=NOW + 10, user="c"),
            stock_reserved("r-future", deadline=NOW + 31, user="d"))
    outcome = (on_sale(*held).when(ExpireReservations(sku=SKU, now=NOW + 30))
               .then(ReservationExpired(reservation_id="r-a", sku=SKU, user="c", qty=1,
                                        deadline=NOW + 10),
                     ReservationExpired(reservation_id="r-b", sku=SKU, user="b", qty=1,
                                        deadline=NOW + 10),
                     ReservationExpired(reservation_id="r-late", sku=SKU, user="a", qty=1,
                                        deadline=NOW + 30)))
    assert list(outcome.state.reservations) == ["r-future"]
    assert (outcome.state.available, outcome.state.reserved) == (9, 1)


def test_nothing_expires_before_its_deadline():
    """Reservations whose deadline is still ahead stay held."""
    on_sale(stock_reserved()).when(ExpireReservations(sku=SKU, now=DEADLINE - 1)).then()


def test_expiry_returns_units_to_their_tier():
    """An expired half-price unit goes back to the half-price tier."""
    outcome = (on_sale(stock_reserved("r0", prices=(4950, 4950), tiers=(0, 0), user="bob"),
                       tiers=HALF_THEN_FULL)
               .when(expire(SKU, DEADLINE)))
    state = outcome.state
    assert state.tier_taken == (0, 0) and state.available == 10 and "bob" not in state.per_user


def test_a_reservation_sets_a_deadline_for_the_host():
    """The host learns a reservation's deadline from its event; other events set none."""
    assert deadline_of(stock_reserved()) == DEADLINE
    assert deadline_of(stock_added()) is None


# --- reconfiguring -------------------------------------------------------------------------


def test_extending_the_window_keeps_units_taken():
    """Reconfiguring to extend the window keeps the units taken per tier."""
    outcome = (on_sale(stock_reserved(prices=(4950,), tiers=(0,)), tiers=HALF_THEN_FULL)
               .when(configure(HALF_THEN_FULL, end=END + 1_000))
               .then(sale_configured(HALF_THEN_FULL, end=END + 1_000)))
    assert outcome.state.tier_taken == (1, 0) and outcome.state.end == END + 1_000


def test_reconfiguring_the_same_sale_does_nothing():
    """Configuring the sale exactly as it is decides nothing."""
    on_sale(tiers=HALF_THEN_FULL).when(configure(HALF_THEN_FULL)).then()


def test_a_tier_cannot_shrink_below_its_taken_units():
    """Reconfiguring a tier to fewer units than are taken in it is an InvalidCommand."""
    (on_sale(stock_reserved(prices=(4950, 4950), tiers=(0, 0)), tiers=HALF_THEN_FULL)
     .when(configure(((1, 4950), (0, 9900)))).then_rejected(InvalidCommand))


def test_the_tier_count_cannot_change_while_units_are_taken():
    """Adding or removing tiers while any unit is reserved or sold is an InvalidCommand."""
    (on_sale(stock_reserved(prices=(4950,), tiers=(0,)), tiers=HALF_THEN_FULL)
     .when(configure(((1, 4950), (5, 7000), (0, 9900)))).then_rejected(InvalidCommand))


def test_tiers_can_change_freely_before_anything_is_taken():
    """Before any unit is taken the tiers can be replaced entirely."""
    outcome = (on_sale(tiers=HALF_THEN_FULL).when(configure(((0, 5000),)))
               .then(sale_configured(((0, 5000),))))
    assert outcome.state.tier_taken == (0,)


def test_a_tier_can_grow_while_units_are_taken():
    """Growing a tier keeps its taken units and offers the extra ones at its price."""
    (on_sale(stock_reserved("r0", prices=(4950, 4950), tiers=(0, 0), user="bob"),
             sale_configured(((3, 4950), (0, 9900))), tiers=HALF_THEN_FULL)
     .when(reserve(qty=2)).then(stock_reserved(prices=(4950, 9900), tiers=(0, 1))))
