"""No command prints or writes the store's password, and `status` with a wrong password
says the store refused it (exit 2) instead of reporting health.

Every `saleday` command that takes a store URL runs against a test-owned redis-server
started with `--requirepass`, the password planted in the URL, with `--log-level debug`;
stdout, stderr and every file written are searched for it. Not run here: `bench reserve`
(it needs Ray) and `bench audit` / `bench projections` / `bench simulate` (they take no
store URL: their logs are temporary SQLite files or the in-process engine)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from saleday.cli.main import app
from saleday.cluster import logs
from tests.helpers import RedisServer, free_port
from tests.projections.audit_logs import T0, session, stocked, write

pytestmark = pytest.mark.redis

PLANTED = "PLANTED-SECRET-123"
WRONG = "WRONG-SECRET-456"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A redis-server of this module whose default user needs the planted password (set
    once it answers: RedisServer waits for an unauthenticated PING)."""
    import redis

    with RedisServer(tmp_path_factory.mktemp("redis-auth")) as s:
        admin = redis.Redis(port=s.port)
        admin.config_set("requirepass", PLANTED)
        admin.close()
        yield s


def url(server: RedisServer, prefix: str, password: str = PLANTED) -> str:
    return f"redis://default:{password}@127.0.0.1:{server.port}/0?prefix={prefix}"


def run(*args: str, env: dict[str, str] | None = None):
    """The command in this process, logging everything (debug), stderr kept apart."""
    try:
        return CliRunner().invoke(app, ["--log-level", "debug", *args], env=env)
    finally:
        logs.configure("warning")


def text_of(result) -> str:
    return result.stdout + result.stderr + (repr(result.exception) if result.exception else "")


def test_no_command_shows_the_store_password(server, tmp_path):
    """simulate, replay, audit, export, view, log streams/verify, status, serve and bench
    store, on a password-protected Redis (and with a wrong password): the password is in
    no output and in no file written."""
    d = tmp_path / "out"
    sim = url(server, f"sim-{uuid.uuid4().hex[:8]}")
    no_ray = f"127.0.0.1:{free_port()}"
    expected = {  # command -> exit status
        ("simulate", "--engine", "inprocess", "--users", "200", "--seed", "3", "--store", sim,
         "--data", str(d / "sim"), "--record", str(d / "visits.jsonl"), "--no-progress",
         "--no-charts", "--json"): 0,
        ("replay", str(d / "visits.jsonl"), "--store", url(server, "rep"), "--data", str(d / "rep"),
         "--no-progress", "--no-charts"): 0,
        ("audit", "--store", sim): 0,
        ("audit", "--store", sim, "--json"): 0,
        ("export", "--store", sim, "--out", str(d / "export")): 0,
        ("export", "--store", sim, "--out", str(d / "export2"), "--json"): 0,
        ("audit", "--log", str(d / "export" / "events.jsonl"), "--json"): 0,
        ("view", "stock", "--store", sim): 0,
        ("view", "referrals", "--store", sim, "--json", "--graphml", str(d / "refs.graphml")): 0,
        ("log", "streams", "--store", sim): 0,
        ("log", "verify", "--store", sim, "--json"): 0,
        ("status", "--store", sim, "--address", no_ray): 2,  # the store answers; no Ray there
        ("status", "--store", sim, "--address", no_ray, "--json"): 2,
        ("serve", "--store", sim, "--address", no_ray): 2,
        ("bench", "store", "--redis-url", url(server, "bench").split("?")[0], "--backend", "redis",
         "--events", "1000", "--batch", "100", "--repeat", "1", "--no-baseline", "--json"): 0,
        ("audit", "--store", url(server, "sim", WRONG)): 2,
        ("log", "verify", "--store", url(server, "sim", WRONG)): 2,
        ("export", "--store", url(server, "sim", WRONG), "--out", str(d / "export3")): 2,
        ("view", "stock", "--store", url(server, "sim", WRONG)): 2,
        ("status", "--store", url(server, "sim", WRONG), "--address", no_ray): 2,
        ("audit", "--store", f"redis://default:{PLANTED}@127.0.0.1:{free_port()}/0"
                             "?connect_timeout=0.2"): 2,
    }
    seen = []
    for args, code in expected.items():
        result = run(*args)
        assert result.exit_code == code, (args[:2], text_of(result)[-2000:])
        seen.append((args[:2], text_of(result)))
    by_env = run("status", "--store", f"redis://default@127.0.0.1:{server.port}/0?prefix=sim",
                 "--address", no_ray, env={"SALEDAY_REDIS_PASSWORD": PLANTED})
    seen.append((("status", "env"), text_of(by_env)))
    for args, text in seen:
        for secret in (PLANTED, WRONG):
            assert secret not in text, (args, text[-2000:])
    assert "default:***@127.0.0.1" in dict(seen)[("audit", "--store")]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 5, files
    for path in files:
        for secret in (PLANTED, WRONG):
            assert secret.encode() not in path.read_bytes(), path


def test_audit_in_its_own_process_shows_no_password(server, tmp_path):
    """`python -m saleday.cli.main audit` as a user runs it (a fresh process, everything it logs):
    the password appears in neither stream."""
    prefix = f"proc-{uuid.uuid4().hex[:8]}"
    write(url(server, prefix), [*stocked("A1"), *session("u1", T0 + 10)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALEDAY_")}
    env["PYTHONPATH"] = str(ROOT)
    for extra in ((), ("--json",)):
        done = subprocess.run([sys.executable, "-m", "saleday.cli.main", "--log-level", "debug", "audit",
                               "--store", url(server, prefix), *extra], capture_output=True,
                              text=True, timeout=120, env=env, cwd=ROOT, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        assert PLANTED not in done.stdout + done.stderr
        assert "default:***@" in done.stdout


def test_status_with_a_wrong_password_says_the_store_refused_it(server):
    """`status` with a wrong store password reports the store unavailable (authentication)
    and exits 2, before looking for Ray; it never reports health."""
    result = run("status", "--store", url(server, "sim", WRONG), "--address",
                 f"127.0.0.1:{free_port()}", "--json")
    assert result.exit_code == 2, text_of(result)
    assert "unavailable" in result.stderr and "AuthenticationError" in result.stderr
    assert "no Ray cluster" not in text_of(result) and WRONG not in text_of(result)


def test_status_on_a_prefix_with_no_log_is_an_error(server):
    """`status` pointed at a prefix that holds nothing says there is no log there (exit 2)."""
    result = run("status", "--store", url(server, f"none-{uuid.uuid4().hex[:8]}"), "--address",
                 f"127.0.0.1:{free_port()}")
    assert result.exit_code == 2 and "no event log under prefix" in result.stderr, text_of(result)
