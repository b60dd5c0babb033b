"""Projection workers on Ray: one actor per part of a split projection.

`ProjectionWorker` is a plain class (tests drive it without Ray): it opens the log and the
checkpoint store, restores its part of the views, and follows the log on a thread
(catch-up, then live). `worker_handle` is the one place it becomes a Ray actor, named
`projection:<name>@<i>of<n>` in the `saleday` namespace, restarted by Ray if it dies (its
checkpoint makes the restart exact). `merged_views` asks every worker for its rows and
merges them into the views a single worker would build.

Gauges go where Ray exports metrics (its Prometheus endpoint): the part's lag, and when it
folds the metrics view, that view's main figures (funnel, oversold units, sold-out SKUs).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import structlog

from saleday.cluster import ray_api
from saleday.events import open_store
from saleday.projections.checkpoint import open_checkpoints
from saleday.projections.runner import Partition, Projection
from saleday.projections.view import View, merged
from saleday.projections.views import view_class

log = structlog.get_logger("saleday.projections")

_METRIC_GAUGES = ("sessions", "reservations", "orders_placed", "orders_paid")


class ProjectionWorker:
    """One part of a projection, following the log on a background thread."""

    def __init__(self, *, views: list[str], store_url: str, checkpoint_url: str,
                 index: int = 0, count: int = 1, assignment: dict[str, int] | None = None,
                 batch_size: int = 10_000, poll_interval: float = 0.05,
                 metrics: bool = True) -> None:
        from saleday.cluster import logs

        logs.configure(os.environ.get("SALEDAY_LOG_LEVEL", "warning"))
        self.store = open_store(store_url)
        self.checkpoints = open_checkpoints(checkpoint_url)
        self.partition = Partition(index, count, assignment)
        self.projection = Projection([view_class(v)() for v in views], self.store,
                                     self.checkpoints, partition=self.partition,
                                     batch_size=batch_size)
        self.poll_interval = poll_interval
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._gauges = _Gauges(self.projection.name) if metrics else None
        self._thread = threading.Thread(target=self._follow, name=f"projection-{self.projection.name}",
                                        daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    folded = self.projection.run_once()
                    lag = self.projection.lag() if self._gauges else None
                if self._gauges is not None:
                    self._gauges.update(lag, self.projection.views)
                self.error = None
            except Exception as exc:  # noqa: BLE001 - store down or a bad batch: report, retry
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("projection_batch_failed", projection=self.projection.name,
                            error=self.error[:300])
                folded = 0
            if not folded:
                self._stop.wait(self.poll_interval)

    # -- what callers ask ------------------------------------------------------------------

    def name(self) -> str:
        return self.projection.name

    def lag(self) -> dict[str, Any]:
        with self._lock:
            return self.projection.lag()

    def positions(self) -> dict[str, int]:
        with self._lock:
            return self.projection.positions

    def view_json(self, view: str | None = None) -> dict[str, Any]:
        """This part's view (the first, or the one named) as JSON."""
        with self._lock:
            return self._view(view).to_json()

    def digest(self, view: str | None = None) -> str:
        with self._lock:
            return self._view(view).digest()

    def rows(self) -> dict[str, list[tuple[str, str, Any]]]:
        """Every row of every view of this part, for merging: {view: [(table, key, value)]}."""
        with self._lock:
            return {v.name: list(v.rows()) for v in self.projection.views}

    def status(self) -> dict[str, Any]:
        return {"projection": self.projection.name, "pid": os.getpid(), "error": self.error,
                "applied": self.projection.applied, "lag": self.lag()["total"]}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.store.close()
        self.checkpoints.close()

    def _view(self, name: str | None) -> View:
        if name is None:
            return self.projection.views[0]
        for v in self.projection.views:
            if v.name == name:
                return v
        raise KeyError(f"{self.projection.name} does not fold view {name!r}")


