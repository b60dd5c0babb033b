"""Bad input at the command line gets a clear answer: `error: ...` and exit status 2 (bad
input, usage or environment), never a traceback, a hang, or exit 1 (which means the audit
found violations). One test per kind of bad input; every run is refused before traffic."""

from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from saleday.cli.main import app
from saleday.simulator.generator import visits
from saleday.simulator.recording import Recorder
from saleday.simulator.scenario import preset

TAOBAO = "tests/simulator/data/taobao_sample.csv"


def refused(args: list[str], *needles: str) -> str:
    """Run `saleday ARGS`; assert exit 2 with a readable `error:` line; return the output."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    line = next((x for x in result.output.splitlines() if x.startswith("error: ")), None)
    assert line is not None, result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)
    return result.output


def simulate(tmp_path, *extra: str) -> list[str]:
    return ["simulate", "--engine", "inprocess", "--users", "20", "--data", str(tmp_path / "d"),
            "--no-progress", "--no-charts", *extra]


def scenario_file(tmp_path, text: str) -> str:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return str(path)


def recording(tmp_path, name: str = "run.jsonl") -> str:
    """A real recording of a tiny sale (written by the recorder, no run needed)."""
    sc = preset("double11").with_overrides(users=30)
    path = tmp_path / name
    for _ in Recorder(path, scenario=sc, seed=11, faults=False).tee(visits(sc, 11)):
        pass
    return str(path)


def test_stock_beyond_its_maximum_is_refused(tmp_path):
    """Stock per SKU of 10**20 (past int64) is refused with the field and its maximum."""
    sc = scenario_file(tmp_path, "skus: {stock_min: 100000000000000000000, "
                                 "stock_max: 100000000000000000000}\n")
    refused(simulate(tmp_path, "--scenario", sc), "skus.stock_min", "less than or equal to")


def test_a_price_past_its_maximum_is_refused_not_wrapped(tmp_path):
    """price_max_cents: 10**20 used to wrap silently to another price and PASS."""
    sc = scenario_file(tmp_path, "skus: {price_max_cents: 100000000000000000000}\n")
    refused(simulate(tmp_path, "--scenario", sc), "skus.price_max_cents")


def test_users_past_what_a_run_holds_are_refused(tmp_path):
    """--users 10**12 is refused before anything is allocated."""
    args = simulate(tmp_path)
    args[args.index("--users") + 1] = str(10**12)
    refused(args, "users")


def test_more_sku_shards_than_partitions_are_refused(tmp_path):
    """sku_shards: 100000 is refused by the scenario, not by a traceback from routing."""
    sc = scenario_file(tmp_path, "sku_shards: 100000\n")
    refused(simulate(tmp_path, "--scenario", sc), "sku_shards")


@pytest.mark.parametrize("seed", ["-1", str(2**63)])
def test_a_seed_outside_0_to_2_63_is_refused(tmp_path, seed):
    """A negative seed (numpy refuses it) or one past int64 is refused in words."""
    refused(simulate(tmp_path, "--seed", seed), "seed")


def test_bench_simulate_refuses_a_negative_seed():
    """The benchmark used to report the generator as "failed: ValueError" and exit 0."""
    refused(["bench", "simulate", "--seed", "-1", "--system", "generator", "--users", "10"],
            "seed")


@pytest.mark.parametrize("compression", ["inf", "nan", "1e30", "0"])
def test_compression_must_be_finite_and_bounded(tmp_path, compression):
    """--compression inf or 1e30 used to spin the in-process clock for ever."""
    refused(simulate(tmp_path, "--compression", compression), "compression")


def test_a_sqlite_store_that_is_a_directory_is_refused(tmp_path):
    """sqlite:/// naming a directory is an invalid store URL (and nothing is deleted)."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "keep").write_text("x")
    refused(simulate(tmp_path, "--store", f"sqlite:///{tmp_path / 'dir'}"), "names a directory")
    assert (tmp_path / "dir" / "keep").exists()


