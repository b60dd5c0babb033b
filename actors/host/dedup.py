"""A shard host's dedup record: which command ids it decided, and what they answered.

The record keeps the last `dedup_capacity` command ids, each with `(first, last)`, the
versions of its events ((0, 0) when it decided none), and its `fingerprint` when known:
`(first, last, fingerprint)` (actors/decider.py: every field but the stamped ones). A
retried id is answered from it, with no second effect; a repeated id carrying another
command is an `IdempotencyConflict`. Snapshots carry the fingerprints; what recovery
rebuilds from the log alone (the log records events, not commands) has none, and there a
repeated id is checked only against its recorded events: they must be about the
command's entity. Behind it stands the store's own command-id record (`_learn`).

Part of `ShardHost` (actors/host/shard.py), whose attributes it reads as annotated below;
a mixin rather than an object of its own, so the hot path calls it as directly as before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from saleday.actors.decider import (
    Decider,
    Fingerprint,
    IdempotencyConflict,
    fingerprint,
    same_command,
)
from saleday.actors.host.replies import Accepted, Reply, Request
from saleday.events import EventRegistry, EventStore
from saleday.events.codec import envelopes


class DedupRecord:
    """The dedup record of a `ShardHost`: remember, recall, and tell a retry from a reuse."""

    decider: Decider
    store: EventStore
    stream: str
    registry: EventRegistry
    dedup_capacity: int
    _dedup: OrderedDict[str, tuple]
    """command id -> (first, last) version of its events ((0, 0) when it decided none),
    then its fingerprint when known: `(first, last, fingerprint)`."""

    def _remember(self, command_id: str, versions: tuple) -> None:
        """Record `(first, last)` or `(first, last, fingerprint)` for a command id."""
        self._dedup[command_id] = versions
        if len(self._dedup) > self.dedup_capacity:
            self._dedup.popitem(last=False)

    def _learn(self, command_ids: Sequence[str]) -> None:
        """Put commands the store has recorded, but our dedup record forgot, back into it."""
        for command_id, last in self.store.recorded(self.stream, command_ids).items():
            if command_id in self._dedup:
                continue
            commit = next(iter(self.store.read_commits(self.stream, last)))
            versions = [env.version for env in envelopes([commit]) if env.command_id == command_id]
            if versions:
                self._remember(command_id, (versions[0], versions[-1]))

    def _recorded(self, command_id: str, command: Any = None) -> Reply | None:
        """The reply to a command decided before: its events, re-read from the log.

        Without a recorded fingerprint (rebuilt from the log) the events are checked to be
        about `command`'s entity; if they are not, the id was reused: a conflict."""
        recorded = self._dedup.get(command_id)
        if recorded is None:
            return None
        first, last = recorded[0], recorded[1]
        if not last:
            return Accepted((), 0, 0, duplicate=True)
        events = self.registry.decode_all(self.store.read(self.stream, first, last - first + 1))
        if len(recorded) < 3 and command is not None and events:
            entity_of = self.decider.entity_of
            try:
                entity = entity_of(command)
                other = next((e for e in events if entity_of(e) != entity), None)
            except Exception:  # noqa: BLE001 - a command without an entity is no match
                other = events[0]
            if other is not None:
                return IdempotencyConflict(command_id=command_id, reason=(
                    f"this id recorded {type(other).__name__} for {entity_of(other)!r}, "
                    f"not {type(command).__name__} for its entity"))
        return Accepted(tuple(events), first, last, duplicate=True)

    def _conflict(self, req: Request, prints: dict[int, Fingerprint],
                  seen: dict[str, int]) -> IdempotencyConflict | None:
        """Whether a repeated command id carries another command than its first use did
        (known only when that use was accepted, and its fingerprint is known)."""
        first = seen.get(req.command_id)
        if first is None:
            recorded = self._dedup[req.command_id]
            known = recorded[2] if len(recorded) > 2 else None
        else:
            known = prints.get(first)
        if known is None or same_command(known, fingerprint(req.command)):
            return None
        return IdempotencyConflict(command_id=req.command_id, reason=(
            f"this id was used for another {known[0]}; only the stamped fields "
            f"(actors/decider.py) may differ when a command is sent again"))

    def _first_answer(self, requests: Sequence[Request], i: int,
                      replies: dict[int, Reply]) -> Reply | None:
        """The reply to an earlier request in this batch carrying the same command id."""
        cid = requests[i].command_id
        for j in range(i):
            if requests[j].command_id == cid and j in replies:
                first = replies[j]
                if isinstance(first, Accepted):
                    return Accepted(first.events, first.first_version, first.last_version,
                                    duplicate=True)
                return first
        return None
