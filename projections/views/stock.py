"""The live stock view: per SKU, units stocked, available, reserved and sold.

Rows (`sku` table, key = SKU): `[stocked, available, reserved, sold]`, updated as each
inventory event lands; a SKU that has had units set aside for presale deposits
(`inventory.stock_set_aside`, flows/presale_stock.py) gets a fifth, `set_aside`, from then
on (sold or returned set-asides move to `sold` or back to `available`). Subscribers get `{sku: available}` for the SKUs a batch changed,
once that batch is durable (`subscribe`), or read them from an iterator (`updates`).
A SKU's events are all in its SKU stream, so parts of a split projection hold
different SKUs (`disjoint`).
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from saleday.events.envelope import Envelope
from saleday.projections.view import DISJOINT, View

STOCKED, AVAILABLE, RESERVED, SOLD, SET_ASIDE = range(5)


class StockView(View):
    name = "stock"
    tables: ClassVar[dict[str, str]] = {"sku": DISJOINT}

    def __init__(self) -> None:
        super().__init__()
        self._subscribers: list[Callable[[dict[str, int]], None]] = []
        self._pending: set[str] = set()

    def apply(self, env: Envelope) -> None:
        self.apply_batch((env,))

    def apply_batch(self, envs: Sequence[Envelope]) -> None:
        skus = self.t["sku"]
        dirty = self.dirty["sku"]
        for env in envs:
            kind = env.type
            if not kind.startswith("inventory."):
                continue
            d = env.data
            sku = d["sku"]
            row = skus.get(sku)
            if row is None:
                row = skus[sku] = [0, 0, 0, 0]
            if kind == "inventory.stock_reserved":
                qty = d["qty"]
                row[AVAILABLE] -= qty
                row[RESERVED] += qty
            elif kind == "inventory.reservation_confirmed":
                qty = d["qty"]
                row[RESERVED] -= qty
                row[SOLD] += qty
            elif kind in ("inventory.reservation_released", "inventory.reservation_expired"):
                qty = d["qty"]
                row[AVAILABLE] += qty
                row[RESERVED] -= qty
            elif kind == "inventory.sold_units_returned":
                qty = d["qty"]
                row[SOLD] -= qty
                row[AVAILABLE] += qty
            elif kind == "inventory.stock_added":
                qty = d["qty"]
                row[STOCKED] += qty
                row[AVAILABLE] += qty
            elif kind == "inventory.stock_set_aside":
                if len(row) == SET_ASIDE:
                    row.append(0)
                row[AVAILABLE] -= d["qty"]
                row[SET_ASIDE] += d["qty"]
            elif kind in ("inventory.set_aside_sold", "inventory.set_aside_returned"):
                if len(row) == SET_ASIDE:
                    row.append(0)
                row[SET_ASIDE] -= d["qty"]
                row[SOLD if kind == "inventory.set_aside_sold" else AVAILABLE] += d["qty"]
            dirty.add(sku)
        self._pending |= dirty

    def reset(self) -> None:
        super().reset()
        self._pending.clear()

    # -- reading ---------------------------------------------------------------------------

    def of(self, sku: str) -> dict[str, int] | None:
        row = self.t["sku"].get(sku)
        return None if row is None else _as_dict(row)

    def to_json(self) -> dict[str, Any]:
        skus = self.t["sku"]
        return {"skus": {sku: _as_dict(skus[sku]) for sku in sorted(skus)}}

    # -- pushing changes ---------------------------------------------------------------------

    def subscribe(self, callback: Callable[[dict[str, int]], None]) -> Callable[[], None]:
        """Call `callback({sku: available})` after each durable batch that changed stock;
        returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def updates(self, maxsize: int = 1000) -> Iterator[dict[str, int]]:
        """An iterator over the same deltas (blocks until the next one; for a consumer
        thread such as a web page's event stream). Deltas beyond `maxsize` unread are merged."""
        q: queue.Queue[dict[str, int]] = queue.Queue(maxsize)

        def put(delta: dict[str, int]) -> None:
            try:
                q.put_nowait(delta)
            except queue.Full:  # a slow reader gets the latest values, merged
                merged = {}
                while not q.empty():
                    merged.update(q.get_nowait())
                merged.update(delta)
                q.put_nowait(merged)

        self.subscribe(put)
        while True:
            yield q.get()

    def committed(self) -> None:
        if not self._pending:
            return
        skus = self.t["sku"]
        delta = {sku: skus[sku][AVAILABLE] for sku in sorted(self._pending) if sku in skus}
        self._pending.clear()
        for callback in list(self._subscribers):
            callback(delta)


def _as_dict(row: list[int]) -> dict[str, int]:
    out = {"stocked": row[STOCKED], "available": row[AVAILABLE], "reserved": row[RESERVED],
           "sold": row[SOLD]}
    if len(row) > SET_ASIDE:
        out["set_aside"] = row[SET_ASIDE]
    return out
