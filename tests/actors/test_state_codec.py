"""Shard snapshots are data: every decider's states survive the state codec unchanged, and
what a store hands back is decoded for the declared state classes only, never unpickled."""

from __future__ import annotations

import dataclasses
import enum
import pickle
import typing
from pathlib import Path

import immutables
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saleday.actors import state_codec
from saleday.actors.campaign import campaign_decider
from saleday.actors.host import SNAPSHOT_FORMAT, Request, ShardHost
from saleday.actors.member import member_decider
from saleday.actors.order import order_decider
from saleday.actors.presale import presale_decider
from saleday.actors.price import price_decider
from saleday.actors.session import session_decider
from saleday.actors.sku import AddStock, ConfigureSale, ReserveStock, sku_decider
from saleday.actors.state_codec import StateCodec, StateCodecError
from saleday.actors.team import team_decider
from saleday.events import Snapshot, open_store

T0 = 1_762_790_400_000
DECIDERS = [sku_decider, session_decider, campaign_decider, team_decider, order_decider,
            member_decider, price_decider, presale_decider]


def values_of(hint: typing.Any) -> st.SearchStrategy:
    """Any value of a declared state field type (the codec must take them all)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is int:
        return st.integers(-(2**63), 2**63 - 1)
    if hint is str:
        return st.text(max_size=6)
    if hint is bool:
        return st.booleans()
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(values_of(args[0]), max_size=3).map(tuple)
        return st.tuples(*(values_of(a) for a in args))
    if origin is immutables.Map:
        return st.dictionaries(values_of(args[0]), values_of(args[1]), max_size=3).map(
            immutables.Map)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return st.builds(hint, **{f.name: values_of(hints[f.name])
                                  for f in dataclasses.fields(hint)})
    raise AssertionError(f"no strategy for {hint!r}")


def round_trip(codec: StateCodec, state: object) -> object:
    blob = codec.packer()(state)
    return codec.decode(msgpack.unpackb(blob, use_list=False, raw=False, strict_map_key=False))


@pytest.mark.parametrize("decider", DECIDERS, ids=lambda d: d.kind)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_deciders_states_survive_the_codec_unchanged(decider, data):
    """Any state of any decider's declared state class decodes to an equal state."""
    codec = state_codec.for_decider(decider)
    state = data.draw(values_of(type(decider.initial("e"))))
    back = round_trip(codec, state)
    assert back == state and type(back) is type(state)


def folded_states() -> list[object]:
    """States folded from real events by the decider tests' own helpers."""
    from tests.actors import test_campaign as tc
    from tests.actors import test_member as tm
    from tests.actors import test_order as to
    from tests.actors import test_session as ts
    from tests.actors import test_sku as tk
    from tests.actors import test_team as tt

    return [
        tk.on_sale(tk.stock_reserved("r1"), tk.stock_reserved("r2", user="bob"),
                   tiers=tk.HALF_THEN_FULL).state,
        ts.session(ts.started(), ts.attributed(), ts.received(), ts.locked(), ts.changed("placed"),
                   ts.delivered("p1", ts.NOW), ts.visited(), ts.voided("c2", "o2")).state,
        tc.running(tc.granted(), tc.drawn(coupons=1), coupons=5).state,
        tt.open_team(*tt.FILLED).state,
        to.order(to.started(), to.placed(), to.captured(),
                 to.refunded("p2", reason="duplicate_payment")).state,
        given_member(tm.recorded(), tm.earned("a", 20), tm.earned("b", 7, days=30),
                     tm.TierChanged(user=tm.USER, previous="regular", tier="gold", rule="r",
                                    changed_at=tm.T0),
                     tm.PointsRedeemed(user=tm.USER, redemption_id="r1", points=9,
                                       taken=(("b", 7), ("a", 2)), redeemed_at=tm.T0),
                     *tm.given(tm.member_decider, tm.DIAMOND).when(tm.claim()).events),
    ]


def given_member(*events: object) -> object:
    from saleday.actors.decider import fold

    return fold(member_decider, "alice", events)


def test_states_folded_from_real_events_survive_the_codec_unchanged():
    """Each decider's state after a realistic run of events decodes to an equal state."""
    deciders = {type(d.initial("e")): d for d in DECIDERS}
    for state in folded_states():
        assert round_trip(state_codec.for_decider(deciders[type(state)]), state) == state


@pytest.mark.parametrize("decider", DECIDERS, ids=lambda d: d.kind)
def test_the_allow_list_is_the_state_class_and_the_classes_its_fields_name(decider):
    """A decider's codec knows its state class and the dataclasses nested in it, nothing else."""
    codec = state_codec.for_decider(decider)
    root = type(decider.initial("e"))
    assert root.__qualname__ in codec.schema
    assert set(codec.schema) == {cls.__qualname__ for cls in nested_dataclasses(root)}


