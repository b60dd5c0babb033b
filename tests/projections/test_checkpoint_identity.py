"""A checkpoint is bound to the log it was folded from: read against another log (longer,
as long, or shorter) it is refused by the runner, rebuilt by `saleday view`, and
`--rebuild` always works."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from saleday.cli.main import app
from saleday.cli.views import write_reservation_log
from saleday.events import open_store
from saleday.projections.checkpoint import open_checkpoints
from saleday.projections.runner import ForeignCheckpoint, Projection
from saleday.projections.views import StockView

runner = CliRunner()


def log_at(path, *, reservations: int, seed: int) -> str:
    url = f"sqlite:///{path}"
    store = open_store(url)
    write_reservation_log(store, reservations=reservations, skus=20, shards=2, seed=seed)
    store.close()
    return url


def folded(url: str) -> str:
    """The stock view of the log at `url`, folded from zero under a checkpoint of its own."""
    store = open_store(url)
    cps = open_checkpoints(f"sqlite:///{url[len('sqlite:///'):]}.fresh.db")
    try:
        return _fold(store, cps)
    finally:
        cps.close()
        store.close()


def _fold(store, cps) -> str:
    proj = Projection(StockView(), store, cps)
    proj.rebuild()
    return proj.view.digest()


@pytest.mark.parametrize("other_reservations", [1_500, 1_000, 400],
                         ids=["longer", "as-long", "shorter"])
def test_a_checkpoint_read_against_another_log_is_refused(tmp_path, other_reservations):
    """Positions folded from one log are not taken as positions in another, whatever its
    length; `fresh=True` folds the other log from zero and gives its own view."""
    a = log_at(tmp_path / "a.db", reservations=1_000, seed=1)
    b = log_at(tmp_path / "b.db", reservations=other_reservations, seed=2)
    cps = open_checkpoints(f"sqlite:///{tmp_path}/projections.db")
    store_a, store_b = open_store(a), open_store(b)
    try:
        Projection(StockView(), store_a, cps).catch_up()
        with pytest.raises(ForeignCheckpoint, match="another log"):
            Projection(StockView(), store_b, cps)
        proj = Projection(StockView(), store_b, cps, fresh=True)
        proj.catch_up()
        assert proj.view.digest() == folded(b)
        # ... and the checkpoint is now the other log's: it restores without complaint.
        assert Projection(StockView(), store_b, cps).view.digest() == folded(b)
    finally:
        store_a.close()
        store_b.close()
        cps.close()


def test_a_checkpoint_restores_on_its_own_log_and_follows_it(tmp_path):
    """The identity check passes on the log the checkpoint came from, from positions in the
    middle of its streams as well as at their heads."""
    url = f"sqlite:///{tmp_path}/a.db"
    store = open_store(url)
    cps = open_checkpoints(f"sqlite:///{tmp_path}/projections.db")
    try:
        write_reservation_log(store, reservations=1_000, skus=20, shards=2, seed=1)
        partly = Projection(StockView(), store, cps, batch_size=300)
        partly.run_once()
        partly.run_once()
        proj = Projection(StockView(), store, cps, batch_size=300)
        assert proj.positions == partly.positions
        assert proj.catch_up() > 0
        assert Projection(StockView(), store, cps).catch_up() == 0
        assert proj.view.digest() == folded(url)
    finally:
        store.close()
        cps.close()


def view(*args: str):
    return runner.invoke(app, ["view", "stock", "--json", *args])


@pytest.mark.parametrize("other_reservations", [1_500, 400], ids=["longer", "shorter"])
def test_view_rebuilds_a_checkpoint_made_from_another_log(tmp_path, other_reservations):
    """`saleday view` over a checkpoint store that holds another log's view shows this
    log's view (never a mix of both), and `--rebuild` works even on a shorter log."""
    a = log_at(tmp_path / "a.db", reservations=1_000, seed=1)
    b = log_at(tmp_path / "b.db", reservations=other_reservations, seed=2)
    cps = f"sqlite:///{tmp_path}/projections.db"
    assert view("--store", a, "--checkpoints", cps).exit_code == 0
    shown = view("--store", b, "--checkpoints", cps)
    assert shown.exit_code == 0, shown.output
    assert "another log" in shown.stderr
    own = view("--store", b, "--checkpoints", f"sqlite:///{tmp_path}/own.db")
    assert json.loads(shown.stdout) == json.loads(own.stdout)
    assert all(row["available"] >= 0 for row in json.loads(shown.stdout)["skus"].values())
    assert view("--store", a, "--checkpoints", cps).exit_code == 0   # back to the first log
    rebuilt = view("--store", b, "--checkpoints", cps, "--rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert json.loads(rebuilt.stdout) == json.loads(own.stdout)


def test_a_checkpoint_from_before_logs_were_bound_is_adopted_once(tmp_path):
    """A checkpoint that kept no hashes (written by an older saleday) restores on a log
    that holds its positions, as before, and is bound to that log from then on."""
    import sqlite3

    a = log_at(tmp_path / "a.db", reservations=600, seed=1)
    b = log_at(tmp_path / "b.db", reservations=900, seed=2)
    cps_path = tmp_path / "projections.db"
    cps = open_checkpoints(f"sqlite:///{cps_path}")
    store_a, store_b = open_store(a), open_store(b)
    try:
        Projection(StockView(), store_a, cps).catch_up()
        with sqlite3.connect(cps_path) as conn:
            conn.execute("DELETE FROM rows WHERE view = '_log'")
        proj = Projection(StockView(), store_a, cps)
        assert proj.catch_up() == 0 and proj.view.digest() == folded(a)
        with pytest.raises(ForeignCheckpoint):
            Projection(StockView(), store_b, cps)
    finally:
        store_a.close()
        store_b.close()
        cps.close()