@pytest.mark.parametrize("where", ["file/sub/events.db", "/sys/saleday-test/events.db"])
def test_a_sqlite_store_in_an_unwritable_place_is_refused(tmp_path, where):
    """A path under a file, or on a read-only file system (/sys, even for root), exits 2."""
    (tmp_path / "file").write_text("")
    path = where if where.startswith("/") else f"{tmp_path}/{where}"
    refused(simulate(tmp_path, "--store", f"sqlite:///{path}"))
    refused(["log", "streams", "--store", f"sqlite:///{path}"])


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/events.db?foo=1",
                                 "redis://127.0.0.1:6379/0?prefix=t&foo=1",
                                 "memory://x?foo=1"])
def test_an_unknown_store_option_is_named_with_the_known_ones(tmp_path, url):
    """?foo=1 is refused naming the option and listing what the backend takes."""
    url = url.format(tmp=tmp_path)
    out = refused(["log", "streams", "--store", url], "'foo'")
    if not url.startswith("memory"):
        assert "prefix" in out or "synchronous" in out
    refused(simulate(tmp_path, "--store", url), "'foo'")


def test_a_recording_with_a_corrupt_line_names_the_line(tmp_path):
    """A line that is not JSON stops the replay with the file and line number."""
    path = recording(tmp_path)
    lines = open(path).read().splitlines()
    lines[4] = '{"seq": 3, oops'
    open(path, "w").write("\n".join(lines) + "\n")
    refused(["replay", path, "--data", str(tmp_path / "d"), "--no-progress", "--no-charts"],
            f"{path}:5", "not JSON")


@pytest.mark.parametrize("bad", [[1, 2], {"seq": 1}, "t_s=1e300", "views=-1", "order.payment=x"])
def test_a_recording_line_that_is_not_a_visit_names_the_line(tmp_path, bad):
    """JSON that is not a visit (wrong shape, a missing field, a time outside the sale, a
    bad value) is refused naming the line, not fed to the engine."""
    path = recording(tmp_path)
    lines = open(path).read().splitlines()
    n = next(i for i, line in enumerate(lines) if i and json.loads(line)["order"])
    if isinstance(bad, str):
        visit = json.loads(lines[n])
        field, value = bad.split("=")
        target = visit["order"] if field.startswith("order.") else visit
        target[field.removeprefix("order.")] = value if value == "x" else float(value)
        bad = visit
    lines[n] = json.dumps(bad)
    open(path, "w").write("\n".join(lines) + "\n")
    refused(["replay", path, "--data", str(tmp_path / "d"), "--no-progress", "--no-charts"],
            f"{path}:{n + 1}", "not a recorded visit")


def test_a_truncated_gzip_recording_names_where_it_stops(tmp_path):
    """A .gz cut short used to end in click's bare "Aborted." with exit 1."""
    path = recording(tmp_path, "run.jsonl.gz")
    data = open(path, "rb").read()
    assert len(gzip.decompress(data).splitlines()) > 5
    open(path, "wb").write(data[: len(data) // 2])
    refused(["replay", path, "--data", str(tmp_path / "d"), "--no-progress", "--no-charts"],
            "cut short", f"{path}:")


def test_a_clickstream_with_no_usable_row_is_refused_with_counts(tmp_path):
    """Used to exit 0 and PASS a sale of "20,000 users" with no traffic; now it says why."""
    path = tmp_path / "bad.csv"
    path.write_text("1,2,3,pv,abc\n1,2,3,click,1511544070\n\n1,2,3,pv,99999999999\n")
    out = refused(["replay", "--clickstream", str(path), "--layout", "taobao",
                   "--data", str(tmp_path / "d"), "--no-progress", "--no-charts"],
                  "no usable rows", "all 4 rows are malformed")
    for reason in ("bad_int: 1", "unknown_behavior: 1", "blank_line: 1",
                   "timestamp_out_of_range: 1"):
        assert reason in out


def test_a_clickstream_replay_refuses_a_negative_seed(tmp_path):
    """The seed of a clickstream replay is checked like any other."""
    refused(["replay", "--clickstream", TAOBAO, "--seed", "-1", "--data", str(tmp_path / "d"),
             "--no-progress", "--no-charts"], "seed")
