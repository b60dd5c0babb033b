"""What a clickstream is read into, and the hot loops that read each layout's rows.

`Click` is one normalised behaviour and `ClickStats` what a reader saw (malformed rows
counted by reason, with sample line numbers); the `ClickstreamError`s say which file
failed and why. `taobao_rows` and `retailrocket_rows` turn a layout's text lines into
clicks, kept flat because they run once per row of multi-GB files. Opening files,
telling layouts apart and the readers are in `simulator.clickstream`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

Action = Literal["view", "cart", "fav", "buy"]
Layout = Literal["taobao", "retailrocket"]

LAYOUTS: tuple[Layout, ...] = ("taobao", "retailrocket")
SAMPLES_PER_REASON = 3
TAOBAO_ACTIONS: dict[str, Action] = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy"}
RETAILROCKET_ACTIONS: dict[str, Action] = {"view": "view", "addtocart": "cart",
                                           "transaction": "buy"}
RETAILROCKET_COLUMNS = ("timestamp", "visitorid", "event", "itemid", "transactionid")


class ClickstreamError(Exception):
    """Base of the errors a clickstream reader raises (never for a single bad row)."""


class ClickstreamNotFound(ClickstreamError, FileNotFoundError):
    """The file to read does not exist or is not a regular file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"clickstream {str(path)!r}: no such file")


class UnknownLayout(ClickstreamError, ValueError):
    """The file's layout is not one we read, or its header lacks the columns we need."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(f"clickstream {str(path)!r}: {reason} "
                         f"(known layouts: {', '.join(LAYOUTS)})")


class ClickstreamReadError(ClickstreamError):
    """The file stopped being readable part-way (a truncated gzip, an I/O error)."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"clickstream {str(path)!r}: cannot read past line {line:,}: {reason}")


class NoUsableRows(ClickstreamError, ValueError):
    """Not one row of the file could be used: a replay of it would be a sale with no traffic."""

    def __init__(self, stats: ClickStats) -> None:
        self.stats = stats
        if not stats.rows:
            why = "it holds no data rows"
        else:
            bad = ", ".join(f"{reason}: {n:,} (e.g. line {stats.samples[reason][0]:,})"
                            for reason, n in sorted(stats.malformed.items()))
            why = f"all {stats.rows:,} rows are malformed ({bad})"
        super().__init__(f"clickstream {stats.path!r} ({stats.layout}): no usable rows: {why}")


@dataclass(frozen=True, slots=True)
class Click:
    """One normalised behaviour: who did what to which item, when (unix ms)."""

    ts_ms: int
    user: str
    item: str
    action: Action
    order_ref: str = ""  # the order a buy belongs to; empty for the other actions


@dataclass(slots=True)
class ClickStats:
    """What a reader saw: data rows, clicks yielded, malformed rows by reason, time span."""

    path: str
    layout: str
    rows: int = 0  # data rows read (a header is not a row)
    clicks: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[int]] = field(default_factory=dict)  # reason -> line numbers
    first_ts: int | None = None  # earliest click (ms); files need not be sorted
    last_ts: int | None = None  # latest click (ms)
    seconds: float = 0.0

    def bad(self, reason: str, line: int) -> None:
        """Count a skipped row, keeping its line number if few of that reason are kept."""
        self.malformed[reason] = self.malformed.get(reason, 0) + 1
        kept = self.samples.setdefault(reason, [])
        if len(kept) < SAMPLES_PER_REASON:
            kept.append(line)

    @property
    def malformed_rows(self) -> int:
        return sum(self.malformed.values())

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


# ---- the row loops (hot: kept flat) -----------------------------------------------------

def taobao_rows(f: TextIO, stats: ClickStats, lo: int, hi: int) -> Iterator[Click]:
    actions = TAOBAO_ACTIONS
    bad = stats.bad
    first, last = hi, lo - 1
    for line_no, line in enumerate(f, 1):
        stats.rows = line_no
        parts = line.rstrip("\n").split(",")
        if len(parts) != 5:
            bad("blank_line" if not line.strip() else "field_count", line_no)
            continue
        if not line.isascii():
            bad("non_ascii", line_no)
            continue
        user, item, category, behavior, ts = parts
        if not user or not item or not category:
            bad("empty_id", line_no)
            continue
        action = actions.get(behavior)
        if action is None:
            bad("unknown_behavior", line_no)
            continue
        if not (user.isdigit() and item.isdigit() and category.isdigit()):
            bad("bad_int", line_no)
            continue
        if not ts.isdigit():
            bad(_bad_ts(ts), line_no)
            continue
        ts_ms = int(ts) * 1000
        if not lo <= ts_ms < hi:
            bad("timestamp_out_of_range", line_no)
            continue
        if ts_ms < first:  # hot loop: a compare beats min()
            first = stats.first_ts = ts_ms
        if ts_ms > last:
            last = stats.last_ts = ts_ms
        stats.clicks += 1
        yield Click(ts_ms, user, item, action, f"tb:{user}:{ts}" if action == "buy" else "")


def _bad_ts(ts: str) -> str:
    """A negative timestamp is out of range; anything else that is not digits is not an int."""
    return "timestamp_out_of_range" if ts[:1] == "-" and ts[1:].isdigit() else "bad_int"


def retailrocket_columns(path: Path, header: str) -> tuple[int, int, int, int, int, int]:
    """Column indices of timestamp, visitorid, event, itemid, transactionid; and the width."""
    names = [c.strip().lower() for c in header.rstrip("\n").split(",")]
    missing = [c for c in RETAILROCKET_COLUMNS if c not in names]
    if missing:
        raise UnknownLayout(path, f"not a RetailRocket events file: header {header.strip()[:80]!r} "
                                  f"lacks {', '.join(missing)}")
    ts, user, event, item, txn = (names.index(c) for c in RETAILROCKET_COLUMNS)
    return ts, user, event, item, txn, len(names)


def retailrocket_rows(f: TextIO, stats: ClickStats, lo: int, hi: int) -> Iterator[Click]:
    path = Path(stats.path)
    i_ts, i_user, i_event, i_item, i_txn, width = retailrocket_columns(path, f.readline())
    actions = RETAILROCKET_ACTIONS
    bad = stats.bad
    first, last = hi, lo - 1
    for line_no, line in enumerate(f, 2):
        stats.rows = line_no - 1
        parts = line.rstrip("\n").split(",")
        if len(parts) != width:
            bad("blank_line" if not line.strip() else "field_count", line_no)
            continue
        if not line.isascii():
            bad("non_ascii", line_no)
            continue
        user, item = parts[i_user], parts[i_item]
        if not user or not item:
            bad("empty_id", line_no)
            continue
        action = actions.get(parts[i_event])
        if action is None:
            bad("unknown_behavior", line_no)
            continue
        if not (user.isdigit() and item.isdigit()):
            bad("bad_int", line_no)
            continue
        ts = parts[i_ts]
        if not ts.isdigit():
            bad(_bad_ts(ts), line_no)
            continue
        ts_ms = int(ts)
        if not lo <= ts_ms < hi:
            bad("timestamp_out_of_range", line_no)
            continue
        order_ref = ""
        if action == "buy":
            order_ref = parts[i_txn]
            if not order_ref:
                bad("missing_transactionid", line_no)
                continue
        if ts_ms < first:  # hot loop: a compare beats min()
            first = stats.first_ts = ts_ms
        if ts_ms > last:
            last = stats.last_ts = ts_ms
        stats.clicks += 1
        yield Click(ts_ms, user, item, action, order_ref)
