"""The HTTP front door's settings: `SALEDAY_HTTP_*` environment variables, and its secrets.

    SALEDAY_HTTP_HOST=127.0.0.1  SALEDAY_HTTP_PORT=8000
    SALEDAY_HTTP_JWT_SECRET=...        signs and checks users' bearer tokens (HS256, >= 32 chars)
    SALEDAY_HTTP_WEBHOOK_SECRET=...    the payment provider's shared signing secret
    SALEDAY_HTTP_OPERATOR_TOKEN=...    the bearer token of the admin routes
    SALEDAY_HTTP_RATE_PER_S=20  SALEDAY_HTTP_RATE_BURST=40     per user, at each replica
    SALEDAY_HTTP_STORES='[{"store_id": "s1", "lat": 31.23, "lon": 121.47, "campaign": "geo", "radius_m": 200}]'
    SALEDAY_HTTP_WS_MAX_SKUS=100  SALEDAY_HTTP_WS_RATE_PER_S=2  SALEDAY_HTTP_WS_BURST=10
    SALEDAY_HTTP_WARROOM_PUBLIC=false  (true: /v1/warroom needs no operator token)

Secrets are `SecretStr`: never logged, printed or shown by `repr`. `with_secrets` refuses
to go on without them, unless asked to generate random ones for development, which it
writes to a 0600 file under the data dir (and reads back next time, so tokens survive a
restart).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SECRET_NAMES = ("jwt_secret", "webhook_secret", "operator_token")
DEV_SECRETS_FILE = "http-secrets.json"


class MissingSecrets(ValueError):
    """The front door was asked to start without its secrets."""

    def __init__(self, names: list[str]) -> None:
        env = ", ".join(f"SALEDAY_HTTP_{n.upper()}" for n in names)
        super().__init__(f"no {env} set: set them (secrets of at least 32 characters), or pass "
                         "--dev-secrets to generate random ones under the data dir")


class GeoStore(BaseModel):
    """A store whose geofence earns a visit (and the campaign's coupon, by reaction)."""

    store_id: str = Field(min_length=1, max_length=64)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    campaign: str = Field(min_length=1, max_length=64)
    radius_m: int = Field(ge=1, le=100_000)


class HttpSettings(BaseSettings):
    """Where the front door listens, its secrets and its limits."""

    model_config = SettingsConfigDict(env_prefix="SALEDAY_HTTP_", extra="ignore",
                                      validate_default=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    jwt_secret: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    operator_token: SecretStr | None = None
    jwt_issuer: str = "saleday"
    jwt_audience: str = "saleday-api"
    token_ttl_s: int = Field(3600, ge=1)
    rate_per_s: float = Field(20.0, gt=0)
    """Requests a second each user may make at one replica, sustained."""
    rate_burst: int = Field(40, ge=1)
    """Requests a user may make at once after being idle."""
    max_body_bytes: int = Field(1_048_576, ge=1024)
    """The largest request body accepted; a larger one is answered 413 before it is read."""
    webhook_tolerance_s: int = Field(300, ge=1)
    """How far a callback's timestamp may be from this server's clock."""
    payment_window_ms: int = Field(900_000, ge=1000)
    busy_retries: int = Field(2, ge=1)
    """Tries of a request's first command while its shard sheds load, before 503 Busy."""
    retry_after_s: int = Field(1, ge=1)
    idempotency_records: int = Field(100_000, ge=1)
    """Idempotency keys (and callback signatures) each replica remembers."""
    stores: Annotated[tuple[GeoStore, ...], NoDecode] = ()
    ws_max_skus: int = Field(100, ge=1, le=10_000)
    """SKUs one stock socket may follow."""
    ws_rate_per_s: float = Field(2.0, gt=0)
    """(Un)subscribe messages a second each stock socket may send, sustained."""
    ws_burst: int = Field(10, ge=1)
    ws_max_connections: int = Field(10_000, ge=1)
    """Stock sockets each replica holds at once; more are closed with 1013 (try later)."""
    stock_poll_ms: int = Field(10, ge=1, le=10_000)
    """How often the live stock feed looks for new commits when it is caught up."""
    warroom_public: bool = False
    """Serve /v1/warroom without the operator token (a wall display on a trusted network)."""
    otel: bool = False
    """FastAPI's own OpenTelemetry hooks (traces, metrics, logs to the providers set up in
    the process). Off, a request skips the per-request check for them; saleday's figures
    are on /metrics either way."""

    @field_validator("stores", mode="before")
    @classmethod
    def _stores(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else ()
            except json.JSONDecodeError as exc:
                raise ValueError(f"stores: not JSON: {exc}") from None
        return value

    @field_validator(*SECRET_NAMES)
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    def missing_secrets(self) -> list[str]:
        return [n for n in SECRET_NAMES if getattr(self, n) is None]

    def secret(self, name: str) -> str:
        value = getattr(self, name)
        if value is None:
            raise MissingSecrets([name])
        return value.get_secret_value()


def with_secrets(settings: HttpSettings, *, data_dir: Path,
                 dev: bool = False) -> tuple[HttpSettings, Path | None]:
    """The settings with every secret set, and the file generated ones are in (or None).

    Without `dev`, a missing secret raises `MissingSecrets`. With it, missing secrets come
    from `<data_dir>/http-secrets.json`, written (mode 0600) with random ones if absent."""
    missing = settings.missing_secrets()
    if not missing:
        return settings, None
    if not dev:
        raise MissingSecrets(missing)
    path = data_dir / DEV_SECRETS_FILE
    stored = read_dev_secrets(data_dir)
    fresh = {n: secrets.token_urlsafe(32) for n in SECRET_NAMES if n not in stored}
    if fresh:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({**stored, **fresh}, f)
        os.chmod(path, 0o600)
        stored = {**stored, **fresh}
    update = {n: SecretStr(stored[n]) for n in missing}
    return settings.model_copy(update=update), path


def read_dev_secrets(data_dir: Path) -> dict[str, str]:
    """The generated development secrets under `data_dir` ({} when there are none)."""
    try:
        data = json.loads((data_dir / DEV_SECRETS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if k in SECRET_NAMES and isinstance(v, str)}
