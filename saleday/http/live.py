"""Live stock over WebSocket: each replica follows the log and pushes every SKU's change.

    ws://HOST:PORT/v1/stock/live?sku=sku-1&sku=sku-2       then, any time:
    -> {"subscribe": ["sku-3"]}   {"unsubscribe": ["sku-1"]}
    <- {"type": "stock", "sku": "sku-1", "available": 7, "reserved": 2, "sold": 1, ...,
        "version": 12, "committed_at": 1700000000000, "sent_at": 1700000000004}

`StockFeed` folds the live stock view (`projections.views.stock`) from the log with a
`Tail`, as the projection runner reads it, in one thread per replica (from zero: it keeps
no checkpoint, so replicas never contend for one), and hands each batch's changed SKUs to
the event loop, which offers them to the sockets that follow those SKUs. A socket's
mailbox holds the latest state of each SKU it follows and nothing more: a slow client
skips states it had no time for, never builds a backlog. Messages carry the event's
`version` (in its SKU `stream`) and `committed_at` (its `recorded_at`), the
`first_committed_at` of the earliest event it covers (the feed folds what a poll finds as
one batch, and a mailbox merges what a slow socket did not take yet: one message per SKU
per batch, not one per event) and the server's `sent_at`, so a client can measure the
delay from commit to delivery. Anyone may read
stock; each socket's (un)subscribe messages are rate-limited, and a socket follows at
most `ws_max_skus` SKUs.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog
from fastapi import APIRouter, WebSocket
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.websockets import WebSocketDisconnect, WebSocketState

from saleday.events import EventStore, Tail
from saleday.events.envelope import Envelope
from saleday.http.ratelimit import TokenBucket
from saleday.projections.views.stock import AVAILABLE, RESERVED, SOLD, STOCKED, StockView

log = structlog.get_logger("saleday.http.live")

SKU_ID = re.compile(r"^[A-Za-z0-9._@:-]{1,64}$")
MAX_MESSAGE_CHARS = 16_384
REFUSALS_BEFORE_CLOSE = 10
"""Refused client messages in a row after which the socket is closed (1008)."""
PUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True, slots=True, kw_only=True)
class StockChange:
    """A SKU's stock after the event `version` of `stream`, recorded at `committed_at` (ms);
    `first_committed_at` is when the earliest event this change covers was recorded (a push
    covers every event of the SKU since the one before)."""

    sku: str
    stocked: int
    available: int
    reserved: int
    sold: int
    stream: str
    version: int
    committed_at: int
    first_committed_at: int

    def message(self, *, sent_at: int, snapshot: bool = False) -> dict[str, Any]:
        return {"type": "stock", "sku": self.sku, "stocked": self.stocked,
                "available": self.available, "reserved": self.reserved, "sold": self.sold,
                "stream": self.stream, "version": self.version,
                "committed_at": self.committed_at, "first_committed_at": self.first_committed_at,
                "sent_at": sent_at, "snapshot": snapshot}


def _sku_stream(stream: str) -> bool:
    """Stock moves only in SKU streams (`sku-003`): the feed reads no other."""
    return stream.startswith("sku-")


class _LiveStockView(StockView):
    """The stock view, also remembering which event last changed each SKU."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, tuple[str, int, int]] = {}
        self.first: dict[str, int] = {}

    def apply_batch(self, envs: Sequence[Envelope]) -> None:
        super().apply_batch(envs)
        last, first = self.last, self.first
        for env in envs:
            if env.type.startswith("inventory."):
                sku = env.data["sku"]
                last[sku] = (env.stream, env.version, env.recorded_at)
                first.setdefault(sku, env.recorded_at)

    def change(self, sku: str) -> StockChange:
        row = self.t["sku"][sku]
        stream, version, at = self.last[sku]
        return StockChange(sku=sku, stocked=row[STOCKED], available=row[AVAILABLE],
                           reserved=row[RESERVED], sold=row[SOLD], stream=stream,
                           version=version, committed_at=at,
                           first_committed_at=self.first.pop(sku, at))


class Mailbox:
    """One socket's undelivered changes: the latest per SKU (so at most one per SKU)."""

    def __init__(self) -> None:
        self.skus: set[str] = set()
        self.pending: dict[str, tuple[StockChange, bool]] = {}
        self.skipped = 0
        """States replaced before they were sent (the client was slower than the log)."""
        self.wake = asyncio.Event()

    def offer(self, change: StockChange, *, snapshot: bool = False) -> None:
        held = self.pending.get(change.sku)
        if held is not None:
            self.skipped += 1
            if not held[1]:   # the push covers the events of the one it replaces too
                change = replace(change, first_committed_at=min(
                    change.first_committed_at, held[0].first_committed_at))
            snapshot = snapshot and held[1]
        self.pending[change.sku] = (change, snapshot)
        self.wake.set()

    async def take(self) -> list[tuple[StockChange, bool]]:
        await self.wake.wait()
        self.wake.clear()
        out = list(self.pending.values())
        self.pending.clear()
        return out


