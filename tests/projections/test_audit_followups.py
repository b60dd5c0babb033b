"""followups.delivery: given the facts a log records, when it is audited, then each share,
grant and pool return they owe was delivered once, on its terms, or a finding names it."""

from __future__ import annotations

from saleday.projections.audit import Finding
from saleday.projections.audit_rules import split_red_packet
from tests.projections.audit_logs import (
    CAMPAIGN,
    SESSION,
    T0,
    TEAM,
    audit,
    campaign,
    completed,
    coupon,
    expired,
    grant_received,
    granted,
    pool,
    share_received,
    split,
    team,
    write,
)

RULE = "followups.delivery"
LATER = (SESSION, "sessions.coupon_received", coupon("received", coupon_id="welcome")[2], T0 + 500)
"""A coupon no fact owes, received after the facts of each log: time passed after them."""
SHARES = split_red_packet(1000, 2, 100, 42, ["u1", "u2"])
SPLIT_TEAM = [*team(["u1", "u2"]), completed(["u1", "u2"]), split(list(SHARES))]
"""Team t1 of u1 and u2, completed, its 1,000 cents split (team-000 v4)."""


def delivery_findings(tmp_path, events) -> list[Finding]:
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, events)
    report = audit(url)
    assert report.rules[RULE]["failed"] == sum(f.rule == RULE for f in report.findings)
    return [f for f in report.findings if f.rule == RULE]


def test_a_split_whose_shares_all_reached_their_wallets_passes(tmp_path):
    """Every member received their share, for their cents, valid a week from the split; the
    wallets' stream is read before the team's (name order), so the match is made at the end."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [*SPLIT_TEAM, *(share_received(u, cents) for u, cents in SHARES)])
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings]
    assert list(report.streams) == [SESSION, TEAM] and report.rules[RULE]["checks"] == 2


def test_a_share_that_never_reached_its_wallet_is_named_at_the_split(tmp_path):
    """u2's share is missing: the finding is at the split and names the coupon, team and user."""
    found = delivery_findings(tmp_path, [*SPLIT_TEAM, share_received("u1", SHARES[0][1]), LATER])
    assert [(f.stream, f.version) for f in found] == [(TEAM, 4)]
    assert (f"red-packet share 'share/t1/u2' of team 't1' ({SHARES[1][1]} cents) owed to user "
            "'u2' never reached the wallet") == found[0].message


def test_a_grant_received_twice_is_named_at_the_second_receipt(tmp_path):
    """The grant g1 reached u1's wallet twice: the finding is at the repeat, naming the first."""
    found = delivery_findings(tmp_path, [campaign(budget_coupons=3), granted("g1"),
                                         grant_received("g1"), grant_received("g1")])
    assert [(f.stream, f.version) for f in found] == [(SESSION, 2)]
    assert found[0].message == ("grant 'g1' of campaign '1111' reached user 'u1''s wallet a "
                                "second time (first at session-000 v1)")


def test_a_grant_delivered_on_other_terms_is_named_at_the_receipt(tmp_path):
    """A grant of 500 cents that reached the wallet as 300 cents is a finding at the receipt."""
    found = delivery_findings(tmp_path, [campaign(budget_coupons=3), granted("g1"),
                                         grant_received("g1", value=300)])
    assert [(f.stream, f.version) for f in found] == [(SESSION, 1)]
    assert "reached user 'u1''s wallet as 300 cents" in found[0].message
    assert "campaign-000 v2 owes 500 cents" in found[0].message


def test_a_share_valid_for_other_than_a_week_from_its_split_is_a_finding(tmp_path):
    """A share whose validity is not counted from the split's own time was not the one owed."""
    late = T0 + 60_000
    found = delivery_findings(tmp_path, [
        *SPLIT_TEAM, share_received("u1", SHARES[0][1]),
        share_received("u2", SHARES[1][1], split_at=late)])
    assert [(f.stream, f.version) for f in found] == [(SESSION, 2)]
    assert "share 'share/t1/u2'" in found[0].message and "valid until" in found[0].message


def test_an_expired_teams_pool_not_returned_is_named_at_the_expiry(tmp_path):
    """A team that drew its pool and expired unfilled owes the pool back; without it, a finding."""
    drawn = [campaign(budget_coupons=3), pool("drawn"), *team(["u1"]), expired(["u1"])]
    assert delivery_findings(tmp_path / "a", [*drawn, pool("returned")]) == []
    found = delivery_findings(tmp_path / "b", [*drawn, LATER])
    assert [(f.stream, f.version) for f in found] == [(TEAM, 2)]
    assert found[0].message == ("team 't1' expired unfilled, but its pool never went back to "
                                "campaign '1111'")
    twice = delivery_findings(tmp_path / "c", [*drawn, pool("returned"), pool("returned")])
    assert [(f.stream, f.version) for f in twice] == [(CAMPAIGN, 4)]
    assert "a second time (first at campaign-000 v3)" in twice[0].message


def test_what_nothing_owes_is_no_delivery_finding(tmp_path):
    """A coupon received that no fact owes (twice: coupons.redemption's finding) and a team
    whose pool was never drawn (the campaign refuses its return) owe nothing to this rule."""
    found = delivery_findings(tmp_path, [
        coupon("received", coupon_id="welcome"), coupon("received", coupon_id="welcome"),
        *team(["u1"]), expired(["u1"])])
    assert found == []


def test_a_fact_at_the_last_moment_of_the_log_is_in_flight(tmp_path):
    """A split recorded at the log's last event time may not be answered yet (nothing comes
    after it); once a later event shows time passed, its missing share is a finding."""
    lone = [*SPLIT_TEAM, share_received("u1", SHARES[0][1])]
    assert delivery_findings(tmp_path / "a", lone) == []
    assert [(f.stream, f.version) for f in delivery_findings(tmp_path / "b", [*lone, LATER])] == [
        (TEAM, 4)]


def test_the_clock_skew_allowed_widens_the_last_moment(tmp_path):
    """With shards' clocks up to N ms apart, a fact within N ms of the last event time is
    still in flight (another shard's clock may be ahead of the team shard's)."""
    from saleday.projections.audit import run_audit
    from saleday.projections.store_source import StoreSource

    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [*SPLIT_TEAM, share_received("u1", SHARES[0][1]), LATER])
    for skew, rules in ((0, [RULE]), (400, [])):
        source = StoreSource(url)
        try:
            report = run_audit(source, clock_skew_ms=skew)
        finally:
            source.close()
        assert [f.rule for f in report.findings] == rules
