"""The audit: real logs pass; a log that breaks a rule fails, naming the rule, the stream
and version, and what is wrong; a tampered export is caught where it was tampered."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from saleday.actors.session import ReceiveCoupon
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.actors.team import split_red_packet
from saleday.bench.audit import SHARDS, SimClock, local_gateway
from saleday.cli.main import app
from saleday.events import Envelope, NewEvent, event_hash, open_store
from saleday.flows.checkout import Checkout
from saleday.projections.audit import run_audit
from saleday.projections.audit_rules import RULES
from saleday.projections.export import export
from saleday.projections.jsonl_source import JsonlSource
from saleday.projections.store_source import StoreSource
from saleday.projections.view import View
from tests.projections.audit_logs import (
    CAMPAIGN,
    DAY,
    ORDER,
    SKU,
    T0,
    TEAM,
    audit,
    campaign,
    completed,
    confirmed,
    coupon,
    grant_received,
    granted,
    order,
    pool,
    real_sale,
    released,
    reserved,
    returned,
    session,
    share_received,
    split,
    stocked,
    team,
    write,
)


@pytest.fixture(scope="module")
def sale(tmp_path_factory) -> str:
    """A sale day on the real deciders: reservations, checkouts paid, failed, abandoned and
    paid late, sessions with referrals, teams filled and expired, coupon grants."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sale')}/events.db"
    real_sale(url)
    return url


@pytest.fixture(scope="module")
def exported(sale, tmp_path_factory) -> Path:
    return export(sale, fmt="jsonl", out=tmp_path_factory.mktemp("export")).path


# --- real logs pass --------------------------------------------------------------------


def test_a_real_sale_day_passes_every_rule(sale):
    """Every invariant holds on a log the system wrote, and every family was exercised."""
    report = audit(sale)
    assert report.ok, [str(f) for f in report.findings[:10]]
    for kind in ("inventory.reservation_confirmed", "inventory.reservation_released",
                 "inventory.reservation_expired", "inventory.reservation_voided",
                 "orders.payment_captured", "orders.checkout_cancelled", "orders.refund_issued",
                 "sessions.referral_attributed", "sessions.coupon_redeemed",
                 "coupons.coupon_granted", "coupons.pool_returned", "teams.red_packet_split",
                 "teams.team_expired_unfilled"):
        assert report.types.get(kind, 0) > 0, kind
    assert set(report.rules) == set(RULES)
    # A sale day has no members, prices or presales: those rules are exercised by
    # tests/projections/test_audit_members.py.
    assert all(row["checks"] > 0 and row["failed"] == 0 for rule, row in report.rules.items()
               if not rule.startswith(("members.", "prices.", "presales.")))


@pytest.mark.redis
def test_a_real_sale_day_on_redis_passes_every_rule(redis_store_url, tmp_path):
    """The same holds for a log kept in Redis Streams, and for its export."""
    real_sale(redis_store_url, orders=60, seed=3)
    report = audit(redis_store_url)
    assert report.ok and report.events > 500, [str(f) for f in report.findings[:10]]
    from_file = run_audit(JsonlSource(export(redis_store_url, fmt="jsonl", out=tmp_path).path))
    assert from_file.ok and from_file.log_digest == report.log_digest


def test_the_export_audits_to_the_same_log_digest_and_views(sale, exported):
    """Recomputing every hash from a JSONL export finds the same log as the store."""
    views = (CountingView(), CountingView())
    from_store = run_audit(StoreSource(sale), views=views[:1])
    from_file = run_audit(JsonlSource(exported), views=views[1:])
    assert from_file.ok and from_file.log_digest == from_store.log_digest
    assert from_file.streams == from_store.streams
    assert from_file.views == from_store.views == {"counts": views[0].digest()}


