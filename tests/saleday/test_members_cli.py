"""`saleday import orders`, `saleday view members` and `saleday members tiers` end to end
on a SQLite log in a temporary folder (no Ray)."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from saleday.actors.host import Request, ShardHost
from saleday.actors.member import member_decider
from saleday.actors.order import RecordPayment, RecordTry, StartCheckout, order_decider
from saleday.actors.session import TrackOrder, session_decider
from saleday.cli.main import app
from saleday.events import open_store
from saleday.projections.rfm import day_start_ms

runner = CliRunner()
RFM_KEYS = {"user", "recency_days", "frequency", "monetary", "r", "f", "m", "segment", "tier"}


def history_csv(path: Path, rows: int, seed: int = 3) -> Path:
    r = random.Random(seed)
    lines = ["user,ordered_at,amount"]
    for _ in range(rows):
        lines.append(f"u{r.randrange(2_000):04d},2025-{r.randint(1, 11):02d}-"
                     f"{r.randint(1, 28):02d},{r.randint(0, 99_999) / 100}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def import_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["import", "orders", *args, "--json"])
    return result.exit_code, json.loads(result.stdout.splitlines()[0])


@pytest.mark.slow   # 3-8 s on the 2-core VM: the issue asks for a real-sized (20k-row) round trip
def test_a_real_sized_history_imports_once_and_a_second_import_records_nothing(tmp_path):
    """20,000 rows are recorded on the member streams; importing the file again adds none."""
    csv_file = history_csv(tmp_path / "history.csv", 20_000)
    data = str(tmp_path / "data")
    code, first = import_json(str(csv_file), "--data", data)
    assert code == 0 and (first["rows"], first["recorded"], first["already"]) == (20_000, 20_000, 0)
    code, second = import_json(str(csv_file), "--data", data)
    assert code == 0 and (second["recorded"], second["already"]) == (0, 20_000)
    store = open_store(f"sqlite:///{data}/events.db")
    try:
        assert sum(v for s, v in store.streams().items() if s.startswith("member-")) == 20_000
    finally:
        store.close()
    view = runner.invoke(app, ["view", "members", "--data", data, "--as-of", "2025-11-30",
                               "--json"])
    rows = json.loads(view.stdout)
    assert sum(r["frequency"] for r in rows) == 20_000
    assert all(set(r) == RFM_KEYS for r in rows)


def test_bad_rows_are_reported_by_reason_and_no_usable_row_exits_2(tmp_path):
    """A file of bad rows names each reason with its lines and ends with exit status 2."""
    bad = tmp_path / "bad.csv"
    bad.write_text("user,ordered_at,amount\nalice,2025-02-30,1\n,2025-01-01,2\nbob,2025-01-01\n")
    code, report = import_json(str(bad), "--data", str(tmp_path / "d"))
    assert code == 2 and report["usable"] == 0
    assert report["bad"] == {"bad_ordered_at": {"count": 1, "lines": [2]},
                             "empty_user": {"count": 1, "lines": [3]},
                             "wrong_field_count": {"count": 1, "lines": [4]}}
    headless = tmp_path / "headless.csv"
    headless.write_text("alice,2025-01-01,1\n")
    result = runner.invoke(app, ["import", "orders", str(headless), "--data", str(tmp_path / "d")])
    assert result.exit_code == 2 and "header" in result.output and "Traceback" not in result.output


def pay_through_checkout(url: str, user: str, order_id: str, cents: int, at: int) -> None:
    store = open_store(url)
    try:
        host = ShardHost(decider=order_decider, store=store, stream="order-000", clock=lambda: at)
        replies = host.handle([
            Request("s", StartCheckout(order_id=order_id, user=user, lines=(("sku-1", 1),),
                                       coupon_id="", payment_deadline=at + 60_000, now=at)),
            Request("t", RecordTry(order_id=order_id, line_prices=((cents,),),
                                   coupon_value_cents=0, now=at)),
            Request("p", RecordPayment(order_id=order_id, payment_id="pay-1", amount_cents=cents,
                                       now=at))])
        assert [type(e).__name__ for r in replies for e in r.events] == [
            "CheckoutStarted", "OrderPlaced", "PaymentCaptured"]
        # Settled, as checkout records it once every hold is confirmed.
        session = ShardHost(decider=session_decider, store=store, stream="session-000",
                            clock=lambda: at)
        tracked = session.handle([Request(f"k-{status}", TrackOrder(
            user=user, order_id=order_id, status=status, amount_cents=cents, now=at))
            for status in ("placed", "paid")])
        assert [type(e).__name__ for r in tracked for e in r.events] == ["OrderStatusChanged"] * 2
    finally:
        store.close()


def test_a_checkout_paid_order_counts_like_an_imported_one(tmp_path):
    """RFM adds a paid checkout order, at its payment time, to the imported history."""
    data = tmp_path / "data"
    csv_file = tmp_path / "h.csv"
    csv_file.write_text("user,ordered_at,amount\nalice,2025-11-01,100\nbob,2025-10-01,5\n")
    assert import_json(str(csv_file), "--data", str(data))[0] == 0
    paid_at = day_start_ms(date(2025, 11, 11)) + 3_600_000
    pay_through_checkout(f"sqlite:///{data}/events.db", "alice", "o-1", 25_050, paid_at)
    result = runner.invoke(app, ["view", "members", "--data", str(data), "--as-of", "2025-11-12",
                                 "--user", "alice", "--json"])
    (alice,) = json.loads(result.stdout)
    assert (alice["recency_days"], alice["frequency"], alice["monetary"]) == (1, 2, 350.5)


def test_tiers_are_recorded_as_events_once_per_change(tmp_path):
    """`members tiers` records TierChanged for members whose tier by the rule is new."""
    data = tmp_path / "data"
    csv_file = history_csv(tmp_path / "h.csv", 300)
    assert import_json(str(csv_file), "--data", str(data))[0] == 0
    args = ["members", "tiers", "--data", str(data), "--as-of", "2025-11-30", "--json"]
    first = json.loads(runner.invoke(app, args).stdout)
    view = json.loads(runner.invoke(app, ["view", "members", "--data", str(data), "--as-of",
                                          "2025-11-30", "--json"]).stdout)
    not_regular = sum(r["tier"] != "regular" for r in view)
    assert first["changed"] == not_regular > 0 and first["refused"] == 0
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["changed"] == 0 and again["unchanged"] == len(view)
    store = open_store(f"sqlite:///{data}/events.db")
    try:
        host = ShardHost(decider=member_decider, store=store, stream="member-000")
        effective = first["effective_at"]
        for row in view:
            state = host.state_of(row["user"])
            assert state.tier_at(effective) == row["tier"]
            assert state.tier_at(effective - 1) == "regular"
    finally:
        store.close()


def test_price_drops_are_refunded_once_per_line_by_the_tier_when_paid(tmp_path):
    """A diamond member's paid line is refunded the drop once; a rerun refunds nothing."""
    from saleday.actors.member import ChangeTier

    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data}/events.db"
    paid_at = day_start_ms(date(2025, 11, 11))
    store = open_store(url)
    try:
        ShardHost(decider=member_decider, store=store, stream="member-000").handle(
            [Request("t", ChangeTier(user="alice", tier="diamond", rule="test", now=paid_at - 1))])
    finally:
        store.close()
    assert runner.invoke(app, ["price", "set", "sku-1", "250.50", "--data", str(data),
                               "--at", "2025-11-10"]).exit_code == 0
    pay_through_checkout(url, "alice", "o-1", 25_050, paid_at)
    result = runner.invoke(app, ["price", "set", "sku-1", "199", "--data", str(data),
                                 "--at", "2026-03-01T10:00:00+08:00"])
    assert result.exit_code == 0, result.output
    first = json.loads(runner.invoke(app, ["members", "protect", "--data", str(data),
                                           "--json"]).stdout)
    assert (first["refunded"], first["refund_cents"]) == (1, 5_150)
    again = json.loads(runner.invoke(app, ["members", "protect", "--data", str(data),
                                           "--json"]).stdout)
    asked = json.loads(runner.invoke(app, ["members", "protect", "--data", str(data),
                                           "--order", "o-1", "--json"]).stdout)
    assert again["refunded"] == asked["refunded"] == 0
    assert again["already_refunded"] == asked["already_refunded"] == 1
    bad = runner.invoke(app, ["price", "set", "sku-1", "-3", "--data", str(data)])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_checkout_takes_the_invoice_and_an_electronic_one_earns_double_points(tmp_path):
    """Orders through the real checkout flow earn points once paid, double for e-invoices."""
    import asyncio

    from saleday.actors.sku import AddStock, ConfigureSale
    from saleday.cluster.local import LocalShards
    from saleday.flows.checkout import Checkout

    data = tmp_path / "data"
    data.mkdir()
    t0 = day_start_ms(date(2025, 11, 11))
    store = open_store(f"sqlite:///{data}/events.db")

    async def shop() -> None:
        shards = LocalShards(store, {"sku": 1, "order": 1, "session": 1, "member": 1},
                             partitions=8, clock=lambda: t0 + 1, autoflush=True)
        await shards.submit_many([AddStock(sku="sku-1", qty=10, now=t0),
                                  ConfigureSale(sku="sku-1", tiers=((0, 12_345),),
                                                per_user_limit=0, start=t0, end=t0 + 86_400_000,
                                                now=t0)])
        checkout = Checkout(shards)
        for order, user, invoice in (("o-e", "ann", ("electronic", "ACME", "9131")),
                                     ("o-p", "ann", ("paper", "", "")), ("o-n", "bo", None)):
            placed = await checkout.place(order_id=order, user=user, lines=(("sku-1", 2),),
                                          now=t0 + 1, invoice=invoice)
            assert placed.status == "placed", placed
            paid = await checkout.payment_succeeded(order_id=order, payment_id=f"pay-{order}",
                                                    amount_cents=placed.total_cents, now=t0 + 2)
            assert paid.status == "paid", paid

    try:
        asyncio.run(shop())
    finally:
        store.close()
    args = ["members", "points", "--data", str(data), "--rate", "2", "--json"]
    first = json.loads(runner.invoke(app, args).stdout)
    assert (first["paid_orders"], first["earned"], first["electronic"]) == (3, 3, 1)
    assert first["points"] == 246 * 2 * 2 + 246 * 2 + 246 * 2   # ¥246.90 -> 246 whole yuan
    again = json.loads(runner.invoke(app, args).stdout)
    assert (again["earned"], again["already"]) == (0, 3)
    store = open_store(f"sqlite:///{data}/events.db")
    try:
        host = ShardHost(decider=member_decider, store=store, stream="member-000")
        ann, bo = host.state_of("ann"), host.state_of("bo")
        assert dict(ann.invoices) == {"o-e": "electronic", "o-p": "paper"}
        assert (ann.earned, ann.balance, bo.balance) == (984 + 492, 984 + 492, 492)
    finally:
        store.close()
