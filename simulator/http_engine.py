"""The HTTP engine: the same visits played through saleday's HTTP API (docs/API.md).

`saleday simulate --target http://HOST:PORT` drives a running front door; `--engine http`
has the composition root start a local one (shards + the Serve app on a free loopback
port) and drives that. Either way this module only speaks HTTP: it never imports the
front door. What it needs to be a client is an `HttpTarget`: the base URL, a token
factory (a user's signed bearer JWT), the operator token (for the sale's setup) and the
webhook secret (to sign payment callbacks as a provider does).

Each step of a visit is one request (an async aiohttp client: keep-alive, a bounded
connection pool), timed at the client by the `Recorder`, so the report's latency is what
an app would see, retries included. Every creating request carries an `Idempotency-Key`
derived from the visit and the run's tag (`<tag>/<session or order id>/<step>`), so a
request retried after a lost answer is done once. `503` and `429` are retried after their
`Retry-After` (a bounded number of times); what an answer means for the report:

    2xx                        accepted (served)
    4xx problem                refused by its problem `type` (`sold_out`, `team_not_found`, ...)
    503 busy, 429 (gave up)    busy
    503 other, 5xx, no answer  unavailable
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import structlog

from saleday.actors.campaign import CreateCampaign
from saleday.actors.host import Accepted
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.flows.checkout import CheckoutResult
from saleday.simulator.driver import Driver, Recorder
from saleday.simulator.engine import (
    EngineRun,
    RunOptions,
    bucket_s,
    clock_opening_at,
    play_paced,
    setup_commands,
    wait_out_holds,
    wall_pace,
)
from saleday.simulator.errors import SimulationError
from saleday.simulator.generator import Sku, Visit
from saleday.simulator.http_client import (
    ApiClient,
    HttpServer,
    HttpTarget,
    Ok,
    Refused,
    sign,
)

log = structlog.get_logger("saleday.simulator")

MIN_TEAM_EXPIRY_S = 60
"""The API's shortest team expiry (`expires_in_s`): a compressed one is raised to it."""


