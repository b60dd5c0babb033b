"""The generic shard host, driven directly (no Ray) with the SKU decider and real stores."""

from __future__ import annotations

import pytest

from saleday.actors.decider import InvalidCommand
from saleday.actors.host import Accepted, Request, ShardFenced, ShardHost, Unavailable
from saleday.actors.sku import (
    AddStock,
    ConfigureSale,
    ConfirmReservation,
    ReservationExpired,
    ReserveStock,
    SoldOut,
    StockReserved,
    sku_decider,
)
from saleday.events import StoreUnavailable, open_store

T0 = 1_762_790_400_000


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/events.db")
    yield s
    s.close()


def host(store, clock=None, **kw) -> ShardHost:
    return ShardHost(decider=sku_decider, store=store, stream="sku-000", clock=clock or Clock(), **kw)


def stocked(h: ShardHost, sku: str = "a", qty: int = 3, *, limit: int = 0) -> None:
    replies = h.handle([
        Request(f"add-{sku}", AddStock(sku=sku, qty=qty, now=T0)),
        Request(f"sale-{sku}", ConfigureSale(sku=sku, tiers=((1, 50), (0, 100)), per_user_limit=limit,
                                             start=T0, end=T0 + 86_400_000, now=T0))])
    assert all(isinstance(r, Accepted) for r in replies), replies


def reserve(rid: str, qty: int = 1, *, sku: str = "a", user: str = "u1", deadline: int = T0 + 60_000):
    return ReserveStock(reservation_id=rid, user=user, sku=sku, qty=qty, now=T0, deadline=deadline)


def test_a_batch_is_one_commit_and_later_commands_see_earlier_effects(store):
    """Commands of one batch are decided in order against each other's effects, in one commit."""
    h = host(store)
    stocked(h)
    first, second, third = h.handle([Request("c1", reserve("r1", 2)), Request("c2", reserve("r2", 2)),
                                     Request("c3", reserve("r3", 1))])
    assert isinstance(first, Accepted) and first.events[0].unit_prices == (50, 100)
    assert second == SoldOut(sku="a", requested=2, available=1)
    assert isinstance(third, Accepted) and (first.first_version, third.last_version) == (3, 4)
    assert [c.last_version for c in store.read_commits("sku-000")] == [2, 4]


def test_a_retried_command_gets_its_first_reply_and_no_second_effect(store):
    """A command id seen before is answered from the dedup record; nothing is appended."""
    h = host(store)
    stocked(h)
    (first,) = h.handle([Request("c1", reserve("r1"))])
    (again,) = h.handle([Request("c1", reserve("r1"))])
    assert again.duplicate and (again.events, again.first_version) == (first.events, first.first_version)
    assert store.head("sku-000").version == 3
    assert h.state_of("a").available == 2


def test_the_same_id_twice_in_one_batch_takes_effect_once(store):
    """Duplicates inside a batch share the first one's reply."""
    h = host(store)
    stocked(h)
    one, two = h.handle([Request("c1", reserve("r1")), Request("c1", reserve("r1"))])
    assert isinstance(one, Accepted) and two.duplicate and two.events == one.events
    assert h.state_of("a").reserved == 1


def test_recovery_rebuilds_state_and_dedup_from_the_log(store):
    """A new incarnation replays the stream and still answers retried ids without effect."""
    h = host(store)
    stocked(h)
    (first,) = h.handle([Request("c1", reserve("r1", 2))])
    h2 = host(store)
    assert h2.state_of("a").reserved == 2 and h2.version == 3
    (again,) = h2.handle([Request("c1", reserve("r1", 2))])
    assert again.duplicate and again.events == first.events
    assert store.head("sku-000").version == 3


def test_recovery_from_a_snapshot_equals_a_full_replay(store, tmp_path):
    """Snapshot plus tail yields the same states as replaying every event."""
    h = host(store, snapshot_every=5)
    stocked(h, qty=50)
    for i in range(12):
        h.handle([Request(f"c{i}", reserve(f"r{i}"))])
    assert h.snapshot_version >= 10 and store.load_snapshot("sku-000") is not None
    from_snapshot = host(store)
    assert from_snapshot.snapshot_version == h.snapshot_version
    store.save_snapshot.__self__  # the store is shared; replay a copy without the snapshot
    bare = open_store(f"sqlite:///{tmp_path}/copy.db")
    for commit in store.read_commits("sku-000"):
        bare.append("sku-000", [], None) if False else None
    replayed = host(store)
    replayed.states.clear()
    replayed.version = 0
    replayed._catch_up()
    assert from_snapshot.states == replayed.states == h.states
    bare.close()


def test_an_unusable_snapshot_falls_back_to_full_replay(store):
    """A snapshot that cannot be read is skipped, not fatal."""
    from saleday.events import Snapshot

    h = host(store)
    stocked(h)
    store.save_snapshot(Snapshot(stream="sku-000", version=2, recorded_at=T0, data=b"not a pickle"))
    h2 = host(store)
    assert h2.state_of("a").available == 3 and h2.snapshot_version == 0


