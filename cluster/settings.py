"""Deployment settings: `SALEDAY_*` environment variables, overridden by command-line flags.

    SALEDAY_STORE_URL=redis://saleday:${PASS}@10.0.0.5:6379/0   (or the parts below)
    SALEDAY_REDIS_USERNAME / SALEDAY_REDIS_PASSWORD            AUTH as an ACL user
    SALEDAY_REDIS_TLS_CA / _CERT / _KEY                        TLS files (implies rediss://)
    SALEDAY_RAY_ADDRESS=auto | ray://head:10001 | 127.0.0.1:6380
    SALEDAY_SHARDS='{"sku": 8, "session": 4}'  (or sku=8,session=4)
    SALEDAY_SHARD_RESOURCE=saleday_shard       place shards only on nodes with this resource
    SALEDAY_STANDBYS=1                         a hot standby per shard (cluster/failover.py)

`SaledaySettings.runtime_config()` turns them into the `RuntimeConfig` the runtime takes;
the store URL it builds carries the credentials, so it is passed on, never logged:
`safe()` gives the settings with every secret redacted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from saleday.cluster.runtime import RuntimeConfig
from saleday.events.store import redact


def parse_shards(value: str | dict[str, int]) -> dict[str, int]:
    """`sku=8,session=4` or JSON `{"sku": 8}` -> {"sku": 8, "session": 4}."""
    if isinstance(value, dict):
        return value
    text = value.strip()
    if text.startswith("{"):
        import json

        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"shards: not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError("shards: expected an object of kind -> count")
        return parsed
    shards: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, sep, count = item.partition("=")
        if not sep or not count.strip().isdigit():
            raise ValueError(f"shards: {item!r} is not kind=count (e.g. sku=8,session=4)")
        shards[kind.strip()] = int(count)
    return shards


class SaledaySettings(BaseSettings):
    """Where the log and the cluster are, how many shards, and how to batch."""

    model_config = SettingsConfigDict(env_prefix="SALEDAY_", extra="ignore",
                                      validate_default=True)

    data_dir: Path = Path("saleday-data")
    store_url: SecretStr | None = None
    """The event store; default `sqlite:///<data_dir>/events.db`."""
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_tls_ca: Path | None = None
    redis_tls_cert: Path | None = None
    redis_tls_key: Path | None = None
    ray_address: str | None = None
    """`auto` (the cluster this node belongs to), `ray://head:10001`, `host:6380`, or
    unset: start a local Ray in this process."""
    num_cpus: int | None = None
    shards: Annotated[dict[str, int], NoDecode] = Field(default_factory=lambda: {"sku": 2})
    partitions: int = Field(64, ge=1)
    snapshot_every: int = Field(50_000, ge=1)
    max_batch: int = Field(1024, ge=1)
    max_wait_ms: float = Field(2.0, ge=0)
    idle_wait_ms: float = Field(0.0, ge=0)
    local_socket: bool = True
    max_in_flight: int = Field(2, ge=1)
    call_timeout_s: float = Field(10.0, gt=0)
    retry_for_s: float = Field(30.0, ge=0)
    tick_s: float = Field(1.0, ge=0)
    shard_resource: str | None = None
    """A custom Ray resource (e.g. `saleday_shard`) that only shard nodes offer."""
    shard_resource_amount: float = Field(0.01, gt=0, le=1)
    spread: bool = True
    standbys: int = Field(0, ge=0, le=1)
    """1: each shard has a hot standby, promoted when its primary dies (cluster/failover.py)."""
    health_every_s: float = Field(10.0, gt=0)

    @field_validator("shards", mode="before")
    @classmethod
    def _shards(cls, value: Any) -> Any:
        return parse_shards(value) if isinstance(value, str) else value

    @field_validator("shards")
    @classmethod
    def _shard_counts(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if not isinstance(v, int) or v < 1}
        if bad or not value:
            raise ValueError(f"shards: every kind needs a count >= 1 (got {value})")
        return value

    @field_validator("shard_resource", "ray_address", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _no_tls_to_a_cluster(self) -> SaledaySettings:
        url = self.store_url.get_secret_value() if self.store_url else ""
        tls = (self.redis_tls_ca, self.redis_tls_cert, self.redis_tls_key)
        if url.startswith("redis+cluster:") and any(tls):
            raise ValueError("TLS to a Redis Cluster (redis+cluster://) is not supported yet: "
                             "unset SALEDAY_REDIS_TLS_* or use one Redis (rediss://)")
        return self

    def resolved_store_url(self) -> str:
        """The store URL with the username, password and TLS files put in (a secret)."""
        url = (self.store_url.get_secret_value() if self.store_url
               else f"sqlite:///{self.data_dir}/events.db")
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "redis+cluster"):
            return url
        tls = {"ssl_ca_certs": self.redis_tls_ca, "ssl_certfile": self.redis_tls_cert,
               "ssl_keyfile": self.redis_tls_key}
        scheme = "rediss" if any(tls.values()) else parts.scheme
        netloc = parts.netloc
        if self.redis_username or self.redis_password:
            host = netloc.rsplit("@", 1)[-1]
            user = quote(self.redis_username or parts.username or "", safe="")
            password = (quote(self.redis_password.get_secret_value(), safe="")
                        if self.redis_password else quote(parts.password or "", safe=""))
            netloc = f"{user}:{password}@{host}" if password else f"{user}@{host}"
        query = dict(parse_qsl(parts.query))
        query.update({k: str(v) for k, v in tls.items() if v is not None})
        if tls["ssl_ca_certs"] is not None:
            query.setdefault("ssl_cert_reqs", "required")
        return urlunsplit((scheme, netloc, parts.path, urlencode(query), parts.fragment))

    def runtime_config(self) -> RuntimeConfig:
        return RuntimeConfig(
            store_url=self.resolved_store_url(), ray_address=self.ray_address,
            num_cpus=self.num_cpus, shards=dict(self.shards), partitions=self.partitions,
            snapshot_every=self.snapshot_every, max_batch=self.max_batch,
            max_wait_ms=self.max_wait_ms, idle_wait_ms=self.idle_wait_ms,
            local_socket=self.local_socket,
            max_in_flight=self.max_in_flight, call_timeout_s=self.call_timeout_s, retry_for_s=self.retry_for_s, tick_s=self.tick_s,
            shard_resource=self.shard_resource, shard_resource_amount=self.shard_resource_amount,
            spread=self.spread, standbys=self.standbys)

    def safe(self) -> dict[str, Any]:
        """The settings as plain values, with the password and URL credentials redacted."""
        out = self.model_dump(mode="json")
        out["store_url"] = redact(self.resolved_store_url())
        out["redis_password"] = "***" if self.redis_password else None
        return out


def load_settings(**overrides: Any) -> SaledaySettings:
    """Settings from the environment, with the `overrides` that are not None on top."""
    return SaledaySettings(**{k: v for k, v in overrides.items() if v is not None})