def test_the_sku_and_order_schemas_name_classes_and_fields_not_modules():
    """The SKU and order snapshots name the same classes and fields as when each decider was
    one module, so snapshots written before they became packages still load."""
    assert state_codec.for_decider(sku_decider).schema == {
        "Reservation": ("user", "qty", "unit_prices", "tiers", "deadline"),
        "SkuState": ("sku", "known", "stocked", "available", "reserved", "sold", "tiers",
                     "tier_taken", "per_user_limit", "start", "end", "configured",
                     "reservations", "per_user", "voided", "confirmed",
                     # added last, with defaults (presale set-asides): older snapshots load
                     "set_aside", "set_asides", "set_aside_closed",
                     # added last (refunds return sold units)
                     "returned")}
    assert state_codec.for_decider(order_decider).schema == {
        "OrderState": ("order_id", "status", "user", "lines", "coupon_id", "payment_deadline",
                       "started_at", "line_prices", "subtotal_cents", "discount_cents",
                       "total_cents", "cancel_reason", "payment_id", "captured_cents",
                       "refunds", "refunded_cents", "points", "points_cents")}


def nested_dataclasses(cls: type) -> set[type]:
    """`cls` and every dataclass its fields' declared types name, however deep."""
    found, todo = set(), [cls]
    while todo:
        hint = todo.pop()
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            if hint in found:
                continue
            found.add(hint)
            todo.extend(typing.get_type_hints(hint).values())
        else:
            todo.extend(typing.get_args(hint))
    return found


def test_an_unknown_class_name_is_refused():
    """Data naming a class outside the allow-list is refused, however harmless the name."""
    codec = state_codec.for_decider(sku_decider)
    for name in ("os.system", "builtins:eval", "SessionState", "Evil"):
        with pytest.raises(StateCodecError, match="not a state class"):
            codec.decode((name, ()))


def test_values_of_the_wrong_shape_are_refused():
    """Field values that are not of the declared types make the data unusable."""
    codec = state_codec.for_decider(sku_decider)
    good = msgpack.unpackb(codec.packer()(sku_decider.initial("a")), use_list=False, raw=False)
    name, values = good
    with pytest.raises(StateCodecError):
        codec.decode((name, values[:-1]))                      # a field missing
    with pytest.raises(StateCodecError):
        codec.decode((name, ("a", "yes") + values[2:]))        # a str for a bool
    with pytest.raises(StateCodecError):
        codec.decode((name, values[:12] + ({"r1": ("u", 1)},) + values[13:]))  # a short object


def test_a_state_of_an_undeclared_class_is_not_encoded():
    """Encoding refuses a class the decider did not declare (its snapshot is skipped)."""
    with pytest.raises(StateCodecError, match="not a declared state class"):
        state_codec.for_decider(sku_decider).packer()(session_decider.initial("u"))


# -- through the shard host ---------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/events.db")
    yield s
    s.close()


def sku_host(store, **kw) -> ShardHost:
    return ShardHost(decider=sku_decider, store=store, stream="sku-000", clock=lambda: T0, **kw)


def busy(h: ShardHost) -> None:
    h.handle([Request("add", AddStock(sku="a", qty=10, now=T0)),
              Request("sale", ConfigureSale(sku="a", tiers=((0, 100),), per_user_limit=0,
                                            start=T0, end=T0 + 86_400_000, now=T0))])
    h.handle([Request(f"c{i}", ReserveStock(reservation_id=f"r{i}", user=f"u{i}", sku="a",
                                            qty=1, now=T0, deadline=T0 + 60_000))
              for i in range(3)])


