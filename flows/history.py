"""Order history in: a CSV of past orders as `RecordOrder` commands with content-derived ids.

The file has a header row naming the columns `user`, `ordered_at` and `amount` (in any
order; nothing else), then one order per row:

- `user`: the member (non-empty; surrounding spaces are dropped);
- `ordered_at`: an ISO 8601 date (`2025-11-11`, midnight UTC) or date-time
  (`2025-11-11T20:15:00`, UTC unless it carries an offset such as `+08:00` or `Z`);
- `amount`: yuan with up to two decimals (`199`, `199.5`, `199.50`), >= 0.

Each usable row becomes `RecordOrder(order_ref=..., source="import")` whose order ref is
derived from the row's content, never from its position: `imp-` + the first 20 hex digits
of BLAKE2b-160 over `user \\x1f ordered_at_ms \\x1f amount_cents \\x1f k`, where `k` counts
the earlier rows of the file with the same three values (two identical rows are two
orders). Importing the same file again, or the file with rows reordered or appended,
names every row it already had with the same ref, so the member records nothing twice.

A bad row is skipped and counted under one reason (`wrong_field_count`, `empty_user`,
`bad_ordered_at`, `bad_amount`) with its line number (1 = the header). Pure: the caller
reads the file and hands the lines over.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from saleday.actors.member import RecordOrder

COLUMNS = ("user", "ordered_at", "amount")
_AMOUNT = re.compile(r"\d{1,15}(?:\.\d{1,2})?")


class HistoryFileError(ValueError):
    """A history file this reader cannot take at all (no or another header)."""


@dataclass
class Parsed:
    """What a history file holds: the commands of its usable rows, and its bad rows."""

    commands: list[RecordOrder] = field(default_factory=list)
    bad: dict[str, list[int]] = field(default_factory=dict)
    """Reason -> line numbers (1 = the header line)."""
    rows: int = 0

    def reject(self, reason: str, line: int) -> None:
        self.bad.setdefault(reason, []).append(line)


def order_ref(user: str, ordered_at: int, amount_cents: int, k: int) -> str:
    """The content-derived ref of the k-th row (from 0) with these values in a file."""
    key = f"{user}\x1f{ordered_at}\x1f{amount_cents}\x1f{k}".encode("utf-8", "surrogatepass")
    return "imp-" + hashlib.blake2b(key, digest_size=20).hexdigest()[:20]


def parse_ordered_at(text: str) -> int | None:
    """An ISO 8601 date or date-time as ms since the epoch (UTC unless an offset says
    otherwise), or None."""
    text = text.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            moment = datetime(d.year, d.month, d.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        return None
    ms = int(moment.timestamp() * 1000)
    return ms if ms >= 0 else None


def parse_amount(text: str) -> int | None:
    """Yuan with up to two decimals as cents, or None."""
    text = text.strip()
    if not _AMOUNT.fullmatch(text):
        return None
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def parse_orders(lines: Iterable[str], *, now: int) -> Parsed:
    """The `RecordOrder` commands of a history file's lines (see the module docstring)."""
    reader: Iterator[list[str]] = csv.reader(lines)
    header = next(reader, None)
    names = tuple(c.strip().lstrip("\ufeff").lower() for c in header or ())
    if sorted(names) != sorted(COLUMNS):
        raise HistoryFileError(f"the first line must be the header {','.join(COLUMNS)} "
                               f"(any order), not {','.join(names) or 'empty'}")
    at = {name: names.index(name) for name in COLUMNS}
    out = Parsed()
    seen: dict[tuple[str, int, int], int] = {}
    for row in reader:
        line = reader.line_num   # type: ignore[attr-defined]
        if not row or (len(row) == 1 and not row[0].strip()):
            continue   # blank lines are no rows
        out.rows += 1
        if len(row) != len(COLUMNS):
            out.reject("wrong_field_count", line)
            continue
        user = row[at["user"]].strip()
        ordered_at = parse_ordered_at(row[at["ordered_at"]])
        cents = parse_amount(row[at["amount"]])
        if not user:
            out.reject("empty_user", line)
        elif ordered_at is None:
            out.reject("bad_ordered_at", line)
        elif cents is None:
            out.reject("bad_amount", line)
        else:
            key = (user, ordered_at, cents)
            k = seen.get(key, 0)
            seen[key] = k + 1
            out.commands.append(RecordOrder(user=user, order_ref=order_ref(user, ordered_at,
                                                                           cents, k),
                                            ordered_at=ordered_at, amount_cents=cents,
                                            source="import", now=now))
    return out
