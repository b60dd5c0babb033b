"""The cluster files and the deployment settings: Ray's own schema accepts both cluster
files, shards are placed only where the shard resource is, and settings come from the
environment with flags on top, never showing a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from saleday.cluster.settings import SaledaySettings, load_settings, parse_shards

ROOT = Path(__file__).resolve().parents[2]
CLOUD = ROOT / "ray_cluster.yaml"
ONPREM = ROOT / "deploy" / "ray_cluster.onprem.yaml"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def commands(config: dict, key: str) -> str:
    return "\n".join(config.get(key, []))


@pytest.mark.parametrize("path", [CLOUD, ONPREM], ids=["aws", "onprem"])
def test_cluster_files_pass_rays_own_validation(path):
    """Ray's `validate_config(prepare_config(cfg))` accepts each cluster file."""
    validate_config(prepare_config(load(path)))


def test_a_misspelt_field_is_rejected_by_the_same_validation():
    """The check can fail: a node type with an unknown field is refused by Ray's schema."""
    config = load(CLOUD)
    config["available_node_types"]["saleday.shard"]["resourcez"] = {"CPU": 1}
    with pytest.raises(Exception, match="resourcez"):
        validate_config(prepare_config(config))


def test_the_cloud_head_takes_no_shard_work_and_shard_nodes_offer_the_resource():
    """The head offers no CPU and no shard resource; the shard node type offers it."""
    config = prepare_config(load(CLOUD))
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0
    assert "saleday_shard" not in head["resources"]
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert any(t["resources"].get("saleday_shard", 0) >= 1 for t in workers)
    assert all(t["min_workers"] <= t["max_workers"] for t in workers)


@pytest.mark.parametrize("path", [CLOUD, ONPREM], ids=["aws", "onprem"])
def test_rays_gcs_listens_beside_redis_not_on_its_port(path):
    """Head and workers use port 6380 for Ray's GCS, never Redis's 6379."""
    config = load(path)
    head, worker = commands(config, "head_start_ray_commands"), commands(config, "worker_start_ray_commands")
    assert "--port=6380" in head and "6379" not in head
    assert "$RAY_HEAD_IP:6380" in worker and "6379" not in worker


@pytest.mark.parametrize("path", [CLOUD, ONPREM], ids=["aws", "onprem"])
def test_every_node_installs_this_project_and_no_secret_is_in_the_file(path):
    """Setup installs the checkout that file_mounts copies; no store URL or password is inline."""
    config = load(path)
    mounted = [remote for remote, local in config["file_mounts"].items() if local == "."]
    assert mounted, "the checkout is not copied to the nodes"
    assert any("install" in c and mounted[0] in c for c in config["setup_commands"])
    text = path.read_text().lower()
    for secret_like in ("redis://", "rediss://", "saleday_store_url=", "saleday_redis_password=",
                        "requirepass", "password:"):
        assert secret_like not in text


def test_onprem_workers_offer_the_shard_resource_and_the_head_offers_no_cpu():
    """On the one-node-type local provider the start commands set the roles."""
    config = prepare_config(load(ONPREM))
    assert config["provider"]["type"] == "local"
    assert "--num-cpus=0" in commands(config, "head_start_ray_commands")
    assert "saleday_shard" not in commands(config, "head_start_ray_commands")
    assert '"saleday_shard": 100' in commands(config, "worker_start_ray_commands")


# -- settings -------------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith("SALEDAY_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_settings_default_to_the_embedded_store_and_a_local_ray(env, tmp_path):
    """With no environment the log is SQLite under the data dir and no resource is asked."""
    env.chdir(tmp_path)
    config = SaledaySettings().runtime_config()
    assert config.store_url == "sqlite:///saleday-data/events.db"
    assert config.ray_address is None and config.shard_resource is None
    assert config.shards == {"sku": 2}