class Plant:
    """A pickle that creates a file when it is unpickled (what an attacker would plant)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_planted_pickle_in_the_snapshot_slot_is_never_run(store, tmp_path):
    """A pickle written where the snapshot goes is not executed; the shard replays instead."""
    h = sku_host(store)
    busy(h)
    expected = h.state_of("a")
    planted = tmp_path / "pwned"
    store.save_snapshot(Snapshot(stream="sku-000", version=h.version, recorded_at=T0,
                                 data=pickle.dumps(Plant(planted))))
    recovered = sku_host(store)
    assert not planted.exists()
    assert recovered.snapshot_version == 0 and recovered.version == h.version
    assert recovered.state_of("a") == expected and recovered.state_of("a").reserved == 3


def test_an_old_pickle_snapshot_is_unusable_and_the_stream_is_replayed(store):
    """A format-3 (pickle) snapshot is not read; recovery replays the stream."""
    h = sku_host(store)
    busy(h)
    old = pickle.dumps({"format": 3, "kind": "sku", "states": {}, "dedup": ([], [])})
    store.save_snapshot(Snapshot(stream="sku-000", version=h.version, recorded_at=T0, data=old))
    recovered = sku_host(store)
    assert recovered.snapshot_version == 0 and recovered.states == h.states


def test_a_snapshot_naming_an_unknown_class_is_refused_and_the_stream_replayed(store):
    """One entity under a class name outside the allow-list makes the whole snapshot unusable."""
    h = sku_host(store, snapshot_every=1)
    busy(h)
    h.save_snapshot()
    header, encoded = state_codec.unpack_snapshot(store.load_snapshot("sku-000").data)
    assert header["format"] == SNAPSHOT_FORMAT and header["kind"] == "sku"
    name, values = encoded["a"]
    assert name == "SkuState"
    packb = msgpack.Packer(use_bin_type=True).pack
    forged = state_codec.pack_snapshot(header, {"a": packb(("posix.system", values))})
    store.save_snapshot(Snapshot(stream="sku-000", version=h.version, recorded_at=T0, data=forged))
    recovered = sku_host(store)
    assert recovered.snapshot_version == 0 and recovered.states == h.states


def test_a_snapshot_from_code_with_other_state_fields_is_refused(store):
    """A snapshot whose recorded classes or fields differ from this code's is not decoded."""
    h = sku_host(store, snapshot_every=1)
    busy(h)
    h.save_snapshot()
    header, encoded = state_codec.unpack_snapshot(store.load_snapshot("sku-000").data)
    packb = msgpack.Packer(use_bin_type=True).pack
    header = {**header, "classes": {**header["classes"], "Reservation": ("user", "qty")}}
    forged = state_codec.pack_snapshot(header, {e: packb(s) for e, s in encoded.items()})
    store.save_snapshot(Snapshot(stream="sku-000", version=h.version, recorded_at=T0, data=forged))
    recovered = sku_host(store)
    assert recovered.snapshot_version == 0 and recovered.states == h.states


def test_a_snapshot_round_trips_states_and_dedup(store):
    """A host recovered from a msgpack snapshot has the same states, version and dedup."""
    h = sku_host(store, snapshot_every=1)
    busy(h)
    h.save_snapshot()
    recovered = sku_host(store)
    assert recovered.snapshot_version == h.version
    assert recovered.states == h.states and recovered._dedup == h._dedup


class Phase(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Leaf:
    phase: Phase
    note: str | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Tree:
    leaves: tuple[Leaf, ...]
    by_name: dict[str, Leaf]
    pairs: immutables.Map[tuple[str, int], tuple[int, ...]]


def test_enums_optionals_dicts_and_nested_arrays_of_state_classes_round_trip():
    """The codec takes the shapes a future state may use, not only today's."""
    codec = StateCodec([Tree])
    leaf = Leaf(phase=Phase.CLOSED, note=None)
    tree = Tree(leaves=(leaf, Leaf(phase=Phase.OPEN, note="x")), by_name={"a": leaf},
                pairs=immutables.Map({("k", 1): (1, 2)}))
    assert round_trip(codec, tree) == tree
    with pytest.raises(StateCodecError, match="is no Phase"):
        codec.decode(("Leaf", ("ajar", None)))


def test_a_state_field_of_an_undeclared_type_is_refused_when_the_codec_is_built():
    """A field typed `Any` (or anything the codec cannot check) fails at once, not on load."""

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Loose:
        anything: typing.Any

    with pytest.raises(TypeError, match="not supported"):
        StateCodec([Loose])


def test_a_background_snapshot_reencodes_only_the_entities_that_changed(store):
    """Taken on the background thread, a snapshot reuses the bytes of every entity whose
    state is the very object encoded last time, and recovers to the same states."""
    h = sku_host(store, snapshot_in_background=True)
    busy(h)
    h.handle([Request("add-b", AddStock(sku="b", qty=5, now=T0))])
    h.save_snapshot()
    h.wait_for_snapshot()
    first = dict(h._encoded)
    h.handle([Request("more-a", AddStock(sku="a", qty=1, now=T0))])
    h.save_snapshot()
    h.wait_for_snapshot()
    assert h._encoded["b"][1] is first["b"][1]
    assert h._encoded["a"][1] is not first["a"][1]
    recovered = sku_host(store)
    assert recovered.snapshot_version == h.version and recovered.states == h.states
