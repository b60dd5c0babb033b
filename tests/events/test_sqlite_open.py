"""Several processes opening one SQLite log that does not exist yet, at the same moment (a
fresh data dir under `saleday serve`, whose shards all start at once; the contended-writers
bench): each one opens it and writes, none is refused."""

from __future__ import annotations

import multiprocessing
import time

from saleday.events import NewEvent, open_store

SPAWN = multiprocessing.get_context("spawn")


def open_and_append(url: str, stream: str, start_at: float) -> str:
    time.sleep(max(0.0, start_at - time.time()))   # every process opens at the same moment
    try:
        store = open_store(url)
        store.append(stream, [NewEvent(type="t.happened", data={"n": 1}, command_id=f"{stream}-1",
                                       recorded_at=1)], 0)
        store.close()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        return f"{type(exc).__name__}: {exc}"


def test_processes_opening_a_fresh_log_at_once_all_open_it(tmp_path):
    """Given no log file yet, when four processes open it and append at the same moment,
    then every one succeeds and every stream is in the log. (SQLite refused a second
    connection's `journal_mode=WAL` while the first was setting the file up, without
    waiting: a third of such races failed with "database is locked". Opening is now done
    under the store's writer lock.)"""
    with SPAWN.Pool(4) as pool:
        pool.map(time.sleep, [0.05] * 4)   # imports done: the processes start together
        for attempt in range(20):
            url = f"sqlite:///{tmp_path}/{attempt}/events.db"
            streams = [f"s-{n}" for n in range(4)]
            start_at = time.time() + 0.3
            said = pool.starmap_async(open_and_append,
                                      [(url, s, start_at) for s in streams]).get(60)
            assert said == ["ok"] * 4, (attempt, said)
            store = open_store(url)
            assert store.streams() == {s: 1 for s in streams}
            store.close()
