"""All Ray API calls live here: starting Ray, and the shard actors' options and names.

`ShardActor` is a plain class (tests construct it without Ray); `shard_handle` is the one
place it becomes a Ray actor: named `<stream>` in the `saleday` namespace,
`max_restarts=-1` (Ray brings a crashed shard back; its `__init__` recovers from the log)
and `max_task_retries=0` (Ray must not re-run calls out of order on a fresh actor: the
gateway retries with the same command ids instead).
"""

from __future__ import annotations

import gc
import ipaddress
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

from actors.host import Accepted, Request, ShardFenced, ShardHost, Unavailable
from cluster.wire import Wire
from events import open_store

NAMESPACE = "saleday"
log = structlog.get_logger("saleday.wiring")


def deciders() -> dict[str, Any]:
    """The entity kinds a shard can host, by name."""
    from actors.campaign import campaign_decider
    from actors.order import order_decider
    from actors.session import session_decider
    from actors.sku import sku_decider
    from actors.team import team_decider

    return {d.kind: d for d in (sku_decider, session_decider, campaign_decider, team_decider,
                                order_decider)}


class ShardActor:
    """A shard host built from plain settings, so Ray can (re)create it anywhere."""

    def __init__(self, *, kind: str, stream: str, store_url: str, snapshot_every: int = 50_000) -> None:
        from cluster import logs

        logs.configure(os.environ.get("SALEDAY_LOG_LEVEL", "warning"))
        decider = deciders()[kind]
        self.wire = Wire(decider.commands)
        self.host = ShardHost(decider=decider, store=open_store(store_url), stream=stream,
                              snapshot_every=snapshot_every, snapshot_in_background=True)
        self.metrics = ShardMetrics(stream)
        tune_gc()

    def handle(self, batch: bytes) -> bytes:
        """Decide a batch encoded by `cluster.wire`; answer with the encoded replies."""
        return self.wire.encode_replies(self.handle_requests(self.wire.decode_requests(batch)))

    def handle_requests(self, requests: list[Request]) -> list[Any]:
        started = time.perf_counter()
        version = self.host.version
        try:
            replies = self.host.handle(requests)
            self.metrics.batch(replies, self.host.version - version, time.perf_counter() - started)
            if any(isinstance(r, Unavailable) for r in replies):
                self._exit_if_log_rewound()
            return replies
        except ShardFenced:
            # A newer incarnation owns the stream. Exit so Ray restarts this actor, and
            # the restart takes a newer epoch still; never decide on a stale view.
            log.error("shard_exiting_fenced", stream=self.host.stream, epoch=self.host.epoch)
            os._exit(70)

    def tick(self) -> int:
        try:
            return self.host.tick()
        except ShardFenced:
            os._exit(70)

    def _exit_if_log_rewound(self) -> None:
        """If the log now ends before what this incarnation committed (Redis restarted
        without its last writes: `appendfsync everysec` and an OS crash, or a failover to
        a lagging replica), no append can ever succeed at our version again. Exit, so Ray
        restarts the shard and it recovers from the log as it now is, instead of
        answering `Unavailable` forever. Nothing is appended at a forked position."""
        head = self.host.log_rewound()   # None when unreachable: the store is the problem
        if head is not None:
            log.error("log_rewound", stream=self.host.stream, shard_version=self.host.version,
                      log_version=head, lost=self.host.version - head)
            os._exit(71)

    def status(self) -> dict[str, Any]:
        return {**self.host.status(), "pid": os.getpid(), "node": _node_id(),
                "store": self.host.store.url}

    def state_of(self, entity: str) -> Any:
        return self.host.state_of(entity)

    def states_of(self, entities: list[str]) -> list[Any]:
        """The states of several entities in one call (the gateway batches queries)."""
        return [self.host.state_of(e) for e in entities]

    def snapshot(self) -> int:
        self.host.save_snapshot()
        return self.host.snapshot_version



