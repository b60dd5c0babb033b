"""A shard actor built without Ray (tests, tools) answers its status without connecting to
Ray: asking for the node id outside Ray used to start a local Ray, dashboard and all."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json
from saleday.cluster.shard_actor import ShardActor
actor = ShardActor(kind="sku", stream="sku-000", store_url="memory://outside-ray",
                   standby=True, local_socket=False)
status = actor.promote()
import ray
print(json.dumps({"node": status["node"], "standby": status["standby"],
                  "ray": ray.is_initialized()}))
"""


def test_a_shard_actor_outside_ray_reports_no_node_and_starts_no_ray():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"node": None, "standby": False, "ray": False}
    assert "Started a local Ray" not in done.stderr