def test_envelopes_in_memory_are_audited_with_their_chain_recomputed(sale):
    """The simulator's path: hand over envelopes, any interleaving of streams."""
    store = open_store(sale)
    streams = {s: store.read(s) for s in store.streams()}
    store.close()
    interleaved = [e for group in zip(*streams.values()) for e in group]
    rest = [e for envs in streams.values() for e in envs[min(map(len, streams.values())):]]
    report = run_audit(interleaved + rest)
    assert report.ok and report.log_digest == audit(sale).log_digest


class CountingView(View):
    """Events per type: a view of our own, so this test does not lean on the real ones."""

    name = "counts"

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def apply(self, env: Envelope) -> None:
        self.counts[env.type] = self.counts.get(env.type, 0) + 1

    def to_json(self) -> dict:
        return dict(sorted(self.counts.items()))


# --- a tampered export is caught and located ------------------------------------------


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def first(lines: list[str], kind: str) -> int:
    return next(i for i, line in enumerate(lines) if json.loads(line)["type"] == kind)


def chain_findings(path: Path) -> list[tuple[str, str, int]]:
    report = run_audit(JsonlSource(path))
    assert not report.ok
    return [(f.rule, f.stream, f.version) for f in report.findings if f.rule == "log.chain"]


def where(line: str) -> tuple[str, int]:
    o = json.loads(line)
    return o["stream"], o["version"]


def test_an_altered_payload_is_caught_at_its_event(exported, tmp_path):
    """One unit more in a reservation breaks that event's hash."""
    lines = lines_of(exported)
    i = first(lines, "inventory.stock_reserved")
    o = json.loads(lines[i])
    o["data"]["qty"] += 1
    lines[i] = json.dumps(o) + "\n"
    (tmp_path / "events.jsonl").write_text("".join(lines))
    assert chain_findings(tmp_path / "events.jsonl")[0] == ("log.chain", *where(lines[i]))


def test_a_removed_event_is_caught_at_the_gap(exported, tmp_path):
    """Deleting a line leaves a gap in its stream's versions."""
    lines = lines_of(exported)
    i = first(lines, "orders.payment_captured")
    gone = where(lines[i])
    del lines[i]
    (tmp_path / "events.jsonl").write_text("".join(lines))
    assert chain_findings(tmp_path / "events.jsonl")[0] == ("log.chain", *gone)


def test_a_reordered_pair_is_caught_where_the_order_breaks(exported, tmp_path):
    """Swapping two events of a stream is caught at the first of them."""
    lines = lines_of(exported)
    i = first(lines, "inventory.reservation_confirmed")
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    (tmp_path / "events.jsonl").write_text("".join(lines))
    assert chain_findings(tmp_path / "events.jsonl")[0] == ("log.chain", *where(lines[i + 1]))


def test_a_file_cut_mid_line_is_caught_at_the_cut_event(exported, tmp_path):
    """A file cut in the middle of an event names that event."""
    lines = lines_of(exported)
    cut = len(lines) // 2
    (tmp_path / "events.jsonl").write_text("".join(lines[:cut]) + lines[cut][:40])
    (tmp_path / "manifest.json").write_text((exported.parent / "manifest.json").read_text())
    found = chain_findings(tmp_path / "events.jsonl")
    assert found[0] == ("log.chain", *where(lines[cut]))
    report = run_audit(JsonlSource(tmp_path / "events.jsonl"))
    assert "truncated" in report.findings[0].message


def test_a_file_missing_its_last_events_is_caught_against_the_manifest(exported, tmp_path):
    """Whole lines gone from the end still verify as a chain; the manifest's head does not."""
    lines = lines_of(exported)
    (tmp_path / "events.jsonl").write_text("".join(lines[:-3]))
    (tmp_path / "manifest.json").write_text((exported.parent / "manifest.json").read_text())
    stream, version = where(lines[-3])
    assert ("log.chain", stream, version) in chain_findings(tmp_path / "events.jsonl")


# --- a rule broken on purpose ---------------------------------------------------------


