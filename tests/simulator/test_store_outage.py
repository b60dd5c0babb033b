"""The in-process engine on a Redis the test owns, stopped mid-run: it retries with backoff
(a few warnings, not thousands), gives up after its bound with a clear error, rides out a
short outage, and stops at once on a log that came back empty — never spinning forever."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from saleday.cli.main import app
from saleday.simulator.generator import Visit, visits
from saleday.simulator.run import RunOptions, SimulationError, simulate
from saleday.simulator.scenario import preset
from tests.helpers import RedisServer

pytestmark = pytest.mark.redis
SC = preset("double11").with_overrides(users=60)


@pytest.fixture
def server(tmp_path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always") as s:
        yield s


def at_visit(n: int, action: Callable[[], None]) -> Iterator[Visit]:
    """The scenario's visits, with `action` run just before the `n`-th is handed out (a
    point in the run the seed fixes)."""
    for i, v in enumerate(visits(SC, 11)):
        if i == n:
            action()
        yield v


def run_bounded(opts: RunOptions, source: Iterator[Visit], *, limit_s: float = 60.0):
    """Run `simulate` in a thread; return (report or exception, seconds, captured logs).
    A run still going after `limit_s` fails the test (the thread spins on, daemonic)."""
    out: dict = {}

    def go() -> None:
        with capture_logs() as logs:
            out["logs"] = logs
            try:
                out["result"] = simulate(opts, source=source)
            except Exception as exc:  # noqa: BLE001 - the test looks at it
                out["result"] = exc
    started = time.monotonic()
    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"the run was still going after {limit_s} s"
    return out["result"], time.monotonic() - started, out["logs"]


def options(server: RedisServer, prefix: str, **kw) -> RunOptions:
    return RunOptions(scenario=SC, seed=11, engine="inprocess", store_url=f"{server.url}?prefix={prefix}",
                      progress=False, charts=False, **kw)


def test_a_store_that_stays_down_ends_the_run_after_the_bound(server, tmp_path):
    """Redis stopped mid-run: the engine backs off (a handful of warnings, no busy loop) and
    gives up after `store_give_up_s` with an error naming the store."""
    opts = options(server, "down", data_dir=tmp_path / "d", store_give_up_s=1.5)
    result, seconds, logs = run_bounded(opts, at_visit(20, server.stop))
    assert isinstance(result, SimulationError), result
    assert "unavailable for" in str(result) and f"127.0.0.1:{server.port}" in str(result)
    assert seconds < 30
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert 0 < len(warnings) < 60, len(warnings)


def test_a_short_outage_is_ridden_out_and_the_run_passes_its_audit(server, tmp_path):
    """Redis down for a moment and back with its data: the run retries, finishes, and its
    log passes the audit."""
    def blip() -> None:
        server.stop()
        threading.Timer(0.7, server.start).start()

    opts = options(server, "blip", data_dir=tmp_path / "d", store_give_up_s=20)
    result, _, logs = run_bounded(opts, at_visit(20, blip))
    assert not isinstance(result, Exception), result
    assert result.audit_ok, [f.message for f in result.invariants.findings[:5]]
    assert any(e["event"] == "store_unavailable_retrying" for e in logs)


def test_a_log_that_comes_back_empty_ends_the_run_at_once(tmp_path):
    """Redis restarted without its data: the engine sees the log now ends before what it
    committed (as a Ray shard does) and stops with a clear error instead of livelocking."""
    with RedisServer(tmp_path / "redis") as server:   # no persistence: a restart empties it
        opts = options(server, "empty", data_dir=tmp_path / "d", store_give_up_s=20)
        result, seconds, _ = run_bounded(opts, at_visit(20, server.restart))
    assert isinstance(result, SimulationError), result
    assert "rewound" in str(result) and "cannot go on" in str(result)
    assert seconds < 15


def test_cli_exits_2_when_the_store_stays_down(tmp_path, monkeypatch):
    """`saleday simulate --engine inprocess` on a Redis that goes away exits 2 with one
    readable line, after its `--store-give-up` bound."""
    with RedisServer(tmp_path / "redis") as server:
        import saleday.simulator.run as run

        real = run.visits

        def stopping(sc, seed):
            for i, v in enumerate(real(sc, seed)):
                if i == 20:
                    server.stop()
                yield v

        monkeypatch.setattr(run, "visits", stopping)
        result = CliRunner().invoke(app, [
            "simulate", "--engine", "inprocess", "--users", "60", "--no-progress",
            "--no-charts", "--json", "--data", str(tmp_path / "d"),
            "--store", f"{server.url}?prefix=cli", "--store-give-up", "1"])
    assert result.exit_code == 2, result.output
    assert "error: the store" in result.output and "gave up" in result.output


def test_a_host_tells_a_log_that_ends_before_what_it_committed():
    """`ShardHost.log_rewound` (the check Ray shards and the in-process engine share) gives
    the log's head when it lies behind the host, None while it does not."""
    from saleday.actors.host import Request, ShardHost
    from saleday.actors.sku import AddStock, sku_decider
    from saleday.events import open_store

    store = open_store("memory://rewound-a")
    host = ShardHost(decider=sku_decider, store=store, stream="sku-000", clock=lambda: 1)
    host.handle([Request("c1", AddStock(sku="a", qty=3, now=1))])
    assert host.version == 1 and host.log_rewound() is None
    host.store = open_store("memory://rewound-b")   # the same stream, now empty
    assert host.log_rewound() == 0
