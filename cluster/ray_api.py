"""Every Ray API call of saleday lives here (named so nobody confuses it with `wire.py`,
the gateway-shard codec): starting or joining Ray on loopback with its token auth, making a
plain class a named actor (the shards, the projection workers), finding, getting, waiting
for and killing actors, Serve's start and stop, metrics and what Ray's GCS knows of the
actors. Ray is imported inside these functions, so importing `saleday.cluster` does not
import it. Logic elsewhere gets plain objects or handles, so a test can stand in for Ray.

`cluster.shard_actor.ShardActor` is a plain class (tests construct it without Ray);
`shard_handle` is the one place it becomes a Ray actor: named `<stream>` in the `saleday` namespace,
`max_restarts=-1` (Ray brings a crashed shard back; its `__init__` recovers from the log)
and `max_task_retries=0` (Ray must not re-run calls out of order on a fresh actor: the
gateway retries with the same command ids instead).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

NAMESPACE = "saleday"
log = structlog.get_logger("saleday.ray_api")


def node_id() -> str | None:
    """The id of the Ray node this process runs on (None outside Ray: a process not
    connected to Ray is not connected by asking, as `ray.get_runtime_context()` would,
    starting a local Ray and its dashboard)."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        return ray.get_runtime_context().get_node_id()
    except Exception:
        return None


def metrics_api() -> Any | None:
    """`ray.util.metrics`, where a process's counters and histograms go (Ray's Prometheus
    endpoint when the cluster runs its metrics agent); None if it cannot be imported."""
    try:
        from ray.util import metrics
    except ImportError:  # pragma: no cover - ray is a dependency
        return None
    return metrics


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
        with single_machine_ray():  # a loopback address stays loopback
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
        return
    _ensure_private_token()
    # address="local": a new Ray in this process, even when a `ray start` cluster
    # runs on this machine (ray.init() would otherwise join that one).
    try:
        with single_machine_ray():
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
def single_machine_ray() -> Iterator[None]:
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


def actor(cls: type, *, name: str, init: dict[str, Any], num_cpus: float = 0,
          resources: dict[str, float] | None = None, detached: bool = False,
          scheduling_strategy: Any = None, max_restarts: int = -1,
          max_concurrency: int | None = None) -> Any:
    """The actor named `name` in saleday's namespace, created as `cls(**init)` if it does
    not exist yet (else the running one, whatever `init` says).

    Ray restarts it when it dies (`max_restarts=-1`; its `__init__` must recover; 0: it
    stays dead, as shards with a standby do) and never re-runs a call on the new
    incarnation (`max_task_retries=0`). `detached` actors outlive the process that created
    them; `resources` and `scheduling_strategy` ("SPREAD", or `node_affinity(...)`) decide
    which nodes it may run on, and a restarted actor is placed by the same rules.
    `max_concurrency` makes it a threaded actor that runs that many calls at once.
    """
    import ray

    options: dict[str, Any] = {
        "name": name, "namespace": NAMESPACE, "get_if_exists": True,
        "lifetime": "detached" if detached else None, "max_restarts": max_restarts,
        "max_task_retries": 0, "num_cpus": num_cpus, "resources": resources or {}}
    if scheduling_strategy:
        options["scheduling_strategy"] = scheduling_strategy
    if max_concurrency is not None:
        options["max_concurrency"] = max_concurrency
    return ray.remote(cls).options(**options).remote(**init)


def shard_handle(*, kind: str, stream: str, store_url: str, snapshot_every: int = 50_000,
                 num_cpus: float = 0, resources: dict[str, float] | None = None,
                 detached: bool = False, scheduling_strategy: Any = None,
                 name: str | None = None, standby: bool = False,
                 max_restarts: int = -1) -> Any:
    """The named shard actor for `stream` (named `name`, default the stream), created if
    it does not exist yet (`actor`); with `standby`, a standby of it (cluster/failover.py).

    `detached` actors outlive the process that created them (a deployed cluster);
    otherwise they end with it (the embedded default, tests, benchmarks).
    `resources` (e.g. `shard_placement(...)`) and `scheduling_strategy="SPREAD"` decide
    which nodes it may run on; a restarted actor is placed by the same rules.
    """
    from saleday.cluster.shard_actor import ShardActor

    init: dict[str, Any] = {"kind": kind, "stream": stream, "store_url": store_url,
                            "snapshot_every": snapshot_every}
    if standby:
        init["standby"] = True
    return actor(ShardActor, name=name or stream, init=init,
                 num_cpus=num_cpus, resources=resources, detached=detached,
                 scheduling_strategy=scheduling_strategy, max_restarts=max_restarts)


