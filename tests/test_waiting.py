"""The tests' waiting helper: wait on a condition, return as soon as it holds, and fail
saying what was awaited."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.helpers import WaitTimedOut, eventually, wait_until


def test_wait_until_returns_the_first_truthy_value():
    """The predicate is called until it holds, and what it returned is handed back."""
    calls = itertools.count(1)
    assert wait_until(lambda: (n := next(calls)) >= 3 and n) == 3


def test_wait_until_names_what_never_happened():
    """A condition that never holds fails within the timeout, naming what was awaited."""
    with pytest.raises(WaitTimedOut, match=r"waited 0.05 s for the moon to turn blue"):
        wait_until(lambda: False, timeout=0.05, what="the moon to turn blue")


def test_wait_until_falls_back_to_the_predicate_docstring():
    """Without `what`, the message quotes the predicate's docstring."""
    def shard_restarted() -> bool:
        """the shard to come back"""
        return False

    with pytest.raises(WaitTimedOut, match="the shard to come back"):
        wait_until(shard_restarted, timeout=0.01)


def test_eventually_awaits_an_async_predicate_while_the_loop_runs():
    """An async condition that another task makes true is seen, and the loop is not blocked."""
    async def scenario() -> int:
        done = asyncio.Event()
        asyncio.get_running_loop().call_later(0.02, done.set)

        async def is_done() -> bool:
            return done.is_set()

        assert await eventually(is_done, timeout=10)
        return 1

    assert asyncio.run(scenario()) == 1


def test_eventually_fails_naming_what_was_awaited():
    """An async wait that times out says what it waited for."""
    with pytest.raises(WaitTimedOut, match="three ticks"):
        asyncio.run(eventually(lambda: 0, timeout=0.02, what="three ticks"))
