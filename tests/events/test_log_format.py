"""docs/LOG_FORMAT.md is true: its worked example and its reference verifier are checked here."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import msgpack
import pytest

from saleday.events import ChainVerifier, NewEvent, open_store

DOC = (Path(__file__).parents[2] / "docs" / "LOG_FORMAT.md").read_text()


def _block(lang: str, index: int = 0) -> str:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, re.S)[index]


def _hexes(name: str) -> bytes:
    return bytes.fromhex(re.search(rf"^{name} = ([0-9a-f]+)$", DOC, re.M).group(1))


EXAMPLE = json.loads(_block("json"))


def _new_event(e: dict) -> NewEvent:
    return NewEvent(type=e["type"], schema_version=e["schema_version"], data=e["data"],
                    recorded_at=e["recorded_at"], command_id=e["command_id"],
                    correlation_id=e["correlation_id"], causation_id=e["causation_id"])


def test_worked_example_recomputes_with_msgpack_and_hashlib_alone():
    """The documented bodies and hashes follow from the example by the documented rule."""
    prev = bytes(32)
    for n, e in enumerate(EXAMPLE, start=1):
        data = {k: e["data"][k] for k in sorted(e["data"])}
        body = msgpack.packb([e["stream"], e["version"], e["type"], e["schema_version"],
                              e["recorded_at"], e["command_id"], e["correlation_id"],
                              e["causation_id"], data])
        assert body == _hexes(f"body_{n}")
        prev = hashlib.blake2b(prev + body, digest_size=32).digest()
        assert prev == _hexes(f"hash_{n}")


def test_store_writes_the_documented_hashes(tmp_path):
    """Appending the example to a store yields exactly the documented hashes."""
    store = open_store(f"sqlite:///{tmp_path}/events.db")
    result = store.append("inventory-0", [_new_event(e) for e in EXAMPLE], 0)
    assert result.head_hash == _hexes("hash_2")
    first, second = store.read("inventory-0")
    assert first.hash == _hexes("hash_1") and second.prev_hash == _hexes("hash_1")
    ChainVerifier("inventory-0").feed([first, second])
    store.close()


def _reference_verify():
    namespace: dict = {}
    exec(compile(_block("python"), "LOG_FORMAT.md", "exec"), namespace)
    return namespace["verify"]


def test_reference_verifier_accepts_a_stored_log_and_names_a_tampered_event(tmp_path):
    """The doc's verifier passes a real log and reports the first altered event."""
    verify = _reference_verify()
    store = open_store(f"sqlite:///{tmp_path}/events.db")
    store.append("inventory-0", [_new_event(e) for e in EXAMPLE], 0)
    store.append("inventory-1", [_new_event(EXAMPLE[0])], 0)
    events = [e._asdict() for s in ("inventory-0", "inventory-1") for e in store.read(s)]
    assert verify(events) is None
    events[1]["data"] = {**events[1]["data"], "qty": 1}
    assert verify(events) == ("inventory-0", 2, "hash does not match the content")
    store.close()


@pytest.mark.parametrize("field", ["recorded_at", "command_id", "type"])
def test_every_envelope_field_is_covered_by_the_hash(tmp_path, field):
    """Altering any hashed envelope field breaks the documented rule."""
    verify = _reference_verify()
    store = open_store(f"sqlite:///{tmp_path}/events.db")
    store.append("inventory-0", [_new_event(e) for e in EXAMPLE], 0)
    events = [e._asdict() for e in store.read("inventory-0")]
    events[0][field] = events[0][field] + (1 if isinstance(events[0][field], int) else "x")
    assert verify(events) == ("inventory-0", 1, "hash does not match the content")
    store.close()
