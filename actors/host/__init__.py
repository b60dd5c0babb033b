"""The generic shard host: many entities of one decider, one event stream, one writer.

A batch of requests is decided in order (later commands see earlier ones' effects), all
resulting events are appended as ONE commit at the expected version and the host's
writer epoch, and only then is state advanced and each request answered. Nothing is
acknowledged that is not in the log.

- Dedup: a retried command id is answered from the dedup record (the last
  `dedup_capacity` commands' versions, rebuilt from the log on recovery), with no second
  effect. Behind it stands the store's own command-id record: an older retry that would
  write again is caught there and answered with its original events; one that is
  refused when decided again (say its reservation is still held) gets that refusal.
- Idempotency conflicts: the dedup record keeps each accepted command's `fingerprint`
  (actors/decider.py: every field but the stamped ones, such as `now` and deadlines). A
  repeated id carrying a different command is refused (`IdempotencyConflict`), in the
  same batch or a later one.
- Recovery: take a new writer epoch (fencing any older incarnation), load the latest
  snapshot, replay the stream's tail.
- Timers: one per entity, at its earliest deadline; due entities get the decider's
  expire command before every batch and on `tick()`.
- Failures: an unreachable store fails the batch as `Unavailable`; a fenced host refuses
  all further work (`ShardFenced`).

One class, `ShardHost`, in five modules:

- `shard`      the serving loop: decide, commit, answer; recovery    `actors/host/shard.py`
- `dedup`      the dedup record: remember, recall, tell a retry from a reused id
               `actors/host/dedup.py`
- `snapshots`  save and load the folded state as data (actors/state_codec.py)
               `actors/host/snapshots.py`
- `timers`     one timer per entity, earliest first                  `actors/host/timers.py`
- `replies`    a request and what a shard answers                    `actors/host/replies.py`

`dedup` and `snapshots` are mixins of `ShardHost`, not objects it calls through, so the
hot path (`handle` -> `_decide` -> `_commit`) pays no extra indirection per command.
This is a plain class: unit tests drive it without Ray (cluster/ray_api.py makes it an
actor). Every name a caller needs is importable from here.
"""

from __future__ import annotations

from saleday.actors.host.replies import (
    Accepted,
    Busy,
    Reply,
    Request,
    ShardFenced,
    TransportFailure,
    Unavailable,
    wall_clock_ms,
)
from saleday.actors.host.shard import ShardHost
from saleday.actors.host.snapshots import SNAPSHOT_FORMAT

__all__ = [
    "SNAPSHOT_FORMAT", "Accepted", "Busy", "Reply", "Request", "ShardFenced", "ShardHost",
    "TransportFailure", "Unavailable", "wall_clock_ms",
]
