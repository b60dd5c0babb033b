"""Stock, sale windows, flash-sale tiers, per-user limits and reservations (SKU streams)."""

from __future__ import annotations

from saleday.projections.rules.common import (
    _DEADLINE,
    _PRICES,
    _QTY,
    _STREAM,
    _USER,
    _VERSION,
    CONFIRMED,
    EXPIRED,
    OPEN,
    RELEASED,
    RETURNED,
    RulesBase,
)


class Sku:
    """One SKU as its events tell it."""

    __slots__ = (
        "available",
        "configured",
        "end",
        "limit",
        "name",
        "per_user",
        "reserved",
        "set_aside",
        "sold",
        "start",
        "stocked",
        "stream",
        "taken",
        "tiers",
    )

    def __init__(self, name: str, stream: str) -> None:
        self.name, self.stream = name, stream
        self.stocked = self.available = self.reserved = self.sold = self.set_aside = 0
        self.tiers: list = []
        self.taken: list[int] = []
        self.limit = self.start = self.end = 0
        self.configured = False
        self.per_user: dict[str, int] = {}



class StockRules(RulesBase):
    """inventory.* events: stock conservation, oversell, tiers, limits, leaks."""

    # --- inventory -------------------------------------------------------------------

    def _sku(self, name: str, stream: str) -> Sku:
        s = self.skus.get(name)
        if s is None:
            s = self.skus[name] = Sku(name, stream)
        return s

    def stock_added(self, env: tuple) -> None:
        d = env[8]
        s = self._sku(d["sku"], env[0])
        qty = d["qty"]
        if qty < 1:
            self.fail("stock.conservation", env[0], env[1],
                      f"SKU {s.name!r}: stock added must be at least 1 unit, not {qty}")
        s.stocked += qty
        s.available += qty

    def sale_configured(self, env: tuple) -> None:
        d = env[8]
        s = self._sku(d["sku"], env[0])
        tiers = [tuple(t) for t in d["tiers"]]
        if not tiers or tiers[-1][0] != 0 or any(u < 1 for u, _ in tiers[:-1]):
            self.fail("sale.tiers", env[0], env[1],
                      f"SKU {s.name!r}: tiers {tiers} are not pairs (units >= 1, price) ending "
                      "in (0, price)")
        if len(tiers) != len(s.taken):
            s.taken = [0] * len(tiers)
        s.tiers = tiers
        s.limit, s.start, s.end = d["per_user_limit"], d["start"], d["end"]
        s.configured = True

    def stock_reserved(self, env: tuple) -> None:
        d = env[8]
        stream, version = env[0], env[1]
        name, rid, user, qty = d["sku"], d["reservation_id"], d["user"], d["qty"]
        s = self.skus.get(name) or self._sku(name, stream)
        key = (name, rid)
        held = self.res.get(key)
        if held is not None and held[0] is OPEN:
            self.fail("reservations.lifecycle", stream, version,
                      f"reservation {rid!r} of SKU {name!r} reserved again while still held")
        if key in self.voided:
            self.fail("reservations.lifecycle", stream, version,
                      f"reservation {rid!r} of SKU {name!r} reserved after its cancel voided it")
        if not (s.configured and s.start <= d["reserved_at"] < s.end):
            self.fail("sale.window", stream, version,
                      f"SKU {name!r}: {qty} units reserved at {d['reserved_at']} outside the sale "
                      f"window [{s.start}, {s.end})" if s.configured else
                      f"SKU {name!r}: {qty} units reserved but no sale was configured")
        if qty > s.available:
            self.fail("stock.oversell", stream, version,
                      f"SKU {name!r} oversold: {qty} units reserved with {s.available} available")
        prices, tiers = d["unit_prices"], d["tiers"]
        taken = s.taken
        fitted = -1
        if s.configured:
            # the common case: every unit fits the lowest tier with room
            tier_list = s.tiers
            last = len(tier_list) - 1
            i = 0
            while i < last and taken[i] >= tier_list[i][0]:
                i += 1
            if i == last or taken[i] + qty <= tier_list[i][0]:
                fitted = i
                if (len(tiers) != qty or len(prices) != qty or tiers.count(i) != qty
                        or prices.count(tier_list[i][1]) != qty):
                    self._check_tiers(s, d, stream, version)
            else:
                self._check_tiers(s, d, stream, version)
        if qty < 1:
            self.fail("stock.conservation", stream, version,
                      f"SKU {name!r}: reservation {rid!r} of {qty} units")
        per_user = s.per_user
        count = per_user.get(user, 0) + qty
        if s.limit and count > s.limit:
            self.fail("sale.limits", stream, version,
                      f"SKU {name!r}: user {user!r} holds or bought {count} units, over the "
                      f"per-user limit of {s.limit}")
        per_user[user] = count
        s.available -= qty
        s.reserved += qty
        if fitted >= 0 and tiers.count(fitted) == len(tiers):
            taken[fitted] += len(tiers)
        else:
            try:
                for t in tiers:
                    taken[t] += 1
            except (IndexError, TypeError):
                pass  # reported by the tier check
        self.res[key] = [OPEN, user, qty, prices, d["deadline"], stream, version, tiers]

    def _check_tiers(self, s: Sku, d: dict, stream: str, version: int) -> None:
        qty = d["qty"]
        expected: list[int] = []
        last = len(s.tiers) - 1
        for i, ((units, _), taken) in enumerate(zip(s.tiers, s.taken)):
            room = qty - len(expected) if i == last else min(units - taken, qty - len(expected))
            expected.extend([i] * max(room, 0))
            if len(expected) >= qty:
                break
        want_prices = [s.tiers[t][1] for t in expected]
        if list(d["tiers"]) != expected or list(d["unit_prices"]) != want_prices:
            self.fail("sale.tiers", stream, version,
                      f"SKU {s.name!r}: reservation {d['reservation_id']!r} took tiers "
                      f"{list(d['tiers'])} at {list(d['unit_prices'])} cents, but the next "
                      f"{qty} units are tiers {expected} at {want_prices} cents "
                      f"(tiers {s.tiers}, taken {s.taken})")

    def _held(self, env: tuple, what: str) -> tuple[Sku, list] | None:
        d = env[8]
        name, rid = d["sku"], d["reservation_id"]
        r = self.res.get((name, rid))
        if r is None or r[0] is not OPEN:
            self.fail("reservations.lifecycle", env[0], env[1],
                      f"reservation {rid!r} of SKU {name!r} {what} but it is not held"
                      + (f" (it was {r[0]})" if r is not None else " (never reserved)"))
            return None
        s = self.skus[name]
        if d["qty"] != r[_QTY] or d["user"] != r[_USER]:
            self.fail("stock.conservation", env[0], env[1],
                      f"reservation {rid!r} of SKU {name!r} {what} for {d['qty']} units of "
                      f"user {d['user']!r}, but it holds {r[_QTY]} units of {r[_USER]!r}")
        return s, r

    def reservation_confirmed(self, env: tuple) -> None:
        held = self._held(env, "confirmed")
        if held is None:
            return
        s, r = held
        d = env[8]
        if d["amount_cents"] != sum(r[_PRICES]):
            self.fail("sale.tiers", env[0], env[1],
                      f"reservation {d['reservation_id']!r} of SKU {s.name!r} sold for "
                      f"{d['amount_cents']} cents, not the {sum(r[_PRICES])} its unit prices add to")
        r[0] = CONFIRMED
        qty = d["qty"]
        s.reserved -= qty
        s.sold += qty
        if s.reserved < 0:
            self.fail("stock.conservation", env[0], env[1],
                      f"SKU {s.name!r}: reserved units went negative ({s.reserved})")

    def reservation_returned(self, env: tuple) -> None:
        expired = env[2] == "inventory.reservation_expired"
        held = self._held(env, "expired" if expired else "released")
        if held is None:
            return
        s, r = held
        d = env[8]
        if expired and (d["deadline"] != r[_DEADLINE] or env[4] < r[_DEADLINE]):
            self.fail("reservations.lifecycle", env[0], env[1],
                      f"reservation {d['reservation_id']!r} of SKU {s.name!r} expired at "
                      f"{env[4]} with deadline {d['deadline']}, but it was held until "
                      f"{r[_DEADLINE]}")
        r[0] = EXPIRED if expired else RELEASED
        qty = d["qty"]
        s.reserved -= qty
        s.available += qty
        if s.reserved < 0:
            self.fail("stock.conservation", env[0], env[1],
                      f"SKU {s.name!r}: reserved units went negative ({s.reserved})")
        _give_back(s, r)

    def sold_units_returned(self, env: tuple) -> None:
        """A refunded order's confirmed reservation: its sold units back on the shelf, once."""
        d = env[8]
        name, rid = d["sku"], d["reservation_id"]
        r = self.res.get((name, rid))
        if r is None or r[0] is not CONFIRMED:
            self.fail("stock.conservation", env[0], env[1],
                      f"reservation {rid!r} of SKU {name!r} returned {d['qty']} units, but "
                      + ("it was never reserved" if r is None else
                         "they were returned already" if r[0] is RETURNED else
                         f"it is {r[0]}, not sold"))
            return
        s = self.skus[name]
        if d["qty"] != r[_QTY] or d["user"] != r[_USER] or d["amount_cents"] != sum(r[_PRICES]):
            self.fail("stock.conservation", env[0], env[1],
                      f"reservation {rid!r} of SKU {name!r} returned {d['qty']} units of "
                      f"{d['user']!r} for {d['amount_cents']} cents, but it sold {r[_QTY]} "
                      f"units of {r[_USER]!r} for {sum(r[_PRICES])}")
        r[0] = RETURNED
        qty = r[_QTY]
        s.sold -= qty
        s.available += qty
        if s.sold < 0:
            self.fail("stock.conservation", env[0], env[1],
                      f"SKU {s.name!r}: sold units went negative ({s.sold})")
        _give_back(s, r)

    def reservation_voided(self, env: tuple) -> None:
        d = env[8]
        key = (d["sku"], d["reservation_id"])
        r = self.res.get(key)
        if r is not None and r[0] is OPEN:
            self.fail("reservations.lifecycle", env[0], env[1],
                      f"reservation {key[1]!r} of SKU {key[0]!r} voided while it is held")
        self.voided.add(key)


    # --- presale set-asides (a deposit's units, driven by flows/presale_stock.py) ---------

    def stock_set_aside(self, env: tuple) -> None:
        d = env[8]
        s = self.skus.get(d["sku"]) or self._sku(d["sku"], env[0])
        key = (d["sku"], d["hold_id"])
        if key in self.set_asides:
            self.fail("presales.sku_holds", env[0], env[1],
                      f"hold {d['hold_id']!r} of SKU {s.name!r} set aside twice")
        if d["qty"] < 1:
            self.fail("stock.conservation", env[0], env[1],
                      f"SKU {s.name!r}: hold {d['hold_id']!r} of {d['qty']} units")
        if d["qty"] > s.available:
            self.fail("stock.oversell", env[0], env[1],
                      f"SKU {s.name!r} oversold: {d['qty']} units set aside with "
                      f"{s.available} available")
        s.available -= d["qty"]
        s.set_aside += d["qty"]
        self.set_asides[key] = [OPEN, d["user"], d["qty"], env[0], env[1]]

    def set_aside_closed(self, env: tuple) -> None:
        d = env[8]
        sold = env[2] == "inventory.set_aside_sold"
        key = (d["sku"], d["hold_id"])
        h = self.set_asides.get(key)
        if h is None or h[0] is not OPEN or (h[1], h[2]) != (d["user"], d["qty"]):
            self.fail("presales.sku_holds", env[0], env[1],
                      f"hold {d['hold_id']!r} of SKU {d['sku']!r} {'sold' if sold else 'returned'}"
                      f" for {d['qty']} units of {d['user']!r}, but it "
                      + ("was never set aside" if h is None else
                         f"is {h[0]}" if h[0] is not OPEN else
                         f"holds {h[2]} units of {h[1]!r}"))
            return
        h[0] = CONFIRMED if sold else RELEASED
        s = self.skus[d["sku"]]
        s.set_aside -= d["qty"]
        if sold:
            s.sold += d["qty"]
        else:
            s.available += d["qty"]

    def _stock_at_end(self) -> None:
        held: dict[str, int] = {}
        sold: dict[str, int] = {}
        for (name, _), r in self.res.items():
            if r[0] is OPEN:
                held[name] = held.get(name, 0) + r[_QTY]
            elif r[0] is CONFIRMED:
                sold[name] = sold.get(name, 0) + r[_QTY]
        self._count("stock.conservation", len(self.skus))
        for s in self.skus.values():
            # a negative `available` is an oversell, reported where it happened
            if (s.available + s.reserved + s.set_aside + s.sold != s.stocked
                    or min(s.reserved, s.sold, s.set_aside) < 0
                    or s.reserved != held.get(s.name, 0) or s.sold < sold.get(s.name, 0)):
                self.fail("stock.conservation", s.stream, None,
                          f"SKU {s.name!r}: available {s.available} + reserved {s.reserved} + set "
                          f"aside {s.set_aside} + sold {s.sold} against {s.stocked} stocked, with "
                          f"{held.get(s.name, 0)} units in held reservations and "
                          f"{sold.get(s.name, 0)} confirmed")

    def _leaks(self, last_time: int) -> None:
        self._count("reservations.leak", len(self.res))
        for (name, rid), r in self.res.items():
            if r[0] is OPEN and r[_DEADLINE] <= last_time:
                self.fail("reservations.leak", r[_STREAM], r[_VERSION],
                          f"reservation {rid!r} of SKU {name!r} ({r[_QTY]} units for {r[_USER]!r}) "
                          f"was due at {r[_DEADLINE]} but is still held at the end of the log "
                          f"({last_time})")


def _give_back(s: Sku, r: list) -> None:
    """Reservation `r`'s units no longer count against its user's limit or its tiers on
    SKU `s` (released, expired or returned after a refund)."""
    count = s.per_user.get(r[_USER], 0) - r[_QTY]
    if count > 0:
        s.per_user[r[_USER]] = count
    else:
        s.per_user.pop(r[_USER], None)
    taken = s.taken
    try:
        for t in r[7]:
            taken[t] -= 1
    except (IndexError, TypeError):
        pass
