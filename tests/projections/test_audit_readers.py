"""What the auditor's and the operator's readers promise: streams are listed from the data
(a stream whose head was deleted is audited and reported), the log is opened read-only
(nothing created or changed, a missing log is an error), an export's manifest is checked
whole, nothing at all is not a pass, and an unreadable line is a finding, not a crash."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from saleday.cli.main import app
from saleday.events import NewEvent, StoreUnavailable, open_store
from saleday.projections.audit import run_audit
from saleday.projections.export import export
from saleday.projections.jsonl_source import JsonlSource
from tests.helpers import delete_prefix, prefix_of, redis_client
from tests.projections.audit_logs import SESSION, SKU, T0, audit, session, stocked, write

runner = CliRunner()


def small_log(url: str) -> None:
    """A clean log of two streams: a stocked SKU and two sessions."""
    write(url, [*stocked("A1"), *session("u1", T0 + 10), *session("u2", T0 + 20, inviter="u1")])


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Path:
    """The file of a small clean log, every connection closed (so no -wal is left)."""
    db = tmp_path_factory.mktemp("log") / "events.db"
    small_log(f"sqlite:///{db}")
    assert sorted(p.name for p in db.parent.iterdir()) == ["events.db", "events.db.writer-lock"]
    return db


def copy_of(db: Path, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(db, where / "events.db")
    return where / "events.db"


def state_of(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under `directory` with its size, mtime (ns) and contents."""
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(directory.rglob("*")) if p.is_file()}


