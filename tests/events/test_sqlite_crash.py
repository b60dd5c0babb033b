"""A SQLite writer killed with SIGKILL mid-stream loses no acknowledged commit and leaves
no partial one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import defaultdict

import pytest

from saleday.events import NewEvent, open_store, verify_commits
from tests.helpers import verify

WRITER = textwrap.dedent("""
    import sys
    from saleday.events import NewEvent, open_store

    store = open_store(sys.argv[1])
    stream = sys.argv[2]
    c = int(sys.argv[3])
    while True:
        size = 1 + c % 4
        batch = [NewEvent(type="crash.tick", data={"commit": c, "size": size, "j": j,
                                                   "pad": "x" * (200 * j)},
                          command_id=f"c{c}-{j}", recorded_at=c) for j in range(size)]
        result = store.append(stream, batch, None)
        print(result.first_version, result.last_version, c, flush=True)
        c += 1
""")


def run_and_kill(url: str, stream: str, first_commit: int, lines_before_kill: int) -> list[tuple[int, int, int]]:
    """Start a writer, let it acknowledge some commits, SIGKILL it; return every ack it printed."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url, stream, str(first_commit)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    acks = []
    try:
        for _ in range(lines_before_kill):
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"writer exited early ({proc.wait()}): {proc.stderr.read()[-2000:]}")
            acks.append(tuple(map(int, line.split())))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    rest = proc.stdout.read()  # acknowledged before the kill landed, still in the pipe
    proc.stdout.close()
    proc.stderr.close()
    acks += [tuple(map(int, line.split())) for line in rest.splitlines(keepends=True)
             if line.endswith("\n")]
    assert proc.returncode == -signal.SIGKILL
    return acks


@pytest.mark.timeout(120)
def test_acknowledged_commits_survive_sigkill_of_the_writer(tmp_path):
    """After SIGKILL every acknowledged version is there, the chain verifies, and no commit is half-written."""
    url = f"sqlite:///{tmp_path}/events.db"
    stream = "orders-1"
    all_acks: list[tuple[int, int, int]] = []
    next_commit = 0
    for round_, lines in enumerate((25, 60, 140)):
        acks = run_and_kill(url, stream, next_commit, lines)
        assert len(acks) >= lines
        all_acks += acks

        store = open_store(url)
        try:
            envs = verify(store, stream)
            head = store.head(stream)
            last_acked = all_acks[-1][1]
            assert head.version >= last_acked, f"round {round_}: acknowledged commits lost"
            assert head.version == len(envs) and head.hash == envs[-1].hash
            assert verify_commits(stream, store.read_commits(stream)) == (head.version, head.hash)
            got = {e.version: e for e in envs}
            for first, last, c in all_acks:
                assert [got[v].data["commit"] for v in range(first, last + 1)] == [c] * (last - first + 1)
            # no partial commit: every commit that made it holds all of its events, in order
            by_commit = defaultdict(list)
            for e in envs:
                by_commit[e.data["commit"]].append(e.data["j"])
            for c, js in by_commit.items():
                assert js == list(range(1 + c % 4)), f"commit {c} is partial: {js}"
            # no commit is missing before the last one that made it
            assert sorted(by_commit) == list(range(len(by_commit)))
            next_commit = max(by_commit) + 1
            # a retry of the last (maybe unacknowledged) commit is recognised as a duplicate
            c = max(by_commit)

            retry = [NewEvent(type="crash.tick", data={"commit": c, "size": 1 + c % 4, "j": j,
                                                       "pad": "x" * (200 * j)},
                              command_id=f"c{c}-{j}", recorded_at=c) for j in range(1 + c % 4)]
            assert store.append(stream, retry, None).duplicate
        finally:
            store.close()

    store = open_store(url)
    try:
        head = store.head(stream)
        result = store.append(stream, [NewEvent(type="crash.tick", data={"commit": -1, "j": 0},
                                                command_id="after", recorded_at=0)], head.version)
        assert result.first_version == head.version + 1
        verify(store, stream)
    finally:
        store.close()
