"""One default for every command that reads a log: the data dir `saleday-data` that
`simulate` writes, unless `--data DIR` or `--store URL` names another."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from saleday.cli.main import app
from tests.projections.audit_logs import real_sale

runner = CliRunner()
READERS = [["audit"], ["export", "--out", "exported"], ["log", "streams"], ["log", "verify"],
           ["view", "stock"], ["trace", "u-00001"]]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A working directory holding `saleday-data` with a small sale day's log."""
    cwd = tmp_path_factory.mktemp("cwd")
    (cwd / "saleday-data").mkdir()
    real_sale(f"sqlite:///{cwd}/saleday-data/events.db", orders=40)
    return cwd


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
def test_every_reader_finds_the_default_data_dir(args, data_dir, monkeypatch):
    """Run where `simulate` ran, each command reads ./saleday-data with no option."""
    monkeypatch.chdir(data_dir)
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
def test_every_reader_takes_data_and_says_when_it_has_no_log(args, data_dir, tmp_path,
                                                             monkeypatch):
    """`--data DIR` names another data dir; one without a log is exit 2 and one line."""
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, [*args, "--data", str(data_dir / "saleday-data")]).exit_code == 0
    done = runner.invoke(app, args)
    assert done.exit_code == 2 and "saleday-data" in done.output
