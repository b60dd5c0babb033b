"""The projection runner: atomic checkpoints on SQLite and Redis, restarts that neither skip
nor double-apply, rebuilds equal to live views, and split projections equal to single ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from saleday.cli.views import write_reservation_log
from saleday.events import open_store
from saleday.projections.checkpoint import (
    CheckpointConflict,
    InvalidCheckpointUrl,
    open_checkpoints,
)
from saleday.projections.runner import (
    Partition,
    Projection,
    ProjectionError,
    default_worker,
)
from saleday.projections.view import merged
from saleday.projections.views import MetricsView, StockView, all_views
from tests.helpers import wait_until
from tests.projections.conftest import Shop, sale_day

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# -- the checkpoint store contract ----------------------------------------------------------


class CheckpointContract:
    """What every checkpoint backend must do; subclasses bind `url`."""

    @pytest.fixture
    def cps(self, url):
        s = open_checkpoints(url)
        yield s
        s.close()

    def test_a_commit_stores_rows_and_positions_together(self, cps):
        """Rows and positions written by one commit are read back as written."""
        cps.commit("v", {}, {"sku-000": 3}, [("stock", "sku", "a", [1, 2, 3, 0]),
                                             ("stock", "sku", "b", {"x": [1, "é"]})])
        positions, rows = cps.load("v")
        assert positions == {"sku-000": 3}
        assert sorted(rows) == [("stock", "sku", "a", [1, 2, 3, 0]), ("stock", "sku", "b", {"x": [1, "é"]})]

    def test_later_commits_update_and_delete_rows(self, cps):
        """A row with value None is deleted; others are replaced; positions advance."""
        cps.commit("v", {}, {"s": 1}, [("v", "t", "a", 1), ("v", "t", "b", 2)])
        cps.commit("v", {"s": 1}, {"s": 5}, [("v", "t", "a", None), ("v", "t", "b", 3)])
        assert cps.load("v") == ({"s": 5}, [("v", "t", "b", 3)])

    def test_a_commit_from_stale_positions_is_refused_and_writes_nothing(self, cps):
        """A second runner that read the old positions cannot apply its batch again."""
        cps.commit("v", {}, {"s": 4}, [("v", "t", "a", 1)])
        with pytest.raises(CheckpointConflict, match="is at 4, not 0"):
            cps.commit("v", {}, {"s": 4}, [("v", "t", "a", 2)])
        assert cps.load("v") == ({"s": 4}, [("v", "t", "a", 1)])

    def test_checkpoints_are_separate_and_reset_forgets_one(self, cps):
        """Two checkpoints do not see each other's rows; reset clears only its own."""
        cps.commit("a", {}, {"s": 1}, [("v", "t", "k", "a")])
        cps.commit("b@0of2", {}, {"s": 2}, [("v", "t", "k", "b")])
        assert cps.checkpoints() == ["a", "b@0of2"]
        cps.reset("a")
        assert cps.load("a") == ({}, [])
        assert cps.load("b@0of2") == ({"s": 2}, [("v", "t", "k", "b")])


class TestSqliteCheckpoints(CheckpointContract):
    @pytest.fixture
    def url(self, tmp_path):
        return f"sqlite:///{tmp_path}/projections.db"


@pytest.mark.redis
class TestRedisCheckpoints(CheckpointContract):
    @pytest.fixture
    def url(self, redis_store_url):
        return redis_store_url


def test_a_bad_checkpoint_url_is_a_readable_error():
    """An unknown scheme or option names what is wrong."""
    with pytest.raises(InvalidCheckpointUrl, match="unknown checkpoint store URL"):
        open_checkpoints("mysql://x")
    with pytest.raises(InvalidCheckpointUrl, match="options"):
        open_checkpoints("sqlite:////tmp/x.db?fsync=1")


# -- live, restarted, rebuilt ----------------------------------------------------------------


@pytest.fixture
def cps(tmp_path):
    s = open_checkpoints(f"sqlite:///{tmp_path}/projections.db")
    yield s
    s.close()


def digests(views):
    return {v.name: v.digest() for v in views}


def rebuilt(store, cps):
    proj = Projection(all_views(), store, cps, name="rebuilt")
    proj.rebuild()
    return digests(proj.views)


