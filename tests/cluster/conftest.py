"""Ray for the tests that need it: one local instance per test module (ray.init costs
seconds on 2 cores), with the settings DEVELOPERS.md asks for."""

from __future__ import annotations

import pytest
import ray

from saleday.cluster import ray_api


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray for this module, shut down when the module is done."""
    ray.init(num_cpus=2, include_dashboard=False, namespace=ray_api.NAMESPACE, log_to_driver=False)
    yield
    ray.shutdown()