class _Gauges:
    """Lag and the metrics view's main figures as Ray gauges, tagged with the part."""

    def __init__(self, projection: str) -> None:
        metrics = ray_api.metrics_api()
        if metrics is None:  # pragma: no cover - ray is a dependency
            self._enabled = False
            return
        self._tags = {"projection": projection}
        keys = ("projection",)
        self._lag = metrics.Gauge("saleday_projection_lag_events",
                                  "Events recorded but not yet folded by this part.", tag_keys=keys)
        self._figures = {name: metrics.Gauge(f"saleday_metrics_{name}",
                                             f"Metrics view: {name} (this part).", tag_keys=keys)
                         for name in (*_METRIC_GAUGES, "oversold_units", "skus_sold_out")}
        self._enabled = True

    def update(self, lag: dict[str, Any] | None, views: list[View]) -> None:
        if not self._enabled or lag is None:
            return
        self._lag.set(lag["total"], tags=self._tags)
        for v in views:
            if v.name == "metrics":
                totals = v.totals()  # type: ignore[attr-defined]
                for name in _METRIC_GAUGES:
                    self._figures[name].set(totals.get(name, 0), tags=self._tags)
                skus = v.t["sku"].values()
                self._figures["oversold_units"].set(sum(r[4] for r in skus), tags=self._tags)
                self._figures["skus_sold_out"].set(sum(1 for r in skus if r[3]), tags=self._tags)


# -- Ray ------------------------------------------------------------------------------------


def worker_name(views: list[str], index: int, count: int) -> str:
    return "projection:" + "+".join(views) + Partition(index, count).suffix


def worker_handle(*, views: list[str], store_url: str, checkpoint_url: str, index: int = 0,
                  count: int = 1, assignment: dict[str, int] | None = None,
                  batch_size: int = 10_000, num_cpus: float = 0, detached: bool = False,
                  resource: str | None = None, resource_amount: float = 0.01,
                  spread: bool = False) -> Any:
    """The named projection worker actor for part `index` of `count`, created if needed.

    Placed like the shards (`ray_api.shard_placement`): on the nodes that offer `resource`
    (none: anywhere), spread across them when `spread`.
    """
    return ray_api.actor(
        ProjectionWorker, name=worker_name(views, index, count),
        init={"views": views, "store_url": store_url, "checkpoint_url": checkpoint_url,
              "index": index, "count": count, "assignment": assignment,
              "batch_size": batch_size},
        num_cpus=num_cpus, resources=ray_api.shard_placement(resource, resource_amount),
        detached=detached, scheduling_strategy="SPREAD" if spread else None)


def start_workers(*, views: list[str], store_url: str, checkpoint_url: str, count: int,
                  assignment: dict[str, int] | None = None, **kw: Any) -> list[Any]:
    """All `count` parts of one projection, as Ray actors."""
    return [worker_handle(views=views, store_url=store_url, checkpoint_url=checkpoint_url,
                          index=i, count=count, assignment=assignment, **kw) for i in range(count)]


def merged_views(handles: list[Any], timeout: float = 60) -> dict[str, View]:
    """The views of a split projection, merged from every worker's rows."""
    parts = ray_api.get([h.rows.remote() for h in handles], timeout=timeout)
    out: dict[str, View] = {}
    for name in parts[0]:
        views = []
        for part in parts:
            v = view_class(name)()
            v.load_rows(part[name])
            views.append(v)
        out[name] = merged(views)
    return out


def total_lag(handles: list[Any], timeout: float = 60) -> int:
    """Events recorded but not yet folded, summed over every part of a split projection."""
    lags = ray_api.get([h.lag.remote() for h in handles], timeout=timeout)
    return sum(lag["total"] for lag in lags)


def stop_workers(handles: list[Any]) -> None:
    """Stop the workers' threads and end the actors."""
    ray_api.get([h.stop.remote() for h in handles], timeout=30)
    for h in handles:
        ray_api.kill(h, no_restart=True)
