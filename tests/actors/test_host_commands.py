"""The shard host answers each command on its own: a command the log cannot record is refused
alone, and a command id reused for another command is a conflict, before and after recovery."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from saleday.actors.decider import IdempotencyConflict, InvalidCommand
from saleday.actors.host import Accepted, Request, ShardHost
from saleday.actors.sku import (
    AddStock,
    ConfigureSale,
    ConfirmReservation,
    ReserveStock,
    sku_decider,
)
from saleday.events import open_store

T0 = 1_762_790_400_000
INT64_MAX = 2**63 - 1


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/events.db")
    yield s
    s.close()


def host(store, **kw) -> ShardHost:
    return ShardHost(decider=sku_decider, store=store, stream="sku-000", clock=lambda: T0, **kw)


def stocked(h: ShardHost, sku: str = "a", *, price: int = 100) -> None:
    replies = h.handle([
        Request(f"add-{sku}", AddStock(sku=sku, qty=100, now=T0)),
        Request(f"sale-{sku}", ConfigureSale(sku=sku, tiers=((0, price),), per_user_limit=0,
                                             start=T0, end=T0 + 86_400_000, now=T0))])
    assert all(isinstance(r, Accepted) for r in replies), replies


def reserve(rid: str, qty: int = 1, *, sku: str = "a", user: str = "u1", now: int = T0):
    return ReserveStock(reservation_id=rid, user=user, sku=sku, qty=qty, now=now,
                        deadline=now + 60_000)


def test_a_command_whose_events_cannot_be_recorded_is_refused_alone(store):
    """A lone surrogate in an id and an amount past msgpack's ints are refused, each on its
    own; the commands batched with them are decided and committed as if they were absent."""
    h = host(store)
    stocked(h)
    stocked(h, "rich", price=INT64_MAX)
    (held,) = h.handle([Request("hold", reserve("r-rich", 3, sku="rich"))])
    assert isinstance(held, Accepted)
    replies = h.handle([
        Request("c1", reserve("r1")),
        Request("c2", reserve("r-\ud800")),
        Request("c3", ConfirmReservation(reservation_id="r-rich", sku="rich", now=T0)),  # 3 * 2**63
        Request("c4", reserve("r2", 2)),
        Request("c-\ud800", reserve("r3")),
    ])
    ok1, bad_id, overflow, ok2, bad_command_id = replies
    assert isinstance(ok1, Accepted) and isinstance(ok2, Accepted)
    for bad in (bad_id, overflow, bad_command_id):
        assert isinstance(bad, InvalidCommand) and "cannot be recorded" in bad.reason, bad
    assert (ok1.first_version, ok2.first_version) == (h.version - 1, h.version)
    assert h.state_of("a").available == 97 and "r3" not in h.state_of("a").reservations
    assert h.state_of("rich").reserved == 3
    assert host(store).state_of("a") == h.state_of("a")


def test_an_id_reused_for_another_command_in_one_batch_is_a_conflict(store):
    """Inside one batch, a second use of an id with another payload is refused; a restamped
    copy (other now and deadline) shares the first one's reply."""
    h = host(store)
    stocked(h)
    first, copy, other = h.handle([Request("c1", reserve("r1")),
                                   Request("c1", reserve("r1", now=T0 + 10)),
                                   Request("c1", reserve("r1", 2))])
    assert isinstance(first, Accepted) and copy == Accepted(first.events, first.first_version,
                                                            first.last_version, duplicate=True)
    assert isinstance(other, IdempotencyConflict) and other.command_id == "c1"
    assert h.state_of("a").reserved == 1


def test_fingerprints_survive_a_snapshot(store):
    """After a restart from a snapshot, a reused id is still checked against the whole command."""
    h = host(store)
    stocked(h)
    h.handle([Request("c1", reserve("r1"))])
    h.save_snapshot()
    again = host(store)
    assert again.snapshot_version == h.version
    (conflict,) = again.handle([Request("c1", reserve("r1", user="u2"))])
    (duplicate,) = again.handle([Request("c1", reserve("r1", now=T0 + 99))])
    assert isinstance(conflict, IdempotencyConflict)
    assert isinstance(duplicate, Accepted) and duplicate.duplicate


def test_after_recovery_from_the_log_alone_a_reused_id_is_checked_against_its_entity(store):
    """Rebuilt from the log (which holds events, not commands), an id reused for another entity
    is a conflict; for the same entity it is answered as a duplicate (what the log can tell)."""
    h = host(store)
    stocked(h)
    stocked(h, "b")
    h.handle([Request("c1", reserve("r1"))])
    again = host(store, use_snapshot=False)
    (conflict,) = again.handle([Request("c1", reserve("r1", sku="b"))])
    (same_entity,) = again.handle([Request("c1", reserve("r1", 2))])
    assert isinstance(conflict, IdempotencyConflict)
    assert isinstance(same_entity, Accepted) and same_entity.duplicate
    assert again.state_of("b").reserved == 0 and again.state_of("a").reserved == 1


@pytest.mark.parametrize("command_id", [None, 7, "", ("a",)])
def test_a_command_id_that_is_not_a_str_is_refused(store, command_id):
    """A command id that could not be recorded (not a non-empty str) is an InvalidCommand."""
    h = host(store)
    stocked(h)
    bad, fine = h.handle([Request(command_id, reserve("r1")), Request("ok", reserve("r2"))])
    assert isinstance(bad, InvalidCommand) and isinstance(fine, Accepted)


@pytest.mark.parametrize("before", ["confirmed", "set_aside"])
def test_a_state_pickled_before_a_field_was_added_still_loads(before):
    """A SKU state from a snapshot taken before `confirmed` (or the set-aside fields)
    existed loads with them empty."""
    state = sku_decider.initial("a")
    kind, (cls, values) = state.__reduce__()
    names = [f.name for f in dataclasses.fields(state)]
    assert tuple(values) == tuple(getattr(state, n) for n in names)   # pickled in field order
    old_pickle = pickle.dumps((kind, cls, values[:names.index(before)]))
    rebuild, cls, old_values = pickle.loads(old_pickle)
    loaded = rebuild(cls, old_values)
    assert loaded == state and len(loaded.confirmed) == 0 and loaded.set_aside == 0