def test_a_live_projection_followed_over_a_long_run_equals_a_rebuild(tmp_path, cps):
    """Folding as the sale happens, in small batches, restarting now and then, gives the
    views a rebuild from zero gives."""
    shop = Shop(f"sqlite:///{tmp_path}/events.db")
    proj = Projection(all_views(), shop.store, cps, batch_size=37)
    for round_ in range(8):
        if round_ == 0:
            sale_day(shop, users=12, orders=15)
        else:
            _more_traffic(shop, round_)
        proj.catch_up()
        proj = Projection(all_views(), shop.store, cps, batch_size=37)  # a restart
    assert proj.lag() == {"streams": {}, "total": 0}
    assert sum(proj.positions.values()) == sum(shop.store.streams().values())
    assert digests(proj.views) == rebuilt(shop.store, cps)
    shop.close()


def _more_traffic(shop: Shop, round_: int) -> None:
    from saleday.flows.checkout import Checkout

    async def flow(gateway, co: Checkout, flows, reactor):
        for i in range(8):
            shop.clock.now += 500
            oid = f"r{round_}-{i}"
            placed = await co.place(order_id=oid, user=f"u{i}", lines=(("sku-a", 1),),
                                    now=shop.clock.now)
            if placed.status == "placed" and i % 2:
                await co.payment_succeeded(order_id=oid, payment_id=f"p-{oid}",
                                           amount_cents=placed.total_cents, now=shop.clock.now)
            elif placed.status == "placed":
                await co.cancel(order_id=oid, reason="user_gave_up", now=shop.clock.now)
    shop.run(flow)


class FailingCommits:
    """A checkpoint store whose `fail_at`-th commit raises after the views folded the batch."""

    def __init__(self, inner, fail_at):
        self.inner, self.fail_at, self.commits = inner, fail_at, 0
        self.url = inner.url

    def load(self, name):
        return self.inner.load(name)

    def commit(self, *args):
        self.commits += 1
        if self.commits == self.fail_at:
            raise OSError("disk full (injected)")
        return self.inner.commit(*args)

    def reset(self, name):
        self.inner.reset(name)


def test_a_failure_between_fold_and_commit_neither_skips_nor_doubles(shop, cps):
    """The third commit fails after its batch was folded; the runner puts the views back,
    folds that batch again, and ends equal to a rebuild."""
    sale_day(shop)
    proj = Projection(all_views(), shop.store, FailingCommits(cps, fail_at=3), batch_size=25)
    proj.run_once()
    proj.run_once()
    folded_before = digests(proj.views)
    with pytest.raises(OSError, match="injected"):
        proj.run_once()
    proj.catch_up()
    assert digests(proj.views) != folded_before
    assert digests(proj.views) == rebuilt(shop.store, cps)
    restarted = Projection(all_views(), shop.store, cps)
    assert digests(restarted.views) == digests(proj.views)


@pytest.mark.slow
def test_a_projection_killed_while_running_resumes_exactly(tmp_path, cps):
    """A real process folding in small batches is SIGKILLed mid-run; a new one resumes from
    the checkpoint and ends with the views of a rebuild."""
    store_url = f"sqlite:///{tmp_path}/events.db"
    store = open_store(store_url)
    total = write_reservation_log(store, reservations=20_000, skus=50, shards=3)
    paused = tmp_path / "paused"
    # Once a quarter of the log is committed, the child stops inside its next run_once, with
    # that batch folded but not committed, and says so: the kill lands mid-run by construction.
    code = textwrap.dedent(f"""
        import pathlib, signal
        from saleday.events import open_store
        from saleday.projections.checkpoint import open_checkpoints
        from saleday.projections.runner import Projection
        from saleday.projections.views import all_views

        class PausingCommits:
            def __init__(self, inner):
                self.inner = inner
            def __getattr__(self, name):
                return getattr(self.inner, name)
            def commit(self, checkpoint, expected, *args):
                if sum(expected.values()) >= {total // 4}:
                    pathlib.Path({str(paused)!r}).touch()
                    while True:
                        signal.pause()  # until the parent's SIGKILL
                return self.inner.commit(checkpoint, expected, *args)

        proj = Projection(all_views(), open_store({store_url!r}),
                          PausingCommits(open_checkpoints({cps.url!r})), batch_size=50)
        while proj.run_once():
            pass
    """)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        def child_paused() -> bool:
            assert child.poll() is None, f"the child exited ({child.returncode}) before pausing"
            return paused.exists()

        wait_until(child_paused, timeout=120, what="the child to pause with a batch folded")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    done = sum(cps.load("orders+referrals+metrics+stock+members")[0].values())
    assert total // 4 <= done < total, "the kill must land mid-run"
    resumed = Projection(all_views(), store, cps, batch_size=50)
    assert resumed.lag()["total"] == total - done
    assert resumed.catch_up() == total - done
    assert digests(resumed.views) == rebuilt(store, cps)
    assert resumed.views[2].to_json()["funnel"]["reservations"] == 20_000
    store.close()


