"""The audit's log.causation rule: every causation id names an event of the log that was
recorded before the event it caused."""

from __future__ import annotations

import pytest

from saleday.events import NewEvent, open_store
from saleday.projections.audit import run_audit
from saleday.projections.store_source import StoreSource
from tests.projections.audit_logs import SKU, T0, TEAM, audit, real_sale, reserved, stocked, team


def appended(url: str, events: list[tuple[str, str, dict, int, str]]) -> None:
    """Append `(stream, type, data, recorded_at, causation_id)`, one commit each."""
    store = open_store(url)
    try:
        for i, (stream, kind, data, at, cause) in enumerate(events):
            store.append(stream, [NewEvent(type=kind, data=data, command_id=f"cmd-{i}",
                                           recorded_at=at, causation_id=cause)], None)
    finally:
        store.close()


def findings(url: str) -> list[tuple[str, str, int | None]]:
    """The log.causation findings of the audit of `url`."""
    report = audit(url)
    return [(f.rule, f.stream, f.version) for f in report.findings if f.rule == "log.causation"]


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/events.db"


def base() -> list[tuple[str, str, dict, int, str]]:
    """Stock on sale and one reservation (sku-000 v1-v3)."""
    return [(s, k, d, T0 + i, "") for i, (s, k, d) in
            enumerate(stocked() + [reserved("r1", 1, [1000], deadline=T0 + 100)])]


def expired(cause: str, at: int) -> tuple[str, str, dict, int, str]:
    return (SKU, "inventory.reservation_expired",
            {"reservation_id": "r1", "sku": "A1", "user": "u1", "qty": 1, "deadline": T0 + 100},
            at, cause)


def test_a_cause_recorded_earlier_passes(url):
    """An expiry naming the reservation before it, in the same stream, holds."""
    appended(url, base() + [expired(f"{SKU}@3", T0 + 200)])
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings]
    assert report.rules["log.causation"]["checks"] == 1


@pytest.mark.parametrize("cause", [f"{SKU}@9", f"{TEAM}@1", "no-version", f"{SKU}@0"])
def test_a_cause_that_names_no_event_fails(url, cause):
    """A causation id naming a version or stream the log does not hold, or nothing, fails."""
    appended(url, base() + [expired(cause, T0 + 200)])
    assert ("log.causation", SKU, 4) in findings(url)


def test_a_cause_recorded_later_fails(url):
    """An event naming a later event of its own stream, or one recorded after it, fails."""
    appended(url, base() + [expired(f"{SKU}@4", T0 + 200)])
    assert ("log.causation", SKU, 4) in findings(url)


def test_a_cause_in_another_stream_read_later_is_checked_by_its_time(url):
    """A cause in a stream the audit reads after the effect's counts by event time."""
    late = (*team(["u1"])[0], T0 + 500, "")
    appended(url, base() + [late, expired(f"{TEAM}@1", T0 + 200)])
    assert findings(url) == [("log.causation", SKU, 4)]
    url2 = url.replace("events.db", "events2.db")
    appended(url2, base() + [late, expired(f"{TEAM}@1", T0 + 600)])
    assert findings(url2) == []


def test_two_shards_clocks_may_differ_by_the_skew_the_audit_is_given(url):
    """A cause in another stream stamped 300 ms after its effect fails with clocks assumed
    in step, holds when the shards' clocks may be 500 ms apart, and fails again past that;
    within one stream the versions decide, whatever the skew."""
    late = (*team(["u1"])[0], T0 + 500, "")
    appended(url, base() + [late, expired(f"{TEAM}@1", T0 + 200)])

    def causation(skew_ms: int) -> list[str]:
        source = StoreSource(url)
        try:
            report = run_audit(source, clock_skew_ms=skew_ms)
        finally:
            source.close()
        return [f.stream for f in report.findings if f.rule == "log.causation"]

    assert causation(0) == [SKU]
    assert causation(500) == []
    assert causation(299) == [SKU]
    url2 = url.replace("events.db", "events2.db")
    appended(url2, base() + [expired(f"{SKU}@4", T0 + 200)])
    source = StoreSource(url2)
    try:
        assert not run_audit(source, clock_skew_ms=10**9).ok
    finally:
        source.close()


def test_a_real_sale_names_earlier_causes(url):
    """The system's own log names a cause on expiries and reactions, and every one holds."""
    real_sale(url, orders=80)
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings[:10]]
    assert report.rules["log.causation"]["checks"] > 0
