"""Idempotency keys: the client's key becomes the command id, one user's keys apart from
another's, and the same key with a different body is caught here at the edge.

`scoped_id(user, key)` is a short hash of (user, key), so two users sending the same key
get different ids and an id reveals neither. `EdgeKeys` remembers, per replica and for the
last `capacity` keys, the hash of the body each key came with: a different body under a
key already seen is an `IdempotencyConflict` before anything is submitted. (Across
replicas the shard's own record catches it: checkout compares the order it finds with the
request; the shard host refuses a command id reused with another command.)
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections import OrderedDict
from typing import Any

from saleday.http.problems import ApiProblem

KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def fresh_id() -> str:
    """28 hex digits for an id the server mints: the millisecond (48 bits), then 64 random
    bits, so an id minted later sorts later (as UUIDv7 and ULID do). The command ids made
    from it then land at the end of the log's command-id index, where random ids land
    anywhere in it and cost several times more per append as the log grows
    (docs/DESIGN_NOTES.md, "Command ids in time order")."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def scoped_id(scope: str, key: str) -> str:
    """A 24-hex-digit id for `key` sent by `scope` (a user, or "operator")."""
    return hashlib.sha256(f"{scope}\x00{key}".encode()).hexdigest()[:24]


def body_hash(body: Any) -> str:
    """The hash of a request body as validated (so key order and spacing do not count)."""
    data = body.model_dump(mode="json") if hasattr(body, "model_dump") else body
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not KEY.match(key):
        raise ApiProblem(422, "invalid_idempotency_key",
                         "Idempotency-Key must be 1-255 printable ASCII characters, no spaces")
    return key


def conflict(key: str) -> ApiProblem:
    return ApiProblem(409, "idempotency_conflict",
                      "this Idempotency-Key was used with a different request body",
                      refusal="IdempotencyConflict", idempotency_key=key)


class EdgeKeys:
    """(scope, route, key) -> body hash, for the last `capacity` keys."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    def check(self, scope: str, route: str, key: str | None, body: Any) -> None:
        """Record the key's body; raise the conflict when it came with another before."""
        if key is None:
            return
        digest = body_hash(body)
        slot = (scope, route, key)
        seen = self._seen.get(slot)
        if seen is not None and seen != digest:
            raise conflict(key)
        self._seen[slot] = digest
        self._seen.move_to_end(slot)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
