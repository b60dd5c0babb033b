"""Real traffic: a public behaviour log turned into visits on the simulated clock.

Clicks (`simulator.clickstream`: Taobao UserBehavior or RetailRocket events) are grouped
into sessions per user (a gap of more than 30 minutes starts a new one). A session
becomes a `Visit`: its views and carts are counted, its purchases become one order (at
most three lines; items are mapped onto the scenario's SKUs by a stable hash, so stock
and prices come from the scenario), and its payment outcome is drawn from the scenario's
rates with the seed. The time span of the bulk of the log is mapped onto the scenario's
sale window: rows outside the bulk (`clickstream.bulk_bounds`: stray rows far outside the
file's period) are counted as `timestamp_out_of_range` and shape nothing. A file with no
usable row is refused (`NoUsableRows`), never replayed as an empty sale.

Memory stays flat however large the file: the file is read three times as a stream (the
first pass counts rows per hour to find the bulk, the second the users and time span of
the rows kept), at most `MAX_OPEN` sessions are held open (the least recently
active is closed first; files sorted by user or by time both keep this small), and
finished visits are put in time order by an external merge sort over temporary files of
`CHUNK` visits each. Only the set of distinct user ids grows with the data (for the
report's user count).
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from saleday.simulator.clicks import Click, ClickStats, NoUsableRows
from saleday.simulator.clickstream import HOUR_MS, Bulk, bulk_bounds, read
from saleday.simulator.generator import Order, Visit
from saleday.simulator.scenario import Scenario, check_seed

SESSION_GAP_MS = 30 * 60 * 1000
MAX_OPEN = 50_000
CHUNK = 200_000


class _Session:
    __slots__ = ("buy_at", "buys", "carts", "first", "last", "user", "views")

    def __init__(self, click: Click) -> None:
        self.user = click.user
        self.first = self.last = click.ts_ms
        self.views = self.carts = 0
        self.buys: list[str] = []
        self.buy_at = 0

    def add(self, click: Click) -> None:
        self.first = min(self.first, click.ts_ms)
        self.last = max(self.last, click.ts_ms)
        if click.action == "view" or click.action == "fav":
            self.views += 1
        elif click.action == "cart":
            self.carts += 1
        elif click.action == "buy":
            if click.item not in self.buys:
                self.buys.append(click.item)
            self.buy_at = self.buy_at or click.ts_ms


class ClickstreamRun:
    """The clickstream's figures for the report: what was read and what it became."""

    def __init__(self, stats: ClickStats, bulk: Bulk | None = None) -> None:
        self.stats = stats
        self.bulk = bulk
        self.users = 0
        self.sessions = 0
        self.orders = 0

    def as_dict(self) -> dict[str, Any]:
        s = self.stats
        return {"path": s.path, "layout": s.layout, "rows": s.rows, "clicks": s.clicks,
                "malformed": dict(s.malformed), "malformed_samples": dict(s.samples),
                "users": self.users, "sessions": self.sessions, "orders": self.orders,
                "first_ts_ms": s.first_ts, "last_ts_ms": s.last_ts,
                "kept_from_ms": self.bulk.min_ts_ms if self.bulk else None,
                "kept_until_ms": self.bulk.max_ts_ms if self.bulk else None,
                "rows_per_s": round(s.rows_per_s)}

    def summary(self) -> str:
        s = self.stats
        bad = ", ".join(f"{k}: {v:,}" for k, v in sorted(s.malformed.items())) or "none"
        kept = ""
        if self.bulk is not None:
            kept = (f"; rows kept from {_utc(self.bulk.min_ts_ms)} until "
                    f"{_utc(self.bulk.max_ts_ms)} UTC")
        return (f"{s.path} ({s.layout}): {s.rows:,} rows, {s.clicks:,} clicks, malformed "
                f"rows {s.malformed_rows:,} ({bad}); {self.users:,} users, "
                f"{self.sessions:,} sessions, {self.orders:,} orders{kept}")


