"""The simulator over HTTP: the visits played as requests to the API (uvicorn on a loopback
port, in a thread, over in-process shards on a SQLite log), then the log audited."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from saleday.cluster.local import LocalShards
from saleday.events import open_store
from saleday.http import HttpSettings, create_app
from saleday.http.auth import issue_token
from saleday.simulator.http_client import HttpTarget, Refused, problem_code, sign
from saleday.simulator.run import RunOptions, simulate
from saleday.simulator.scenario import preset
from tests.http.conftest import KINDS, SECRETS, now_ms

TINY = preset("double11").with_overrides(users=40, compression=3_600)


@contextmanager
def live_api(store_url: str, **settings_kw) -> Iterator[HttpTarget]:
    """The app under uvicorn on a free loopback port, over `LocalShards(autoflush=True)`
    that a background task ticks and reacts (as `serve --http` runs the reactor)."""
    store = open_store(store_url)
    shards = LocalShards(store, KINDS, autoflush=True, clock=now_ms)
    settings = HttpSettings(**SECRETS, **settings_kw)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(shards, settings=settings),
                                           log_level="warning", lifespan="off"))

    async def main() -> None:
        async def housekeeping() -> None:
            while True:
                shards.tick()
                shards.react()
                await asyncio.sleep(0.05)

        task = asyncio.create_task(housekeeping())
        try:
            await server.serve(sockets=[sock])
        finally:
            task.cancel()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    try:
        yield HttpTarget(base_url=f"http://127.0.0.1:{port}",
                         token_for=lambda user: issue_token(user, settings),
                         operator_token=SECRETS["operator_token"],
                         webhook_secret=SECRETS["webhook_secret"], pool=32)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        store.close()


def test_a_tiny_sale_day_over_http_passes_the_audit(tmp_path: Path):
    """Played through the API, a small sale day places and pays orders, counts every
    request at the client, and leaves a log the audit passes."""
    url = f"sqlite:///{tmp_path}/events.db"
    with live_api(url) as target:
        report = simulate(RunOptions(scenario=TINY, engine="http", http_target=target,
                                     store_url=url, data_dir=tmp_path / "data",
                                     progress=False, charts=False))
    assert report.engine == "http" and report.target == target.base_url
    assert report.audit_skipped is None
    assert report.audit_ok, [f.message for f in report.invariants.findings[:5]]
    assert report.unavailable == 0
    assert report.orders["placed"] > 0 and report.orders["paid"] > 0
    assert report.latency_ms is not None and report.latency_ms.p50 > 0
    routes = report.http["requests_by_route"]
    assert routes["POST /v1/sessions"] >= TINY.users * 0.5
    assert routes["POST /v1/payments/callback"] > 0
    assert sum(routes.values()) == report.commands
    assert report.events > 0 and set(report.views) == {"orders", "referrals", "metrics", "stock",
                                                           "members"}


def test_without_the_targets_store_the_audit_is_skipped_and_said_so(tmp_path: Path):
    """Against a target whose log is not named, the run reports what the client saw and
    says the audit did not run; the target's log is not touched."""
    url = f"sqlite:///{tmp_path}/events.db"
    with live_api(url) as target:
        report = simulate(RunOptions(scenario=TINY.with_overrides(users=10), engine="http",
                                     http_target=target, data_dir=tmp_path / "data",
                                     progress=False, charts=False))
    assert report.audit_skipped and "--store" in report.audit_skipped
    assert not report.audit_ok and report.store == ""
    assert report.orders["started"] >= report.orders["placed"]
    assert not (tmp_path / "previous-runs").exists()


def test_answers_map_to_the_reports_categories():
    """A problem's `type` names the refusal; a body that is not a problem names the status;
    the callback signature is the documented one (docs/API.md's worked example)."""
    assert problem_code({"type": "tag:saleday,2026:problem:sold_out"}, 409) == "sold_out"
    assert problem_code("oops", 418) == "http_418"
    assert Refused(problem="team_not_found", status=404).code == "team_not_found"
    body = (b'{"id":"evt-1","type":"payment.succeeded","order_id":"o-1","payment_id":"p-1",'
            b'"amount_cents":1500}')
    assert sign("whsec_test_secret_of_at_least_32_chars", 1700000000, body) == (
        "t=1700000000,v1=f6d0e2c1b72731154dffb8aabaece9f41f3c657d9280077e57bdda3b47f6927b")


def test_busy_and_rate_limited_answers_are_retried_after_retry_after(tmp_path: Path):
    """A user over the per-user rate limit gets 429s, which the client waits out and
    retries: nothing is lost, and the retries are counted."""
    from saleday.simulator.http_client import ApiClient, Ok

    url = f"sqlite:///{tmp_path}/events.db"

    async def burst(target: HttpTarget) -> tuple[list, dict]:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            client = ApiClient(target, session)
            replies = await asyncio.gather(*(
                client.call("POST", "/v1/sessions", headers=client.user("u-1", f"k-{i}"),
                            body={}) for i in range(8)))
            return replies, dict(client.retries)

    with live_api(url, rate_per_s=5, rate_burst=2) as target:
        started = time.monotonic()
        replies, retries = asyncio.run(burst(target))
    assert all(isinstance(r, Ok) for r in replies), replies
    assert retries.get("rate_limited", 0) > 0 and time.monotonic() - started >= 1


def test_simulate_target_on_the_command_line_audits_the_named_store(tmp_path: Path, monkeypatch):
    """`saleday simulate --target URL --store URL` with the operator's secrets in the
    environment drives the API and audits the named log: exit 0, one JSON object."""
    import json

    from typer.testing import CliRunner

    from saleday.cli.main import app

    for name, value in SECRETS.items():
        monkeypatch.setenv(f"SALEDAY_HTTP_{name.upper()}", value)
    url = f"sqlite:///{tmp_path}/events.db"
    with live_api(url) as target:
        result = CliRunner().invoke(app, [
            "simulate", "--target", target.base_url, "--store", url, "--users", "15",
            "--compression", "3600", "--json", "--no-charts", "--no-progress",
            "--data", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["engine"] == "http" and report["audit_ok"] and report["target"] == target.base_url


def test_simulate_target_without_secrets_or_with_a_bad_url_exits_2(tmp_path: Path, monkeypatch):
    """No secrets for the target, a URL that is not http(s), or one carrying credentials
    (never echoed), is one `error:` line and exit 2, before anything is sent."""
    from typer.testing import CliRunner

    from saleday.cli.main import app

    for name in SECRETS:
        monkeypatch.delenv(f"SALEDAY_HTTP_{name.upper()}", raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "--target", "http://127.0.0.1:9", "--data",
                                 str(tmp_path)])
    assert result.exit_code == 2 and "SALEDAY_HTTP_JWT_SECRET" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["simulate", "--target", "ftp://x", "--data", str(tmp_path)])
    assert result.exit_code == 2 and "expected http://HOST:PORT" in result.output
    result = runner.invoke(app, ["simulate", "--target", "http://ops:s3cret-pw@127.0.0.1:9",
                                 "--data", str(tmp_path)])
    assert result.exit_code == 2 and "credentials in the URL" in result.output
    assert "s3cret-pw" not in result.output
