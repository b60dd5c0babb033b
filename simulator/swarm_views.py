"""The `projection_kill` fault class: a projection worker killed between a batch and its
checkpoint.

`ProjectionWatch` folds every view (`projections.views.all_views`) from the run's log
while the sale goes on, one small batch every few rounds of the virtual clock, under a
checkpoint store of its own (a SQLite file in the run's data dir). At each planned time
the worker is killed after it folded a batch and before the checkpoint's commit landed
(`KilledCheckpoints` raises `WorkerKilled` in the commit); a new worker then starts from
the checkpoint, as a restarted Ray actor would. When the run is over the worker catches
up, and its views' digests must equal those the audit folds from zero: a batch folded
twice or skipped shows as a `projection_checkpoint` finding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from saleday.events import EventStore
from saleday.projections.checkpoint import CheckpointStore, SqliteCheckpoints
from saleday.projections.runner import Projection
from saleday.projections.views import all_views

log = structlog.get_logger("saleday.simulator")

BATCH = 200
"""Events folded per step: small, so a kill lands between many batches."""
EVERY = 5
"""Rounds of the virtual clock per step (folding every round costs the run ~30%)."""


class WorkerKilled(Exception):
    """The projection worker died before its checkpoint's commit landed."""


class KilledCheckpoints:
    """A checkpoint store whose next commit, when armed, dies before it lands."""

    def __init__(self, inner: CheckpointStore) -> None:
        self.inner = inner
        self.armed = False

    def commit(self, checkpoint: str, expected: Mapping[str, int], positions: Mapping[str, int],
               rows: Any) -> None:
        if self.armed:
            self.armed = False
            self.die(checkpoint, expected, positions, rows)
            raise WorkerKilled(f"projection {checkpoint!r} killed before its checkpoint")
        self.inner.commit(checkpoint, expected, positions, rows)

    def die(self, checkpoint: str, expected: Mapping[str, int], positions: Mapping[str, int],
            rows: Any) -> None:
        """What a kill leaves of the commit: nothing (the commit is one transaction)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ProjectionWatch:
    """A live projection worker over the run's log, killed at the planned times (ms)."""

    def __init__(self, store: EventStore, path: Path, kills_ms: list[int],
                 on_kill: Callable[[], None],
                 checkpoints: Callable[[CheckpointStore], KilledCheckpoints] = KilledCheckpoints
                 ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)   # a run killed earlier may have left them
        self.store = store
        self.checkpoints = checkpoints(SqliteCheckpoints(path))
        self.kills_ms = sorted(kills_ms)
        self.on_kill = on_kill
        self.restarts = 0
        self._rounds = 0
        self.worker = self._start()

    def _start(self) -> Projection:
        return Projection(all_views(), self.store, self.checkpoints, name="dst",  # type: ignore[arg-type]
                          batch_size=BATCH)

    def step(self, now_ms: int) -> None:
        """Every `EVERY` rounds fold one batch; at a planned time, die before its
        checkpoint and restart."""
        self._rounds += 1
        if self.kills_ms and self.kills_ms[0] <= now_ms:
            self.checkpoints.armed = True
        elif self._rounds % EVERY:
            return
        try:
            folded = self.worker.run_once()
        except WorkerKilled:
            self.kills_ms.pop(0)
            self.on_kill()
            self.restarts += 1
            log.info("fault_injected", kind="projection_kill", at_ms=now_ms)
            self.worker = self._start()
            return
        if not folded:
            self.checkpoints.armed = False   # nothing to kill between: wait for a batch

    def finish(self) -> dict[str, str]:
        """Catch up with the log and return each view's digest."""
        self.checkpoints.armed = False
        self.worker.catch_up()
        digests = {view.name: view.digest() for view in self.worker.views}
        self.checkpoints.inner.close()
        return digests


def compare(live: Mapping[str, str], rebuilt: Mapping[str, str]) -> list[str]:
    """Why the live worker's views differ from those folded from zero (none: they agree)."""
    return [f"view {name!r}: the worker that was killed and restarted has digest "
            f"{live[name][:16]}, folded from zero it is {rebuilt.get(name, '?')[:16]} "
            f"(a batch applied twice or skipped)"
            for name in sorted(live) if live[name] != rebuilt.get(name)]
