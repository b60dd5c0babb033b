"""Live stock over WebSocket: subscriptions, pushes with their timing, limits, and closing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from starlette.websockets import WebSocketDisconnect

from saleday.cluster.local import LocalShards
from saleday.http import HttpSettings
from saleday.http.live import Mailbox, StockChange
from tests.http.conftest import SECRETS, Client, make_client, now_ms


@pytest.fixture
def live(shards: LocalShards, settings: HttpSettings) -> Iterator[Client]:
    yield from make_client(shards, settings, stock=shards.store)


def order(client: Client, user: str, sku: str, qty: int = 1) -> None:
    r = client.as_user("POST", "/v1/orders", user, json={"lines": [{"sku": sku, "qty": qty}]})
    assert r.status_code == 201, r.text


def until(ws, wanted, tries: int = 20) -> dict:
    """The first message `wanted(message)` holds for."""
    for _ in range(tries):
        m = ws.receive_json()
        if wanted(m):
            return m
    raise AssertionError(f"no wanted message in {tries}")


def stocked(client: Client, sku: str, units: int) -> None:
    """Wait until the live feed has folded `sku`'s stock."""
    feed = client.http.app.state.api.stock
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        c = feed.latest.get(sku)
        if c is not None and c.stocked == units:
            return
        time.sleep(0.005)
    raise AssertionError(f"the feed never showed {sku}")


def change(sku: str = "sku-1", *, available: int, first: int, last: int) -> StockChange:
    return StockChange(sku=sku, stocked=10, available=available, reserved=10 - available,
                       sold=0, stream="sku-000", version=last, committed_at=last,
                       first_committed_at=first)


def test_a_subscriber_gets_the_state_then_each_change_with_its_commit_time(live):
    """A socket subscribed by query parameter gets the SKU's state, then the change an
    order makes, carrying the event's version, its commit time and the send time."""
    live.sale("sku-1", stock=10)
    stocked(live, "sku-1", 10)
    with live.http.websocket_connect("/v1/stock/live?sku=sku-1") as ws:
        assert ws.receive_json() == {"type": "subscribed", "skus": ["sku-1"], "unknown": []}
        first = ws.receive_json()
        assert first["snapshot"] is True and first["available"] == 10
        before = time.time_ns() // 1_000_000
        order(live, "u1", "sku-1", qty=2)
        pushed = ws.receive_json()
    assert pushed["type"] == "stock" and pushed["snapshot"] is False
    assert (pushed["sku"], pushed["stocked"], pushed["available"], pushed["reserved"],
            pushed["sold"]) == ("sku-1", 10, 8, 2, 0)
    assert pushed["version"] > first["version"] and pushed["stream"].startswith("sku-")
    assert abs(pushed["first_committed_at"] - before) < 1000
    assert pushed["first_committed_at"] <= pushed["committed_at"] <= pushed["sent_at"]


def test_subscribing_by_message_follows_skus_not_yet_stocked_and_unsubscribing_stops(live):
    """A SKU subscribed before it has stock is named unknown and pushed once stocked;
    after unsubscribing, its changes are no longer sent."""
    with live.http.websocket_connect("/v1/stock/live") as ws:
        ws.send_json({"subscribe": ["sku-2", "sku-3"]})
        assert ws.receive_json() == {"type": "subscribed", "skus": ["sku-2", "sku-3"],
                                     "unknown": ["sku-2", "sku-3"]}
        live.sale("sku-2", stock=5)
        assert ws.receive_json()["available"] == 5
        ws.send_json({"unsubscribe": ["sku-2"]})
        assert ws.receive_json()["skus"] == ["sku-3"]
        order(live, "u1", "sku-2")
        live.sale("sku-3", stock=7)
        m = ws.receive_json()
    assert (m["sku"], m["available"]) == ("sku-3", 7)


def test_bad_messages_are_answered_with_errors_and_too_many_close_the_socket(shards):
    """Messages that are not JSON, not a subscription, or name bad or too many SKUs are
    refused with an error message; ten refusals in a row close the socket (1008)."""
    settings = HttpSettings(**SECRETS, ws_max_skus=2, ws_rate_per_s=1000, ws_burst=1000)
    for client in make_client(shards, settings, stock=shards.store):
        with client.http.websocket_connect("/v1/stock/live") as ws:
            for bad, error in [("nope", "invalid_message"), ('{"buy": ["a"]}', "invalid_message"),
                               ('{"subscribe": "a"}', "invalid_message"),
                               ('{"subscribe": ["a b"]}', "invalid_message"),
                               ('{"subscribe": ["a", "b", "c"]}', "too_many_skus"),
                               ("x" * 20_000, "too_large")]:
                ws.send_text(bad)
                assert ws.receive_json()["error"] == error
            ws.send_json({"subscribe": ["a"]})
            assert ws.receive_json()["type"] == "subscribed"
            for _ in range(10):
                ws.send_text("nope")
                assert ws.receive_json()["type"] == "error"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1008