class ShardMetrics:
    """Per-shard counters and a batch-latency histogram, exported where Ray exports metrics
    (its Prometheus endpoint, when the cluster runs the metrics agent). Recorded once per
    batch, never per command."""

    def __init__(self, stream: str) -> None:
        try:
            from ray.util import metrics
        except ImportError:  # pragma: no cover - ray is a dependency
            self._enabled = False
            return
        tags = ("shard",)
        self._commands = metrics.Counter("saleday_shard_commands", "Commands decided, by outcome.",
                                         tag_keys=("shard", "outcome"))
        self._events = metrics.Counter("saleday_shard_events", "Events appended.", tag_keys=tags)
        self._batch_ms = metrics.Histogram(
            "saleday_shard_batch_ms", "Time to decide, append and answer one batch (ms).",
            boundaries=[1, 2, 5, 10, 25, 50, 100, 250, 1000], tag_keys=tags)
        self._tags = {"shard": stream}
        self._enabled = True

    def batch(self, replies: list[Any], events: int, seconds: float) -> None:
        if not self._enabled:
            return
        outcomes: dict[str, int] = {}
        for reply in replies:
            code = "accepted" if isinstance(reply, Accepted) else reply.code
            outcomes[code] = outcomes.get(code, 0) + 1
        for code, n in outcomes.items():
            self._commands.inc(n, tags={**self._tags, "outcome": code})
        if events:
            self._events.inc(events, tags=self._tags)
        self._batch_ms.observe(seconds * 1000, tags=self._tags)