def alive_nodes() -> list[dict[str, Any]]:
    """The live nodes of this Ray: `{"node_id", "resources"}` each (total resources)."""
    import ray

    return [{"node_id": n["NodeID"], "resources": dict(n.get("Resources") or {})}
            for n in ray.nodes() if n.get("Alive")]


def node_affinity(node_id: str, *, soft: bool = True) -> Any:
    """A scheduling strategy that asks for the node `node_id` (`soft`: elsewhere if it
    cannot be had)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=soft)


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


def find_actor(name: str) -> Any | None:
    """The handle of the live actor named `name` in saleday's namespace, or None if there
    is none (never started, or killed and its name freed)."""
    import ray

    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def named_actors(prefix: str) -> list[str]:
    """The names, sorted, of the live actors in saleday's namespace that start with
    `prefix` (detached or not)."""
    import ray.util

    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == NAMESPACE and a["name"].startswith(prefix))


def kill(handle: Any, *, no_restart: bool = False) -> None:
    """Kill an actor at once (Ray restarts it, as its options say, unless `no_restart`)."""
    import ray

    ray.kill(handle, no_restart=no_restart)


def gcs_address() -> str:
    """Where this process's Ray cluster is (host:port of its GCS), for another process to join."""
    import ray

    return str(ray.get_runtime_context().gcs_address)


def get(refs: Any, timeout: float | None = None) -> Any:
    """The value of an actor call's result (or the list of values, given a list), waiting
    at most `timeout` seconds; the call's error is raised here."""
    import ray

    return ray.get(refs, timeout=timeout)


def wait(refs: list[Any], *, timeout: float | None = None) -> list[Any]:
    """Those of `refs` whose calls have answered (or failed) within `timeout` seconds, all
    waited for together; `get` each for its value or its error."""
    import ray

    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
    return ready


def shutdown() -> None:
    """Disconnect this process from Ray (and stop the local Ray it started, if any)."""
    import ray

    ray.shutdown()


def local_nodes(workers: int, *, cpus: int = 1,
                resource: str = "saleday_shard") -> tuple[str, Callable[[], None]]:
    """A multi-node Ray on this machine (`ray.cluster_utils.Cluster`, as the fault tests
    use): a head with no CPU and `workers` nodes of `cpus` CPUs offering `resource`.
    Returns its address and a function that disconnects and stops every node. Its nodes
    listen on this machine's IP, not on loopback only: for benchmarks and tests. (On
    loopback, `single_machine_ray()` with every node at `LOOPBACK`, the nodes' workers
    lose their calls to the driver while Ray's token authentication is on, Ray 2.60:
    "Missing authorization header"; the fault tests, which turn it off, run so.)"""
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0,
                                                            "include_dashboard": False})
    try:
        for _ in range(workers):
            cluster.add_node(num_cpus=cpus, resources={resource: 100})
        cluster.wait_for_nodes()
    except BaseException:
        cluster.shutdown()
        raise

    def stop() -> None:
        ray.shutdown()
        cluster.shutdown()

    return cluster.address, stop


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors after which the same call may be retried (the shard restarts or is busy)."""
    import ray.exceptions as rex

    return (rex.RayActorError, rex.ActorUnavailableError, rex.GetTimeoutError,
            rex.RayTaskError, rex.ObjectLostError)


def actor_died_errors() -> tuple[type[BaseException], ...]:
    """Errors a call gets because its actor is dead for good (killed, crashed, and Ray will
    not restart it): where a shard with a standby fails over."""
    import ray.exceptions as rex

    return (rex.ActorDiedError,)


def actor_down_errors() -> tuple[type[BaseException], ...]:
    """Errors a call gets because its actor is dead or restarting (not because it failed)."""
    import ray.exceptions as rex

    return (rex.RayActorError, rex.ActorUnavailableError)


def serve_run(app: Any, *, name: str, host: str, port: int) -> None:
    """Start Ray Serve on this Ray, its HTTP proxy on `host`:`port`, and run the bound
    application `app` under `name` at the root path (without blocking)."""
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=name, route_prefix="/", blocking=False)


def serve_shutdown() -> None:
    """Stop Ray Serve on this Ray: its applications and its proxy. When this process is no
    longer connected to Ray (its local Ray already ended), only forget Serve's cached client:
    `serve.shutdown()` would otherwise start a new local Ray (with a dashboard) to look for it."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        from ray.serve import context

        context._set_global_client(None)
        return
    serve.shutdown()