def test_an_oversold_sku_fails_naming_the_sku(tmp_path):
    """Raw events appended past the decider sell 3 units of a SKU that has 1."""
    url = f"sqlite:///{tmp_path}/events.db"
    heads = write(url, [*stocked("A1", qty=1)])
    store = open_store(url)
    store.append(SKU, [NewEvent(type="inventory.stock_reserved", command_id="rogue",
                                recorded_at=T0 + 10, data=reserved("r1", 3, [1000] * 3)[2])],
                 heads[SKU])
    store.close()
    report = audit(url)
    assert [(f.rule, f.stream, f.version) for f in report.findings] == [("stock.oversell", SKU, 3)]
    assert str(report.findings[0]) == "sku-000 v3: SKU 'A1' oversold: 3 units reserved with 1 available"


def bad(event: tuple) -> tuple:
    """Marks the event a finding must point at."""
    return ("@", event)


SPLIT = split_red_packet(1000, 2, 100, 42, ("u1", "u2"))
PAID = [*stocked(), reserved("o1/0", 1, [1000]), order("checkout_started"), order("order_placed"),
        order("payment_captured")]

CASES = {
    "stock.conservation": (
        [*stocked(), reserved("r1", 2, [1000, 1000]), confirmed("r1", 2, 2000)],
        [*stocked(), reserved("r1", 2, [1000, 1000]), bad(confirmed("r1", 1, 2000))],
        "holds 2 units"),
    "sale.tiers": (
        [*stocked(tiers=((2, 500), (0, 1000))), reserved("r1", 3, [500, 500, 1000], tiers=[0, 0, 1])],
        [*stocked(tiers=((2, 500), (0, 1000))), bad(reserved("r1", 3, [500, 1000, 1000], tiers=[0, 1, 1]))],
        "tiers [0, 0, 1] at [500, 500, 1000]"),
    "sale.limits": (
        [*stocked(limit=2), reserved("r1", 2, [1000, 1000]), released("r1", 2), reserved("r2", 2, [1000] * 2)],
        [*stocked(limit=2), reserved("r1", 2, [1000, 1000]), bad(reserved("r2", 1, [1000]))],
        "3 units, over the per-user limit of 2"),
    "reservations.leak": (
        [*stocked(), reserved("r1", 1, [1000]), released("r1", 1), (ORDER, *order("order_voided")[1:], T0 + 90_000)],
        [*stocked(), bad(reserved("r1", 1, [1000])), (ORDER, *order("order_voided")[1:], T0 + 90_000)],
        "still held at the end of the log"),
    "reservations.lifecycle": (
        [*stocked(), reserved("r1", 1, [1000]), released("r1", 1)],
        [*stocked(), reserved("r1", 1, [1000]), released("r1", 1), bad(confirmed("r1", 1, 1000))],
        "it was released"),
    "coupons.budget": (
        [campaign(budget_coupons=3), granted("g1"), pool("drawn"), pool("returned"), granted("g2"),
         grant_received("g1"), grant_received("g2")],
        [campaign(budget_coupons=3), granted("g1"), pool("drawn"), bad(granted("g2"))],
        "over its budget"),
    "coupons.redemption": (
        [coupon("received"), coupon("locked"), coupon("redeemed")],
        [coupon("received"), coupon("locked"), coupon("redeemed"), bad(coupon("redeemed", order_id="o2"))],
        "redeemed a second time"),
    "teams.split": (
        [*team(["u1", "u2"]), completed(["u1", "u2"]), split(list(SPLIT)),
         *(share_received(u, cents) for u, cents in SPLIT)],
        [*team(["u1", "u2"]), completed(["u1", "u2"]), bad(split([("u1", 600), ("u2", 300)]))],
        "sum to 900 cents, not the pool of 1000"),
    "teams.members": (
        [*team(["u1", "u2"]), completed(["u1", "u2"])],
        [*team(["u1", "u2"], size=3), bad(completed(["u1", "u2"]))],
        "needs 3 distinct members"),
    "orders.settlement": (
        [*PAID, confirmed("o1/0", 1, 1000)],
        [*PAID[:3], bad(order("checkout_started")), *PAID[4:], released("o1/0", 1)],
        "was released, not confirmed"),
    "orders.money": (
        PAID,
        [*PAID[:4], bad(order("order_placed", total_cents=900)),
         order("payment_captured", amount_cents=900)],
        "total 900 is not subtotal 1000 - discount 0"),
    "referrals.no_self": (
        [*session("u1", T0), *session("u2", T0 + 5, inviter="u1")],
        [*session("u1", T0), session("u2", T0 + 5)[0], bad(session("u2", T0 + 5, inviter="u2")[1])],
        "credited as their own inviter"),
    "referrals.first_touch": (
        [*session("u1", T0), *session("u2", T0 + 5, inviter="u1")],
        [*session("u1", T0), *session("u2", T0 + 5), session("u2", T0 + 7)[0],
         bad(session("u2", T0 + 7, inviter="u1")[1])],
        "outside their first session"),
    "referrals.no_cycles": (
        [*session("u1", T0), *session("u2", T0 + 5, inviter="u1")],
        [session("u1", T0, inviter="u2")[0], bad(session("u1", T0, inviter="u2")[1]),
         *session("u2", T0 + 5, inviter="u1")],
        "referral cycle"),
}