def tune_gc() -> None:
    """Keep the cyclic GC off the latency path of a long-lived, allocation-heavy process.

    Recovered state is moved out of the GC's reach (`gc.freeze`), and the young
    generation is collected every 50,000 allocations instead of 700, so a full collection
    over millions of live objects does not land in the middle of a batch.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:
        return None


def start_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at `address`, or start a local one in this process.

    A local Ray listens on loopback only and keeps Ray's token authentication: Ray turns
    it on for a new local cluster unless `RAY_AUTH_MODE` says otherwise (an operator who
    needs it off sets `RAY_AUTH_MODE=disabled` themselves; it is never set here).
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    if address:
        if _is_loopback_address(address):
            _use_token_if_available()
        with _single_machine_ray():  # a loopback address stays loopback
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
        return
    _ensure_private_token()
    # address="local": a new Ray in this process, even when a `ray start` cluster
    # runs on this machine (ray.init() would otherwise join that one).
    try:
        with _single_machine_ray():
            ray.init(address="local", _node_ip_address=LOOPBACK,
                     num_cpus=num_cpus or os.cpu_count() or 2,
                     include_dashboard=False, namespace=NAMESPACE, log_to_driver=False)
    except OSError as exc:  # e.g. no writable ~/.ray for Ray's token
        raise RuntimeError(f"cannot start a local Ray: {exc} (keep Ray's token in a file named "
                           "by RAY_AUTH_TOKEN_PATH, or run without auth: RAY_AUTH_MODE=disabled)"
                           ) from exc
    node_ip = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(node_ip).is_loopback:
        ray.shutdown()
        raise RuntimeError(f"a local Ray would listen on {node_ip}, not on loopback; "
                           "refusing to run it (this Ray version resolves node addresses "
                           "differently: see docs/OPERATIONS.md)")


LOOPBACK = "127.0.0.1"


@contextmanager
def _single_machine_ray() -> Iterator[None]:
    """Let `ray.init` keep the loopback node address it is given.

    Ray's gcs_server, raylet and workers listen on their node's address, and on Linux Ray
    replaces a loopback `_node_ip_address` with the machine's outbound address (so other
    nodes could join), unless it runs single-machine, as on macOS and Windows. That switch
    is `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, read once when ray is imported, so it is
    flipped here around the one `ray.init` that starts a local Ray (and put back: a later
    `ray.init` that joins a cluster must resolve addresses as usual).
    """
    from ray._private import ray_constants

    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved


def _is_loopback_address(address: str) -> bool:
    """Whether a `host:port` address names this machine's loopback (a local Ray)."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _use_token_if_available() -> None:
    """Send Ray's token when joining a local Ray by its address, as Ray does for `auto`.

    Ray turns token auth on by itself only for a new local cluster and for `auto`; the
    address `saleday serve` prints is explicit, so without this `saleday status --address
    127.0.0.1:PORT` would be refused by the local Ray that serve started. An explicit
    `RAY_AUTH_MODE` wins, as in Ray.
    """
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: RAY_AUTH_MODE=token does the same
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _ensure_private_token() -> None:
    """Create Ray's token file readable by its owner only, when Ray would create one.

    With token authentication on and no token anywhere (`RAY_AUTH_TOKEN`,
    `RAY_AUTH_TOKEN_PATH`, `~/.ray/auth_token`), a new local Ray writes a fresh token to
    `~/.ray/auth_token` with the process umask (usually world-readable). Writing it first,
    mode 0600, keeps every other user on the machine out of the loopback ports.
    """
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    path = Path.home() / ".ray" / "auth_token"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:  # Ray will try itself, and say what is wrong
        log.warning("ray_token_not_written", path=str(path), error=str(exc))
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))


def shard_handle(*, kind: str, stream: str, store_url: str, snapshot_every: int = 50_000,
                 num_cpus: float = 0, resources: dict[str, float] | None = None,
                 detached: bool = False, scheduling_strategy: str | None = None) -> Any:
    """The named shard actor for `stream`, created if it does not exist yet.

    `detached` actors outlive the process that created them (a deployed cluster);
    otherwise they end with it (the embedded default, tests, benchmarks).
    `resources` (e.g. `shard_placement(...)`) and `scheduling_strategy="SPREAD"` decide
    which nodes it may run on; a restarted actor is placed by the same rules.
    """
    import ray

    options: dict[str, Any] = {
        "name": stream, "namespace": NAMESPACE, "get_if_exists": True,
        "lifetime": "detached" if detached else None, "max_restarts": -1,
        "max_task_retries": 0, "num_cpus": num_cpus, "resources": resources or {}}
    if scheduling_strategy:
        options["scheduling_strategy"] = scheduling_strategy
    actor = ray.remote(ShardActor).options(**options)
    return actor.remote(kind=kind, stream=stream, store_url=store_url, snapshot_every=snapshot_every)


def shard_placement(resource: str | None, amount: float = 0.01) -> dict[str, float]:
    """The custom resources a shard asks for: `{resource: amount}`, or none.

    A cluster whose shard nodes offer, say, `saleday_shard: 100` (ray_cluster.yaml) keeps
    shards off the head node; each shard asks a small amount so many fit on one node.
    """
    return {resource: amount} if resource else {}


def where(names: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Actor name -> state (ALIVE, RESTARTING, DEAD, ...), node id, node IP, pid and
    restarts, for the named actors in `names` (all if None), as Ray's GCS knows them.

    Read from the GCS directly (it works without the dashboard); when a name has had
    several actors (killed, then created again), the live or latest one is reported.
    """
    from ray._private import state

    out: dict[str, dict[str, Any]] = {}
    for info in state.actors().values():
        name = info.get("Name")
        if not name or (names is not None and name not in names):
            continue
        address = info.get("Address") or {}
        row = {"class": info.get("ActorClassName"), "state": info.get("State"),
               "node_id": address.get("NodeID"), "node_ip": address.get("IPAddress"),
               "pid": info.get("Pid"), "restarts": info.get("NumRestarts", 0),
               "detached": info.get("IsDetached"), "started": info.get("StartTime", 0)}
        kept = out.get(name)
        if kept is None or _rank(row) > _rank(kept):
            out[name] = row
    return out


def _rank(row: dict[str, Any]) -> tuple[bool, int]:
    """Of several actors that carried one name: a live one first, then the latest."""
    return row["state"] != "DEAD", row["started"] or 0


def kill_shard(handle: Any, *, no_restart: bool = False) -> None:
    """Kill a shard actor (Ray restarts it unless `no_restart`)."""
    import ray

    ray.kill(handle, no_restart=no_restart)


def get(refs: Any, timeout: float | None = None) -> Any:
    import ray

    return ray.get(refs, timeout=timeout)


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors after which the same call may be retried (the shard restarts or is busy)."""
    import ray.exceptions as rex

    return (rex.RayActorError, rex.ActorUnavailableError, rex.GetTimeoutError,
            rex.RayTaskError, rex.ObjectLostError)
