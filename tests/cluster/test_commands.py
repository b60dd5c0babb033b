"""Nothing lost, nothing hidden, nobody let in: every command gets a typed answer of its own,
through the batching gateway (real wire, real shard hosts, no Ray) and through `LocalShards`;
a reused command id with another payload is refused; a release must name the owner."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saleday.actors.campaign import CreateCampaign, GrantCoupon
from saleday.actors.decider import IdempotencyConflict, InvalidCommand, Rejection
from saleday.actors.host import Accepted, ShardHost, Unavailable
from saleday.actors.kinds import deciders
from saleday.actors.order import RecordPayment, StartCheckout
from saleday.actors.session import LockCoupon, ReceiveCoupon, StartSession, TrackOrder
from saleday.actors.sku import (
    MAX_UNITS_PER_RESERVATION,
    AddStock,
    AlreadyConfirmed,
    ConfigureSale,
    ConfirmReservation,
    NotReservationOwner,
    ReleaseReservation,
    ReserveStock,
    sku_decider,
)
from saleday.actors.team import CreateTeam, JoinTeam
from saleday.cluster.gateway import Gateway, GatewayConfig
from saleday.cluster.local import LocalShards
from saleday.cluster.routing import ShardMap
from saleday.cluster.wire import Wire
from saleday.events.memory_store import MemoryEventStore
from saleday.flows.checkout import Checkout

T0 = 1_762_790_400_000
_stores = itertools.count()


def memory_store() -> MemoryEventStore:
    return MemoryEventStore(f"commands-{next(_stores)}")


class TaskError(Exception):
    """Stands in for Ray's RayTaskError: any exception the shard raised, which the gateway
    retries as transient."""


class _Method:
    def __init__(self, fn) -> None:
        self.fn = fn

    def remote(self, *args):
        async def call():
            try:
                return self.fn(*args)
            except Exception as exc:
                raise TaskError(f"{type(exc).__name__}: {exc}") from exc
        return call()


class InProcessShard:
    """A shard actor without Ray: the real wire both ways around a real `ShardHost`."""

    def __init__(self, host: ShardHost, wire: Wire) -> None:
        self.handle = _Method(lambda blob: wire.encode_replies(host.handle(wire.decode_requests(blob))))
        self.tick = _Method(host.tick)
        self.states_of = _Method(lambda entities: [host.state_of(e) for e in entities])


def real_gateway(store, shards: int = 2, *, kinds: dict[str, int] | None = None) -> Gateway:
    """The gateway over the shard hosts of `kinds` (default: `shards` SKU hosts) on `store`,
    talking through the real wire."""
    kinds = kinds or {"sku": shards}
    decs = deciders()
    kind_by_type = {cls: kind for kind in kinds for cls in decs[kind].commands}
    wire = Wire(list(kind_by_type))
    maps = {kind: ShardMap.uniform(kind, n, 8) for kind, n in kinds.items()}
    handles = {kind: [InProcessShard(ShardHost(decider=decs[kind], store=store,
                                               stream=maps[kind].stream(i), clock=lambda: T0 + 1),
                                     wire) for i in range(n)] for kind, n in kinds.items()}
    return Gateway(maps, handles, GatewayConfig(tick_s=0, max_in_flight=2, retry_for_s=0.2),
                   entity_of={kind: decs[kind].entity_of for kind in kinds},
                   kind_of=lambda c: kind_by_type.get(type(c), "?"),
                   transient=(TaskError,), wire=wire)


ALL_KINDS = {"sku": 2, "session": 1, "order": 1, "campaign": 1, "team": 1}


def local_shards(store, shards: dict[str, int] | None = None) -> LocalShards:
    return LocalShards(store, shards or {"sku": 2}, partitions=8, clock=lambda: T0 + 1,
                       autoflush=True)


def shop(store) -> LocalShards:
    """SKU, order and session shards in this process: what a checkout needs."""
    return local_shards(store, {"sku": 2, "order": 1, "session": 1})


def on_sale(sku: str, qty: int = 100) -> list:
    return [AddStock(sku=sku, qty=qty, now=T0),
            ConfigureSale(sku=sku, tiers=((0, 990),), per_user_limit=0, start=T0,
                          end=T0 + 86_400_000, now=T0)]


def reserve(rid: str, *, sku: str = "sku-ok", user: str = "u1", qty: int = 1,
            now: int = T0 + 1) -> ReserveStock:
    return ReserveStock(reservation_id=rid, user=user, sku=sku, qty=qty, now=now,
                        deadline=now + 60_000)


async def submit_all(gw, commands: list, ids: list) -> list:
    return list(await asyncio.gather(*(gw.submit(c, command_id=i) for c, i in zip(commands, ids))))


# --- every command gets an answer of its own -----------------------------------------

ANY_TEXT = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=6)
WEIRD = st.one_of(st.none(), st.binary(max_size=4), st.integers(), ANY_TEXT)


GOOD = [
    AddStock(sku="sku-1", qty=5, now=T0),
    ReserveStock(reservation_id="r-x", user="u-x", sku="sku-1", qty=1, now=T0 + 1,
                 deadline=T0 + 60_000),
    ConfirmReservation(reservation_id="r-x", sku="sku-2", now=T0),
    ReleaseReservation(reservation_id="r-y", sku="sku-1", user="u-x", reason="x", now=T0),
    ConfigureSale(sku="sku-2", tiers=((0, 5),), per_user_limit=0, start=T0, end=T0 + 10, now=T0),
    StartSession(user="u-x", session_id="s1", utm_source="", utm_medium="", utm_campaign="",
                 now=T0, inviter="u-y", inviter_since=T0 - 1),
    ReceiveCoupon(user="u-x", coupon_id="c1", campaign="k", value_cents=100, min_spend_cents=0,
                  valid_until=T0 + 1000, now=T0),
    LockCoupon(user="u-x", coupon_id="c1", order_id="o1", order_total_cents=500,
               until=T0 + 1000, now=T0),
    TrackOrder(user="u-x", order_id="o1", status="placed", amount_cents=5, now=T0),
    StartCheckout(order_id="o1", user="u-x", lines=(("sku-1", 1),), coupon_id="",
                  payment_deadline=T0 + 1000, now=T0),
    RecordPayment(order_id="o1", payment_id="p1", amount_cents=5, now=T0),
    CreateCampaign(campaign="k", value_cents=100, min_spend_cents=0, valid_from=T0,
                   valid_until=T0 + 1000, budget_coupons=10, budget_cents=1000, now=T0),
    GrantCoupon(campaign="k", grant_id="g1", user="u-x", now=T0, value_cents=0),
    CreateTeam(team="t1", leader="u-x", campaign="k", pool_cents=100, size=2, min_share_cents=1,
               expires=T0 + 1000, seed=1, now=T0),
    JoinTeam(team="t1", user="u-y", now=T0),
]
NESTED = st.one_of(WEIRD, st.tuples(WEIRD, WEIRD), st.tuples(st.tuples(WEIRD, WEIRD)))


@st.composite
def commands(draw) -> object:
    """A valid command with one or two of its fields replaced by anything at all."""
    good = draw(st.sampled_from(GOOD))
    values = {f.name: getattr(good, f.name) for f in dataclasses.fields(good)}
    for name in draw(st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=2)):
        values[name] = draw(NESTED if type(values[name]) is tuple else WEIRD)
    return type(good)(**values)


COMMANDS = commands()
IDS = st.one_of(st.none(), ANY_TEXT, st.integers())


def check_answers(replies: list, n: int) -> None:
    assert len(replies) == n + 2
    for reply in replies:
        assert isinstance(reply, Accepted | Rejection), reply
        assert not isinstance(reply, Unavailable), reply   # no command failed its batch
    assert isinstance(replies[-1], Accepted) and isinstance(replies[-2], Accepted), replies[-2:]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=st.lists(COMMANDS, min_size=1, max_size=5), ids=st.lists(IDS, min_size=5, max_size=5))
def test_any_field_values_get_a_typed_answer_through_the_gateway(commands, ids):
    """Commands of every kind with any ints, any text (lone surrogates too), None or bytes in
    any field or id are each answered (accepted or a typed refusal) through the real gateway
    and wire, and the valid commands batched with them, and after them, are accepted."""
    async def go():
        gw = real_gateway(memory_store(), kinds=ALL_KINDS)
        assert all(isinstance(r, Accepted) for r in await gw.submit_many(on_sale("sku-ok")))
        batch = commands + [reserve("r-ok-1")]
        replies = await submit_all(gw, batch, ids[:len(commands)] + ["ok-1"])
        replies.append(await gw.submit(reserve("r-ok-2", user="u2"), command_id="ok-2"))
        return replies

    check_answers(asyncio.run(go()), len(commands))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=st.lists(COMMANDS, min_size=1, max_size=5), ids=st.lists(IDS, min_size=5, max_size=5))
def test_any_field_values_get_a_typed_answer_in_process(commands, ids):
    """The same through `LocalShards`: one bad command never fails the batch it was decided in."""
    async def go():
        shards = local_shards(memory_store(), ALL_KINDS)
        assert all(isinstance(r, Accepted) for r in await shards.submit_many(on_sale("sku-ok")))
        batch = commands + [reserve("r-ok-1")]
        replies = await submit_all(shards, batch, ids[:len(commands)] + ["ok-1"])
        replies.append(await shards.submit(reserve("r-ok-2", user="u2"), command_id="ok-2"))
        return replies

    check_answers(asyncio.run(go()), len(commands))


def test_unencodable_commands_are_refused_alone_and_the_lane_stays_open():
    """An int past 64 bits and a lone surrogate in an id are refused, each on its own; the
    command batched with them and every later one to that shard are served."""
    async def go():
        gw = real_gateway(memory_store(), shards=1)
        await gw.submit_many(on_sale("sku-1"))
        huge = gw.submit(AddStock(sku="sku-1", qty=2**70, now=T0))
        surrogate = gw.submit(reserve("r-\ud800", sku="sku-1"))
        fine = gw.submit(reserve("r-1", sku="sku-1"))
        first = await asyncio.gather(huge, surrogate, fine)
        later = [await gw.submit(reserve(f"r-later-{i}", sku="sku-1")) for i in range(5)]
        return first, later, gw.lanes["sku"][0].in_flight

    (huge, surrogate, fine), later, in_flight = asyncio.run(go())
    assert isinstance(huge, InvalidCommand) and "qty" in huge.reason
    assert isinstance(surrogate, InvalidCommand) and "reservation_id" in surrogate.reason
    assert isinstance(fine, Accepted) and all(isinstance(r, Accepted) for r in later)
    assert in_flight == 0


@pytest.mark.parametrize("sku", [None, b"sku-1", 7])
@pytest.mark.parametrize("path", ["gateway", "local"])
def test_a_command_whose_entity_is_not_a_str_is_refused(sku, path):
    """A SKU given as None, bytes or an int is an InvalidCommand, not an AttributeError."""
    async def go():
        gw = real_gateway(memory_store()) if path == "gateway" else local_shards(memory_store())
        return await gw.submit(reserve("r-1", sku=sku))

    reply = asyncio.run(go())
    assert isinstance(reply, InvalidCommand) and "routed" in reply.reason


def test_a_command_no_shard_hosts_is_refused_in_process_too():
    """`LocalShards` answers an unknown command type with an InvalidCommand, as the gateway does."""
    async def go():
        return await local_shards(memory_store()).submit("reserve please")

    assert isinstance(asyncio.run(go()), InvalidCommand)


def test_a_huge_reservation_is_refused_at_once():
    """A reservation of more than MAX_UNITS_PER_RESERVATION units is refused, cheaply."""
    async def go():
        gw = real_gateway(memory_store())
        await gw.submit_many(on_sale("sku-ok", qty=10**8))
        return (await gw.submit(reserve("big", qty=10**7)),
                await gw.submit(reserve("max", qty=MAX_UNITS_PER_RESERVATION)))

    big, most = asyncio.run(go())
    assert big.code == "quantity_too_large" and isinstance(most, Accepted)


# --- idempotency: one id, one command ------------------------------------------------


@pytest.mark.parametrize("path", ["gateway", "local"])
def test_an_id_reused_with_another_payload_is_a_conflict(path):
    """The same command id with another SKU, user or quantity is refused as
    IdempotencyConflict; with only `now` and the deadline changed it is a duplicate."""
    async def go():
        store = memory_store()
        gw = real_gateway(store) if path == "gateway" else local_shards(store)
        await gw.submit_many(on_sale("sku-ok") + on_sale("sku-2"))
        first = await gw.submit(reserve("r1"), command_id="c1")
        restamped = await gw.submit(reserve("r1", now=T0 + 500), command_id="c1")
        other_qty = await gw.submit(reserve("r1", qty=2), command_id="c1")
        other_user = await gw.submit(reserve("r1", user="mallory"), command_id="c1")
        other_kind = await gw.submit(ConfirmReservation(reservation_id="r1", sku="sku-ok", now=T0),
                                     command_id="c1")
        return first, restamped, other_qty, other_user, other_kind

    first, restamped, *conflicts = asyncio.run(go())
    assert isinstance(first, Accepted) and isinstance(restamped, Accepted) and restamped.duplicate
    assert restamped.events == first.events
    assert all(isinstance(r, IdempotencyConflict) and r.command_id == "c1" for r in conflicts), conflicts


@pytest.mark.parametrize("path", ["gateway", "local"])
def test_a_release_must_name_the_owner_and_cannot_undo_a_sale(path):
    """Another user's release is refused and changes nothing; a confirmed reservation cannot
    be released: both paths answer alike."""
    async def go():
        store = memory_store()
        gw = real_gateway(store) if path == "gateway" else local_shards(store)
        await gw.submit_many(on_sale("sku-ok"))
        await gw.submit(reserve("r1", user="alice"))
        stranger = await gw.submit(ReleaseReservation(reservation_id="r1", sku="sku-ok",
                                                      user="mallory", reason="x", now=T0 + 2))
        await gw.submit(ConfirmReservation(reservation_id="r1", sku="sku-ok", now=T0 + 2))
        owner = await gw.submit(ReleaseReservation(reservation_id="r1", sku="sku-ok", user="alice",
                                                   reason="x", now=T0 + 3))
        return stranger, owner, await gw.query("sku", "sku-ok")

    stranger, owner, state = asyncio.run(go())
    assert isinstance(stranger, NotReservationOwner) and stranger.user == "mallory"
    assert isinstance(owner, AlreadyConfirmed)
    assert (state.available, state.reserved, state.sold) == (99, 0, 1)


def test_a_checkout_driven_again_with_a_fresh_now_is_answered_as_duplicates():
    """Placing the same order again later (new `now`, so new deadlines) repeats nothing and
    meets no conflict; cancelling it twice with different reasons neither."""
    async def go():
        shards = shop(memory_store())
        await shards.submit_many(on_sale("sku-ok"))
        checkout = Checkout(shards)  # type: ignore[arg-type]
        lines = (("sku-ok", 2),)
        first = await checkout.place(order_id="o1", user="u1", lines=lines, now=T0 + 1)
        again = await checkout.place(order_id="o1", user="u1", lines=lines, now=T0 + 5_000)
        cancelled = await checkout.cancel(order_id="o1", reason="payment_failed", now=T0 + 6_000)
        recancelled = await checkout.cancel(order_id="o1", reason="user_cancelled", now=T0 + 7_000)
        return first, again, cancelled, recancelled, await shards.query("sku", "sku-ok")

    first, again, cancelled, recancelled, state = asyncio.run(go())
    assert first.status == again.status == "placed" and first.total_cents == again.total_cents
    assert cancelled.status == recancelled.status == "cancelled"
    assert (state.available, state.reserved) == (100, 0)


def test_a_checkout_line_past_the_limit_is_refused_before_anything_is_recorded():
    """A line of more units than one reservation may hold is refused without any event."""
    async def go():
        store = memory_store()
        shards = shop(store)
        await shards.submit_many(on_sale("sku-ok"))
        before = sum(store.streams().values())
        result = await Checkout(shards).place(  # type: ignore[arg-type]
            order_id="o1", user="u1", lines=(("sku-ok", MAX_UNITS_PER_RESERVATION + 1),), now=T0 + 1)
        return result, sum(store.streams().values()) - before

    result, recorded = asyncio.run(go())
    assert (result.status, result.reason, recorded) == ("refused", "quantity_too_large", 0)


def test_a_reply_that_cannot_cross_the_wire_is_replaced_by_a_refusal():
    """A reply carrying a value msgpack cannot take becomes an InvalidCommand saying why; the
    other replies of its batch cross unchanged."""
    from saleday.actors.sku import SoldOut

    wire = Wire(sku_decider.commands)
    fine = SoldOut(sku="a", requested=1, available=0)
    bad, same = wire.decode_replies(wire.encode_replies([SoldOut(sku="\ud800", requested=1,
                                                                 available=0), fine]))
    assert isinstance(bad, InvalidCommand) and "cannot cross the wire" in bad.reason
    assert same == fine
