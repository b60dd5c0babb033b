"""Behaviour and what is computed from it: a shopper's views, carts and favourites recorded
as events, the shopper's own event-time windows, and the experiments view (operator).

    POST /v1/behaviour                {"events": [{"action": "view", "sku": "P1",
                                                   "category": "C3", "at_ms": ...}, ...]}
    GET  /v1/views/windows/browse-5m  the caller's windows (also trail-30m, sessions-30m)
    GET  /v1/views/experiments        per variant lift, intervals, p-value, SRM (operator)

A batch of up to `MAX_BATCH` behaviour events is one command per event, submitted together
(the gateway batches them into the user's shard's commit); each event's id is derived from
the user, the `Idempotency-Key` (or a fresh id) and its place in the batch, so a retried
batch records nothing twice. An event time after the server's clock is refused (422).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from saleday.actors.session import RecordBehaviour
from saleday.http.auth import Operator, User
from saleday.http.idempotency import check_key
from saleday.http.models import In, ViewOut
from saleday.http.problems import ApiProblem
from saleday.http.routes_admin import _view
from saleday.http.routes_shop import USER_ERRORS, IdKey, PathId, api_of, new_id

MAX_BATCH = 100
Name = Field(pattern=r"^[A-Za-z0-9._@:-]{1,64}$")

router = APIRouter(prefix="/v1", responses=USER_ERRORS)


class BehaviourItem(In):
    action: Literal["view", "cart", "fav"]
    sku: str = Name
    category: str = Name
    at_ms: int = Field(ge=0, le=2**62, description="When it happened on the client (event time).")


class BehaviourIn(In):
    events: list[BehaviourItem] = Field(min_length=1, max_length=MAX_BATCH)


class BehaviourOut(BaseModel):
    recorded: int = Field(description="Events recorded (a retried batch records none again).")


@router.post("/behaviour", tags=["behaviour"])
async def record_behaviour(body: BehaviourIn, request: Request, user: User,
                           idempotency_key: IdKey = None) -> BehaviourOut:
    """Record a batch of the user's product views, add-to-carts and favourites."""
    api = api_of(request)
    key = check_key(idempotency_key)
    api.keys.check(user, "behaviour", key, body)
    batch = new_id("b", user, key)
    now = api.now()
    replies = await asyncio.gather(*(api.submit(RecordBehaviour(
        user=user, action=e.action, sku=e.sku, category=e.category, at=e.at_ms, now=now),
        f"behaviour/{user}/{batch}/{i}") for i, e in enumerate(body.events)))
    return BehaviourOut(recorded=sum(0 if r.duplicate else len(r.events) for r in replies))


@router.get("/views/windows/{name}", tags=["reads"])
async def view_windows(name: PathId, request: Request, user: User) -> ViewOut:
    """The caller's own event-time windows of a window view (browse-5m, trail-30m,
    sessions-30m)."""
    from saleday.projections.views.windows import WINDOW_VIEWS

    if name not in WINDOW_VIEWS:
        raise ApiProblem(404, "view_not_found", f"no window view {name!r}; use one of "
                         f"{', '.join(WINDOW_VIEWS)}", view=name)
    view = await _view(request, name)
    return ViewOut(view=name, data=view.windows(user))


@router.get("/views/experiments", tags=["reads"], dependencies=[Operator])
async def view_experiments(request: Request) -> ViewOut:
    """Every experiment: exposures, conversions, lift with 95 % intervals, p-value, the SRM
    check, and whether it may be read yet (docs/EXPERIMENTS.md). Operator token."""
    api = api_of(request)
    view = await _view(request, "experiments")
    return ViewOut(view="experiments", data=view.to_json(now_ms=api.now())["experiments"])