def _utc(ts_ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def clickstream_visits(path: str | Path, *, layout: str | None, scenario: Scenario, seed: int,
                       limit: int | None = None) -> tuple[Iterator[Visit], ClickstreamRun, Scenario]:
    """Visits from a behaviour log, in time order, with the figures of the pass that found
    the users and the time span, and the scenario adjusted to the data (users). `limit`:
    read at most this many data rows. Raises `NoUsableRows` when no row can be used."""
    check_seed(seed)
    hours: dict[int, int] = {}
    probe = read(path, layout or "auto", max_rows=limit)
    for click in probe:
        hour = click.ts_ms // HOUR_MS
        hours[hour] = hours.get(hour, 0) + 1
    if not hours:
        raise NoUsableRows(probe.stats)
    bulk = bulk_bounds(hours)
    reader = read(path, probe.layout, max_rows=limit, min_ts_ms=bulk.min_ts_ms,
                  max_ts_ms=bulk.max_ts_ms)
    users: set[str] = set()
    for click in reader:
        users.add(click.user)
    stats = reader.stats
    run = ClickstreamRun(stats, bulk)
    run.users = len(users)
    del users
    first, last = stats.first_ts, stats.last_ts
    assert first is not None and last is not None, "the bulk holds the quartiles' rows"
    span = max(1, last - first)
    window = scenario.traffic.window_s
    sc = scenario.with_overrides(users=max(1, run.users))

    def t_of(ts_ms: int) -> float:
        return (ts_ms - first) / span * window

    def visits() -> Iterator[Visit]:
        rng = np.random.default_rng([seed, 3])
        f = sc.funnel
        skus = sc.skus.count
        claims = [(c.name, c.claim_rate) for c in sc.campaigns if c.claim_rate > 0]
        n = 0

        def close(s: _Session) -> Visit:
            nonlocal n
            n += 1
            run.sessions += 1
            t = t_of(s.first)
            u, delay, claim_u = rng.random(), rng.exponential(max(f.payment_delay_s, 1e-9)), rng.random()
            order = None
            if s.buys:
                run.orders += 1
                lines = tuple(sorted({f"P{zlib.crc32(item.encode()) % skus:05d}"
                                      for item in s.buys[:3]}))
                t_order = min(max(t, t_of(s.buy_at)), float(window))
                if u < f.payment_success:
                    payment, pay_t = "success", t_order + delay
                elif u < f.payment_success + f.payment_never_returns:
                    payment, pay_t = "never", t_order
                else:
                    payment, pay_t = "fail", t_order + delay
                order = Order(order_id=f"CO{n:09d}", lines=tuple((sku, 1) for sku in lines),
                              t_s=t_order, payment=payment, pay_t_s=pay_t, use_coupon=True)
            claim = ""
            acc = 0.0
            for name, rate in claims:
                acc += rate
                if claim_u < acc:
                    claim = name
                    break
            return Visit(seq=n, t_s=t, user=f"c{s.user}", session_id=f"C{n:09d}",
                         utm_source="clickstream", utm_medium=reader.layout,
                         utm_campaign=sc.name, inviter="", claim=claim, team_create="",
                         team_join="", views=s.views, carts=s.carts, order=order, shares=False)

        def sessions() -> Iterator[Visit]:
            open_: OrderedDict[str, _Session] = OrderedDict()
            for click in reader:
                s = open_.get(click.user)
                if s is not None and abs(click.ts_ms - s.last) > SESSION_GAP_MS:
                    del open_[click.user]
                    yield close(s)
                    s = None
                if s is None:
                    s = open_[click.user] = _Session(click)
                else:
                    open_.move_to_end(click.user)
                s.add(click)
                if len(open_) > MAX_OPEN:
                    yield close(open_.popitem(last=False)[1])
            while open_:
                yield close(open_.popitem(last=False)[1])

        yield from _time_ordered(sessions())

    return visits(), run, sc


def _time_ordered(items: Iterator[Visit]) -> Iterator[Visit]:
    """Visits sorted by arrival with bounded memory: sorted runs spilled to temp files,
    then merged."""
    with tempfile.TemporaryDirectory(prefix="saleday-replay-") as tmp:
        runs: list[Path] = []
        chunk: list[Visit] = []
        for v in items:
            chunk.append(v)
            if len(chunk) >= CHUNK:
                runs.append(_spill(Path(tmp), len(runs), chunk))
                chunk = []
        chunk.sort(key=_key)
        if not runs:
            yield from chunk
            return
        runs.append(_spill(Path(tmp), len(runs), chunk))
        yield from heapq.merge(*(_unspill(p) for p in runs), key=_key)


def _key(v: Visit) -> tuple[float, int]:
    return (v.t_s, v.seq)


def _spill(tmp: Path, i: int, chunk: list[Visit]) -> Path:
    chunk.sort(key=_key)
    path = tmp / f"run-{i:05d}.pickle"
    with open(path, "wb") as f:
        for start in range(0, len(chunk), 10_000):
            pickle.dump(chunk[start:start + 10_000], f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _unspill(path: Path) -> Iterator[Visit]:
    with open(path, "rb") as f:
        while True:
            try:
                yield from pickle.load(f)
            except EOFError:
                return
