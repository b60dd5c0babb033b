"""The shard host stamps correlation and causation ids: a command's from its request, an
expiry's from the event that set the deadline it ends (also after a recovery)."""

from __future__ import annotations

import pytest

from saleday.actors.host import Request
from saleday.actors.sku import ConfirmReservation, ReservationExpired
from saleday.events import event_ref, open_store
from tests.actors.test_host import T0, Clock, host, reserve, stocked


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/events.db")
    yield s
    s.close()


def by_type(store, kind: str) -> list:
    return [e for e in store.read("sku-000") if e.type == kind]


def test_a_commands_events_carry_its_requests_ids(store):
    """The events of a command carry the correlation and causation ids of its request."""
    h = host(store)
    stocked(h)
    h.handle([Request("c1", reserve("r1"), "O1", "team-000@7")])
    (reserved,) = by_type(store, "inventory.stock_reserved")
    assert (reserved.correlation_id, reserved.causation_id) == ("O1", "team-000@7")


def test_an_expiry_names_the_reservation_it_ends_as_its_cause(store):
    """Each expired reservation names its own StockReserved event and carries its order id."""
    clock = Clock()
    h = host(store, clock)
    stocked(h)
    h.handle([Request("c1", reserve("r1", deadline=T0 + 1000), "O1"),
              Request("c2", reserve("r2", user="u2", deadline=T0 + 1000), "O2")])
    clock.now = T0 + 1000
    assert h.tick() == 2
    reserved = {e.data["reservation_id"]: e for e in by_type(store, "inventory.stock_reserved")}
    for expired in by_type(store, "inventory.reservation_expired"):
        cause = reserved[expired.data["reservation_id"]]
        assert expired.causation_id == event_ref("sku-000", cause.version)
        assert expired.correlation_id == cause.correlation_id


def test_a_settled_reservation_leaves_no_cause_behind(store):
    """Once a reservation is confirmed, the host forgets what set its deadline."""
    h = host(store)
    stocked(h)
    h.handle([Request("c1", reserve("r1"), "O1")])
    assert h.cause_of_expiry("a", _expired("r1")) == (event_ref("sku-000", 3), "O1")
    h.handle([Request("c2", ConfirmReservation(reservation_id="r1", sku="a", now=T0 + 10), "O1")])
    assert h._causes == {} and h.cause_of_expiry("a", _expired("r1")) == ("", "")


def test_an_expiry_after_recovery_still_names_its_cause(store):
    """A host recovered from a snapshot, or from the log alone, names the same cause."""
    clock = Clock()
    first = host(store, clock, snapshot_every=1)
    stocked(first)
    first.handle([Request("c1", reserve("r1", deadline=T0 + 1000), "O1")])
    cause = event_ref("sku-000", store.head("sku-000").version)
    for use_snapshot in (True, False):
        recovered = host(store, clock, use_snapshot=use_snapshot)
        assert (recovered.snapshot_version == recovered.version) is use_snapshot
        assert recovered.cause_of_expiry("a", _expired("r1")) == (cause, "O1")
    clock.now = T0 + 1000
    assert recovered.tick() == 1
    (expired,) = by_type(store, "inventory.reservation_expired")
    assert (expired.causation_id, expired.correlation_id) == (cause, "O1")


def _expired(rid: str) -> ReservationExpired:
    return ReservationExpired(sku="a", reservation_id=rid, user="u1", qty=1, deadline=T0 + 1000)


def test_causes_load_from_either_snapshot_form(store):
    """A snapshot's causes load whether kept as versions or as whole `stream@version`."""
    h = host(store)
    h.load_causes({"a": {"r1": [3, "O1"]}, "b": {"": ["sku-000@5", "O2"], "x": ["junk", ""]}})
    assert h._causes == {"a": {"r1": (3, "O1")}, "b": {"": (5, "O2")}}
