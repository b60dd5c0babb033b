"""Shared fixtures: a Redis server for the session and an isolated key prefix per test."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from saleday.cluster import logs  # noqa: E402
from tests.helpers import (  # noqa: E402
    LocalRedisCluster,
    RedisServer,
    delete_prefix,
    no_redis,
    ping,
    with_query,
)

# structlog's default prints every level to stdout, where a CLI test reads its JSON: log as
# the CLI does (warnings and up, to stderr) unless a test says otherwise.
logs.configure("warning")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server URL: SALEDAY_REDIS_URL if set, else a private redis-server."""
    url = os.environ.get("SALEDAY_REDIS_URL")
    if url:
        if not ping(url, timeout=2.0):
            no_redis("SALEDAY_REDIS_URL is set but the server does not answer PING")
        yield url
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))  # skips/fails without redis-server
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_store_url(redis_url: str) -> Iterator[str]:
    """A store URL on `redis_url` with a key prefix of its own, deleted after the test."""
    url = with_query(redis_url, prefix=f"t-{uuid.uuid4().hex}")
    try:
        yield url
    finally:
        delete_prefix(url)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """A local Redis Cluster for the session: 3 masters and 3 replicas on loopback ports
    (skips, or fails with SALEDAY_REQUIRE_REDIS=1, without redis-server and redis-cli).
    Tests must not kill its nodes: a fault test starts a cluster of its own."""
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_store_url(redis_cluster: LocalRedisCluster) -> Iterator[str]:
    """A `redis+cluster://` store URL with a key prefix of its own, deleted after the test."""
    url = with_query(redis_cluster.url, prefix=f"t-{uuid.uuid4().hex}")
    try:
        yield url
    finally:
        delete_prefix(url)


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray for every module that asks for it (ray.init costs seconds on 2 cores;
    these modules share its settings), shut down when the session ends; `num_cpus`
    explicit, no dashboard, listening on loopback only (the product's `start_ray`). Such modules run last, together (`pytest_collection_modifyitems`),
    so no other module runs beside this Ray, and a module that starts a Ray or a cluster of
    its own (Serve, `ray.cluster_utils.Cluster`, the CLI engines) runs before it. A module
    that uses it leaves no actor behind (runtimes stop with `kill_shards=True`)."""
    import ray

    from saleday.cluster import ray_api

    ray_api.start_ray(num_cpus=2)
    yield
    ray.shutdown()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the modules that use the shared `ray_instance` to the end, in their order."""
    shared = {item.module for item in items
              if "ray_instance" in getattr(item, "fixturenames", ())}
    if shared:
        items[:] = ([i for i in items if getattr(i, "module", None) not in shared]
                    + [i for i in items if getattr(i, "module", None) in shared])