class HttpFlows:
    """The visit's steps as API requests, with the signatures of `SaleDayFlows` and
    `Checkout` that the `Driver` calls. Replies come back as the Driver expects them
    (`Accepted` or the refusal; a `CheckoutResult`)."""

    def __init__(self, client: ApiClient, recorder: Recorder, *, tag: str) -> None:
        self.client = client
        self.rec = recorder
        self.tag = tag
        self.teams: dict[str, str] = {}
        """The visit's team name -> the server's team id (from the 201)."""
        self.orders: dict[str, str] = {}
        """The visit's order id -> the server's order id, until it is paid or failed."""

    def key(self, *parts: str) -> str:
        return "/".join((self.tag, *parts))

    async def _call(self, kind: str, method: str, path: str, **kw: Any) -> Any:
        return await self.rec.record(kind, self.client.call(method, path, **kw))

    # -- SaleDayFlows ---------------------------------------------------------------------

    async def start_session(self, *, user: str, session_id: str, utm_source: str = "",
                            utm_medium: str = "", utm_campaign: str = "", inviter: str = "",
                            now: int) -> Any:
        reply = await self._call("POST /v1/sessions", "POST", "/v1/sessions",
                                 headers=self.client.user(user, self.key(session_id)),
                                 body={"utm_source": utm_source, "utm_medium": utm_medium,
                                       "utm_campaign": utm_campaign, "inviter": inviter})
        return _accepted(reply)

    async def grant_coupon(self, *, campaign: str, grant_id: str, user: str, now: int,
                           value_cents: int = 0) -> Any:
        reply = await self._call("POST /v1/coupons/claims", "POST", "/v1/coupons/claims",
                                 headers=self.client.user(user, self.key(grant_id, "claim")),
                                 body={"campaign": campaign})
        return _accepted(reply)

    async def create_team(self, *, team: str, leader: str, campaign: str, pool_cents: int,
                          size: int = 4, min_share_cents: int = 1, expires: int, seed: int,
                          now: int) -> Any:
        expires_in_s = max(MIN_TEAM_EXPIRY_S, math.ceil((expires - now) / 1000))
        reply = await self._call("POST /v1/teams", "POST", "/v1/teams",
                                 headers=self.client.user(leader, self.key(team)),
                                 body={"campaign": campaign, "pool_cents": pool_cents,
                                       "size": size, "min_share_cents": min_share_cents,
                                       "expires_in_s": expires_in_s})
        if isinstance(reply, Ok) and isinstance(reply.body, dict):
            self.teams[team] = str(reply.body.get("team", team))
        return _accepted(reply)

    async def join_team(self, *, team: str, user: str, now: int) -> Any:
        server_team = self.teams.get(team, team)   # not (yet) created: the server says 404
        reply = await self._call("POST /v1/teams/{team}/members", "POST",
                                 f"/v1/teams/{server_team}/members",
                                 headers=self.client.user(user))
        return _accepted(reply)

    async def wallet(self, user: str) -> Any:
        """The user's wallet as `Driver._pick_coupon` reads it (`.coupons`)."""
        reply = await self._call("GET /v1/coupons", "GET", "/v1/coupons",
                                 headers=self.client.user(user))
        coupons = {}
        if isinstance(reply, Ok) and isinstance(reply.body, list):
            for c in reply.body:
                coupons[c["coupon_id"]] = SimpleNamespace(
                    status=c["status"], min_spend_cents=c["min_spend_cents"],
                    valid_until=c["valid_until_ms"], value_cents=c["value_cents"])
        return SimpleNamespace(coupons=coupons)

    # -- Checkout -------------------------------------------------------------------------

    async def place(self, *, order_id: str, user: str, lines: tuple[tuple[str, int], ...],
                    coupon_id: str = "", now: int) -> CheckoutResult:
        body: dict[str, Any] = {"lines": [{"sku": sku, "qty": qty} for sku, qty in lines]}
        if coupon_id:
            body["coupon_id"] = coupon_id
        reply = await self._call("POST /v1/orders", "POST", "/v1/orders",
                                 headers=self.client.user(user, self.key(order_id)), body=body)
        if isinstance(reply, Ok) and isinstance(reply.body, dict):
            self.orders[order_id] = reply.body["order_id"]
            return CheckoutResult(order_id=order_id, status="placed",
                                  total_cents=int(reply.body["total_cents"]))
        if isinstance(reply, Refused):
            # The server cancels an order refused while being placed (docs/API.md).
            return CheckoutResult(order_id=order_id, status="cancelled", reason=reply.code)
        return CheckoutResult(order_id=order_id, status="unavailable", reason=reply.code)

    async def payment_succeeded(self, *, order_id: str, payment_id: str, amount_cents: int,
                                now: int) -> CheckoutResult:
        return await self._callback(order_id, "payment.succeeded", payment_id, amount_cents)

    async def payment_failed(self, *, order_id: str, now: int) -> CheckoutResult:
        return await self._callback(order_id, "payment.failed", f"{order_id}/pay", 0)

    async def _callback(self, order_id: str, kind: str, payment_id: str,
                        amount_cents: int) -> CheckoutResult:
        server_order = self.orders.pop(order_id, order_id)
        # The provider's payment id is an API id (no '/'): a digest of the run's.
        pay_id = "p-" + hashlib.sha256(self.key(payment_id).encode()).hexdigest()[:24]
        event = {"id": self.key(order_id, kind), "type": kind, "order_id": server_order,
                 "payment_id": pay_id, "amount_cents": amount_cents}
        reply = await self._call("POST /v1/payments/callback", "POST", "/v1/payments/callback",
                                 raw=json.dumps(event, separators=(",", ":")).encode(),
                                 sign_body=True)
        if isinstance(reply, Ok) and isinstance(reply.body, dict):
            return CheckoutResult(order_id=order_id, status=str(reply.body.get("status")),
                                  reason=str(reply.body.get("reason", "")))
        status = "refused" if isinstance(reply, Refused) else "unavailable"
        return CheckoutResult(order_id=order_id, status=status, reason=reply.code)


def _accepted(reply: Any) -> Any:
    return Accepted() if isinstance(reply, Ok) else reply


# -- the sale's setup, as the operator ----------------------------------------------------------


def setup_requests(commands: list[tuple[str, Any]], tag: str) -> list[tuple[str, str, str, dict]]:
    """(idempotency key, method, path, body) of the admin requests that set the sale up."""
    out = []
    for cid, c in commands:
        key = f"{tag}/{cid}"
        match c:
            case AddStock():
                out.append((key, "POST", f"/v1/admin/skus/{c.sku}/stock", {"qty": c.qty}))
            case ConfigureSale():
                out.append((key, "PUT", f"/v1/admin/skus/{c.sku}/sale", {
                    "tiers": [{"units": u, "price_cents": p} for u, p in c.tiers],
                    "per_user_limit": c.per_user_limit, "start_ms": c.start, "end_ms": c.end}))
            case CreateCampaign():
                out.append((key, "POST", "/v1/admin/campaigns", {
                    "campaign": c.campaign, "value_cents": c.value_cents,
                    "min_spend_cents": c.min_spend_cents, "valid_from_ms": c.valid_from,
                    "valid_until_ms": c.valid_until, "budget_coupons": c.budget_coupons,
                    "budget_cents": c.budget_cents}))
            case _:
                raise SimulationError(f"no admin route for setup command {type(c).__name__}")
    return out


