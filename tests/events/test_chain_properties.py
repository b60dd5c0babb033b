"""Properties of canonical payloads, sealing and the hash chain, checked with Hypothesis."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from saleday.events import (
    ZERO_HASH,
    ChainVerifier,
    CorruptRecordError,
    HashChainBroken,
    InvalidEventData,
    NewEvent,
    StoredCommit,
    canonical,
    seal,
    verify_commits,
)
from saleday.events.codec import decode_commit

INT64 = st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1)
KEYS = st.text(max_size=6)
SCALARS = st.none() | st.booleans() | INT64 | st.text(max_size=12) | st.binary(max_size=12)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)
PAYLOADS = st.dictionaries(KEYS, VALUES, max_size=5)
STREAMS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:|\-]{0,15}", fullmatch=True)

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def as_read(value):
    """What a reader gets back for `value`: arrays as tuples, maps with sorted keys."""
    if isinstance(value, dict):
        return {k: as_read(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return tuple(as_read(v) for v in value)
    return value


def shuffled(value, rnd: random.Random):
    """`value` with every map's keys in a random order and arrays as lists or tuples at random."""
    if isinstance(value, dict):
        keys = list(value)
        rnd.shuffle(keys)
        return {k: shuffled(value[k], rnd) for k in keys}
    if isinstance(value, (list, tuple)):
        items = [shuffled(v, rnd) for v in value]
        return tuple(items) if rnd.random() < 0.5 else items
    return value


def keys_sorted(value) -> bool:
    if isinstance(value, dict):
        return list(value) == sorted(value) and all(keys_sorted(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(keys_sorted(v) for v in value)
    return True


def new_event(data, i=0):
    return NewEvent(type="prop.tested", data=data, command_id=f"c{i}", recorded_at=i,
                    correlation_id="corr", causation_id="")


def decode(sealed, stream):
    return decode_commit(stream, sealed.first_version, sealed.last_version, sealed.prev_hash,
                         sealed.hashes, sealed.body)


@PROPS
@given(stream=STREAMS, payloads=st.lists(PAYLOADS, min_size=1, max_size=4), base=st.integers(0, 2 ** 40))
def test_seal_then_decode_round_trips_the_payloads(stream, payloads, base):
    """Sealed events decode back to their payloads (arrays as tuples), at their versions, with a valid chain."""
    prev = ZERO_HASH if base == 0 else bytes(range(32))
    sealed = seal(stream, base, prev, [new_event(p, i) for i, p in enumerate(payloads)])
    envs = decode(sealed, stream)
    assert [e.version for e in envs] == list(range(base + 1, base + len(payloads) + 1))
    assert [e.data for e in envs] == [as_read(p) for p in payloads]
    assert all(keys_sorted(e.data) for e in envs)
    verifier = ChainVerifier(stream, base, prev)
    verifier.feed(envs)
    assert verifier.head_hash == sealed.head_hash == envs[-1].hash
    commit = StoredCommit(stream, sealed.first_version, sealed.last_version, sealed.prev_hash,
                          sealed.hashes, sealed.body)
    assert verify_commits(stream, [commit], base, prev) == (sealed.last_version, sealed.head_hash)


FLAT = st.dictionaries(KEYS, SCALARS | st.lists(SCALARS, max_size=3), max_size=5).map(
    lambda d: dict(sorted(d.items())))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flat=st.lists(FLAT, min_size=1, max_size=4), other=st.lists(PAYLOADS, max_size=1),
       base=st.integers(0, 2 ** 40))
def test_sealing_by_columns_and_event_by_event_give_the_same_commit(flat, other, base):
    """The column-at-a-time seal (common payloads) and the event-by-event seal (any payload) agree byte for byte."""
    from saleday.events.chain import _seal_columns, _seal_each

    prev = ZERO_HASH if base == 0 else bytes(range(32))
    events = [new_event(p, i) for i, p in enumerate(flat)]
    assert _seal_columns("s-1", base, prev, events) == _seal_each("s-1", base, prev, events)
    events += [new_event(p, len(flat) + i) for i, p in enumerate(other)]
    assert seal("s-1", base, prev, events) == _seal_each("s-1", base, prev, events)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flat=FLAT, other=PAYLOADS, base=st.integers(0, 2 ** 40))
