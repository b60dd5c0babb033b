"""`measure_stock_push`, the bench's stock-push figure, against a real server."""

from __future__ import annotations

from saleday.http import HttpSettings
from saleday.http.stock_push import stock_push_ms
from tests.http.conftest import SECRETS
from tests.http.live_server import running_app


def test_the_stock_push_delay_is_measured_from_commit_to_arrival(tmp_path):
    """Orders placed over HTTP are each seen on the stock socket, and the delay from their
    commit to arrival comes back as p50/p99 in milliseconds, well under a second here."""
    settings = HttpSettings(**SECRETS, rate_per_s=1000, rate_burst=1000)
    with running_app(tmp_path, settings) as url:
        figures = stock_push_ms(url, settings, orders=40, concurrency=2)
    push = figures["stock_push_ms"]
    assert figures["orders"] == 40 and figures["errors"] == {}
    assert 0 < push["n"] <= 40 and figures["pushes"] == push["n"]
    assert 0 <= push["p50"] <= push["p99"] <= push["max"] < 1000