# -- the engine ---------------------------------------------------------------------------------


def run_http(opts: RunOptions, url: str | None, skus: list[Sku], stream: Iterator[Visit],
             progress: Any) -> EngineRun:
    """Play the visits against `opts.http_target`, or against a local front door that
    `opts.http_server` runs over the store at `url` for the length of the run."""
    if opts.http_target is not None:
        return asyncio.run(_drive(opts, opts.http_target, skus, stream, progress, local=False))
    if opts.http_server is None or url is None:
        raise SimulationError("--engine http needs a target (--target URL) or a local server")
    try:
        server = opts.http_server(url, opts.scenario)
        target = server.__enter__()
    except SimulationError:
        raise
    except Exception as exc:
        raise SimulationError(f"the HTTP front door could not start: "
                              f"{type(exc).__name__}: {exc}") from exc
    try:
        run = asyncio.run(_drive(opts, target, skus, stream, progress, local=True))
    except BaseException as exc:
        server.__exit__(type(exc), exc, exc.__traceback__)
        raise
    server.__exit__(None, None, None)
    return run


async def _wait_ready(client: ApiClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            async with client.session.get(client.target.base_url + "/readyz") as r:
                if r.status == 200:
                    return
                last = f"/readyz answered {r.status}"
        except Exception as exc:  # noqa: BLE001 - not up yet: keep asking until the deadline
            last = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(0.2)
    raise SimulationError(f"{client.target.base_url} is not ready after {timeout_s:g} s ({last})")


async def _drive(opts: RunOptions, target: HttpTarget, skus: list[Sku], stream: Iterator[Visit],
                 progress: Any, *, local: bool) -> EngineRun:
    import aiohttp

    sc = opts.scenario
    connector = aiohttp.TCPConnector(limit=target.pool, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=target.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        client = ApiClient(target, session)
        await _wait_ready(client, 60.0 if local else 15.0)
        tag = opts.run_tag or f"run-{time.time_ns() // 1_000_000:x}"
        # Setup on the server's (wall) clock, just before the window opens; the sale stays
        # open a minute longer than the window, as with the Ray engine.
        now = time.time_ns() // 1_000_000
        pre = clock_opening_at(now, sc)
        setup = setup_requests(setup_commands(sc, skus, pre, now, pre.ms(0), margin_ms=60_000),
                               tag)
        replies = await asyncio.gather(*(client.call(method, path, body=body,
                                                     headers=client.operator(key))
                                         for key, method, path, body in setup))
        refused = [(path, r) for (_, _, path, _), r in zip(setup, replies) if not isinstance(r, Ok)]
        if refused:
            path, reply = refused[0]
            raise SimulationError(f"the sale could not be set up over HTTP: {path} was answered "
                                  f"{getattr(reply, 'code', reply)} "
                                  f"({getattr(reply, 'detail', '') or reply}); "
                                  f"{len(refused)} setup requests refused in all")

        clock = clock_opening_at(time.time_ns() // 1_000_000, sc)
        t0, now_s, wait_until = wall_pace(sc.compression, sc.traffic.start_s)

        recorder = Recorder(None, now_s, bucket_s=bucket_s(sc))
        flows = HttpFlows(client, recorder, tag=tag)
        driver = Driver(recorder, sc, clock, skus, wait_until,
                        stamp=lambda t_s: max(clock.ms(t_s), time.time_ns() // 1_000_000),
                        flows=flows, checkout=flows, wallet=flows.wallet)
        traffic_wall, late_starts, load = await play_paced(opts, driver, recorder, stream,
                                                           progress, wait_until, now_s, t0)
        started = time.perf_counter()
        if local:
            # Wait out the last holds (in system time), as the Ray engine does, so abandoned
            # checkouts are released by the shards' timers before the audit.
            await wait_out_holds(sc, progress, recorder, now_s)
    return EngineRun(recorder=recorder, driver=driver, clock=clock, wall_s=traffic_wall,
                     sim_end_s=now_s(),
                     extra={"late_starts": late_starts, "driver_load": load,
                            "target": target.base_url,
                            "http_retries": dict(client.retries),
                            "http_statuses": {str(k): v for k, v in sorted(client.statuses.items())},
                            "requests_by_route": dict(recorder.by_type),
                            "drain_s": round(time.perf_counter() - started, 2)})


__all__ = ["ApiClient", "HttpFlows", "HttpServer", "HttpTarget", "Ok", "Refused", "run_http",
           "setup_requests", "sign"]