def test_two_runners_on_one_checkpoint_cannot_both_apply_a_batch(shop, cps):
    """The second runner's commit from positions the first already moved is refused, and
    after a restart it carries on from where the first left off."""
    sale_day(shop)
    a = Projection(StockView(), shop.store, cps, batch_size=40)
    b = Projection(StockView(), shop.store, cps, batch_size=40)
    a.run_once()
    with pytest.raises(CheckpointConflict):
        b.run_once()
    a.catch_up()
    b.catch_up()  # restores from the checkpoint first: nothing left to do
    assert b.view.digest() == a.view.digest() == rebuilt(shop.store, cps)["stock"]


def test_a_checkpoint_ahead_of_the_log_is_reported(shop, tmp_path, cps):
    """Folding a log that holds fewer events than the checkpoint says is refused with advice."""
    sale_day(shop)
    Projection(StockView(), shop.store, cps).catch_up()
    other = open_store(f"sqlite:///{tmp_path}/other.db")
    with pytest.raises(ProjectionError, match="rebuild"):
        Projection(StockView(), other, cps)
    other.close()


def test_lag_counts_the_events_not_yet_folded(shop, cps):
    """Before catching up the lag is the whole log, per stream; after, zero."""
    sale_day(shop)
    proj = Projection(MetricsView(), shop.store, cps)
    heads = shop.store.streams()
    assert proj.lag() == {"streams": heads, "total": sum(heads.values())}
    proj.catch_up()
    assert proj.lag() == {"streams": {}, "total": 0}


# -- split projections ---------------------------------------------------------------------


def test_a_projection_split_over_three_workers_merges_into_the_single_one(tmp_path, cps):
    """Each worker folds its streams under its own checkpoint; merged, the parts equal the
    view one worker builds, and each part survives a restart."""
    shop = Shop(f"sqlite:///{tmp_path}/events.db",
                shards={"sku": 3, "session": 3, "order": 3, "campaign": 1, "team": 1})
    sale_day(shop)
    single = Projection(all_views(), shop.store, cps)
    single.catch_up()
    parts = [Projection(all_views(), shop.store, cps, partition=Partition(i, 3)) for i in range(3)]
    owned = [sorted(p.lag()["streams"]) for p in parts]
    assert sorted(s for o in owned for s in o) == sorted(shop.store.streams())
    for part in parts:
        part.catch_up()
    restarted = [Projection(all_views(), shop.store, cps, partition=Partition(i, 3)) for i in range(3)]
    for k, view in enumerate(single.views):
        assert merged([p.views[k] for p in parts]).digest() == view.digest(), view.name
        assert merged([p.views[k] for p in restarted]).digest() == view.digest(), view.name
    shop.close()


def test_an_explicit_stream_map_decides_which_worker_folds_a_stream(shop, cps):
    """Streams named in the map go to their worker; the others go by the default rule."""
    sale_day(shop)
    streams = sorted(shop.store.streams())
    assignment = {s: (0 if s.startswith("sku-") else 1) for s in streams}
    parts = [Projection(StockView(), shop.store, cps, partition=Partition(i, 2, assignment))
             for i in range(2)]
    assert all(s.startswith("sku-") for s in parts[0].lag()["streams"])
    for p in parts:
        p.catch_up()
    assert parts[1].view.to_json() == {"skus": {}}
    assert parts[0].view.digest() == rebuilt(shop.store, cps)["stock"]
    with pytest.raises(ValueError, match="outside"):
        Partition(0, 2, {"sku-000": 2})


def test_the_default_split_deals_each_kinds_streams_over_the_workers():
    """Four SKU streams and two session streams over two workers: two and one each (crc32
    of the whole name would send all four SKU streams to one worker)."""
    streams = ["sku-000", "sku-001", "sku-002", "sku-003", "session-000", "session-001"]
    for kind in ("sku-", "session-"):
        mine = [default_worker(s, 2) for s in streams if s.startswith(kind)]
        assert sorted(mine) == sorted([0, 1] * (len(mine) // 2))
    assert [Partition(i, 2).owns("sku-000") for i in range(2)].count(True) == 1
    assert 0 <= default_worker("not-a-shard", 3) < 3
