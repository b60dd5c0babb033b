"""Public behaviour logs read as normalised clicks, streaming (a multi-GB file in flat memory).

Two layouts are known (`.csv` or gzip-compressed `.csv.gz`; compression is told by the
file's magic bytes, not its name):

- `taobao`: Taobao's UserBehavior.csv, no header; rows `user_id,item_id,category_id,
  behavior,timestamp` with behavior in pv/cart/fav/buy and the timestamp in unix seconds.
  Taobao gives no order ids: a buy's `order_ref` is `tb:<user>:<timestamp>`, so one user's
  buys within the same second read as one order.
- `retailrocket`: RetailRocket's events.csv, header `timestamp,visitorid,event,itemid,
  transactionid` (columns found by name), event in view/addtocart/transaction, the
  timestamp in unix milliseconds; a transaction's `order_ref` is its transactionid.

A reader yields `Click`s and counts what it read in its `ClickStats`. Fields are taken as written
(these files have no quoting and no padding). A malformed row (wrong field count, an id or
timestamp that is not a plain integer, an unknown behaviour,
a timestamp outside the accepted window, an empty id, a blank line, a non-ASCII line, a
transaction without its id) is counted by reason, with a few sample line numbers, and skipped: never fatal.
A missing file, an unknown layout or a file that cannot be read on (a truncated gzip)
raises a `ClickstreamError` that says which file and why; so does a file in which no row
is usable (`NoUsableRows`, with the malformed rows counted by reason).

Public logs hold stray rows far outside their period (Taobao's UserBehavior has rows from
September in a file of 25 Nov - 3 Dec 2017). `bulk_bounds` finds the bulk of a file's time
range with Tukey's fences on the rows' hours (docs/SIMULATOR.md says how to recompute it);
a reader given those bounds counts the rows outside as `timestamp_out_of_range`.

This module owns opening the files, telling the layouts apart, the readers and the bulk
bounds; `Click`, `ClickStats`, the errors and the per-layout row loops are in
`simulator.clicks`.
"""

from __future__ import annotations

import gzip
import io
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TextIO

import structlog

from saleday.simulator.clicks import (
    TAOBAO_ACTIONS,
    Click,
    ClickStats,
    ClickstreamNotFound,
    ClickstreamReadError,
    Layout,
    UnknownLayout,
    retailrocket_columns,
    retailrocket_rows,
    taobao_rows,
)

log = structlog.get_logger("saleday.simulator")

MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: no public clickstream is older
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z: later is a corrupt timestamp
HOUR_MS = 3_600_000
FENCE_IQR = 1.5  # Tukey's fence: this many interquartile ranges beyond the quartiles
FENCE_MIN_H = 24  # ... and never less than a day
_GZIP_MAGIC = b"\x1f\x8b"


RowParser = Callable[[TextIO, ClickStats, int, int], Iterator[Click]]


class ClickReader:
    """An iterable of the clicks of one file, with the `stats` of the last pass over it.

    The stats are current at every click yielded, so a reader stopped early (`islice`)
    has counted what it read. Each iteration reads the file again, with fresh stats.
    """

    def __init__(self, path: str | Path, layout: Layout, parse: RowParser, *,
                 min_ts_ms: int = MIN_TS_MS, max_ts_ms: int = MAX_TS_MS,
                 max_rows: int | None = None, header_lines: int = 0) -> None:
        self.path = _existing(path)
        self.layout = layout
        self.min_ts_ms = min_ts_ms
        self.max_ts_ms = max_ts_ms
        self.max_rows = max_rows
        """Read at most this many data rows (None: all)."""
        self._header_lines = header_lines
        self.stats = ClickStats(path=str(self.path), layout=layout)
        self._parse = parse

    def __iter__(self) -> Iterator[Click]:
        self.stats = stats = ClickStats(path=str(self.path), layout=self.layout)
        started = time.perf_counter()
        with _open_text(self.path) as f:
            lines = f if self.max_rows is None else _Head(f, self.max_rows + self._header_lines)
            try:
                yield from self._parse(lines, stats, self.min_ts_ms, self.max_ts_ms)
            except (OSError, EOFError, zlib.error) as exc:
                raise ClickstreamReadError(self.path, stats.rows, str(exc) or type(exc).__name__) from exc
            finally:
                stats.seconds = time.perf_counter() - started
        log.info("clickstream_read", path=str(self.path), layout=self.layout, rows=stats.rows,
                 clicks=stats.clicks, malformed=stats.malformed_rows,
                 rows_per_s=round(stats.rows_per_s))


def taobao(path: str | Path, *, min_ts_ms: int = MIN_TS_MS, max_ts_ms: int = MAX_TS_MS,
           max_rows: int | None = None) -> ClickReader:
    """The clicks of a Taobao UserBehavior.csv(.gz); raises ClickstreamNotFound at once."""
    return ClickReader(path, "taobao", taobao_rows, min_ts_ms=min_ts_ms, max_ts_ms=max_ts_ms,
                       max_rows=max_rows)


