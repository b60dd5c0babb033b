"""RFC 9457 problem details: every error the API answers, and which status a refusal gets.

A problem is `application/problem+json`: `type` (a URI naming the problem), `title`,
`status`, `detail`, `instance` (the request path), plus the refusal's own fields (a
`SoldOut` carries `sku`, `requested`, `available`). `REFUSAL_STATUS` maps a rejection's
class NAME to its status, so a rejection type added elsewhere (say the shard host's
`IdempotencyConflict`) plugs in with one line; an unlisted refusal is a 409.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "tag:saleday,2026:problem:"

REFUSAL_STATUS: dict[str, int] = {
    # malformed or out of range: the request can never succeed as sent
    "InvalidCommand": 422, "InvalidQuantity": 422, "PaymentMismatch": 422,
    "MinimumSpendNotMet": 422,
    # names something that does not exist
    "UnknownSku": 422, "UnknownCampaign": 422, "UnknownTeam": 422, "CouponNotFound": 422,
    "OrderNotStarted": 404,
    # the same key with another body
    "IdempotencyConflict": 409,
    # not decided: try again
    "Busy": 503, "Unavailable": 503,
    # everything else (SoldOut, LimitExceeded, SaleNotOpen, CouponExpired, CouponInUse,
    # TeamAlreadyCompleted, AlreadyMember, OrderCancelled, OrderAlreadyPaid, ...) is a 409
}
TITLES = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
          409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type",
          422: "Unprocessable Content", 429: "Too Many Requests", 500: "Internal Server Error",
          503: "Service Unavailable"}


def snake(name: str) -> str:
    """`SoldOut` -> `sold_out`."""
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class ApiProblem(Exception):
    """An answer that is a problem: raised anywhere in a route, rendered by the app."""

    def __init__(self, status: int, code: str, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None, **fields: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title or TITLES.get(status, "Error")
        self.detail = detail
        self.headers = headers or {}
        self.fields = fields

    def body(self, instance: str = "") -> dict[str, Any]:
        out = {"type": TYPE_PREFIX + self.code, "title": self.title, "status": self.status,
               "detail": self.detail}
        if instance:
            out["instance"] = instance
        out.update({k: v for k, v in self.fields.items() if k not in out})
        return out

    def response(self, instance: str = "") -> JSONResponse:
        return JSONResponse(self.body(instance), status_code=self.status, headers=self.headers,
                            media_type=PROBLEM_JSON)


def refusal_problem(reply: Any, *, retry_after_s: int = 1, **extra: Any) -> ApiProblem:
    """The problem a shard's rejection (or `Busy` / `Unavailable`) answers as."""
    name = type(reply).__name__
    status = REFUSAL_STATUS.get(name, 409)
    fields = _fields(reply)
    headers = {"Retry-After": str(retry_after_s)} if status == 503 else None
    describe = getattr(reply, "describe", None)
    detail = describe() if callable(describe) else name
    if name == "InvalidCommand":
        detail = str(getattr(reply, "reason", detail))
    elif name == "Busy":
        detail = "the shard is shedding load; retry after the Retry-After seconds"
    elif name == "Unavailable":
        detail = "the shard could not be reached; retry with the same Idempotency-Key"
        fields = {}   # its reason names internals
    return ApiProblem(status, snake(name), detail, title=_title(name), headers=headers,
                      **{"refusal": name, **extra, **fields})


def _fields(reply: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(reply):
        return {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(reply):
        value = getattr(reply, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _title(name: str) -> str:
    words = snake(name).replace("_", " ")
    return words[:1].upper() + words[1:]
