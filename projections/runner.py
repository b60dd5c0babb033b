"""Running projections: read the log from per-stream positions, fold, checkpoint atomically.

    proj = Projection([OrdersView()], store, open_checkpoints("sqlite:///data/projections.db"))
    proj.catch_up()                    # or proj.run(stop_event) to follow the log live
    proj.views[0].order("o-1")

Each `run_once` reads one batch (`events.Tail`, streams taken in turn), folds it into
every view, and commits the rows the batch changed together with the new positions in
ONE atomic step of the checkpoint store (which also checks the positions it started
from). If anything fails between the fold and the commit, the views are put back from
the checkpoint before the next batch, so a batch is never half-applied, skipped or
applied twice. On start a projection restores its views from their stored rows.

A checkpoint is bound to the log it was folded from: with each stream's position it keeps
the hash of the event at that position (rows of the reserved view `_log`), and the hash
chain makes that hash stand for the whole stream up to there. On start, a checkpoint whose
positions lie past the log's heads, or whose hashes are not the log's, was made from
another log (a new run in the same folder, another store): `ForeignCheckpoint`, and
`Projection(..., fresh=True)` (or `rebuild()`) starts it again from zero.

Split by stream across N workers (`Partition`): worker i folds the streams with
`default_worker(stream, N) == i` (each kind's shards dealt round-robin; or the worker an
explicit map gives) under its own checkpoint
(`<name>@<i>of<N>`); `view.merged(parts)` combines the parts into the view a single
worker builds. Changing N or the map needs a rebuild of the parts.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from saleday.events import EventStore, Tail
from saleday.projections.checkpoint import CheckpointStore
from saleday.projections.view import View

log = structlog.get_logger("saleday.projections")


class ProjectionError(Exception):
    """A view could not fold a batch (a log its fold does not understand)."""


class ForeignCheckpoint(ProjectionError):
    """The checkpoint was folded from another log than the one it is read against."""

    def __init__(self, checkpoint: str, log_url: str, reason: str) -> None:
        self.checkpoint, self.log_url, self.reason = checkpoint, log_url, reason
        super().__init__(f"checkpoint {checkpoint!r} was made from another log than {log_url} "
                         f"({reason}); rebuild it (saleday view --rebuild)")


LOG_ROWS = "_log"
"""The reserved view name of a checkpoint's identity rows: ("_log", "hash", stream) ->
hex hash of the event at the stream's position."""


@dataclass(frozen=True)
class Partition:
    """Which streams one worker of a split projection folds."""

    index: int = 0
    count: int = 1
    assignment: Mapping[str, int] | None = field(default=None, hash=False)
    """Explicit stream -> worker index; streams not in it go by `default_worker`."""

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index} of {self.count}: need 0 <= index < count")
        bad = {s: w for s, w in (self.assignment or {}).items() if not 0 <= w < self.count}
        if bad:
            raise ValueError(f"stream map sends streams to workers outside 0..{self.count - 1}: {bad}")

    def owns(self, stream: str) -> bool:
        if self.count == 1:
            return True
        if self.assignment is not None and stream in self.assignment:
            return self.assignment[stream] == self.index
        return default_worker(stream, self.count) == self.index

    @property
    def suffix(self) -> str:
        return "" if self.count == 1 else f"@{self.index}of{self.count}"


def default_worker(stream: str, count: int) -> int:
    """The worker of `count` that folds `stream` when no map says otherwise.

    A shard's stream `<kind>-<n>` goes to worker `(crc32(kind) + n) % count`, which deals
    each kind's shards round-robin over the workers (so 4 SKU streams over 2 workers are
    2 and 2, whatever the names hash to); any other name goes by `crc32(stream) % count`.
    crc32 of the whole name balances badly on such names: CRC is linear, so `sku-000` ..
    `sku-003` all have the same parity and would all land on one of 2 workers.
    """
    kind, _, number = stream.rpartition("-")
    if kind and number.isdigit():
        return (zlib.crc32(kind.encode()) + int(number)) % count
    return zlib.crc32(stream.encode()) % count