def retailrocket(path: str | Path, *, min_ts_ms: int = MIN_TS_MS, max_ts_ms: int = MAX_TS_MS,
                 max_rows: int | None = None) -> ClickReader:
    """The clicks of a RetailRocket events.csv(.gz); its header must name the five columns."""
    reader = ClickReader(path, "retailrocket", retailrocket_rows, min_ts_ms=min_ts_ms,
                         max_ts_ms=max_ts_ms, max_rows=max_rows, header_lines=1)
    with _open_text(reader.path) as f:
        retailrocket_columns(reader.path, f.readline())
    return reader


READERS: dict[str, Callable[..., ClickReader]] = {"taobao": taobao,
                                                  "retailrocket": retailrocket}


def read(path: str | Path, layout: str = "auto", **bounds: int | None) -> ClickReader:
    """A reader for `path` in the named layout, or the detected one for "auto"."""
    name = detect_layout(path) if layout == "auto" else layout
    if name not in READERS:
        raise UnknownLayout(Path(path), f"no reader for layout {name!r}")
    return READERS[name](path, **bounds)


@dataclass(frozen=True, slots=True)
class Bulk:
    """The bulk of a file's time range: rows in hours `[first_h, last_h]` are kept.

    Hours are unix hours (`ts_ms // HOUR_MS`, UTC). `q1_h` and `q3_h` are the hours of the
    rows of rank ceil(n/4) and ceil(3n/4) in time order (n: the rows that parsed, inside
    2000..2100); the fence lies `margin_h = max(floor(1.5 * (q3_h - q1_h)), 24)` hours
    beyond each quartile.
    """

    q1_h: int
    q3_h: int
    margin_h: int

    @property
    def first_h(self) -> int:
        return self.q1_h - self.margin_h

    @property
    def last_h(self) -> int:
        return self.q3_h + self.margin_h

    @property
    def min_ts_ms(self) -> int:
        return max(MIN_TS_MS, self.first_h * HOUR_MS)

    @property
    def max_ts_ms(self) -> int:
        """Exclusive, as a reader's bound."""
        return min(MAX_TS_MS, (self.last_h + 1) * HOUR_MS)


def bulk_bounds(hours: dict[int, int]) -> Bulk:
    """The bulk of a file's rows, from how many fell in each unix hour (`hour -> rows`, not
    empty): Tukey's fences, 1.5 interquartile ranges (at least a day) beyond the quartiles.

    A stray row far outside the file's period does not move a quartile, so it lands
    outside the fences; a file of steady traffic keeps every row (its fences lie half its
    span beyond each end).
    """
    n = sum(hours.values())
    ranks = (-(-n // 4), -(-3 * n // 4))  # ceil(n/4), ceil(3n/4): nearest-rank quartiles
    found: list[int] = []
    seen = 0
    for hour in sorted(hours):
        seen += hours[hour]
        while len(found) < 2 and seen >= ranks[len(found)]:
            found.append(hour)
    q1, q3 = found
    return Bulk(q1_h=q1, q3_h=q3, margin_h=max(int(FENCE_IQR * (q3 - q1)), FENCE_MIN_H))


def detect_layout(path: str | Path, *, sample_lines: int = 20) -> Layout:
    """Best effort: a RetailRocket header, or mostly Taobao-shaped first lines."""
    p = _existing(path)
    with _open_text(p) as f:
        try:
            lines = [line.rstrip("\n") for _, line in zip(range(sample_lines), f, strict=False)]
        except (OSError, EOFError, zlib.error) as exc:
            raise ClickstreamReadError(p, 0, str(exc) or type(exc).__name__) from exc
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise UnknownLayout(p, "the file is empty")
    header = {c.strip().lower() for c in lines[0].split(",")}
    if {"timestamp", "visitorid", "event", "itemid"} <= header:
        return "retailrocket"
    taobao_like = sum(_looks_taobao(line) for line in lines)
    if taobao_like * 2 > len(lines):
        return "taobao"
    raise UnknownLayout(p, f"cannot tell the layout from its first line {lines[0][:80]!r}")


def _looks_taobao(line: str) -> bool:
    parts = [p.strip() for p in line.split(",")]
    return (len(parts) == 5 and parts[3] in TAOBAO_ACTIONS
            and all(p.isascii() and p.isdigit() for p in (parts[0], parts[1], parts[4])))


# ---- files --------------------------------------------------------------------------------

class _Head:
    """The first `n` lines of a text file, read by iteration or `readline`."""

    def __init__(self, f: TextIO, n: int) -> None:
        self._lines = islice(f, n)

    def readline(self) -> str:
        return next(self._lines, "")

    def __iter__(self) -> Iterator[str]:
        return self._lines


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ClickstreamNotFound(p)
    return p


def _open_text(path: Path) -> TextIO:
    """The file as text lines, gunzipped if it starts with gzip's magic bytes."""
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == _GZIP_MAGIC
        raw = gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115 (wrapped)
    except FileNotFoundError as exc:
        raise ClickstreamNotFound(path) from exc
    except OSError as exc:
        raise ClickstreamReadError(path, 0, str(exc)) from exc
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace")
