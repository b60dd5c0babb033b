"""`bench store`'s contended writers: a writer process that dies ends the bench with an
error at once, instead of the bench waiting out its timeout for a result that never comes."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from saleday.bench.store import _results

FORK = multiprocessing.get_context("fork")


def _gives(out, value) -> None:
    out.put(value)


def test_a_writer_that_dies_ends_the_wait_at_once():
    out = FORK.Queue()
    procs = [FORK.Process(target=_gives, args=(out, "done")), FORK.Process(target=os._exit, args=(3,))]
    for p in procs:
        p.start()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exit code 3"):
        _results(out, procs, timeout_s=60)
    assert time.monotonic() - started < 10
    for p in procs:
        p.join(5)


def test_every_writers_result_is_collected():
    out = FORK.Queue()
    procs = [FORK.Process(target=_gives, args=(out, n)) for n in range(3)]
    for p in procs:
        p.start()
    assert sorted(_results(out, procs, timeout_s=60)) == [0, 1, 2]
    for p in procs:
        p.join(5)
