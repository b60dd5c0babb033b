"""The payment provider's callback: an HMAC-SHA256 signature over timestamp and body.

    Saleday-Signature: t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

`v1` is the hex HMAC-SHA256, keyed with the shared secret, of `f"{t}.".encode() + body`
(the raw request body, byte for byte), as Stripe signs its webhooks. A callback is
accepted only when one `v1` matches (compared in constant time; several may be sent while
a secret is rotated) and `t` is within the tolerance of this server's clock. A signature
seen before is a replay: it is answered without doing anything (and the payment steps are
idempotent by payment id anyway). A stale one is refused, so an old capture cannot be
replayed after the window either.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict

HEADER = "Saleday-Signature"


class BadSignature(Exception):
    """The callback is not signed by the provider, or not now."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value a provider sends for `body` at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(header: str | None, body: bytes, secret: str, *, now_s: float,
           tolerance_s: int) -> tuple[int, str]:
    """(t, the matching v1) when the header signs `body` within the tolerance."""
    if not header:
        raise BadSignature(f"no {HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise BadSignature(f"{HEADER} must read t=<unix seconds>,v1=<hex>")
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    matched = next((c for c in candidates if hmac.compare_digest(c.encode(), expected.encode())),
                   None)
    if matched is None:
        raise BadSignature("the signature does not match the body")
    if abs(now_s - timestamp) > tolerance_s:
        raise BadSignature(f"the signature's timestamp is more than {tolerance_s} s from now")
    return timestamp, matched


class SeenSignatures:
    """The signatures of the last `capacity` accepted callbacks (replays are not acted on)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, signature: str) -> bool:
        if signature in self._seen:
            return False
        self._seen[signature] = None
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def forget(self, signature: str) -> None:
        self._seen.pop(signature, None)