def _positions(events: list) -> tuple[list, tuple[str, int]]:
    plain, at, counts = [], None, {}
    for e in events:
        marked = e[0] == "@"
        e = e[1] if marked else e
        counts[e[0]] = counts.get(e[0], 0) + 1
        if marked:
            at = (e[0], counts[e[0]])
        plain.append(e)
    return plain, at


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_invariant_fails_on_a_log_that_breaks_it(rule, tmp_path):
    """The good log passes; the same log broken at one event fails that rule, there."""
    good, broken, words = CASES[rule]
    write(f"sqlite:///{tmp_path}/good.db", good)
    events, (stream, version) = _positions(broken)
    write(f"sqlite:///{tmp_path}/bad.db", events)
    assert audit(f"sqlite:///{tmp_path}/good.db").findings == []
    findings = [f for f in audit(f"sqlite:///{tmp_path}/bad.db").findings if f.rule == rule]
    assert findings, f"{rule} did not fail"
    assert (findings[0].stream, findings[0].version) == (stream, version)
    assert words in findings[0].message


REFUNDED = [*PAID, confirmed("o1/0", 1, 1000), order("order_refunded")]


def test_a_refunded_order_whose_sold_units_went_back_passes(tmp_path):
    """A refunded order whose confirmed line was returned holds no sold units: every rule
    holds, and the SKU's units are all available again."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [*REFUNDED, returned("o1/0", 1, 1000)])
    report = audit(url)
    assert report.findings == [], [str(f) for f in report.findings]


def test_a_refunded_order_still_holding_sold_units_fails_settlement(tmp_path):
    """A refunded order whose confirmed line was never returned is an orders.settlement
    finding naming the reservation."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, REFUNDED)
    findings = [f for f in audit(url).findings if f.rule == "orders.settlement"]
    assert findings and "still holds 1 sold units" in findings[0].message
    assert "'o1/0'" in findings[0].message


@pytest.mark.parametrize(("events", "words"), [
    ([*REFUNDED, returned("o1/0", 1, 1000), returned("o1/0", 1, 1000)],
     "they were returned already"),
    ([*PAID, returned("o1/0", 1, 1000)], "it is held, not sold"),
    ([*stocked(), returned("r9", 1, 1000)], "it was never reserved"),
    ([*REFUNDED, returned("o1/0", 2, 2000)], "but it sold 1 units"),
], ids=["twice", "held", "unknown", "other-units"])
def test_a_return_of_units_not_sold_to_it_fails_conservation(events, words, tmp_path):
    """A unit returned twice, a held or unknown reservation returned, or a return of other
    units than were sold is a stock.conservation finding at the return."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, events)
    findings = [f for f in audit(url).findings if f.rule == "stock.conservation"]
    assert findings and words in findings[0].message, [str(f) for f in findings]
    assert findings[0].stream == SKU


WITH_COUPON = [*stocked(), coupon("received"), reserved("o1/0", 1, [1000]),
               order("checkout_started", coupon_id="c1"), coupon("locked"),
               order("order_placed", discount_cents=300, total_cents=700),
               order("payment_captured", amount_cents=700), confirmed("o1/0", 1, 1000),
               coupon("redeemed")]
"""A paid order of one unit with coupon c1 (300 off), its unit confirmed, c1 redeemed."""
REFUNDED_WITH_COUPON = [*WITH_COUPON, order("order_refunded", amount_cents=700),
                        returned("o1/0", 1, 1000)]


def test_a_refunded_orders_coupon_returned_while_valid_passes(tmp_path):
    """The refunded order's unit and its still valid coupon went back: every rule holds,
    and the coupon may then be locked and redeemed by another order."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [*REFUNDED_WITH_COUPON, coupon("returned"),
                coupon("locked", order_id="o2"), coupon("redeemed", order_id="o2")])
    report = audit(url)
    assert report.findings == [], [str(f) for f in report.findings]