class StockFeed:
    """Follows one log's stock in a thread; fans its changes out to mailboxes on the loop."""

    def __init__(self, store: EventStore, *, poll_s: float = 0.01, batch_size: int = 5000,
                 registry: CollectorRegistry | None = None) -> None:
        self.store = store
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.latest: dict[str, StockChange] = {}
        """Every SKU's latest state as the loop has published it (read on the loop only)."""
        self.caught_up = False
        self._boxes: dict[str, set[Mailbox]] = {}
        self._open: set[Mailbox] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        registry = registry or CollectorRegistry()
        self.sockets = Gauge("saleday_stock_sockets", "Stock sockets open at this replica.",
                             registry=registry)
        self.pushed = Counter("saleday_stock_pushes", "Stock changes sent to sockets.",
                              registry=registry)
        self.skipped = Counter("saleday_stock_skipped", "Stock states a slow socket skipped "
                               "(replaced by a later one before it was sent).",
                               registry=registry)
        self.delay = Histogram("saleday_stock_push_delay_seconds", "From an event's commit "
                               "(recorded_at) to its stock change being sent.",
                               buckets=PUSH_BUCKETS, registry=registry)

    # -- the follower thread -------------------------------------------------------------

    def start(self) -> None:
        """Start following (call on the event loop that serves the sockets)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._follow, name="stock-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _tail(self) -> Tail:
        return Tail(self.store, batch_size=self.batch_size, include=_sku_stream)

    def _follow(self) -> None:
        view, tail = _LiveStockView(), self._tail()
        shown: dict[str, list[int]] = {}
        log.info("stock_feed_started")
        while not self._stop.is_set():
            try:
                batch = tail.poll()
            except Exception as exc:  # noqa: BLE001 - a store that hiccups is retried
                log.warning("stock_feed_read_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                self._stop.wait(1.0)
                continue
            if not batch:
                self.caught_up = True
                self._stop.wait(self.poll_s)
                continue
            try:
                view.apply_batch(batch)
            except Exception as exc:  # noqa: BLE001 - a log it cannot fold: start again
                log.error("stock_feed_fold_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                view, tail = _LiveStockView(), self._tail()
                shown = {}
                self._stop.wait(1.0)
                continue
            changes = []
            for _, sku, row in view.changes():
                change = view.change(sku)
                if shown.get(sku) != row:   # events that move no count are not pushed
                    shown[sku] = list(row)
                    changes.append(change)
            view.committed()
            if changes and self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(self._publish, changes)
                except RuntimeError:   # the loop closed: the app is going away
                    return
            if len(batch) < tail.batch_size:
                # Caught up: the next poll comes `poll_s` later, under load too, so what
                # commits meanwhile is read and pushed as one batch. Polling again at once
                # re-read the heads and a few events per poll, a thread taking the GIL
                # from the requests (~6 % of a loaded HTTP process's samples).
                self._stop.wait(self.poll_s)
        log.info("stock_feed_stopped")

    # -- on the loop ---------------------------------------------------------------------

    def _publish(self, changes: list[StockChange]) -> None:
        boxes = self._boxes
        for change in changes:
            self.latest[change.sku] = change
            for box in boxes.get(change.sku, ()):
                box.offer(change)

    def open(self) -> Mailbox:
        box = Mailbox()
        self._open.add(box)
        self.sockets.set(len(self._open))
        return box

    def close(self, box: Mailbox) -> None:
        self.unsubscribe(box, list(box.skus))
        self._open.discard(box)
        self.sockets.set(len(self._open))

    @property
    def connections(self) -> int:
        return len(self._open)

    def subscribe(self, box: Mailbox, skus: list[str]) -> None:
        """Follow `skus` too; each one the feed knows is offered at once (as a snapshot)."""
        for sku in skus:
            if sku in box.skus:
                continue
            box.skus.add(sku)
            self._boxes.setdefault(sku, set()).add(box)
            if sku in self.latest:
                box.offer(self.latest[sku], snapshot=True)

    def unsubscribe(self, box: Mailbox, skus: list[str]) -> None:
        for sku in skus:
            box.skus.discard(sku)
            box.pending.pop(sku, None)
            followers = self._boxes.get(sku)
            if followers is not None:
                followers.discard(box)
                if not followers:
                    del self._boxes[sku]

    def hottest(self, n: int) -> list[StockChange]:
        """The `n` SKUs with the most units reserved or sold."""
        return sorted(self.latest.values(), key=lambda c: (-(c.reserved + c.sold), c.sku))[:n]


# -- the socket ----------------------------------------------------------------------------

router = APIRouter()


class _Refused(Exception):
    def __init__(self, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.body = {"type": "error", "error": error, "detail": detail, **extra}


@router.websocket("/v1/stock/live")
async def stock_live(websocket: WebSocket) -> None:
    """Subscribe to SKUs (`?sku=` and `{"subscribe": [...]}`), receive each change."""
    api = websocket.app.state.api
    feed: StockFeed | None = api.stock
    settings = api.settings
    await websocket.accept()
    if feed is None or feed.connections >= settings.ws_max_connections:
        reason = ("this server follows no log" if feed is None
                  else "too many stock sockets at this replica")
        await websocket.send_json({"type": "error", "error": "stock_unavailable",
                                   "detail": reason})
        await websocket.close(code=1013, reason=reason)
        return
    box = feed.open()
    limiter = TokenBucket(settings.ws_rate_per_s, settings.ws_burst)
    try:
        initial = websocket.query_params.getlist("sku")
        if initial:
            await _handle(websocket, feed, box, {"subscribe": initial}, settings.ws_max_skus)
        sender = asyncio.create_task(_send(websocket, feed, box, api.clock))
        try:
            await _receive(websocket, feed, box, limiter, settings.ws_max_skus)
        finally:
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing anyway
                pass
    except WebSocketDisconnect:
        pass
    finally:
        feed.close(box)
        if websocket.application_state == WebSocketState.CONNECTED and \
                websocket.client_state == WebSocketState.CONNECTED:
            try:
                await websocket.close()
            except Exception:  # noqa: BLE001 - the peer is gone already
                pass


async def _receive(websocket: WebSocket, feed: StockFeed, box: Mailbox, limiter: TokenBucket,
                   max_skus: int) -> None:
    refused = 0
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None and message.get("bytes") is not None:
            text = message["bytes"].decode("utf-8", "replace")
        if text is None:
            continue
        try:
            if len(text) > MAX_MESSAGE_CHARS:
                raise _Refused("too_large", f"a message is at most {MAX_MESSAGE_CHARS} characters")
            wait_s = limiter.take("socket")
            if wait_s > 0:
                raise _Refused("rate_limited", "too many messages on this socket",
                               retry_after_s=round(wait_s, 3))
            try:
                body = json.loads(text)
            except ValueError:
                raise _Refused("invalid_message", "not JSON") from None
            await _handle(websocket, feed, box, body, max_skus)
            refused = 0
        except _Refused as exc:
            refused += 1
            await websocket.send_json(exc.body)
            if refused >= REFUSALS_BEFORE_CLOSE:
                await websocket.close(code=1008, reason="too many refused messages")
                return


async def _handle(websocket: WebSocket, feed: StockFeed, box: Mailbox, body: Any,
                  max_skus: int) -> None:
    if not isinstance(body, dict) or not body.keys() & {"subscribe", "unsubscribe"} \
            or body.keys() - {"subscribe", "unsubscribe"}:
        raise _Refused("invalid_message", 'send {"subscribe": [SKU, ...]} or '
                       '{"unsubscribe": [SKU, ...]}')
    add, drop = _skus(body.get("subscribe")), _skus(body.get("unsubscribe"))
    after = (box.skus | set(add)) - set(drop)
    if len(after) > max_skus:
        raise _Refused("too_many_skus", f"a socket follows at most {max_skus} SKUs",
                       max_skus=max_skus)
    feed.unsubscribe(box, drop)
    await websocket.send_json({"type": "subscribed", "skus": sorted(after),
                               "unknown": sorted(s for s in after if s not in feed.latest)})
    feed.subscribe(box, [s for s in add if s not in drop])


def _skus(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) and SKU_ID.match(s)
                                              for s in value):
        raise _Refused("invalid_message", "SKUs are a list of ids of 1-64 letters, digits "
                       "and . _ @ : -")
    return list(dict.fromkeys(value))


async def _send(websocket: WebSocket, feed: StockFeed, box: Mailbox,
                clock: Callable[[], int]) -> None:
    while True:
        items = await box.take()
        for change, snapshot in items:
            sent_at = clock()
            await websocket.send_text(json.dumps(change.message(sent_at=sent_at,
                                                                snapshot=snapshot)))
            feed.pushed.inc()
            if not snapshot:
                feed.delay.observe(max(0, sent_at - change.first_committed_at) / 1000)
        if box.skipped:
            feed.skipped.inc(box.skipped)
            box.skipped = 0
