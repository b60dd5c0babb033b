"""`saleday forecast` on a log of presales, and `saleday bench forecast` (small, no Ray)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from saleday.actors.host import Request, ShardHost
from saleday.actors.presale import OpenPresale, PayBalance, PayDeposit, presale_decider
from saleday.cli.main import app
from saleday.events import open_store

runner = CliRunner()
DAY = 86_400_000
T0 = 1_761_955_200_000   # 2025-11-01 00:00 UTC


class Clock:
    now = T0

    def __call__(self) -> int:
        return self.now


def test_forecast_learns_from_a_finished_presale_and_forecasts_the_open_one(tmp_path):
    """A finished presale's curve and conversion drive the open presale's forecast."""
    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    clock = Clock()
    try:
        host = ShardHost(decider=presale_decider, store=store, stream="presale-000", clock=clock)

        def run(*commands) -> None:
            replies = host.handle([Request(f"c{clock.now}-{i}", c) for i, c in enumerate(commands)])
            assert all(not hasattr(r, "code") for r in replies), replies

        def opened(sku: str, start: int) -> OpenPresale:
            return OpenPresale(sku=sku, units=1_000, deposit_cents=5_000,
                               deposit_value_cents=15_000, price_cents=39_900,
                               deposits_from=start, balance_from=start + 4 * DAY,
                               balance_until=start + 5 * DAY, now=clock.now)

        run(opened("old", T0), opened("new", T0 + 10 * DAY))
        for day, qty in enumerate((5, 5, 5, 5)):           # the old presale: linear, 15 of 20 paid
            clock.now = T0 + day * DAY + 1
            run(PayDeposit(sku="old", deposit_id=f"o{day}", user=f"u{day}", qty=qty, now=clock.now))
        clock.now = T0 + 4 * DAY + 1
        run(*(PayBalance(sku="old", deposit_id=f"o{d}", payment_id=f"p{d}",
                         amount_cents=5 * 24_900, now=clock.now) for d in range(3)))
        for day, qty in enumerate((7, 5)):                  # the new one, two days in
            clock.now = T0 + (10 + day) * DAY + 1
            run(PayDeposit(sku="new", deposit_id=f"n{day}", user=f"v{day}", qty=qty, now=clock.now))
    finally:
        store.close()
    result = runner.invoke(app, ["forecast", "--store", url, "--at", "2025-11-13T00:00:00Z",
                                 "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["history_presales"] == 1 and out["conversion"] == 15 / 20
    (row,) = out["presales"]
    assert (row["sku"], row["days_seen"], row["days"], row["deposited_units"]) == ("new", 2, 4, 12)
    assert row["expected_demand"] == 12 / 0.5 * 0.75 and row["recommended_stock"] == 19
    assert (row["naive_to_date"], row["naive_linear"]) == (12, 24)


def test_the_backtest_reports_every_model_measured_in_the_same_run():
    """The pickup model beats stocking what was seen on simulated presales with known demand."""
    result = runner.invoke(app, ["bench", "forecast", "--presales", "60", "--json"])
    assert result.exit_code == 0, result.output
    models = json.loads(result.stdout)["models"]
    assert set(models) == {"pickup", "pickup_no_history", "naive_linear", "naive_to_date"}
    assert models["pickup"]["mean_accuracy"] > models["naive_to_date"]["mean_accuracy"]


def test_prophet_without_the_extra_or_a_bad_model_is_a_clear_error(tmp_path):
    """An unknown model is a usage error; no log is an error, never a traceback."""
    bad = runner.invoke(app, ["forecast", "--data", str(tmp_path), "--model", "arima"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    missing = runner.invoke(app, ["forecast", "--data", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no event log" in missing.output


@pytest.mark.slow   # imports Prophet and fits it (a few seconds); skipped without saleday[forecast]
def test_prophet_is_backtested_beside_the_built_in_model_when_installed():
    """With the optional extra, the backtest reports Prophet on the presales asked for."""
    pytest.importorskip("prophet")
    result = runner.invoke(app, ["bench", "forecast", "--presales", "10", "--prophet", "2",
                                 "--json"])
    assert result.exit_code == 0, result.output
    block = json.loads(result.stdout)["prophet"]
    assert block["presales"] == {"train": 5, "test": 2}
    assert 0 <= block["models"]["prophet"]["mean_accuracy"] <= 1


def test_presale_steps_from_the_command_line_feed_the_forecast(tmp_path):
    """Open, deposit and pay a balance by command; refusals exit 2 with the reason. (The
    shard's timers run on the wall clock, so the windows lie in the future.)"""
    data = str(tmp_path / "data")

    def cli(*args: str):
        return runner.invoke(app, ["presale", *args, "--data", data])

    opened = cli("open", "pre-1", "--units", "10", "--deposit", "50", "--counts-as", "150",
                 "--price", "399", "--deposits-from", "2099-11-01", "--balance-from",
                 "2099-11-05", "--balance-until", "2099-11-06")
    assert opened.exit_code == 0, opened.output
    assert cli("deposit", "pre-1", "d1", "ann", "2", "--at", "2099-11-01T10:00:00Z").exit_code == 0
    assert cli("deposit", "pre-1", "d2", "bo", "3", "--at", "2099-11-02T10:00:00Z").exit_code == 0
    late = cli("deposit", "pre-1", "d3", "cy", "1", "--at", "2099-11-05T10:00:00Z")
    assert late.exit_code == 2 and "presale_closed" in late.output
    wrong = cli("balance", "pre-1", "d1", "p1", "1", "--at", "2099-11-05T01:00:00Z")
    assert wrong.exit_code == 2 and "wrong_amount" in wrong.output
    paid = cli("balance", "pre-1", "d1", "p1", "498", "--at", "2099-11-05T01:00:00Z")
    assert paid.exit_code == 0 and "BalancePaid" in paid.output
    out = json.loads(runner.invoke(app, ["forecast", "--data", data, "--at",
                                         "2099-11-03T00:00:00Z", "--json"]).stdout)
    (row,) = out["presales"]
    assert (row["sku"], row["deposited_units"], row["days_seen"], row["days"]) == (
        "pre-1", 5, 2, 4)