def sql(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


# --- 6. streams are enumerated from the data ------------------------------------------


def test_a_stream_whose_head_row_was_deleted_is_still_audited_and_reported(logged, tmp_path):
    """Deleting a stream's row from `streams` hides it from nothing: its events are audited
    and the missing head is a finding at that stream (exit 1)."""
    db = copy_of(logged, tmp_path / "log")
    sql(db, f"DELETE FROM streams WHERE stream = '{SESSION}'")
    report = audit(f"sqlite:///{db}")
    assert report.streams == {SKU: 2, SESSION: 3}
    assert [(f.rule, f.stream) for f in report.findings] == [("log.chain", SESSION)]
    assert "does not name it" in report.findings[0].message
    done = runner.invoke(app, ["audit", "--store", f"sqlite:///{db}"])
    assert done.exit_code == 1 and SESSION in done.output, done.output


def test_a_dropped_head_table_is_not_recreated_and_every_stream_is_reported(logged, tmp_path):
    """With the `streams` table dropped, the audit still reads every commit, reports each
    stream's missing head (exit 1) and leaves the table dropped."""
    db = copy_of(logged, tmp_path / "log")
    sql(db, "DROP TABLE streams")
    done = runner.invoke(app, ["audit", "--store", f"sqlite:///{db}", "--json"])
    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert report["events"] == 5
    assert sorted(f["stream"] for f in report["findings"]) == [SESSION, SKU]
    conn = sqlite3.connect(db)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert "streams" not in tables


def test_log_verify_lists_streams_from_their_commits(logged, tmp_path):
    """`log verify` checks a stream whose head row is gone, and fails on it (exit 1)."""
    db = copy_of(logged, tmp_path / "log")
    sql(db, f"DELETE FROM streams WHERE stream = '{SESSION}'")
    done = runner.invoke(app, ["log", "verify", "--store", f"sqlite:///{db}", "--json"])
    assert done.exit_code == 1, done.output
    rows = {r["stream"]: r for r in json.loads(done.stdout)}
    assert rows[SKU]["ok"] and not rows[SESSION]["ok"]
    assert "hidden" in rows[SESSION]["error"]


def test_an_export_holds_a_stream_whose_head_row_was_deleted(logged, tmp_path):
    """The export lists streams from the commits too, so a lost head loses no events."""
    db = copy_of(logged, tmp_path / "log")
    sql(db, f"DELETE FROM streams WHERE stream = '{SESSION}'")
    result = export(f"sqlite:///{db}", fmt="jsonl", out=tmp_path / "out")
    assert result.streams == {SKU: 2, SESSION: 3} and result.events == 5


@pytest.mark.redis
def test_a_redis_stream_dropped_from_the_index_and_its_head_is_still_audited(redis_store_url):
    """On Redis, removing a stream from the index set and deleting its head hash hides it
    from nothing: its `:log` key is found and the missing head is a finding."""
    small_log(redis_store_url)
    client = redis_client(redis_store_url)
    prefix = prefix_of(redis_store_url)
    client.srem(f"{prefix}:streams", SESSION)
    client.delete(f"{prefix}:{{{SESSION}}}:meta")
    client.close()
    report = audit(redis_store_url)
    assert report.streams == {SKU: 2, SESSION: 3}
    assert [(f.rule, f.stream) for f in report.findings] == [("log.chain", SESSION)]
    assert "no head record" in report.findings[0].message


# --- 7. readers open the log read-only ------------------------------------------------

READERS = [
    ["audit", "--store", "{url}"],
    ["audit", "--data", "{dir}"],
    ["log", "verify", "--store", "{url}"],
    ["log", "streams", "--store", "{url}"],
    ["export", "--store", "{url}", "--out", "{elsewhere}/export"],
    ["view", "stock", "--store", "{url}", "--checkpoints", "sqlite:///{elsewhere}/cp.db"],
]


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
def test_readers_leave_a_read_only_log_exactly_as_it_was(args, logged, tmp_path):
    """Each reader runs on a log in a read-only directory and creates, changes or removes
    no file there (no lock file, no -wal or -shm, no table); directory listing, sizes,
    mtimes and bytes are compared, since chmod does not stop root."""
    log_dir = tmp_path / "ro"
    db = copy_of(logged, log_dir)
    (tmp_path / "elsewhere").mkdir()
    os.chmod(db, 0o444)
    os.chmod(log_dir, 0o555)
    before = state_of(log_dir)
    try:
        done = runner.invoke(app, [a.format(url=f"sqlite:///{db}", dir=log_dir,
                                            elsewhere=tmp_path / "elsewhere") for a in args])
        after = state_of(log_dir)
    finally:
        os.chmod(log_dir, 0o755)
    assert done.exit_code == 0, done.output
    assert after == before


@pytest.mark.parametrize("args", [a for a in READERS if "--store" in a], ids=lambda a: " ".join(a[:2]))
def test_readers_refuse_a_log_that_is_not_there_and_create_nothing(args, tmp_path):
    """Pointed at a path with no log, each reader exits 2 with one readable line and
    creates neither the file nor its directory."""
    (tmp_path / "elsewhere").mkdir()
    url = f"sqlite:///{tmp_path}/nodir/x.db"
    done = runner.invoke(app, [a.format(url=url, elsewhere=tmp_path / "elsewhere") for a in args])
    assert done.exit_code == 2, done.output
    assert "error:" in done.output and "Traceback" not in done.output
    assert not (tmp_path / "nodir").exists()


def test_a_file_that_is_not_a_log_is_refused_without_adding_tables(tmp_path):
    """An SQLite file without the log's tables is not a log: exit 2, and no table appears."""
    db = tmp_path / "other.db"
    sql(db, "CREATE TABLE notes (x)")
    before = state_of(tmp_path)
    done = runner.invoke(app, ["audit", "--store", f"sqlite:///{db}"])
    assert done.exit_code == 2 and "not a saleday event log" in done.output, done.output
    assert state_of(tmp_path) == before


def test_a_log_with_a_live_writer_is_read_through_its_wal(tmp_path):
    """While a writer holds the log open (its -wal present), a reader sees every commit,
    including those not yet checkpointed into the main file."""
    url = f"sqlite:///{tmp_path}/events.db"
    writer = open_store(url)
    try:
        for i, e in enumerate([*stocked("A1"), *session("u1", T0 + 10)]):
            writer.append(e[0], [NewEvent(type=e[1], data=e[2], command_id=f"c{i}",
                                          recorded_at=T0 + i)], None)
        assert (tmp_path / "events.db-wal").exists()
        assert audit(url).streams == {SKU: 2, SESSION: 1}
    finally:
        writer.close()


def test_a_read_only_store_refuses_to_write(logged, tmp_path):
    """A store opened read-only raises StoreUnavailable on append, epoch and snapshot."""
    store = open_store(f"sqlite:///{copy_of(logged, tmp_path)}", read_only=True)
    try:
        with pytest.raises(StoreUnavailable, match="read-only"):
            store.append(SKU, [NewEvent(type="t.e", data={}, command_id="x", recorded_at=1)], None)
        with pytest.raises(StoreUnavailable, match="read-only"):
            store.acquire_epoch(SKU)
    finally:
        store.close()


@pytest.mark.redis
def test_readers_of_an_empty_redis_prefix_fail_and_create_no_key(redis_url):
    """Readers of a prefix that holds nothing exit 2 and leave the prefix without keys."""
    url = f"{redis_url}?prefix=ro-{uuid.uuid4().hex}"
    try:
        for args in (["audit", "--store", url], ["log", "verify", "--store", url],
                     ["log", "streams", "--store", url]):
            done = runner.invoke(app, args)
            assert done.exit_code == 2 and "no event log under prefix" in done.output, done.output
        client = redis_client(url)
        assert list(client.scan_iter(match=f"{prefix_of(url)}*")) == []
        client.close()
    finally:
        delete_prefix(url)


@pytest.mark.redis
def test_readers_of_a_redis_log_change_no_key(redis_store_url, tmp_path):
    """audit, log verify, log streams, export and view (checkpoints elsewhere) on a Redis
    log leave every key under its prefix exactly as it was, and add none."""
    small_log(redis_store_url)
    client = redis_client(redis_store_url)

    def keys() -> dict[bytes, bytes]:
        return {k: client.dump(k) for k in sorted(client.scan_iter(
            match=f"{prefix_of(redis_store_url)}:*"))}

    try:
        before = keys()
        for args in (["audit", "--store", redis_store_url],
                     ["log", "verify", "--store", redis_store_url],
                     ["log", "streams", "--store", redis_store_url],
                     ["export", "--store", redis_store_url, "--out", str(tmp_path / "x")],
                     ["view", "stock", "--store", redis_store_url, "--checkpoints",
                      f"sqlite:///{tmp_path}/cp.db"]):
            done = runner.invoke(app, args)
            assert done.exit_code == 0, (args, done.output)
        assert keys() == before
    finally:
        client.close()


# --- 8. the manifest is checked whole; nothing is not a pass ---------------------------


@pytest.fixture
def exported(logged, tmp_path) -> Path:
    return export(f"sqlite:///{logged}", fmt="jsonl", out=tmp_path / "export").path


def edit_manifest(path: Path, **changes: object) -> None:
    manifest = json.loads((path.parent / "manifest.json").read_text())
    manifest.update(changes)
    (path.parent / "manifest.json").write_text(json.dumps(manifest))


def test_an_export_with_its_manifest_passes(exported):
    """A fresh export and its manifest agree: exit 0."""
    done = runner.invoke(app, ["audit", "--log", str(exported)])
    assert done.exit_code == 0, done.output


def test_a_manifest_log_digest_that_differs_is_a_finding(exported):
    """The manifest's log digest is compared with the file's: another digest fails (exit 1)."""
    edit_manifest(exported, log_digest="0" * 64)
    done = runner.invoke(app, ["audit", "--log", str(exported), "--json"])
    assert done.exit_code == 1, done.output
    (finding,) = json.loads(done.stdout)["findings"]
    assert finding["rule"] == "log.chain" and "log digest" in finding["message"]


def test_a_manifest_event_count_that_differs_is_a_finding(exported):
    """The manifest's event count is compared with the file's lines: another count fails."""
    edit_manifest(exported, events=6)
    done = runner.invoke(app, ["audit", "--log", str(exported), "--json"])
    assert done.exit_code == 1, done.output
    (finding,) = json.loads(done.stdout)["findings"]
    assert "counts 6 events but the file holds 5" in finding["message"]


def test_a_manifest_without_its_count_or_digest_is_unreadable(exported):
    """A manifest missing `events` or `log_digest` is not an export's manifest: exit 2."""
    manifest = json.loads((exported.parent / "manifest.json").read_text())
    del manifest["log_digest"]
    (exported.parent / "manifest.json").write_text(json.dumps(manifest))
    done = runner.invoke(app, ["audit", "--log", str(exported)])
    assert done.exit_code == 2 and "unreadable manifest" in done.output, done.output


def test_a_memory_store_of_another_process_is_an_error():
    """`audit --store memory://x` names a log this process does not have: exit 2 saying the
    memory store only lives in its own process, not OK on nothing."""
    done = runner.invoke(app, ["audit", "--store", f"memory://nothing-{uuid.uuid4().hex}"])
    assert done.exit_code == 2, done.output
    assert "only lives in the process that wrote it" in done.output


@pytest.mark.parametrize("command", [["audit", "--store"], ["log", "verify", "--store"]])
def test_an_empty_log_is_not_a_pass(command, tmp_path):
    """A log with no events proves nothing: exit 2, "no events to ...", never OK."""
    open_store(f"sqlite:///{tmp_path}/events.db").close()
    done = runner.invoke(app, [*command, f"sqlite:///{tmp_path}/events.db"])
    assert done.exit_code == 2, done.output
    assert "no events to" in done.output and "OK" not in done.output


# --- 9. an unreadable line is a finding ----------------------------------------------


def test_a_line_nested_ten_thousand_deep_is_a_finding_at_that_line(exported):
    """A payload nested 10,000 deep cannot be read: a finding at its stream and version,
    exit 1, no RecursionError."""
    lines = exported.read_text().splitlines(keepends=True)
    o = json.loads(lines[1])
    deep = "[" * 10_000 + "]" * 10_000
    lines[1] = json.dumps(o).replace('"data": {', f'"data": {{"deep": {deep}, ', 1) + "\n"
    exported.write_text("".join(lines))
    report = run_audit(JsonlSource(exported))
    assert (report.findings[0].rule, report.findings[0].stream,
            report.findings[0].version) == ("log.chain", o["stream"], o["version"])
    assert "line 2" in report.findings[0].message
    done = runner.invoke(app, ["audit", "--log", str(exported)])
    assert done.exit_code == 1 and "RecursionError" not in done.output, done.output
