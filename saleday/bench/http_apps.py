"""The servers `saleday bench http` compares, each an ASGI app that uvicorn runs in its own
process (`uvicorn --factory saleday.bench.http_apps:<name>`):

- `floor_app`: a FastAPI endpoint that does nothing (the floor of this machine's HTTP stack);
- `seed_app`: the seed's approach behind the same kind of server: `POST /v1/orders` does
  Redis `DECRBY` per line and `INCRBY` back when the stock went negative (keys
  `<SALEDAY_BENCH_PREFIX>:stock:<sku>` on SALEDAY_BENCH_REDIS_URL);
- `saleday_app`: saleday's own app (`saleday.http.create_app`) under plain uvicorn over the
  Ray gateway of shards already running (SALEDAY_* for the runtime, SALEDAY_HTTP_* for the
  secrets), to tell Serve's cost from the app's.

All three take the same request body (`{"lines": [{"sku", "qty"}]}`) and answer 201 when the
units are held, 409 when sold out.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field


class Line(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(ge=1, le=1000)


class OrderIn(BaseModel):
    lines: list[Line] = Field(min_length=1, max_length=50)
    coupon_id: str | None = None


def floor_app() -> FastAPI:
    """POST /v1/orders validates the body and answers 201, doing nothing else."""
    app = FastAPI()

    @app.post("/v1/orders", status_code=201)
    async def place(body: OrderIn) -> dict[str, Any]:
        return {"status": "placed"}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def seed_app() -> FastAPI:
    """The seed's DECRBY-with-rollback behind FastAPI."""
    import redis.asyncio as aioredis

    url = os.environ.get("SALEDAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = os.environ.get("SALEDAY_BENCH_PREFIX", "bench-http-seed")
    client = aioredis.from_url(url, max_connections=256)
    app = FastAPI()

    @app.post("/v1/orders", status_code=201)
    async def place(body: OrderIn) -> Response:
        taken: list[tuple[str, int]] = []
        for line in body.lines:
            key = f"{prefix}:stock:{line.sku}"
            left = await client.decrby(key, line.qty)
            taken.append((key, line.qty))
            if left < 0:
                for k, q in taken:   # roll every line back
                    await client.incrby(k, q)
                return JSONResponse({"type": "sold_out", "sku": line.sku}, status_code=409)
        return JSONResponse({"status": "placed"}, status_code=201)

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        await client.ping()
        return {"status": "ready"}

    return app


def saleday_app() -> FastAPI:
    """saleday's API over the gateway to the shards of a running Ray (`address=auto`)."""
    from saleday.cluster import ray_api
    from saleday.cluster.settings import load_settings
    from saleday.http import create_app
    from saleday.http.serve import attach_gateway
    from saleday.http.settings import HttpSettings

    settings = load_settings()
    ray_api.start_ray(settings.ray_address or "auto")
    gateway = attach_gateway(settings.runtime_config())
    from saleday.events import open_store

    log = open_store(settings.runtime_config().store_url, read_only=True)   # the stock sockets
    return create_app(gateway, settings=HttpSettings(), stock=log)
