"""The shape every view has: fold envelopes, show itself as JSON, and digest that JSON.

A view's result must not depend on how streams interleave: events of one stream arrive
in version order, but there is no order across streams (a split projection sees them
in another order than a single one, and both must give the same digest).

State lives in TABLES of rows: `tables[table][key] -> JSON-native value` (dicts, lists,
str, int, bool, None — never tuples or floats, so a row read back from a checkpoint is
equal to the one written). A view marks the rows an event changed (`touch`); the runner
takes them after each batch (`changes`) and stores them with its positions, and a view is
restored by loading its rows back (`load_rows`). Each table declares how two parts of a
split projection combine (`merge`):

- `disjoint`: each key comes from one stream only (an order from its order stream, a SKU
  from its SKU stream), so the parts hold different keys; a key in both must be equal.
- `sum`: counters that several streams add to (per second, totals): added up, element by
  element through lists and dicts.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

from saleday.events.envelope import Envelope

DISJOINT, SUM = "disjoint", "sum"


class MergeConflict(ValueError):
    """Two parts of a split projection hold different values for a row only one may hold."""


class View(ABC):
    """A fold over envelopes into tables of rows the view owns (mutated in place, for speed)."""

    name: ClassVar[str]
    tables: ClassVar[dict[str, str]] = {}
    """Table name -> merge rule (`disjoint` or `sum`)."""

    def __init__(self) -> None:
        self.t: dict[str, dict[str, Any]] = {table: {} for table in self.tables}
        self.dirty: dict[str, set[str]] = {table: set() for table in self.tables}

    @abstractmethod
    def apply(self, env: Envelope) -> None:
        """Fold one event; ignore event types this view does not read."""

    def apply_batch(self, envs: Sequence[Envelope]) -> None:
        """Fold a batch in order (views override this with a tighter loop)."""
        apply = self.apply
        for env in envs:
            apply(env)

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The whole view as JSON-native values, keys in a stable order."""

    def digest(self) -> str:
        """BLAKE2b-256 (hex) of the canonical JSON of `to_json()`."""
        return digest_json(self.to_json())

    # -- rows: incremental persistence ----------------------------------------------------

    def changes(self) -> list[tuple[str, str, Any]]:
        """The rows changed since the last call, as (table, key, value); value None means
        the row is gone. Clears the marks."""
        out = []
        for table, keys in self.dirty.items():
            if keys:
                rows = self.t[table]
                out.extend((table, key, rows.get(key)) for key in keys)
                keys.clear()
        return out

    def rows(self) -> Iterator[tuple[str, str, Any]]:
        """Every row, as (table, key, value)."""
        for table, rows in self.t.items():
            for key, value in rows.items():
                yield table, key, value

    def load_rows(self, rows: Iterable[tuple[str, str, Any]]) -> None:
        """Put stored rows back (after `reset`); unknown tables are a stale checkpoint."""
        for table, key, value in rows:
            if table not in self.t:
                raise ValueError(f"view {self.name!r} has no table {table!r}: the checkpoint "
                                 f"was written by another version (rebuild it)")
            self.t[table][key] = value

    def reset(self) -> None:
        """Forget every row (keeps subscribers and other wiring)."""
        for table in self.t:
            self.t[table].clear()
            self.dirty[table].clear()

    def committed(self) -> None:
        """Called by the runner once a batch's rows are durable (views that push updates
        override it)."""

    def merge(self, other: View) -> None:
        """Fold another part of a split projection of the same view into this one."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        for table, rule in self.tables.items():
            mine = self.t[table]
            for key, value in other.t[table].items():
                if key not in mine:
                    mine[key] = _copy(value)
                elif rule == SUM:
                    mine[key] = _sum(mine[key], value)
                elif mine[key] != value:
                    raise MergeConflict(f"view {self.name!r}, table {table!r}: parts disagree "
                                        f"on row {key!r}")


def merged(parts: Sequence[View]) -> View:
    """A fresh view holding every part of a split projection."""
    if not parts:
        raise ValueError("no parts to merge")
    out = type(parts[0])()
    for part in parts:
        out.merge(part)
    return out


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _sum(a: Any, b: Any) -> Any:
    if isinstance(a, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _sum(out[k], v) if k in out else _copy(v)
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            raise MergeConflict(f"cannot add rows of different lengths ({len(a)}, {len(b)})")
        return [_sum(x, y) for x, y in zip(a, b)]
    if type(a) is int and type(b) is int:
        return a + b
    if a == b:
        return a
    raise MergeConflict(f"cannot add {a!r} and {b!r}")


def digest_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=32).hexdigest()
