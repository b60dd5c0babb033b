"""The `saleday` command line, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from saleday.cli.main import app
from saleday.events import NewEvent, open_store

runner = CliRunner()


def _store_with_events(path) -> str:
    url = f"sqlite:///{path}/events.db"
    store = open_store(url)
    for stream in ("sku-000", "sku-001"):
        store.append(stream, [NewEvent(type="inventory.stock_added", data={"sku": "a", "qty": n},
                                       command_id=f"c{n}", recorded_at=n) for n in range(1, 6)], 0)
    store.close()
    return url


def test_bench_store_prints_one_json_object_per_backend(tmp_path):
    """`bench store --json` measures the chosen backend (and, for SQLite, writer processes
    sharing one file) and says on what machine."""
    result = runner.invoke(app, ["bench", "store", "--events", "2000", "--repeat", "1",
                                 "--backend", "sqlite", "--no-baseline", "--writers", "2",
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    row = data["sqlite"]
    rates = ("append_events_per_s", "append_random_ids_events_per_s", "read_events_per_s",
             "verify_events_per_s")
    assert set(rates) <= set(row)
    assert all(row[k] > 0 for k in rates)
    contended = row["contended"]
    assert (contended["writers"], contended["commits_each"]) == (2, 2000)
    assert contended["commits_per_s"] > 0 and 0 < contended["p50_ms"] <= contended["p99_ms"]
    assert data["machine"]["cores"] >= 1


def test_log_verify_passes_an_intact_store_and_prints_heads(tmp_path):
    """`log verify` checks every stream and exits 0 with each head hash."""
    url = _store_with_events(tmp_path)
    result = runner.invoke(app, ["log", "verify", "--store", url])
    assert result.exit_code == 0, result.output
    assert "sku-000: 5 events, ok, head " in result.stdout and "sku-001" in result.stdout
    recompute = runner.invoke(app, ["log", "verify", "--store", url, "--recompute", "--json"])
    assert recompute.exit_code == 0 and all(r["ok"] for r in json.loads(recompute.stdout))


def test_log_verify_names_a_tampered_event_and_exits_1(tmp_path):
    """An altered stored event is reported with its stream and version, exit status 1."""
    import sqlite3

    url = _store_with_events(tmp_path)
    conn = sqlite3.connect(tmp_path / "events.db")
    (body,) = conn.execute("SELECT body FROM commits WHERE stream = 'sku-001'").fetchone()
    i = body.rindex(b"\x03")  # the qty of version 3 is the int 3, packed as 0x03
    tampered = body[:i] + b"\x07" + body[i + 1:]
    conn.execute("UPDATE commits SET body = ? WHERE stream = 'sku-001'", (tampered,))
    conn.commit()
    conn.close()
    result = runner.invoke(app, ["log", "verify", "--store", url, "--json"])
    assert result.exit_code == 1
    rows = {r["stream"]: r for r in json.loads(result.stdout)}
    assert rows["sku-000"]["ok"] and not rows["sku-001"]["ok"]
    assert rows["sku-001"]["version"] == 3


def test_an_unreachable_store_is_one_readable_line_without_secrets():
    """A store that does not answer is an error line with exit status 2; the password is hidden."""
    result = runner.invoke(app, ["log", "streams", "--store",
                                 "redis://user:secret@127.0.0.1:1/0?connect_timeout=0.5"])
    assert result.exit_code == 2
    assert "unavailable" in result.output and "secret" not in result.output


def test_python_m_cluster_cli_works():
    """`python -m saleday.cli.main` is the same CLI."""
    out = subprocess.run([sys.executable, "-m", "saleday.cli.main", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "bench" in out.stdout and "log" in out.stdout


@pytest.mark.ray
@pytest.mark.parametrize("client", ["requests", "pipelined"])
def test_bench_reserve_runs_a_small_flash_sale_without_overselling(client):
    """`bench reserve` drives a real sale through Ray and counts oversold units from the
    log, with either client (one request at a time, or chunks as the Lua peer sends)."""
    out = subprocess.run([sys.executable, "-m", "saleday.cli.main", "bench", "reserve", "--skus", "20",
                          "--stock", "10", "--system", "saleday[sqlite]", "--json",
                          "--client", client], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["params"]["client"] == client
    row = json.loads(out.stdout)["saleday[sqlite]"]
    from collections import Counter

    from saleday.bench.workload import make_workload

    work = make_workload(skus=20, stock=10, demand=3.0, users=200_000, zipf=1.0, seed=11)
    asked = Counter(sku for _, sku in work.requests)
    assert row["oversold"] == 0 and row["req_per_s"] > 0
    assert row["granted"] == sum(min(n, 10) for n in asked.values())


@pytest.mark.parametrize(("bench", "names"), [
    ("reserve", "saleday[sqlite], saleday[redis], seed_decrby_rollback"),
    ("simulate", "generator, inprocess[memory], inprocess[sqlite], ray[sqlite], reserve[sqlite]")])
def test_a_benchmark_lists_its_systems_by_their_names(bench, names):
    """`bench reserve|simulate --help` shows the systems as they are typed
    (`saleday[sqlite]`), not with the brackets eaten as markup."""
    out = runner.invoke(app, ["bench", bench, "--help"], env={"COLUMNS": "250"})
    assert out.exit_code == 0
    assert names in out.output


def test_bench_reserve_refuses_an_unknown_system_before_starting_anything():
    """An unknown `--system` ends with exit 2 and the known names, not a traceback."""
    out = runner.invoke(app, ["bench", "reserve", "--system", "saleday", "--skus", "1"])
    assert out.exit_code == 2, out.output
    assert "unknown system(s) ['saleday']" in out.output and "saleday[sqlite]" in out.output
    assert "Traceback" not in out.output


def test_bench_reserve_refuses_an_unknown_client():
    out = runner.invoke(app, ["bench", "reserve", "--client", "batch", "--skus", "1"])
    assert out.exit_code == 2, out.output
    assert "unknown client 'batch'" in out.output and "pipelined" in out.output


def test_bench_reserve_refuses_a_sale_with_no_reservations():
    """`--skus 1 --stock 1 --demand 0.1` asks for no reservation at all: exit 2, saying so,
    rather than a crash after the run."""
    out = runner.invoke(app, ["bench", "reserve", "--skus", "1", "--stock", "1", "--demand",
                              "0.1", "--system", "seed_decrby_rollback"])
    assert out.exit_code == 2, out.output
    assert "no reservations" in out.output and "Traceback" not in out.output


def test_a_relative_data_dir_means_the_one_under_the_working_directory(tmp_path, monkeypatch):
    """`--data saleday-data` reads ./saleday-data/events.db, as `saleday simulate` wrote it,
    for the audit and the views alike (not /saleday-data)."""
    (tmp_path / "saleday-data").mkdir()
    _store_with_events(tmp_path / "saleday-data")
    monkeypatch.chdir(tmp_path)
    audited = runner.invoke(app, ["audit", "--data", "saleday-data", "--json"])
    assert audited.exit_code in (0, 1), audited.output
    assert json.loads(audited.stdout)["events"] == 10
    viewed = runner.invoke(app, ["view", "stock", "--data", "saleday-data", "--json"])
    assert viewed.exit_code == 0, viewed.output
    assert json.loads(viewed.stdout)["skus"]["a"]["stocked"] == 30