def test_subscriptions_are_rate_limited_per_socket(shards):
    """Past its burst, a socket's subscribe messages are refused with rate_limited."""
    settings = HttpSettings(**SECRETS, ws_rate_per_s=0.01, ws_burst=2)
    for client in make_client(shards, settings, stock=shards.store):
        with client.http.websocket_connect("/v1/stock/live") as ws:
            answers = []
            for i in range(3):
                ws.send_json({"subscribe": [f"sku-{i}"]})
                answers.append(ws.receive_json())
    assert [a["type"] for a in answers] == ["subscribed", "subscribed", "error"]
    assert answers[2]["error"] == "rate_limited" and answers[2]["retry_after_s"] > 0


def test_a_server_without_a_log_to_follow_closes_with_try_again_later(shards, settings):
    """With no live stock feed, a socket is told so and closed with 1013."""
    for client in make_client(shards, settings):
        with client.http.websocket_connect("/v1/stock/live?sku=a") as ws:
            assert ws.receive_json()["error"] == "stock_unavailable"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
    assert closed.value.code == 1013


def test_too_many_sockets_at_a_replica_are_turned_away(shards):
    """Past `ws_max_connections`, a new socket is closed with 1013."""
    settings = HttpSettings(**SECRETS, ws_max_connections=1)
    for client in make_client(shards, settings, stock=shards.store):
        with client.http.websocket_connect("/v1/stock/live"):
            with client.http.websocket_connect("/v1/stock/live") as second:
                assert second.receive_json()["error"] == "stock_unavailable"


def test_closing_a_socket_forgets_its_subscriptions(live):
    """After a client disconnects, the feed holds no mailbox for it."""
    feed = live.http.app.state.api.stock
    with live.http.websocket_connect("/v1/stock/live?sku=a&sku=b") as ws:
        ws.receive_json()
        assert feed.connections == 1
    deadline = time.monotonic() + 5
    while feed.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert feed.connections == 0 and feed._boxes == {}


def test_a_slow_socket_holds_the_latest_state_of_each_sku_not_a_backlog():
    """A mailbox nobody empties keeps one state per SKU (the latest), counts the skipped
    ones, and times the merged push from the earliest event it covers."""
    box = Mailbox()
    for n in range(1000):
        box.offer(change(available=1000 - n, first=100 + n, last=100 + n))
    box.offer(change("sku-2", available=3, first=5000, last=5000))
    assert len(box.pending) == 2 and box.skipped == 999
    latest, snapshot = box.pending["sku-1"]
    assert latest.available == 1 and latest.committed_at == 1099
    assert latest.first_committed_at == 100 and snapshot is False


def test_the_pushes_are_counted_and_timed_in_the_metrics(live):
    """/metrics counts stock pushes and times them from commit to send."""
    live.sale("sku-1", stock=3)
    stocked(live, "sku-1", 3)
    with live.http.websocket_connect("/v1/stock/live?sku=sku-1") as ws:
        ws.receive_json(), ws.receive_json()
        order(live, "u1", "sku-1")
        ws.receive_json()
    text = live.http.get("/metrics").text
    assert "saleday_stock_pushes_total 2.0" in text
    assert "saleday_stock_push_delay_seconds_count 1.0" in text


def test_under_steady_writes_the_feed_reads_the_log_once_a_poll_interval(shards):
    """While stock changes keep being recorded, the feed still reads the log every
    `poll_s`, taking what committed meanwhile as one batch (not a read per commit), and
    its subscribers still see the last state."""
    import asyncio

    from saleday.actors.sku import AddStock
    from saleday.http.live import StockFeed

    reads = 0
    store = shards.store
    heads = store.streams

    def counted_heads():
        nonlocal reads
        reads += 1
        return heads()

    store.streams = counted_heads   # the Tail asks for the heads once a poll
    feed = StockFeed(store, poll_s=0.05)

    async def scenario() -> tuple[int, int]:
        feed.start()
        try:
            commits, started = 0, time.monotonic()
            while time.monotonic() - started < 0.6:
                reply = await shards.submit(AddStock(sku="sku-1", qty=1, now=now_ms()))
                assert type(reply).__name__ == "Accepted", reply
                commits += 1
                await asyncio.sleep(0.001)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                shown = feed.latest.get("sku-1")
                if shown is not None and shown.stocked == commits:
                    break
                await asyncio.sleep(0.01)
            return commits, feed.latest["sku-1"].stocked
        finally:
            feed.stop()

    commits, shown = asyncio.run(scenario())
    assert shown == commits
    assert commits > 100
    assert reads <= 0.6 / 0.05 + 8, f"{reads} reads of the log for {commits} commits"