def test_an_older_incarnation_is_fenced_and_writes_nothing(store):
    """Once a newer host takes the stream, the old one refuses to decide or append."""
    old = host(store)
    stocked(old)
    new = host(store)
    with pytest.raises(ShardFenced):
        old.handle([Request("c1", reserve("r1"))])
    with pytest.raises(ShardFenced):
        old.handle([Request("c2", reserve("r2"))])
    assert store.head("sku-000").version == 2
    assert isinstance(new.handle([Request("c1", reserve("r1"))])[0], Accepted)


def test_due_reservations_expire_before_a_batch_and_on_tick(store):
    """Deadlines are timers: what is due expires at the next batch or tick, in the log."""
    clock = Clock()
    h = host(store, clock)
    stocked(h)
    h.handle([Request("c1", reserve("r1", deadline=T0 + 1000)),
              Request("c2", reserve("r2", deadline=T0 + 5000))])
    clock.now = T0 + 1000
    assert h.tick() == 1
    assert h.state_of("a").available == 2
    clock.now = T0 + 6000
    h.handle([Request("c3", reserve("r3", deadline=T0 + 90_000))])
    kinds = [e.type for e in store.read("sku-000")]
    assert kinds.count("inventory.reservation_expired") == 2
    assert h.state_of("a").reserved == 1


def test_a_confirmed_reservation_does_not_expire(store):
    """A paid reservation stays sold when its deadline passes."""
    clock = Clock()
    h = host(store, clock)
    stocked(h)
    h.handle([Request("c1", reserve("r1", deadline=T0 + 1000))])
    h.handle([Request("c2", ConfirmReservation(reservation_id="r1", sku="a", now=T0 + 10))])
    clock.now = T0 + 5000
    assert h.tick() == 0
    assert h.state_of("a").sold == 1


class FlakyStore:
    """A real store whose appends fail on demand: before writing, or after (a lost reply)."""

    def __init__(self, store) -> None:
        self._store = store
        self.fail: str | None = None

    def __getattr__(self, name):
        return getattr(self._store, name)

    def append(self, *args, **kw):
        if self.fail == "before":
            raise StoreUnavailable("test", "connection refused")
        result = self._store.append(*args, **kw)
        if self.fail == "after":
            raise StoreUnavailable("test", "reply lost")
        return result


def test_an_unreachable_store_fails_the_batch_without_changing_state(store):
    """If the append fails, every request is Unavailable and nothing is applied."""
    flaky = FlakyStore(store)
    h = host(flaky)
    stocked(h)
    flaky.fail = "before"
    (reply,) = h.handle([Request("c1", reserve("r1"))])
    assert isinstance(reply, Unavailable) and h.state_of("a").available == 3
    flaky.fail = None
    (reply,) = h.handle([Request("c1", reserve("r1"))])
    assert isinstance(reply, Accepted) and not reply.duplicate


def test_a_lost_append_reply_is_resolved_by_the_retry(store):
    """An append that landed but whose reply was lost is found on retry, never applied twice."""
    flaky = FlakyStore(store)
    h = host(flaky)
    stocked(h)
    flaky.fail = "after"
    (reply,) = h.handle([Request("c1", reserve("r1", 2))])
    assert isinstance(reply, Unavailable)
    flaky.fail = None
    (again,) = h.handle([Request("c1", reserve("r1", 2)), ][:1])
    assert isinstance(again, Accepted) and again.duplicate
    assert h.state_of("a").reserved == 2 and store.head("sku-000").version == 3


def test_a_malformed_command_is_refused_alone(store):
    """A command of the wrong kind or shape is an InvalidCommand; the rest of the batch proceeds."""
    h = host(store)
    stocked(h)
    bad_kind, bad_qty, good = h.handle([
        Request("c1", "not a command"),
        Request("c2", ReserveStock(reservation_id="r2", user="u", sku="a", qty="2", now=T0,  # type: ignore[arg-type]
                                   deadline=T0 + 1000)),
        Request("c3", reserve("r3"))])
    assert isinstance(bad_kind, InvalidCommand) and isinstance(bad_qty, InvalidCommand)
    assert isinstance(good, Accepted) and isinstance(good.events[0], StockReserved)


def test_expired_events_carry_the_reservation(store):
    """An expiry records which reservation ended and when it was due."""
    clock = Clock()
    h = host(store, clock)
    stocked(h)
    h.handle([Request("c1", reserve("r1", deadline=T0 + 1000))])
    clock.now = T0 + 2000
    h.tick()
    from saleday.events import registry

    last = registry.decode(store.read("sku-000")[-1])
    assert last == ReservationExpired(reservation_id="r1", sku="a", user="u1", qty=1, deadline=T0 + 1000)


