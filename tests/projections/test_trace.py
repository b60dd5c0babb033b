"""`saleday trace ID`: the story of an order, a team or a user, in order, across streams,
followed through correlation and causation ids on a log the system wrote."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from saleday.cli.main import app
from saleday.events import event_ref, open_store
from saleday.projections.store_source import StoreSource
from saleday.projections.trace import trace
from tests.projections.audit_logs import real_sale


@pytest.fixture(scope="module")
def sale(tmp_path_factory) -> tuple[str, list]:
    """A small sale day on the real deciders and flows, and every event it recorded."""
    data = tmp_path_factory.mktemp("data")
    url = f"sqlite:///{data}/events.db"
    real_sale(url, orders=80)
    store = open_store(url)
    try:
        events = [e for s in store.streams() for e in store.read(s)]
    finally:
        store.close()
    return url, events


def story(url: str, subject: str):
    def read():
        source = StoreSource(url)
        try:
            yield from source
        finally:
            source.close()
    return trace(read, subject)


def test_an_expired_orders_story_ends_with_the_releases_its_deadline_caused(sale):
    """An order's story holds its reservations and, caused by them, their expiries."""
    url, events = sale
    expired = next(e for e in events if e.type == "inventory.reservation_expired")
    order_id = expired.correlation_id
    found = story(url, order_id)
    types = [e.type for e in found.events]
    assert types[0] == "orders.checkout_started"
    assert "inventory.stock_reserved" in types and expired in found.events
    refs = {event_ref(e.stream, e.version) for e in found.events}
    assert expired.causation_id in refs
    times = [e.recorded_at for e in found.events]
    assert times == sorted(times)
    assert all(e.correlation_id == order_id for e in found.events)


def test_a_teams_story_follows_its_split_into_the_members_wallets(sale):
    """A team's story crosses into session streams: the shares its split caused."""
    url, events = sale
    split = next(e for e in events if e.type == "teams.red_packet_split")
    found = story(url, split.data["team"])
    shares = [e for e in found.events if e.type == "sessions.coupon_received"]
    assert len(shares) == len(split.data["shares"])
    assert {e.causation_id for e in shares} == {event_ref(split.stream, split.version)}


def test_a_users_story_holds_their_visits_and_their_orders(sale):
    """A user's story: their sessions, and every event of the orders they placed."""
    url, events = sale
    placed = next(e for e in events if e.type == "orders.order_placed")
    user = placed.data["user"]
    found = story(url, user)
    ids = {e.correlation_id for e in found.events}
    assert placed.correlation_id in ids
    assert any(e.type == "sessions.session_started" and e.data["user"] == user
               for e in found.events)
    assert all(e.correlation_id in found.flows or e.causation_id for e in found.events)


def test_the_cli_prints_the_story_and_exits_1_for_an_unknown_id(sale, tmp_path):
    """`saleday trace` prints the events as JSON; an id no event names exits 1."""
    url, events = sale
    order_id = next(e for e in events if e.type == "orders.payment_captured").correlation_id
    runner = CliRunner()
    result = runner.invoke(app, ["trace", order_id, "--store", url, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert "orders.payment_captured" in [e["type"] for e in out["events"]]
    assert runner.invoke(app, ["trace", "no-such-order", "--store", url]).exit_code == 1
    missing = runner.invoke(app, ["trace", order_id, "--data", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no event log" in missing.output