@pytest.mark.parametrize(("events", "rule", "words"), [
    (REFUNDED_WITH_COUPON, "orders.settlement", "keeps coupon 'c1' redeemed"),
    ([*WITH_COUPON, coupon("returned")], "coupons.redemption", "which is paid, not refunded"),
    ([*REFUNDED_WITH_COUPON, coupon("returned"), coupon("returned")], "coupons.redemption",
     "returned by order 'o1' while held"),
], ids=["kept", "not-refunded", "twice"])
def test_a_coupon_kept_by_a_refunded_order_or_returned_without_one_fails(events, rule, words,
                                                                          tmp_path):
    """A refunded order keeping a coupon still valid, a coupon returned by an order not
    refunded, or returned twice, is a finding of its rule."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, events)
    findings = [f for f in audit(url).findings if f.rule == rule]
    assert findings and words in findings[0].message, [str(f) for f in audit(url).findings]


def test_a_command_recorded_in_two_streams_is_caught(tmp_path):
    """A retry that landed in a second shard records its effects twice."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [*stocked()])
    store = open_store(url)
    again = NewEvent(type="inventory.stock_added", data={"sku": "B2", "qty": 1},
                     command_id="cmd-1", recorded_at=T0)
    store.append("sku-001", [again], 0)
    store.close()
    findings = audit(url).findings
    assert [(f.rule, f.stream, f.version) for f in findings] == [("log.commands", "sku-001", 1)]


def test_an_event_of_an_unknown_type_or_schema_is_reported(tmp_path):
    """The audit does not vouch for what it cannot read."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [(SKU, "inventory.stock_teleported", {"sku": "A1"}), (CAMPAIGN, *campaign()[1:])])
    report = audit(url)
    assert [(f.rule, f.stream, f.version) for f in report.findings] == [("log.schema", SKU, 1)]


def test_a_payload_without_its_documented_fields_is_a_finding_not_a_crash(tmp_path):
    """A sealed event missing a field is reported where it is."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [(TEAM, "teams.team_created", {"team": "t1"})])
    (finding,) = audit(url).findings
    assert (finding.rule, finding.stream, finding.version) == ("log.schema", TEAM, 1)
    assert "KeyError" in finding.message


def test_a_stored_byte_flipped_in_the_store_is_caught(sale, tmp_path):
    """Tampering with the SQLite file itself is found over the stored bytes."""
    import shutil
    import sqlite3

    path = Path(sale.removeprefix("sqlite:///"))
    copy = tmp_path / "events.db"
    shutil.copy(path, copy)
    db = sqlite3.connect(copy)
    rowid, body = db.execute("SELECT id, body FROM commits WHERE stream = ? ORDER BY id LIMIT 1 "
                             "OFFSET 3", (ORDER,)).fetchone()
    i = body.index(b"o-")
    db.execute("UPDATE commits SET body = ? WHERE id = ?", (body[:i] + b"x-" + body[i + 2:], rowid))
    db.commit()
    db.close()
    report = audit(f"sqlite:///{copy}")
    assert report.findings[0].rule == "log.chain" and report.findings[0].stream == ORDER


