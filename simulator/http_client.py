"""The HTTP engine's client: one target (URL, tokens, secrets), one aiohttp session, and
what an answer means (`Ok`, a `Refused` named by its problem type, `Busy`, `Unavailable`).

Requests are retried after `503` and `429` with their `Retry-After` (a bounded number of
times), and payment callbacks are signed as a provider signs them (HMAC-SHA256 over
`timestamp.body`, docs/API.md). It speaks only HTTP: it never imports the front door.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import structlog

from saleday.actors.decider import Rejection
from saleday.actors.host import Busy, Unavailable

log = structlog.get_logger("saleday.simulator")

SIGNATURE_HEADER = "Saleday-Signature"


@dataclass(frozen=True)
class HttpTarget:
    """A front door to drive, and what a client needs to be let in."""

    base_url: str
    token_for: Callable[[str], str]
    """A signed bearer token (JWT) for a user id."""
    operator_token: str
    webhook_secret: str
    pool: int = 256
    """Connections kept open to the server at most."""
    timeout_s: float = 30.0
    retry_budget_s: float = 30.0
    """How long one request is retried (503, 429, no answer) before it counts as busy or
    unavailable."""


HttpServer = Callable[[str, Any], AbstractContextManager[HttpTarget]]
"""`--engine http`: (store URL, scenario) -> a context in which a local front door runs
over that store (the composition root provides it)."""


@dataclass(frozen=True)
class Ok:
    """A 2xx answer and its JSON body."""

    status: int
    body: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused(Rejection):
    """A 4xx problem answer: refused, by the rules or as malformed. `code` is the problem's
    type (`sold_out`, `idempotency_conflict`, ...)."""

    problem: str
    status: int
    detail: str = ""

    @property
    def code(self) -> str:  # type: ignore[override]
        return self.problem


def problem_code(body: Any, status: int) -> str:
    """The short problem type of an error body (`tag:saleday,2026:problem:sold_out` ->
    `sold_out`), or `http_<status>` when the body is not a problem."""
    kind = body.get("type") if isinstance(body, dict) else None
    return kind.rpartition(":")[2] if isinstance(kind, str) and kind else f"http_{status}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Saleday-Signature` a payment provider sends (docs/API.md)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class ApiClient:
    """Requests to the API with retries on 503/429 (after `Retry-After`) and on lost
    connections, each answer turned into a reply (`Ok`, `Refused`, `Busy`, `Unavailable`)."""

    def __init__(self, target: HttpTarget, session: Any) -> None:
        self.target = target
        self.session = session
        self.tokens: dict[str, str] = {}
        self.retries: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()

    def user(self, user: str, key: str | None = None) -> dict[str, str]:
        token = self.tokens.get(user)
        if token is None:
            token = self.tokens[user] = self.target.token_for(user)
        headers = {"Authorization": f"Bearer {token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def operator(self, key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.target.operator_token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    async def call(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                   body: Any = None, raw: bytes | None = None,
                   sign_body: bool = False) -> Ok | Refused | Busy | Unavailable:
        import aiohttp

        data = raw if raw is not None else (None if body is None else
                                            json.dumps(body, separators=(",", ":")).encode())
        hdrs = dict(headers or {})
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        give_up = time.monotonic() + self.target.retry_budget_s
        delay = 0.05
        last: Busy | Unavailable = Unavailable(reason="no answer")
        while True:
            if sign_body:   # a provider signs each delivery afresh
                hdrs[SIGNATURE_HEADER] = sign(self.target.webhook_secret, int(time.time()),
                                              data or b"")
            wait: float | None = None
            try:
                async with self.session.request(method, self.target.base_url + path,
                                                data=data, headers=hdrs) as r:
                    status = r.status
                    payload = await r.read()
                    retry_after = r.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                self.retries["no_answer"] += 1
                last = Unavailable(reason=f"{type(exc).__name__}: {exc}"[:200])
                wait = delay
            else:
                self.statuses[status] += 1
                try:
                    parsed = json.loads(payload) if payload else None
                except ValueError:
                    parsed = None
                if 200 <= status < 300:
                    return Ok(status, parsed)
                code = problem_code(parsed, status)
                if status == 429 or (status == 503 and code == "busy"):
                    last = Busy(shard="rate_limited" if status == 429 else "http")
                elif status in (502, 503, 504):
                    last = Unavailable(reason=code)
                elif status >= 500:
                    return Unavailable(reason=code)   # a bug at the server: not retried
                else:
                    detail = parsed.get("detail", "") if isinstance(parsed, dict) else ""
                    return Refused(problem=code, status=status, detail=str(detail)[:300])
                self.retries[code if status != 429 else "rate_limited"] += 1
                wait = _seconds(retry_after, delay)
            if time.monotonic() + wait > give_up:
                return last
            await asyncio.sleep(wait)
            delay = min(delay * 2, 2.0)


def _seconds(retry_after: str | None, default: float) -> float:
    try:
        value = float(retry_after) if retry_after is not None else default
    except ValueError:
        return default
    return min(max(value, 0.0), 10.0) if math.isfinite(value) else default
