"""Exporting a log: JSONL that audits back to the same log, Parquet that reads back whole,
payload values kept exact, and the `saleday export` command."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import saleday.projections.export as export_module
from saleday.cli.main import app
from saleday.events import NewEvent, open_store
from saleday.projections.audit import run_audit
from saleday.projections.export import COLUMNS, PARQUET_COLUMNS, ExportError, entity_of, export
from saleday.projections.jsonl_source import JsonlSource
from tests.projections.audit_logs import T0, audit, real_sale

runner = CliRunner()


@pytest.fixture(scope="module")
def sale(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sale')}/events.db"
    real_sale(url, orders=80, seed=5)
    return url


def store_events(url: str) -> list:
    store = open_store(url)
    try:
        return [e for s in sorted(store.streams()) for e in store.read(s)]
    finally:
        store.close()


def test_jsonl_round_trips_to_the_same_log_digest(sale, tmp_path):
    """`saleday export` then `saleday audit --log` finds the very log the store holds."""
    done = runner.invoke(app, ["export", "--store", sale, "--format", "jsonl", "--out",
                               str(tmp_path), "--json"])
    assert done.exit_code == 0, done.output
    exported = json.loads(done.stdout)
    audited = runner.invoke(app, ["audit", "--log", str(tmp_path / "events.jsonl"), "--json",
                                  "--no-views"])
    assert audited.exit_code == 0, audited.output
    from_file = json.loads(audited.stdout)
    assert from_file["ok"] and from_file["log_digest"] == audit(sale).log_digest
    assert exported["log_digest"] == from_file["log_digest"]
    assert from_file["events"] == exported["events"] == len(store_events(sale))


def test_every_envelope_field_is_in_each_line(sale, tmp_path):
    """A line carries all eleven fields, hashes in hex and the payload as an object."""
    export(sale, fmt="jsonl", out=tmp_path)
    envs = store_events(sale)
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == len(envs)
    for line, env in zip(lines[:50], envs[:50]):
        o = json.loads(line)
        assert tuple(o) == COLUMNS
        assert bytes.fromhex(o["hash"]) == env.hash and bytes.fromhex(o["prev_hash"]) == env.prev_hash
        assert o["data"] == json.loads(json.dumps(env.data))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["events"] == len(envs) and set(manifest["streams"]) == {e.stream for e in envs}


def test_parquet_reads_back_with_every_row(sale, tmp_path):
    """The Parquet file holds every event, in order, with the same fields as the store,
    typed: event time a UTC timestamp, the payload JSON, and the entity it is about."""
    result = export(sale, fmt="parquet", out=tmp_path)
    table = pq.read_table(result.path)
    envs = store_events(sale)
    assert table.num_rows == len(envs) == result.events
    assert tuple(table.column_names) == PARQUET_COLUMNS
    assert str(table.schema.field("recorded_at").type) == "timestamp[ms, tz=UTC]"
    assert str(table.schema.field("data").type) == "extension<arrow.json>"
    rows = table.to_pylist()
    for row, env in zip(rows, envs):
        assert (row["stream"], row["version"], row["type"], row["command_id"]) == \
            (env.stream, env.version, env.type, env.command_id)
        assert int(row["recorded_at"].timestamp() * 1000) == env.recorded_at
        assert row["entity"] == entity_of(env)
        assert row["hash"] == env.hash.hex() and json.loads(row["data"]) == json.loads(json.dumps(env.data))


def test_paging_does_not_change_the_export(sale, tmp_path, monkeypatch):
    """Read and written a few events at a time (bounded memory), the file is the same."""
    whole = export(sale, fmt="jsonl", out=tmp_path / "whole").path.read_bytes()
    monkeypatch.setattr(export_module, "BATCH", 7)
    assert export(sale, fmt="jsonl", out=tmp_path / "paged").path.read_bytes() == whole


def test_bytes_and_big_integers_keep_the_hashed_values(tmp_path):
    """Values JSON has no form for come back exact, so every recomputed hash matches."""
    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    store.append("misc-000", [NewEvent(type="misc.blob", command_id="c1", recorded_at=T0, data={
        "raw": b"\x00\xffsale", "big": 2**64 - 1, "neg": -(2**63), "nested": {"z": [b"", None, True]},
        "text": "双十一 \u2028"})], 0)
    store.close()
    result = export(url, fmt="jsonl", out=tmp_path / "out")
    report = run_audit(JsonlSource(result.path))
    assert [f.rule for f in report.findings] == ["log.schema"]  # an unknown type, but intact
    assert report.log_digest == result.log_digest


def test_a_payload_map_that_looks_like_bytes_is_refused(tmp_path):
    """A map whose only key is `$bytes` could not be read back as a map: refused, named."""
    url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(url)
    store.append("misc-000", [NewEvent(type="misc.odd", command_id="c1", recorded_at=T0,
                                       data={"x": {"$bytes": "00"}})], 0)
    store.close()
    with pytest.raises(ExportError, match="misc-000.*version 1"):
        export(url, fmt="jsonl", out=tmp_path / "out")


def test_export_refuses_a_store_that_is_not_there(tmp_path):
    """A SQLite path with no log is an error (exit 2), not an empty export."""
    done = runner.invoke(app, ["export", "--store", f"sqlite:///{tmp_path}/none.db", "--out",
                               str(tmp_path / "out")])
    assert done.exit_code == 2 and "no event log" in done.output
    assert not Path(tmp_path / "none.db").exists()


def test_export_from_a_data_dir(sale, tmp_path):
    """`--data DIR` exports the data dir's events.db."""
    data_dir = Path(sale.removeprefix("sqlite:///")).parent
    done = runner.invoke(app, ["export", "--data", str(data_dir), "--format", "parquet",
                               "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert pq.read_table(tmp_path / "events.parquet").num_rows == len(store_events(sale))


def _python_block(doc: str, containing: str) -> str:
    text = (Path(__file__).parents[2] / "docs" / doc).read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    return next(b for b in blocks if containing in b)


def test_the_documented_auditor_check_runs_without_this_code(sale, tmp_path, monkeypatch, capsys):
    """docs/AUDIT.md's snippet (with LOG_FORMAT.md's verifier) verifies an export and prints
    the same log digest as the audit; on a tampered file the verifier names the event."""
    result = export(sale, fmt="jsonl", out=tmp_path)
    monkeypatch.chdir(tmp_path)
    snippet = (_python_block("LOG_FORMAT.md", "def verify(events)")
               + _python_block("AUDIT.md", "def untag(v)"))
    exec(compile(snippet, "AUDIT.md", "exec"), {})  # noqa: S102 - the documented code itself
    printed = capsys.readouterr().out.split()
    assert printed == ["None", result.log_digest]
    lines = (tmp_path / "events.jsonl").read_text().splitlines(keepends=True)
    o = json.loads(lines[5])
    o["recorded_at"] += 1
    lines[5] = json.dumps(o) + "\n"
    (tmp_path / "events.jsonl").write_text("".join(lines))
    exec(compile(snippet, "AUDIT.md", "exec"), {})  # noqa: S102
    assert f"('{o['stream']}', {o['version']}, 'hash does not match the content')" in capsys.readouterr().out