def test_a_stored_record_with_extra_fields_is_caught_like_log_verify_does(tmp_path):
    """A record re-sealed with two fields too many (hashes and head made to match) breaks
    the chain for the audit as for `saleday log verify`, with or without views."""
    import sqlite3
    from hashlib import blake2b

    import msgpack

    from saleday.events import ZERO_HASH, HashChainBroken, verify_commits

    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [(SKU, "inventory.stock_added", {"sku": "A1", "qty": 1})])
    db = sqlite3.connect(tmp_path / "events.db")
    (body,) = db.execute("SELECT body FROM commits WHERE stream = ?", (SKU,)).fetchone()
    (row,) = msgpack.unpackb(body, use_list=False, raw=False)
    record = msgpack.packb([*row, b"x", b"y"], use_bin_type=True)
    h = blake2b(ZERO_HASH + record, digest_size=32).digest()
    db.execute("UPDATE commits SET body = ?, hashes = ? WHERE stream = ?",
               (b"\x91" + record, h, SKU))
    db.execute("UPDATE streams SET hash = ? WHERE stream = ?", (h, SKU))
    db.commit()
    db.close()
    store = open_store(url, read_only=True)
    with pytest.raises(HashChainBroken):
        verify_commits(SKU, store.read_commits(SKU))
    store.close()
    for views in ((), [CountingView()]):
        source = StoreSource(url)
        try:
            found = [(f.rule, f.stream, f.version) for f in run_audit(source, views=views).findings]
        finally:
            source.close()
        assert found == [("log.chain", SKU, 1)]


# --- the edges of checkout, as the real flows write them --------------------------------


def test_the_edges_of_checkout_pass(tmp_path):
    """Cancel before try, a payment for an unknown order, late and duplicate payments, a
    sold-out try, a coupon given back, an abandoned cart: all settle, every rule holds."""
    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    clock = SimClock(T0)
    gw = local_gateway(store, SHARDS, clock)
    co = Checkout(gw)

    async def day() -> list[str]:
        await gw.submit_many([AddStock(sku="A1", qty=3, now=T0),
                              ConfigureSale(sku="A1", tiers=((1, 500), (0, 1000)), per_user_limit=0,
                                            start=T0, end=T0 + DAY, now=T0),
                              ReceiveCoupon(user="u1", coupon_id="c1", campaign="1111",
                                            value_cents=300, min_spend_cents=0,
                                            valid_until=T0 + DAY, now=T0)])
        out = [(await co.payment_succeeded(order_id="o1", payment_id="p0", amount_cents=5,
                                           now=T0)).status]
        out.append((await co.place(order_id="o1", user="u1", lines=(("A1", 1),), now=T0)).status)
        out.append((await co.payment_succeeded(order_id="o1", payment_id="p1", amount_cents=500,
                                               now=T0 + 1)).status)
        out.append((await co.payment_succeeded(order_id="o1", payment_id="p2", amount_cents=500,
                                               now=T0 + 2)).status)
        out.append((await co.cancel(order_id="o2", reason="user", now=T0)).status)
        out.append((await co.place(order_id="o2", user="u2", lines=(("A1", 1),), now=T0)).status)
        placed = await co.place(order_id="o3", user="u1", lines=(("A1", 1),), coupon_id="c1", now=T0)
        out.append(placed.status)
        out.append((await co.payment_failed(order_id="o3", now=T0 + 5)).status)
        late = await co.place(order_id="o4", user="u3", lines=(("A1", 1),), now=T0)
        out.append((await co.payment_succeeded(order_id="o4", payment_id="p4",
                                               amount_cents=late.total_cents,
                                               now=T0 + co.payment_window_ms)).status)
        out.append((await co.place(order_id="o5", user="u4", lines=(("A1", 3),), now=T0)).status)
        out.append((await co.place(order_id="o6", user="u5", lines=(("A1", 2),), now=T0)).status)
        clock.now = T0 + co.payment_window_ms + co.grace_ms + 1
        gw.tick()
        return out

    statuses = asyncio.run(day())
    store.close()
    assert statuses == ["refunded", "placed", "paid", "refunded", "cancelled", "refused", "placed",
                        "cancelled", "refunded", "cancelled", "placed"]
    report = audit(url)
    assert report.ok, [str(f) for f in report.findings]
    assert report.types["orders.order_voided"] == 1 and report.types["inventory.reservation_expired"] == 1


