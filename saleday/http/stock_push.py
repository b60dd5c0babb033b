"""How fast stock reaches a socket: `measure_stock_push(url, settings)` against a running app.

    from saleday.http.stock_push import measure_stock_push
    figures = asyncio.run(measure_stock_push("http://127.0.0.1:8000", settings, orders=200))
    figures["stock_push_ms"]     # {"p50": 3.1, "p99": 9.8, "max": 12.0, "n": 200}

It stocks a fresh SKU and opens its sale (operator token), opens `/v1/stock/live` on it,
places `orders` one-unit orders through `POST /v1/orders` (`concurrency` at a time, users
signed with the settings' JWT secret), and times each pushed change from its
`first_committed_at` (the recorded_at of the earliest event it covers: a push may cover
several) to its arrival here. Client and server must
share a clock (one machine, or NTP-synchronised hosts). A push the socket skipped (a newer
state replaced it first) is timed from the first event of the state that replaced it;
`pushes` says how many pushes were timed (at most `orders`).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from saleday.http.auth import issue_token
from saleday.http.settings import HttpSettings

USERS = 64


async def measure_stock_push(base_url: str, settings: HttpSettings, *, orders: int = 200,
                             concurrency: int = 4, sku: str | None = None,
                             timeout_s: float = 30.0) -> dict[str, Any]:
    """`stock_push_ms` p50/p99/max (ms, commit to receipt) of `orders` reservations."""
    import aiohttp

    base = base_url.rstrip("/")
    sku = sku or f"push-{uuid.uuid4().hex[:10]}"
    op = {"Authorization": f"Bearer {settings.secret('operator_token')}"}
    tokens = [issue_token(f"push-u{i}", settings) for i in range(USERS)]
    delays: list[float] = []
    errors: dict[str, int] = {}
    done = asyncio.Event()
    expected: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:
        await _setup(http, base, sku, orders, op)
        ws_url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        async with http.ws_connect(f"{ws_url}/v1/stock/live?sku={sku}") as ws:
            subscribed = json.loads((await ws.receive(timeout=10)).data)
            if subscribed.get("type") != "subscribed":
                raise RuntimeError(f"the stock socket answered {subscribed}")

            async def listen() -> None:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    arrived = time.time() * 1000
                    m = json.loads(msg.data)
                    if m.get("type") != "stock" or m.get("sku") != sku:
                        continue
                    if not m["snapshot"]:
                        delays.append(max(0.0, arrived - m["first_committed_at"]))
                    expected["seen"] = m["available"]
                    if "available" in expected and m["available"] <= expected["available"]:
                        done.set()

            listener = asyncio.create_task(listen())
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(orders):
                queue.put_nowait(i)
            placed = 0

            async def worker() -> None:
                nonlocal placed
                while not queue.empty():
                    i = queue.get_nowait()
                    headers = {"Authorization": f"Bearer {tokens[i % USERS]}"}
                    body = {"lines": [{"sku": sku, "qty": 1}]}
                    async with http.post(f"{base}/v1/orders", json=body, headers=headers) as r:
                        await r.read()
                        if r.status == 201:
                            placed += 1
                        else:
                            errors[str(r.status)] = errors.get(str(r.status), 0) + 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
            expected["available"] = orders - placed
            if expected.get("seen", orders + 1) <= expected["available"]:
                done.set()
            try:
                await asyncio.wait_for(done.wait(), timeout_s)
            except TimeoutError:
                errors["push_timeout"] = 1
            seconds = time.perf_counter() - started
            listener.cancel()
            try:
                await listener
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - done listening
                pass
    delays.sort()
    return {"stock_push_ms": {"p50": _pct(delays, 0.50), "p99": _pct(delays, 0.99),
                              "max": round(delays[-1], 2) if delays else None,
                              "n": len(delays)},
            "orders": placed, "pushes": len(delays), "errors": errors,
            "seconds": round(seconds, 3), "sku": sku}


def stock_push_ms(base_url: str, settings: HttpSettings, **kw: Any) -> dict[str, Any]:
    """`measure_stock_push` from synchronous code (it runs its own event loop)."""
    return asyncio.run(measure_stock_push(base_url, settings, **kw))


async def _setup(http: Any, base: str, sku: str, stock: int, op: dict[str, str]) -> None:
    now = int(time.time() * 1000)
    async with http.post(f"{base}/v1/admin/skus/{sku}/stock", json={"qty": stock},
                         headers=op) as r:
        if r.status != 200:
            raise RuntimeError(f"adding stock to {sku}: {r.status} {await r.text()}")
    sale = {"tiers": [{"units": 0, "price_cents": 1000}], "per_user_limit": 0,
            "start_ms": now - 1000, "end_ms": now + 3_600_000}
    async with http.put(f"{base}/v1/admin/skus/{sku}/sale", json=sale, headers=op) as r:
        if r.status != 200:
            raise RuntimeError(f"opening the sale of {sku}: {r.status} {await r.text()}")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)