def test_a_retry_older_than_the_dedup_record_is_still_applied_once(store):
    """When the host has forgotten an old command id, the store's record answers for it."""
    from saleday.actors.sku import ReleaseReservation

    h = host(store, dedup_capacity=2)
    stocked(h, qty=10)
    (first,) = h.handle([Request("old", reserve("r-old"))])
    h.handle([Request("rel", ReleaseReservation(reservation_id="r-old", sku="a", user="u1", reason="x",
                                                 now=T0))])
    for i in range(5):
        h.handle([Request(f"c{i}", reserve(f"r{i}"))])
    assert "old" not in h._dedup
    # Decided again, "old" would reserve r-old anew; the store knows it was recorded.
    (again,) = h.handle([Request("old", reserve("r-old"))])
    assert isinstance(again, Accepted) and again.duplicate and again.events == first.events
    mixed = h.handle([Request("old", reserve("r-old")), Request("new", reserve("r-new"))])
    assert mixed[0].duplicate and isinstance(mixed[1], Accepted) and not mixed[1].duplicate
    assert h.state_of("a").reserved == 6


def test_a_failed_commit_keeps_the_timers_it_took(store):
    """Expiries decided in a batch whose append fails are not forgotten: the next batch does them."""
    clock = Clock()
    flaky = FlakyStore(store)
    h = host(flaky, clock)
    stocked(h)
    h.handle([Request("c1", reserve("r1", deadline=T0 + 1000))])
    clock.now = T0 + 2000
    flaky.fail = "before"
    assert h.tick() == 0
    flaky.fail = None
    assert h.tick() == 1
    assert h.state_of("a").available == 3


def test_recovery_restores_the_timers_of_held_reservations(store):
    """A new incarnation still expires what the old one had scheduled."""
    clock = Clock()
    h = host(store, clock, snapshot_every=3)
    stocked(h)
    h.handle([Request("c1", reserve("r1", deadline=T0 + 1000)), Request("c2", reserve("r2", deadline=T0 + 9000))])
    h2 = host(store, clock)
    assert h2.status()["timers"] == 1
    clock.now = T0 + 1500
    assert h2.tick() == 1 and h2.state_of("a").reserved == 1


@pytest.mark.parametrize("kind", ["session", "campaign", "team", "order", "member"])
def test_every_entity_kind_runs_on_the_generic_host(store, kind):
    """The same host serves each decider: decide, append, recover, answer retries."""
    from saleday.actors.campaign import CreateCampaign, GrantCoupon
    from saleday.actors.kinds import deciders
    from saleday.actors.member import EarnPoints, RecordOrder
    from saleday.actors.order import CancelOrder, StartCheckout
    from saleday.actors.session import StartSession
    from saleday.actors.team import CreateTeam, JoinTeam

    commands = {
        "session": [StartSession(user="u1", session_id="s1", utm_source="wechat", utm_medium="share",
                                 utm_campaign="1111", now=T0)],
        "campaign": [CreateCampaign(campaign="c1", value_cents=500, min_spend_cents=0, valid_from=T0,
                                    valid_until=T0 + 86_400_000, budget_coupons=1, budget_cents=0,
                                    now=T0),
                     GrantCoupon(campaign="c1", grant_id="g1", user="u1", now=T0),
                     GrantCoupon(campaign="c1", grant_id="g2", user="u2", now=T0)],
        "team": [CreateTeam(team="t1", leader="u1", campaign="c1", pool_cents=1000, size=2,
                            min_share_cents=100, expires=T0 + 60_000, seed=7, now=T0),
                 JoinTeam(team="t1", user="u2", now=T0)],
        "order": [StartCheckout(order_id="o1", user="u1", lines=(("sku-1", 2),), coupon_id="",
                                payment_deadline=T0 + 900_000, now=T0),
                  CancelOrder(order_id="o1", reason="payment_failed", now=T0 + 1)],
        "member": [RecordOrder(user="u1", order_ref="o1", ordered_at=T0, amount_cents=5_000,
                               source="checkout", now=T0),
                   EarnPoints(user="u1", order_ref="o1", amount_cents=5_000, invoice="paper",
                              points_per_yuan=1, valid_days=1, now=T0)],
    }[kind]
    decider = deciders()[kind]
    h = ShardHost(decider=decider, store=store, stream=f"{kind}-000", clock=Clock())
    replies = h.handle([Request(f"c{i}", c) for i, c in enumerate(commands)])
    assert isinstance(replies[0], Accepted) and replies[0].events
    if kind == "campaign":
        assert replies[2].code == "budget_exhausted"
    if kind == "team":
        assert [type(e).__name__ for e in replies[1].events] == ["MemberJoined", "TeamCompleted",
                                                                 "RedPacketSplit"]
    again = ShardHost(decider=decider, store=store, stream=f"{kind}-000", clock=Clock())
    assert again.states == h.states
    (retried,) = again.handle([Request("c0", commands[0])])
    assert retried.duplicate and retried.events == replies[0].events
