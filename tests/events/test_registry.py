"""The type registry: wire names, encode/decode, upcasters, and what it refuses.

Every test builds a fresh `EventRegistry()`; the process-wide `registry` is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from saleday.events import (
    ZERO_HASH,
    Envelope,
    EventDecodeError,
    EventRegistry,
    UnknownEventType,
    UnknownSchemaVersion,
    open_store,
)


def envelope(type_: str, data: dict, *, schema_version: int = 1, stream: str = "sku-1",
             version: int = 7) -> Envelope:
    """A hand-built recorded envelope (hashes are irrelevant to decoding)."""
    return Envelope(stream=stream, version=version, type=type_, schema_version=schema_version,
                    recorded_at=1, command_id="cmd", correlation_id="", causation_id="",
                    data=data, prev_hash=ZERO_HASH, hash=ZERO_HASH)


@pytest.fixture
def reg() -> EventRegistry:
    return EventRegistry()


def define_stock_reserved(reg: EventRegistry, version: int = 1) -> type:
    @reg.event("inventory.stock_reserved", version=version)
    @dataclass(frozen=True, slots=True)
    class StockReserved:
        sku: str
        qty: int
        order_id: str

    return StockReserved


# -- registration -------------------------------------------------------------------


def test_a_frozen_slotted_dataclass_registers_under_its_wire_name(reg):
    """Given a frozen slotted dataclass, when registered, then its wire name maps both ways."""
    cls = define_stock_reserved(reg)
    assert "inventory.stock_reserved" in reg
    assert reg.names() == ["inventory.stock_reserved"]
    assert reg.wire_name(cls) == "inventory.stock_reserved"


def test_registries_are_independent(reg):
    """Given two registries, when one registers a type, then the other does not know it."""
    define_stock_reserved(reg)
    assert "inventory.stock_reserved" not in EventRegistry()


def test_a_non_frozen_dataclass_is_refused(reg):
    """Given a mutable dataclass, when registered, then TypeError is raised and nothing is kept."""

    @dataclass(slots=True)
    class Mutable:
        sku: str

    with pytest.raises(TypeError, match="frozen"):
        reg.register(Mutable, "inventory.mutable")
    assert "inventory.mutable" not in reg


def test_a_non_slotted_dataclass_is_refused(reg):
    """Given a frozen dataclass without slots, when registered, then TypeError is raised."""

    @dataclass(frozen=True)
    class NoSlots:
        sku: str

    with pytest.raises(TypeError, match="slotted"):
        reg.register(NoSlots, "inventory.no_slots")
    assert "inventory.no_slots" not in reg


def test_a_plain_class_is_refused(reg):
    """Given a class that is not a dataclass, when registered, then TypeError is raised."""

    class Plain:
        __slots__ = ("sku",)

    with pytest.raises(TypeError):
        reg.register(Plain, "inventory.plain")


def test_a_wire_name_or_class_cannot_be_registered_twice(reg):
    """Given a registered type, when its name or its class is registered again, then ValueError."""
    cls = define_stock_reserved(reg)

    @dataclass(frozen=True, slots=True)
    class Other:
        sku: str

    with pytest.raises(ValueError, match="already registered"):
        reg.register(Other, "inventory.stock_reserved")
    with pytest.raises(ValueError, match="already registered"):
        reg.register(cls, "inventory.other_name")


@pytest.mark.parametrize("name, version", [("", 1), ("no_area", 1), ("inventory.x", 0)])
def test_a_bad_wire_name_or_version_is_refused(reg, name, version):
    """Given a wire name without an area or a schema version below 1, when registered, then ValueError."""

    @dataclass(frozen=True, slots=True)
    class Thing:
        a: int

    with pytest.raises(ValueError):
        reg.register(Thing, name, version=version)


# -- encode / decode ----------------------------------------------------------------


def test_encode_gives_wire_name_version_and_a_field_map(reg):
    """Given a registered event object, when encoded, then it yields its wire name, version and fields."""
    cls = define_stock_reserved(reg, version=3)
    assert reg.encode(cls(sku="A-1", qty=2, order_id="o-9")) == (
        "inventory.stock_reserved", 3, {"order_id": "o-9", "qty": 2, "sku": "A-1"})


def test_encoding_an_unregistered_object_is_refused(reg):
    """Given an object of an unregistered class, when encoded, then TypeError is raised."""

    @dataclass(frozen=True, slots=True)
    class Unknown:
        a: int

    with pytest.raises(TypeError, match="not a registered event type"):
        reg.encode(Unknown(a=1))


def test_decode_of_a_hand_built_envelope_round_trips(reg):
    """Given an encoded event, when its payload is decoded from an envelope, then an equal object comes back."""
    cls = define_stock_reserved(reg)
    event = cls(sku="A-1", qty=2, order_id="o-9")
    name, version, data = reg.encode(event)
    back = reg.decode(envelope(name, data, schema_version=version))
    assert back == event and type(back) is cls


def test_an_event_round_trips_through_a_store(reg, tmp_path):
    """Given a registered event appended via new_event(), when read back and decoded, then it is equal."""

    @reg.event("inventory.restocked")
    @dataclass(frozen=True, slots=True)
    class Restocked:
        sku: str
        qty: int
        lots: tuple[str, ...] = ()
        note: str | None = None

    events = [Restocked(sku="A-1", qty=5, lots=("L1", "L2")), Restocked(sku="A-1", qty=1)]
    store = open_store(f"sqlite:///{tmp_path}/events.db")
    try:
        store.append("sku-A-1", [reg.new_event(e, command_id=f"c{i}", recorded_at=10 + i,
                                               correlation_id="corr", causation_id="cause")
                                 for i, e in enumerate(events)], 0)
        envs = store.read("sku-A-1")
    finally:
        store.close()
    assert [e.type for e in envs] == ["inventory.restocked"] * 2
    assert [(e.command_id, e.recorded_at, e.correlation_id, e.causation_id) for e in envs] == [
        ("c0", 10, "corr", "cause"), ("c1", 11, "corr", "cause")]
    assert reg.decode_all(envs) == events


def test_decode_honours_defaults_and_post_init(reg):
    """Given a class with defaults and __post_init__, when a payload omits a defaulted field, then the class builds it."""
    seen = []

    @reg.event("pricing.discount_set")
    @dataclass(frozen=True, slots=True)
    class DiscountSet:
        sku: str
        cents: int = 0
        tags: tuple = field(default=())

        def __post_init__(self):
            seen.append(self.sku)

    assert reg.decode(envelope("pricing.discount_set", {"sku": "A"})) == DiscountSet(sku="A")
    assert seen == ["A", "A"]


def test_an_unknown_type_names_stream_and_version(reg):
    """Given an envelope of an unregistered wire name, when decoded, then UnknownEventType names where it is."""
    define_stock_reserved(reg)
    with pytest.raises(UnknownEventType) as info:
        reg.decode(envelope("inventory.stock_released", {"sku": "A"}, stream="sku-9", version=42))
    assert (info.value.stream, info.value.version, info.value.event_type) == (
        "sku-9", 42, "inventory.stock_released")
    assert "sku-9" in str(info.value) and "42" in str(info.value)


# -- upcasters ----------------------------------------------------------------------


def define_v3_with_upcasters(reg: EventRegistry, calls: list):
    @reg.event("inventory.stock_reserved", version=3)
    @dataclass(frozen=True, slots=True)
    class StockReserved:
        sku: str
        qty: int
        order_id: str
        warehouse: str

    @reg.upcaster("inventory.stock_reserved", from_version=1)
    def v1_to_v2(data):
        calls.append(1)
        data = dict(data)
        data["qty"] = data.pop("quantity")
        return data

    @reg.upcaster("inventory.stock_reserved", from_version=2)
    def v2_to_v3(data):
        calls.append(2)
        assert "qty" in data, "v2 -> v3 must run after v1 -> v2"
        return {**data, "warehouse": data.get("warehouse", "default")}

    return StockReserved


def test_upcasters_run_in_order_from_the_recorded_version(reg):
    """Given a v1 payload and upcasters v1->v2->v3, when decoded, then both run in order and a v3 object results."""
    calls: list = []
    cls = define_v3_with_upcasters(reg, calls)
    v1 = {"sku": "A", "quantity": 2, "order_id": "o"}
    assert reg.decode(envelope("inventory.stock_reserved", v1, schema_version=1)) == cls(
        sku="A", qty=2, order_id="o", warehouse="default")
    assert calls == [1, 2]
    assert v1 == {"sku": "A", "quantity": 2, "order_id": "o"}  # the recorded payload is left alone


def test_upcasting_starts_at_the_recorded_version(reg):
    """Given a v2 payload, when decoded, then only the v2->v3 upcaster runs."""
    calls: list = []
    cls = define_v3_with_upcasters(reg, calls)
    v2 = {"sku": "A", "qty": 2, "order_id": "o", "warehouse": "east"}
    assert reg.decode(envelope("inventory.stock_reserved", v2, schema_version=2)) == cls(
        sku="A", qty=2, order_id="o", warehouse="east")
    assert calls == [2]


def test_a_current_version_payload_is_not_upcast(reg):
    """Given a payload at the current version, when decoded, then no upcaster runs."""
    calls: list = []
    cls = define_v3_with_upcasters(reg, calls)
    v3 = {"sku": "A", "qty": 2, "order_id": "o", "warehouse": "w"}
    assert reg.decode(envelope("inventory.stock_reserved", v3, schema_version=3)) == cls(**v3)
    assert calls == []


def test_an_upcaster_cannot_be_registered_twice(reg):
    """Given an upcaster from v1, when another from v1 is registered for the same name, then ValueError."""
    reg.upcaster("inventory.stock_reserved", from_version=1)(lambda d: d)
    with pytest.raises(ValueError):
        reg.upcaster("inventory.stock_reserved", from_version=1)(lambda d: d)


def test_a_schema_version_newer_than_the_code_is_refused(reg):
    """Given a payload recorded by newer code (v4 > v3), when decoded, then UnknownSchemaVersion names it."""
    define_v3_with_upcasters(reg, [])
    with pytest.raises(UnknownSchemaVersion) as info:
        reg.decode(envelope("inventory.stock_reserved", {"sku": "A"}, schema_version=4,
                            stream="sku-3", version=9))
    assert (info.value.stream, info.value.version, info.value.event_type,
            info.value.schema_version) == ("sku-3", 9, "inventory.stock_reserved", 4)


def test_a_missing_upcaster_is_refused(reg):
    """Given v3 code with only a v2->v3 upcaster, when a v1 payload is decoded, then UnknownSchemaVersion names v1."""

    @reg.event("inventory.stock_reserved", version=3)
    @dataclass(frozen=True, slots=True)
    class StockReserved:
        sku: str

    reg.upcaster("inventory.stock_reserved", from_version=2)(lambda d: d)
    with pytest.raises(UnknownSchemaVersion) as info:
        reg.decode(envelope("inventory.stock_reserved", {"sku": "A"}, schema_version=1))
    assert info.value.schema_version == 1
    assert "v1" in str(info.value)


def test_a_schema_version_below_one_is_refused(reg):
    """Given an envelope claiming schema version 0, when decoded, then UnknownSchemaVersion is raised."""
    define_stock_reserved(reg, version=2)
    with pytest.raises(UnknownSchemaVersion):
        reg.decode(envelope("inventory.stock_reserved", {"sku": "A"}, schema_version=0))


# -- payloads that no longer fit ----------------------------------------------------


@pytest.mark.parametrize("data", [
    pytest.param({"sku": "A", "qty": 1}, id="missing-field"),
    pytest.param({"sku": "A", "qty": 1, "order_id": "o", "colour": "red"}, id="extra-field"),
    pytest.param({"sku": "A", "qty": 1, "colour": "red"}, id="renamed-field"),
    pytest.param({}, id="empty"),
])
def test_a_payload_that_no_longer_fits_the_class_is_refused(reg, data):
    """Given a payload whose fields do not match the class, when decoded, then EventDecodeError names where it is."""
    define_stock_reserved(reg)
    with pytest.raises(EventDecodeError) as info:
        reg.decode(envelope("inventory.stock_reserved", data, stream="sku-5", version=3))
    assert (info.value.stream, info.value.version, info.value.event_type) == (
        "sku-5", 3, "inventory.stock_reserved")


def test_an_upcast_payload_that_does_not_fit_is_refused(reg):
    """Given an upcaster whose output lacks a field, when decoded, then EventDecodeError is raised."""

    @reg.event("inventory.stock_reserved", version=2)
    @dataclass(frozen=True, slots=True)
    class StockReserved:
        sku: str
        qty: int

    reg.upcaster("inventory.stock_reserved", from_version=1)(lambda d: {"sku": d["sku"]})
    with pytest.raises(EventDecodeError):
        reg.decode(envelope("inventory.stock_reserved", {"sku": "A", "qty": 1}, schema_version=1))


# -- decoding in bulk -----------------------------------------------------------------


def test_decode_all_gives_what_decode_gives_one_by_one(reg):
    """Given current, upcast and field-less events, when decoded in bulk, then each equals its own `decode`."""
    cls = define_v3_with_upcasters(reg, [])

    @reg.event("inventory.sale_closed")
    @dataclass(frozen=True, slots=True)
    class SaleClosed:
        pass

    envs = [envelope("inventory.stock_reserved", {"sku": "A", "qty": 2, "order_id": "o",
                                                  "warehouse": "w"}, schema_version=3),
            envelope("inventory.stock_reserved", {"sku": "B", "quantity": 1, "order_id": "p"}),
            envelope("inventory.sale_closed", {})]
    decoded = reg.decode_all(envs)
    assert decoded == [reg.decode(e) for e in envs]
    assert decoded[0] == cls(sku="A", qty=2, order_id="o", warehouse="w")
    assert decoded[2] == SaleClosed()


@pytest.mark.parametrize("data", [
    pytest.param({"sku": "A", "qty": 1}, id="missing-field"),
    pytest.param({"sku": "A", "qty": 1, "colour": "red"}, id="renamed-field"),
])
def test_decode_all_refuses_what_decode_refuses_naming_the_event(reg, data):
    """Given a fitting event then one whose payload does not fit, when decoded in bulk, then EventDecodeError names the second."""
    define_stock_reserved(reg)
    envs = [envelope("inventory.stock_reserved", {"sku": "A", "qty": 1, "order_id": "o"}, version=1),
            envelope("inventory.stock_reserved", data, stream="sku-1", version=2)]
    with pytest.raises(EventDecodeError) as info:
        reg.decode_all(envs)
    assert (info.value.stream, info.value.version) == ("sku-1", 2)
    with pytest.raises(UnknownEventType):
        reg.decode_all([envelope("inventory.nothing_like_it", {})])