# --- the command line -----------------------------------------------------------------

runner = CliRunner()


def test_audit_prints_rules_views_and_the_log_digest_and_exits_0(sale):
    """A clean log: a table of rules, view digests, the log digest, exit 0."""
    done = runner.invoke(app, ["audit", "--store", sale])
    assert done.exit_code == 0, done.output
    assert "OK: every rule held" in done.output and audit(sale).log_digest in done.output
    assert "stock.oversell" in done.output and "views rebuilt from the log" in done.output


def test_audit_json_has_the_documented_fields(sale):
    """`--json` is one object with ok, events, streams, findings, rules, views, digest, rate."""
    done = runner.invoke(app, ["audit", "--data", str(Path(sale.removeprefix("sqlite:///")).parent),
                               "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert {"ok", "events", "streams", "findings", "rules", "views", "log_digest",
            "events_per_s"} <= set(report)
    assert report["ok"] and report["findings"] == [] and len(report["views"]) >= 1


def test_audit_exits_1_naming_each_finding(tmp_path):
    """A log with an oversold SKU: exit 1, the finding in words, with stream and version."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [*stocked("A1", qty=1), reserved("r1", 3, [1000] * 3)])
    done = runner.invoke(app, ["audit", "--store", url])
    assert done.exit_code == 1
    assert "sku-000 v3: SKU 'A1' oversold: 3 units reserved with 1 available" in done.output
    as_json = json.loads(runner.invoke(app, ["audit", "--store", url, "--json"]).stdout)
    assert as_json["findings"][0] == {"rule": "stock.oversell", "stream": "sku-000", "version": 3,
                                      "message": "SKU 'A1' oversold: 3 units reserved with 1 available"}


@pytest.mark.parametrize("args", [["--store", "sqlite:///{tmp}/none.db"], ["--log", "{tmp}/none.jsonl"],
                                  ["--log", "{tmp}/notes.txt"], ["--log", "{tmp}/blob.bin"],
                                  ["--log", "{tmp}/empty.jsonl"], ["--data", "{tmp}"], []])
def test_audit_exits_2_when_there_is_no_log_to_read(args, tmp_path, monkeypatch):
    """No store, no file, not an export (text or binary), an empty file, or no log named
    (and none in the default ./saleday-data): exit 2 with one readable line."""
    monkeypatch.chdir(tmp_path)   # not the checkout, where README command 1 leaves a log
    (tmp_path / "notes.txt").write_text("not an export\n")
    (tmp_path / "blob.bin").write_bytes(b"PAR1\xb5\x00\xff")
    (tmp_path / "empty.jsonl").write_text("")
    done = runner.invoke(app, ["audit", *[a.format(tmp=tmp_path) for a in args]])
    assert done.exit_code == 2 and "error:" in done.output


def test_bench_audit_measures_audit_and_verify_on_one_log():
    """`saleday bench audit` builds a sale-day log, audits it clean and reports both rates."""
    done = runner.invoke(app, ["bench", "audit", "--events", "3000", "--repeat", "1", "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["ok"] and result["events"] >= 2000
    assert result["audit_events_per_s"] > 0 and result["verify_events_per_s"] > 0


def test_with_or_without_views_the_rules_see_the_same_log(sale, tmp_path):
    """Views get envelopes and the rules alone get bare rows: same findings, same digest."""
    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [*stocked("A1", qty=1), reserved("r1", 3, [1000] * 3), *session("u1", T0, "u1")])
    for log in (sale, url):
        bare = run_audit(StoreSource(log))
        viewed = run_audit(StoreSource(log), views=[CountingView()])
        assert (bare.findings, bare.log_digest, bare.events) == \
            (viewed.findings, viewed.log_digest, viewed.events)


def test_a_command_whose_events_span_batches_is_one_run(tmp_path, monkeypatch):
    """A long commit split across the audit's batches is still one command; the same id
    coming back later in the stream is not."""
    import saleday.projections.source as source_module

    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    store.append(SKU, [NewEvent(type="inventory.stock_added", data={"sku": "A1", "qty": 1},
                                command_id="big", recorded_at=T0) for _ in range(5)], 0)
    envs = store.read(SKU)
    store.close()
    monkeypatch.setattr(source_module, "BATCH", 2)
    assert run_audit(envs).ok
    again = list(envs)
    for version, cid in ((6, "other"), (7, "big")):  # sealed right: only the id repeats
        env = envs[0]._replace(version=version, command_id=cid, prev_hash=again[-1].hash)
        again.append(env._replace(hash=event_hash(env.prev_hash, env)))
    assert [(f.rule, f.version) for f in run_audit(again).findings] == [("log.commands", 7)]


def test_a_store_missing_its_last_commit_is_caught_against_its_head(sale, tmp_path):
    """The chain of what is left still holds, but the stream's head says there was more."""
    import shutil
    import sqlite3

    copy = tmp_path / "events.db"
    shutil.copy(Path(sale.removeprefix("sqlite:///")), copy)
    db = sqlite3.connect(copy)
    first, last = db.execute("SELECT first_version, last_version FROM commits WHERE stream = ? "
                             "ORDER BY last_version DESC LIMIT 1", (SKU,)).fetchone()
    db.execute("DELETE FROM commits WHERE stream = ? AND last_version = ?", (SKU, last))
    db.commit()
    db.close()
    (finding,) = [f for f in audit(f"sqlite:///{copy}").findings if f.rule == "log.chain"]
    assert (finding.stream, finding.version) == (SKU, first)
    assert "missing from the end" in finding.message


def test_a_command_recorded_in_two_commits_in_a_row_is_caught(tmp_path):
    """Past the store's own dedup (rows written by hand), a command whose events fill the
    end of one commit and the start of the next was recorded twice."""
    import sqlite3

    from saleday.events.chain import seal

    url = f"sqlite:///{tmp_path}/events.db"
    write(url, [*stocked(), (SKU, "inventory.stock_added", {"sku": "A1", "qty": 1}, T0, "add")])
    store = open_store(url)
    head = store.head(SKU)
    store.close()
    again = seal(SKU, head.version, head.hash, [NewEvent(
        type="inventory.stock_added", data={"sku": "A1", "qty": 1}, command_id="add",
        recorded_at=T0)])
    db = sqlite3.connect(tmp_path / "events.db")
    db.execute("INSERT INTO commits (stream, first_version, last_version, prev_hash, hashes, body) "
               "VALUES (?, ?, ?, ?, ?, ?)", (SKU, again.first_version, again.last_version,
                                             again.prev_hash, again.hashes, again.body))
    db.execute("UPDATE streams SET version = ?, hash = ? WHERE stream = ?",
               (again.last_version, again.head_hash, SKU))
    db.commit()
    db.close()
    findings = audit(url).findings
    assert [(f.rule, f.stream, f.version) for f in findings] == [("log.commands", SKU, 4)]


def test_a_line_that_is_not_text_is_a_finding_at_its_event(exported, tmp_path):
    """Bytes that are not UTF-8 in the middle of an export: that event, not a crash."""
    lines = [line.encode() for line in lines_of(exported)]
    i = first(lines_of(exported), "orders.order_placed")
    lines[i] = lines[i][:60] + b"\xff\xfe" + lines[i][60:]
    (tmp_path / "events.jsonl").write_bytes(b"".join(lines))
    assert chain_findings(tmp_path / "events.jsonl")[0] == \
        ("log.chain", *where(lines_of(exported)[i]))
