"""A shard host's snapshots: its folded state, dedup record and expiry causes at a
version, as data.

A snapshot is a cache: recovery loads the latest one and replays the stream's tail, and
works without one (a snapshot that is missing, of another kind or format, or that does
not decode is skipped: the host replays its whole stream). It is msgpack data encoded for
the decider's declared state classes (actors/state_codec.py), never a pickle, so anyone
who can write the snapshot key cannot run code in the host. Saving may run on a
background thread; an entity whose state did not change since the last snapshot is
spliced in as the bytes encoded then.

Part of `ShardHost` (actors/host/shard.py), whose attributes it reads as annotated below.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import structlog

from saleday.actors import state_codec
from saleday.actors.decider import Decider
from saleday.events import EventLogError, EventStore, Snapshot

log = structlog.get_logger("saleday.shard")

SNAPSHOT_FORMAT = 4
"""4: msgpack data (actors/state_codec.py), never a pickle; 3 and older were pickles and are
read as unusable (the shard replays its stream)."""


class Snapshots:
    """The snapshots of a `ShardHost`: load one on recovery, save one every N events."""

    decider: Decider
    store: EventStore
    stream: str
    clock: Callable[[], int]
    states: dict[str, Any]
    version: int
    snapshot_version: int
    _dedup: OrderedDict[str, tuple]
    _executor: ThreadPoolExecutor | None
    """Where snapshots are encoded and stored (None: on the caller's thread)."""
    _snapshotting: Future | None
    """The background snapshot in progress, if any."""
    _encoded: dict[str, tuple[Any, bytes]]
    """entity -> (the state encoded last time, its bytes): reused while the state is the same."""
    causes_picture: Callable[[], dict[str, Any]]
    load_causes: Callable[[Any], None]
    """The expiry causes (actors/host/causes.py), kept in the snapshot's header."""

    def _load_snapshot(self) -> None:
        """Start from the stored snapshot, if it is one this code wrote. It is data decoded
        for the decider's declared state classes only (never unpickled): anyone who can
        write the snapshot key must not be able to run code here."""
        snap = self.store.load_snapshot(self.stream)
        if snap is None:
            return
        try:
            header, encoded = state_codec.unpack_snapshot(snap.data)
            kind, form = header.get("kind"), header.get("format")
            if form != SNAPSHOT_FORMAT or kind != self.decider.kind:
                raise ValueError(f"snapshot of {kind!r} format {form}")
            codec = state_codec.for_decider(self.decider)
            codec.check_schema(header.get("classes"))
            decode = codec.decode
            states = {entity: decode(state) for entity, state in encoded.items()}
            ids, versions = header["dedup"]
            dedup = OrderedDict(zip(ids, (tuple(v) for v in versions), strict=True))
            self.load_causes(header.get("causes"))
        except Exception as exc:  # a snapshot is a cache: replay the whole stream instead
            log.warning("snapshot_unusable", stream=self.stream, version=snap.version,
                        error=f"{type(exc).__name__}: {exc}")
            return
        self.states = states
        self._dedup = dedup
        self.version = self.snapshot_version = snap.version

    def save_snapshot(self) -> None:
        """Store the folded state at the current version (a cache: recovery works without).

        The state is captured here (states are immutable values, so a shallow copy is a
        consistent picture); with `snapshot_in_background` it is encoded and stored on a
        background thread, so a large snapshot does not stall the batches behind it.
        """
        if self._snapshotting is not None and not self._snapshotting.done():
            return  # one at a time; the next threshold will take another
        picture = {"format": SNAPSHOT_FORMAT, "kind": self.decider.kind,
                   "states": dict(self.states),
                   "dedup": (list(self._dedup), list(self._dedup.values())),
                   "causes": self.causes_picture()}
        version = self.version
        if self._executor is None:
            self._store_snapshot(picture, version)
        else:
            self._snapshotting = self._executor.submit(self._store_snapshot, picture, version)

    def _store_snapshot(self, picture: dict[str, Any], version: int) -> None:
        # Entity by entity, yielding the GIL between slices: one encode call over the whole
        # state would hold it for ~100 ms per 100k reservations and stall the batches.
        # States are immutable values, so an entity whose state is the very object encoded
        # last time has not changed: its bytes are spliced in again, not re-encoded.
        states: dict[str, bytes] = {}
        cache: dict[str, tuple[Any, bytes]] = {}
        previous = self._encoded
        background = self._executor is not None
        codec = state_codec.for_decider(self.decider)
        encode = codec.packer()
        encoded = 0
        try:
            for entity, state in picture.pop("states").items():
                hit = previous.get(entity)
                if hit is not None and hit[0] is state:
                    blob = hit[1]
                else:
                    blob = encode(state)
                    encoded += 1
                    if background and encoded % 16 == 0:
                        time.sleep(0)  # let the batches run (nothing to yield to in the foreground)
                states[entity] = blob
                cache[entity] = (state, blob)
        except state_codec.StateCodecError as exc:
            log.warning("snapshot_failed", stream=self.stream, version=version, error=str(exc))
            return
        self._encoded = cache
        picture["classes"] = codec.schema
        data = state_codec.pack_snapshot(picture, states)
        try:
            self.store.save_snapshot(Snapshot(stream=self.stream, version=version,
                                              recorded_at=self.clock(), data=data))
        except EventLogError as exc:
            log.warning("snapshot_failed", stream=self.stream, version=version, error=str(exc))
            return
        self.snapshot_version = max(self.snapshot_version, version)
        log.info("snapshot_saved", stream=self.stream, version=version, bytes=len(data))

    def wait_for_snapshot(self) -> None:
        """Block until a background snapshot, if any, is stored."""
        if self._snapshotting is not None:
            self._snapshotting.result()