def test_sealing_one_event_alone_and_event_by_event_give_the_same_commit(flat, other, base):
    """A commit of one event sealed on its own path is byte for byte the event-by-event seal, and verifies and decodes back."""
    from saleday.events.chain import _seal_each, _seal_one

    prev = ZERO_HASH if base == 0 else bytes(range(32))
    assert _seal_one("s-1", base, prev, new_event(flat)) == _seal_each("s-1", base, prev, [new_event(flat)])
    sealed = seal("s-1", base, prev, [new_event(other)])
    assert sealed == _seal_each("s-1", base, prev, [new_event(other)])
    commit = StoredCommit("s-1", sealed.first_version, sealed.last_version, sealed.prev_hash,
                          sealed.hashes, sealed.body)
    assert ChainVerifier("s-1", base, prev).read_commit(commit) == decode(sealed, "s-1")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 300), base=st.integers(0, 2 ** 40))
def test_a_commits_envelopes_carry_each_events_hashes_whatever_its_size(n, base):
    """Given a commit of n events, when decoded or read by the verifier, then event i carries hash i and hash i-1 as prev_hash."""
    prev = ZERO_HASH if base == 0 else bytes(range(32))
    sealed = seal("s-1", base, prev, [new_event({"i": i}, i) for i in range(n)])
    hashes = [sealed.hashes[i:i + 32] for i in range(0, 32 * n, 32)]
    envs = decode(sealed, "s-1")
    assert [e.hash for e in envs] == hashes
    assert [e.prev_hash for e in envs] == [prev, *hashes[:-1]]
    assert [(e.version, e.data) for e in envs] == [(base + 1 + i, {"i": i}) for i in range(n)]
    commit = StoredCommit("s-1", sealed.first_version, sealed.last_version, sealed.prev_hash,
                          sealed.hashes, sealed.body)
    assert ChainVerifier("s-1", base, prev).read_commit(commit) == envs


@PROPS
@given(data=PAYLOADS)
def test_canonical_is_idempotent_and_sorts_every_map(data):
    """canonical() sorts every map's keys, keeps the content, and changes nothing when applied again."""
    once = canonical(data)
    assert canonical(once) == once
    assert keys_sorted(once)
    assert as_read(once) == as_read(data)


@PROPS
@given(data=PAYLOADS, rnd=st.randoms(use_true_random=False))
def test_key_order_and_array_kind_do_not_change_the_hash(data, rnd):
    """The same payload with maps in any key order, and arrays as lists or tuples, seals to the same hash."""
    other = shuffled(data, rnd)
    a = seal("s", 0, ZERO_HASH, [new_event(data)])
    b = seal("s", 0, ZERO_HASH, [new_event(other)])
    assert a.head_hash == b.head_hash and a.body == b.body


@PROPS
@given(data=PAYLOADS, key=KEYS)
def test_a_different_payload_gives_a_different_hash(data, key):
    """Adding a key to the payload changes the event's hash."""
    assume(key not in data)
    changed = {**data, key: 1}
    assert seal("s", 0, ZERO_HASH, [new_event(data)]).head_hash != \
        seal("s", 0, ZERO_HASH, [new_event(changed)]).head_hash