def test_settings_come_from_saleday_variables_and_flags_win(env):
    """SALEDAY_* variables fill the runtime config; an explicit override beats them."""
    env.setenv("SALEDAY_STORE_URL", "redis://10.0.0.5:6379/0?prefix=sale")
    env.setenv("SALEDAY_RAY_ADDRESS", "auto")
    env.setenv("SALEDAY_SHARDS", "sku=8,session=4")
    env.setenv("SALEDAY_SHARD_RESOURCE", "saleday_shard")
    env.setenv("SALEDAY_MAX_BATCH", "512")
    config = load_settings(max_batch=256, partitions=None).runtime_config()
    assert config.store_url == "redis://10.0.0.5:6379/0?prefix=sale"
    assert config.ray_address == "auto"
    assert config.shards == {"sku": 8, "session": 4}
    assert config.shard_resource == "saleday_shard" and config.spread
    assert config.max_batch == 256 and config.partitions == 64


def test_redis_credentials_and_tls_files_are_put_into_the_store_url(env, tmp_path):
    """A username, password and TLS files from the environment make an ACL, TLS URL."""
    env.setenv("SALEDAY_STORE_URL", "redis://redis.internal:6380/0?prefix=sale")
    env.setenv("SALEDAY_REDIS_USERNAME", "saleday")
    env.setenv("SALEDAY_REDIS_PASSWORD", "p@ss/w:rd")
    env.setenv("SALEDAY_REDIS_TLS_CA", str(tmp_path / "ca.pem"))
    url = SaledaySettings().resolved_store_url()
    assert url.startswith("rediss://saleday:p%40ss%2Fw%3Ard@redis.internal:6380/0?")
    assert f"ssl_ca_certs={tmp_path}/ca.pem".replace("/", "%2F") in url
    assert "ssl_cert_reqs=required" in url and "prefix=sale" in url


def test_credentials_go_into_a_cluster_url_and_tls_to_a_cluster_is_refused(env, tmp_path):
    """A redis+cluster:// URL gets the username and password from the environment (every
    seed shares them); TLS files with a cluster URL are a settings error, not a plain link."""
    env.setenv("SALEDAY_STORE_URL", "redis+cluster://10.0.0.5:7000,10.0.0.6:7000/?prefix=sale")
    env.setenv("SALEDAY_REDIS_USERNAME", "saleday")
    env.setenv("SALEDAY_REDIS_PASSWORD", "p@ss")
    settings = SaledaySettings()
    assert settings.resolved_store_url() == (
        "redis+cluster://saleday:p%40ss@10.0.0.5:7000,10.0.0.6:7000/?prefix=sale")
    assert settings.safe()["store_url"] == (
        "redis+cluster://saleday:***@10.0.0.5:7000,10.0.0.6:7000/?prefix=sale")
    env.setenv("SALEDAY_REDIS_TLS_CA", str(tmp_path / "ca.pem"))
    with pytest.raises(ValueError, match="TLS to a Redis Cluster"):
        SaledaySettings()


def test_settings_never_show_the_password(env):
    """repr, str and safe() of the settings carry no password, in the URL or apart."""
    env.setenv("SALEDAY_STORE_URL", "redis://app:hunter2-url@h:6379/0")
    env.setenv("SALEDAY_REDIS_PASSWORD", "hunter2-env")
    settings = SaledaySettings()
    for text in (repr(settings), str(settings), str(settings.safe())):
        assert "hunter2" not in text
    assert settings.safe()["store_url"] == "redis://app:***@h:6379/0"


@pytest.mark.parametrize("bad", ["sku", "sku=x", "sku=0", "[1]"])
def test_a_malformed_shard_count_is_a_readable_error(env, bad):
    """SALEDAY_SHARDS that is not kind=count is refused, naming the field."""
    env.setenv("SALEDAY_SHARDS", bad)
    with pytest.raises(ValueError, match="shards"):
        SaledaySettings()


def test_shard_counts_parse_from_pairs_and_json():
    """Both spellings give the same map."""
    assert parse_shards("sku=2, session=1") == parse_shards('{"sku": 2, "session": 1}') == \
        {"sku": 2, "session": 1}


def test_the_placement_asks_for_the_resource_only_when_named():
    """No resource by default (a plain local Ray works); the named one, in a small amount."""
    from saleday.cluster import ray_api
    from saleday.cluster.runtime import RuntimeConfig

    assert RuntimeConfig().shard_resource is None
    assert ray_api.shard_placement(None) == {}
    assert ray_api.shard_placement("saleday_shard", 0.01) == {"saleday_shard": 0.01}