class Projection:
    """One or more views folded from one read of the log, under one checkpoint."""

    def __init__(self, views: View | Sequence[View], store: EventStore,
                 checkpoints: CheckpointStore, *, name: str | None = None,
                 partition: Partition = Partition(), batch_size: int = 10_000,
                 fresh: bool = False) -> None:
        self.views: list[View] = [views] if isinstance(views, View) else list(views)
        if not self.views:
            raise ValueError("a projection needs at least one view")
        names = [v.name for v in self.views]
        if len(set(names)) != len(names):
            raise ValueError(f"a projection holds each view once, not {names}")
        self.store = store
        self.checkpoints = checkpoints
        self.partition = partition
        self.name = (name or "+".join(names)) + partition.suffix
        self.batch_size = batch_size
        self.applied = 0
        """Events folded and committed by this object (not counting restored ones)."""
        self._stale = False
        if fresh:
            self.checkpoints.reset(self.name)
        self._restore()

    @property
    def view(self) -> View:
        """The first (usually only) view."""
        return self.views[0]

    @property
    def positions(self) -> dict[str, int]:
        return dict(self.tail.positions)

    def _restore(self) -> None:
        positions, rows = self.checkpoints.load(self.name)
        hashes = {key: value for view_name, _, key, value in rows if view_name == LOG_ROWS}
        legacy = bool(positions) and not hashes
        mismatch = self._mismatch(positions, None if legacy else hashes)
        if mismatch:
            raise ForeignCheckpoint(self.name, getattr(self.store, "url", "this one"), mismatch)
        if legacy:
            self._adopt(positions)
        by_view: dict[str, list[tuple[str, str, Any]]] = {v.name: [] for v in self.views}
        for view_name, table, key, value in rows:
            if view_name in by_view:
                by_view[view_name].append((table, key, value))
        for view in self.views:
            view.reset()
            view.load_rows(by_view[view.name])
        self.tail = Tail(self.store, positions, batch_size=self.batch_size,
                         include=self.partition.owns)
        self._stale = False
        log.debug("projection_restored", projection=self.name, rows=len(rows),
                  events=sum(positions.values()))

    def _mismatch(self, positions: Mapping[str, int], hashes: Mapping[str, str] | None) -> str:
        """Why the stored positions are not positions in this log ('' when they are);
        `hashes` None: a checkpoint that kept none, checked against the heads only."""
        heads = self.store.streams()
        for stream, version in sorted(positions.items()):
            if version <= 0:
                continue
            if version > heads.get(stream, 0):
                return f"{stream} folded up to {version}, the log holds {heads.get(stream, 0)}"
            if hashes is None:
                continue
            stored = hashes.get(stream)
            if stored is None:
                return f"{stream}: no record of which log it was folded from"
            found = self.store.read(stream, version, 1)
            if not found or found[0].hash.hex() != stored:
                return f"{stream}: event {version} is not the one folded"
        return ""

    def _adopt(self, positions: Mapping[str, int]) -> None:
        """Bind a checkpoint written before checkpoints kept their log's hashes to this log
        (trusted once, as it was before; checked from now on)."""
        rows = []
        for stream, version in positions.items():
            found = self.store.read(stream, version, 1) if version > 0 else []
            if found:
                rows.append((LOG_ROWS, "hash", stream, found[0].hash.hex()))
        self.checkpoints.commit(self.name, positions, positions, rows)
        log.warning("checkpoint_adopted", projection=self.name, streams=len(rows))

    # -- folding ---------------------------------------------------------------------------

    def run_once(self) -> int:
        """Fold and commit one batch; return how many events it held (0: caught up)."""
        if self._stale:
            self._restore()
        before = dict(self.tail.positions)
        try:
            batch = self.tail.poll()
            if not batch:
                return 0
            for view in self.views:
                try:
                    view.apply_batch(batch)
                except Exception as exc:
                    streams = sorted({e.stream for e in batch})
                    raise ProjectionError(
                        f"view {view.name!r} could not fold a batch of {len(batch)} events from "
                        f"{', '.join(streams)} (after positions {before}): "
                        f"{type(exc).__name__}: {exc}") from exc
            rows = [(view.name, table, key, value)
                    for view in self.views for table, key, value in view.changes()]
            moved = {s: v for s, v in self.tail.positions.items() if before.get(s, 0) != v}
            last = {env.stream: env.hash for env in batch}
            rows += [(LOG_ROWS, "hash", s, last[s].hex()) for s in moved]
            self.checkpoints.commit(self.name, before, moved, rows)
        except BaseException:
            # The views may hold a batch that is not durable: put them back before the next.
            self._stale = True
            raise
        for view in self.views:
            view.committed()
        self.applied += len(batch)
        return len(batch)

    def catch_up(self) -> int:
        """Fold until nothing is left behind; return the events folded."""
        done = 0
        while n := self.run_once():
            done += n
        return done

    def run(self, stop: threading.Event, *, poll_interval: float = 0.05) -> None:
        """Follow the log (catch-up, then live) until `stop` is set."""
        log.info("projection_started", projection=self.name, positions=sum(self.positions.values()))
        while not stop.is_set():
            if not self.run_once():
                stop.wait(poll_interval)
        log.info("projection_stopped", projection=self.name, applied=self.applied)

    def rebuild(self) -> int:
        """Forget the checkpoint and fold the whole log again from zero."""
        started = time.perf_counter()
        self.checkpoints.reset(self.name)
        self._restore()
        done = self.catch_up()
        log.info("projection_rebuilt", projection=self.name, events=done,
                 seconds=round(time.perf_counter() - started, 3))
        return done

    def lag(self) -> dict[str, Any]:
        """Events recorded but not yet folded, per stream and in total."""
        behind = self.tail.lag()
        return {"streams": dict(sorted(behind.items())), "total": sum(behind.values())}
