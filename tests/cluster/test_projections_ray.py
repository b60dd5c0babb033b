"""Projection workers as Ray actors: two parts following one log merge into the view a
single process builds."""

from __future__ import annotations

import time

import pytest

from saleday.cli.views import write_reservation_log
from saleday.cluster.projection_actors import (
    merged_views,
    start_workers,
    stop_workers,
    total_lag,
    worker_name,
)
from saleday.events import open_store
from saleday.projections.checkpoint import open_checkpoints
from saleday.projections.runner import Projection
from saleday.projections.views import MetricsView, StockView

pytestmark = pytest.mark.ray


def test_two_projection_workers_merge_into_the_single_process_view(ray_instance, tmp_path):
    """Two named worker actors each fold their streams (catch-up, then live); merged, their
    stock and metrics views have the digests of a single in-process projection."""
    import ray

    store_url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(store_url)
    write_reservation_log(store, reservations=3000, skus=20, shards=4)
    handles = start_workers(views=["stock", "metrics"], store_url=store_url,
                            checkpoint_url=f"sqlite:///{tmp_path}/projections.db", count=2,
                            batch_size=500)
    try:
        assert ray.get_actor(worker_name(["stock", "metrics"], 1, 2), namespace="saleday")
        write_reservation_log(store, reservations=1000, skus=20, shards=4, seed=12)  # live
        deadline = time.monotonic() + 30
        while total_lag(handles) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert total_lag(handles) == 0
        parts = ray.get([h.view_json.remote("stock") for h in handles])
        assert all(p["skus"] for p in parts), "the default split gives each worker SKU streams"
        views = merged_views(handles)
    finally:
        stop_workers(handles)
    cps = open_checkpoints(f"sqlite:///{tmp_path}/single.db")
    single = Projection([StockView(), MetricsView()], store, cps)
    single.catch_up()
    assert views["stock"].digest() == single.views[0].digest()
    assert views["metrics"].digest() == single.views[1].digest()
    store.close()
    cps.close()
