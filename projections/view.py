"""The shape every view has: fold envelopes, show itself as JSON, and digest that JSON.

A view's result must not depend on how streams interleave: events of one stream arrive
in version order, but there is no order across streams (a split projection sees them
in another order than a single one, and both must give the same digest).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from events.envelope import Envelope


class View(ABC):
    """A fold over envelopes into a state the view owns (mutated in place, for speed)."""

    name: ClassVar[str]

    @abstractmethod
    def apply(self, env: Envelope) -> None:
        """Fold one event; ignore event types this view does not read."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The whole view as JSON-native values, keys in a stable order."""

    def digest(self) -> str:
        """BLAKE2b-256 (hex) of the canonical JSON of `to_json()`."""
        return digest_json(self.to_json())


def digest_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=32).hexdigest()