def assert_detected(stream, sealed, body):
    """A damaged body must fail decoding or chain verification: it may never verify."""
    first, last = sealed.first_version, sealed.last_version
    commit = StoredCommit(stream, first, last, sealed.prev_hash, sealed.hashes, body)
    with pytest.raises(CorruptRecordError) as fast:
        verify_commits(stream, [commit])
    assert fast.value.stream == stream and first <= fast.value.version <= last
    for rows in (False, True):  # the audit's one-pass read: the same rule, the same place
        with pytest.raises(CorruptRecordError) as read:
            ChainVerifier(stream).read_commit(commit, rows)
        assert (read.value.stream, read.value.version) == (stream, fast.value.version)
    try:
        envs = decode_commit(stream, first, last, sealed.prev_hash, sealed.hashes, body)
    except CorruptRecordError as exc:
        assert exc.stream == stream and first <= exc.version <= last
        return
    with pytest.raises(HashChainBroken) as info:
        ChainVerifier(stream).feed(envs)
    assert info.value.stream == stream and first <= info.value.version <= last


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=st.lists(PAYLOADS, min_size=1, max_size=3), data=st.data())
def test_any_single_byte_change_in_a_body_is_detected(payloads, data):
    """Changing any one byte of a sealed body makes decoding or chain verification fail; it never passes."""
    sealed = seal("orders-1", 0, ZERO_HASH, [new_event(p, i) for i, p in enumerate(payloads)])
    body = bytearray(sealed.body)
    i = data.draw(st.integers(0, len(body) - 1), label="index")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != body[i]), label="new byte")
    body[i] = byte
    assert_detected("orders-1", sealed, bytes(body))


@pytest.mark.parametrize("payload, old, new", [
    pytest.param({"xs": [1, 2, 3, 4]}, b"\x94\x01\x02\x03\x04", b"\xca\x01\x02\x03\x04", id="array-to-float32"),
    pytest.param({"xs": [1, 2, 3, 4, 5, 6, 7, 8]}, b"\x98\x01", b"\xcb\x01", id="array-to-float64"),
    pytest.param({"xs": [1, 2, 3]}, b"\x93\x01\x02\x03", b"\xd5\x01\x02\x03", id="array-to-ext"),
    pytest.param({"xs": [255, 1, 2, 3]}, b"\x94\xcc\xff", b"\xd6\xff\xff", id="array-to-timestamp"),
    pytest.param({"k": "abc"}, b"\xa3abc", b"\xa3\xffbc", id="str-to-invalid-utf8"),
    pytest.param({"k": "abc"}, b"\xa3abc", b"\xa3abd", id="str-changes"),
    pytest.param({"n": 1}, b"\xa1n\x01", b"\xa1n\xc3", id="int-to-bool"),
])
def test_one_byte_changes_into_odd_msgpack_types_are_detected(payload, old, new):
    """A byte change that turns stored data into a float, ext or another type is still caught as corruption."""
    sealed = seal("orders-1", 0, ZERO_HASH, [new_event(payload)])
    assert sealed.body.count(old) == 1
    body = sealed.body.replace(old, new)
    assert len(body) == len(sealed.body)
    assert sum(a != b for a, b in zip(body, sealed.body)) <= 2
    assert_detected("orders-1", sealed, body)


@pytest.mark.parametrize("data", [
    {"price": 1.5}, {"a": [1, {"b": 2.0}]}, {1: "x"}, {"a": {b"k": 1}}, {"s": {1, 2}},
    {"o": object()}, {"t": (1, 1.0)},
])
def test_canonical_refuses_what_is_not_msgpack_native(data):
    """canonical() refuses floats, non-str keys and non-native objects anywhere in the payload."""
    with pytest.raises(InvalidEventData):
        canonical(data)


def test_check_returns_the_verified_prefix_and_keeps_the_head_before_the_break():
    """A tampered third event: check() vouches for two, names version 3, and the verifier
    stays at version 2 so feeding on cannot skip the break."""
    sealed = seal("s", 0, ZERO_HASH, [new_event({"n": i}, i) for i in range(4)])
    envs = decode(sealed, "s")
    envs[2] = envs[2]._replace(data={"n": 99})
    verifier = ChainVerifier("s")
    good, broken = verifier.check(envs)
    assert good == 2
    assert (broken.stream, broken.version, broken.reason) == \
        ("s", 3, "hash does not match the event's content")
    assert (verifier.version, verifier.head_hash) == (2, envs[1].hash)
    with pytest.raises(HashChainBroken):
        ChainVerifier("s").feed(iter(envs))
