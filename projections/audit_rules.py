"""The invariants of ARCHITECTURE.md, checked by folding events (wire names, payload dicts).

`Rules` keeps plain dicts and lists per SKU, reservation, order, coupon, campaign, team
and user, fed one event at a time through a dispatch table keyed by wire type name.
Rules that need the whole log (a reservation left open past its deadline, a paid order
whose reservations were not confirmed, a referral cycle) run in `finish`, once the last
event time is known. Each rule is explained in words in docs/AUDIT.md; the readers of
each wire type follow actors/*.py, which write them.

Pure: no I/O, clock or logging. A finding is `(rule, stream, version, message)`.
"""

from __future__ import annotations

from collections.abc import Callable

RULES: dict[str, str] = {
    "log.chain": "gapless versions from 1 and intact hash chains (docs/LOG_FORMAT.md)",
    "log.commands": "each command's effects are recorded once (one run of events, one stream)",
    "log.schema": "every event has a type and schema version this audit knows, and its shape",
    "stock.conservation": "per SKU available + reserved + sold = stocked; moves match the reservation",
    "stock.oversell": "no reservation takes more units than are available (never negative)",
    "sale.window": "units are reserved only while the SKU's sale is open",
    "sale.tiers": "unit k is taken from the lowest tier with room, at that tier's price",
    "sale.limits": "no user holds or bought more units of a SKU than its per-user limit",
    "reservations.lifecycle": "only a held reservation is confirmed, released or expired, once",
    "reservations.leak": "no reservation is still held after its deadline at the end of the log",
    "coupons.budget": "grants + pools drawn - pools returned stay within each campaign budget",
    "coupons.redemption": "a coupon is received once, redeemed at most once, only if received, "
                          "locked by its order and valid",
    "teams.members": "a team completes only with `size` distinct members, in join order",
    "teams.split": "red-packet shares sum exactly to the pool, each >= the minimum, as drawn",
    "orders.settlement": "paid => every reservation confirmed and the coupon redeemed; "
                         "cancelled => none confirmed, all released",
    "orders.money": "total = subtotal - discount; line prices = the reservations' prices; "
                    "a paid order captured its total once, other payments are refunded",
    "referrals.first_touch": "one inviter per user, set on the first session, seen before",
    "referrals.no_self": "nobody is credited with inviting themselves",
    "referrals.no_cycles": "the referral graph has no cycles",
}
"""Every rule the audit checks, with what it means in one line."""

READS: dict[str, tuple[str, ...]] = {
    "stock.conservation": ("inventory.stock_added", "inventory.reservation_confirmed",
                           "inventory.reservation_released", "inventory.reservation_expired"),
    "stock.oversell": ("inventory.stock_reserved",),
    "sale.window": ("inventory.stock_reserved",),
    "sale.tiers": ("inventory.sale_configured", "inventory.stock_reserved",
                   "inventory.reservation_confirmed"),
    "sale.limits": ("inventory.stock_reserved",),
    "reservations.lifecycle": ("inventory.stock_reserved", "inventory.reservation_confirmed",
                               "inventory.reservation_released", "inventory.reservation_expired",
                               "inventory.reservation_voided"),
    "coupons.budget": ("coupons.campaign_created", "coupons.coupon_granted", "coupons.pool_drawn",
                       "coupons.pool_returned"),
    "coupons.redemption": ("sessions.coupon_received", "sessions.coupon_locked",
                           "sessions.coupon_redeemed", "sessions.coupon_unlocked",
                           "sessions.coupon_lapsed"),
    "teams.members": ("teams.team_created", "teams.member_joined", "teams.team_completed",
                      "teams.team_expired_unfilled"),
    "teams.split": ("teams.red_packet_split",),
    "orders.settlement": ("orders.checkout_started", "orders.order_voided",
                          "orders.checkout_cancelled"),
    "orders.money": ("orders.order_placed", "orders.payment_captured", "orders.refund_issued"),
    "referrals.first_touch": ("sessions.referral_attributed",),
    "referrals.no_self": ("sessions.referral_attributed",),
}
"""Which event types each rule examines (its per-event check count)."""

OPEN, CONFIRMED, RELEASED, EXPIRED = "held", "confirmed", "released", "expired"
HELD, LOCKED, REDEEMED, LAPSED = "held", "locked", "redeemed", "lapsed"
_MASK64 = 2**64 - 1

# reservation record: [status, user, qty, unit_prices, deadline, stream, version]
_ST, _USER, _QTY, _PRICES, _DEADLINE, _STREAM, _VERSION = range(7)


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
        "sold",
        "start",
        "stocked",
        "stream",
        "taken",
        "tiers",
    )

    def __init__(self, name: str, stream: str) -> None:
        self.name, self.stream = name, stream
        self.stocked = self.available = self.reserved = self.sold = 0
        self.tiers: list = []
        self.taken: list[int] = []
        self.limit = self.start = self.end = 0
        self.configured = False
        self.per_user: dict[str, int] = {}


class Order:
    __slots__ = (
        "captured",
        "coupon",
        "deadline",
        "discount",
        "line_prices",
        "lines",
        "oid",
        "placed",
        "refunds",
        "started_at",
        "status",
        "stream",
        "subtotal",
        "total",
        "user",
        "version",
    )

    def __init__(self, oid: str, stream: str, version: int) -> None:
        self.oid, self.stream, self.version = oid, stream, version
        self.user = self.coupon = self.status = ""
        self.lines: list = []
        self.deadline = self.started_at = self.subtotal = self.discount = self.total = 0
        self.line_prices: list = []
        self.captured: list[tuple[str, int]] = []
        self.refunds: dict[str, int] = {}
        self.placed = False


class Team:
    __slots__ = (
        "campaign",
        "completed",
        "expired",
        "leader",
        "members",
        "min_share",
        "pool",
        "seed",
        "size",
        "split",
        "stream",
        "version",
    )

    def __init__(self, d: dict, stream: str, version: int) -> None:
        self.stream, self.version = stream, version
        self.leader, self.campaign = d["leader"], d["campaign"]
        self.pool, self.size, self.min_share, self.seed = (d["pool_cents"], d["size"],
                                                           d["min_share_cents"], d["seed"])
        self.members = [self.leader]
        self.completed = self.expired = self.split = False


class Rules:
    """The audit's fold: call `apply(env)` per event (or `handlers[type](env)`), then `finish`."""

    def __init__(self) -> None:
        self.findings: list[tuple[str, str, int | None, str]] = []
        self.end_checks: dict[str, int] = {}
        self.skus: dict[str, Sku] = {}
        self.res: dict[tuple[str, str], list] = {}
        self.voided: set[tuple[str, str]] = set()
        self.orders: dict[str, Order] = {}
        self.coupons: dict[tuple[str, str], list] = {}
        self.campaigns: dict[str, list] = {}
        self.grants: set[tuple[str, str]] = set()
        self.pools: dict[tuple[str, str], list] = {}
        self.teams: dict[str, Team] = {}
        self.users: dict[str, list] = {}
        self.inviter: dict[str, tuple[str, int, str, int]] = {}
        self.handlers: dict[str, Callable[[tuple], None]] = {
            "inventory.stock_added": self.stock_added,
            "inventory.sale_configured": self.sale_configured,
            "inventory.stock_reserved": self.stock_reserved,
            "inventory.reservation_confirmed": self.reservation_confirmed,
            "inventory.reservation_released": self.reservation_returned,
            "inventory.reservation_expired": self.reservation_returned,
            "inventory.reservation_voided": self.reservation_voided,
            "sessions.session_started": self.session_started,
            "sessions.referral_attributed": self.referral_attributed,
            "sessions.coupon_received": self.coupon_received,
            "sessions.coupon_locked": self.coupon_locked,
            "sessions.coupon_redeemed": self.coupon_redeemed,
            "sessions.coupon_unlocked": self.coupon_unlocked,
            "sessions.coupon_lock_voided": _ignore,
            "sessions.coupon_lapsed": self.coupon_lapsed,
            "sessions.order_status_changed": _ignore,
            "sessions.push_delivered": _ignore,
            "sessions.store_visited": _ignore,
            "coupons.campaign_created": self.campaign_created,
            "coupons.coupon_granted": self.coupon_granted,
            "coupons.pool_drawn": self.pool_drawn,
            "coupons.pool_returned": self.pool_returned,
            "teams.team_created": self.team_created,
            "teams.member_joined": self.member_joined,
            "teams.team_completed": self.team_completed,
            "teams.red_packet_split": self.red_packet_split,
            "teams.team_expired_unfilled": self.team_expired,
            "orders.checkout_started": self.checkout_started,
            "orders.order_placed": self.order_placed,
            "orders.order_voided": self.order_voided,
            "orders.checkout_cancelled": self.checkout_cancelled,
            "orders.payment_captured": self.payment_captured,
            "orders.refund_issued": self.refund_issued,
        }

    def fail(self, rule: str, stream: str, version: int | None, message: str) -> None:
        self.findings.append((rule, stream, version, message))

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

    def reservation_voided(self, env: tuple) -> None:
        d = env[8]
        key = (d["sku"], d["reservation_id"])
        r = self.res.get(key)
        if r is not None and r[0] is OPEN:
            self.fail("reservations.lifecycle", env[0], env[1],
                      f"reservation {key[1]!r} of SKU {key[0]!r} voided while it is held")
        self.voided.add(key)

    # --- sessions: referrals ------------------------------------------------------------

    def session_started(self, env: tuple) -> None:
        d = env[8]
        u = self.users.get(d["user"])
        if u is None:
            self.users[d["user"]] = [d["started_at"], env[5], 1]
        else:
            u[2] += 1

    def referral_attributed(self, env: tuple) -> None:
        d = env[8]
        user, inviter = d["user"], d["inviter"]
        if inviter == user:  # the one rule it breaks: not also a cycle, nor seen-before
            self.fail("referrals.no_self", env[0], env[1], f"user {user!r} credited as their own inviter")
            return
        before = self.inviter.get(user)
        u = self.users.get(user)
        if before is not None:
            self.fail("referrals.first_touch", env[0], env[1],
                      f"user {user!r} attributed to {inviter!r} after already being attributed "
                      f"to {before[0]!r}")
        elif u is None or u[2] != 1 or u[1] != env[5]:
            self.fail("referrals.first_touch", env[0], env[1],
                      f"user {user!r} attributed to {inviter!r} outside their first session")
        else:
            self.inviter[user] = (inviter, d["attributed_at"], env[0], env[1])

    # --- sessions: the wallet ---------------------------------------------------------

    # coupon record: [status, value, valid_until, order_id, stream, version, redeemed_by,
    #                 (stream, version) of the redemption]
    def coupon_received(self, env: tuple) -> None:
        d = env[8]
        key = (d["user"], d["coupon_id"])
        if key in self.coupons:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {key[1]!r} received a second time by user {key[0]!r}")
            return
        self.coupons[key] = [HELD, d["value_cents"], d["valid_until"], "", env[0], env[1], "", None]

    def _coupon(self, env: tuple, what: str) -> list | None:
        d = env[8]
        c = self.coupons.get((d["user"], d["coupon_id"]))
        if c is None:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {d['coupon_id']!r} of user {d['user']!r} {what}, but the user never "
                      "received it")
        return c

    def coupon_locked(self, env: tuple) -> None:
        c = self._coupon(env, "locked")
        if c is None:
            return
        d = env[8]
        if c[0] is not HELD:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {d['coupon_id']!r} of user {d['user']!r} locked for order "
                      f"{d['order_id']!r} while {c[0]}" + (f" by {c[3]!r}" if c[3] else ""))
        c[0], c[3] = LOCKED, d["order_id"]

    def coupon_redeemed(self, env: tuple) -> None:
        c = self._coupon(env, "redeemed")
        if c is None:
            return
        d = env[8]
        cid, oid = d["coupon_id"], d["order_id"]
        if c[6]:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {cid!r} of user {d['user']!r} redeemed a second time (by order "
                      f"{oid!r}; first by {c[6]!r})")
        elif c[0] is not LOCKED or c[3] != oid:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {cid!r} of user {d['user']!r} redeemed by order {oid!r} while "
                      f"{c[0]}" + (f" by {c[3]!r}" if c[3] and c[3] != oid else "")
                      + " (not locked by that order)")
        if d["value_cents"] != c[1]:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {cid!r} redeemed for {d['value_cents']} cents; it is worth {c[1]}")
        c[0], c[3] = REDEEMED, oid
        if not c[6]:
            c[6], c[7] = oid, (env[0], env[1])

    def coupon_unlocked(self, env: tuple) -> None:
        c = self._coupon(env, "unlocked")
        if c is None:
            return
        d = env[8]
        if c[0] is not LOCKED or c[3] != d["order_id"]:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {d['coupon_id']!r} of user {d['user']!r} unlocked by order "
                      f"{d['order_id']!r}, which does not hold it")
        c[0], c[3] = HELD, ""

    def coupon_lapsed(self, env: tuple) -> None:
        c = self._coupon(env, "lapsed")
        if c is None:
            return
        d = env[8]
        if c[0] is not HELD or env[4] < c[2]:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {d['coupon_id']!r} of user {d['user']!r} lapsed at {env[4]} while "
                      f"{c[0]}, valid until {c[2]}")
        c[0] = LAPSED

    # --- campaigns ---------------------------------------------------------------------

    # campaign record: [budget_coupons, budget_cents, coupons out, cents out, stream]
    def campaign_created(self, env: tuple) -> None:
        d = env[8]
        if d["campaign"] in self.campaigns:
            self.fail("coupons.budget", env[0], env[1],
                      f"campaign {d['campaign']!r} created a second time")
            return
        self.campaigns[d["campaign"]] = [d["budget_coupons"], d["budget_cents"], 0, 0, env[0]]

    def _draw(self, env: tuple, campaign: str, coupons: int, cents: int, what: str) -> None:
        c = self.campaigns.get(campaign)
        if c is None:
            self.fail("coupons.budget", env[0], env[1],
                      f"{what} from campaign {campaign!r}, which was never created")
            return
        c[2] += coupons
        c[3] += cents
        if (c[0] and c[2] > c[0]) or (c[1] and c[3] > c[1]):
            self.fail("coupons.budget", env[0], env[1],
                      f"campaign {campaign!r} is over its budget after {what}: {c[2]} coupons and "
                      f"{c[3]} cents out (granted + pools drawn - returned), budget "
                      f"{c[0] or 'unlimited'} coupons and {c[1] or 'unlimited'} cents")

    def coupon_granted(self, env: tuple) -> None:
        d = env[8]
        key = (d["campaign"], d["coupon_id"])
        if key in self.grants:
            self.fail("coupons.budget", env[0], env[1],
                      f"grant {d['coupon_id']!r} of campaign {d['campaign']!r} granted twice")
        self.grants.add(key)
        self._draw(env, d["campaign"], 1, d["value_cents"],
                   f"granting coupon {d['coupon_id']!r} ({d['value_cents']} cents)")

    def pool_drawn(self, env: tuple) -> None:
        d = env[8]
        key = (d["campaign"], d["team"])
        if key in self.pools:
            self.fail("coupons.budget", env[0], env[1],
                      f"team {d['team']!r} drew a second pool from campaign {d['campaign']!r}")
        self.pools[key] = [d["pool_cents"], d["coupons"], False]
        self._draw(env, d["campaign"], d["coupons"], d["pool_cents"],
                   f"drawing team {d['team']!r}'s pool ({d['pool_cents']} cents)")

    def pool_returned(self, env: tuple) -> None:
        d = env[8]
        key = (d["campaign"], d["team"])
        p = self.pools.get(key)
        if p is None or p[2] or (p[0], p[1]) != (d["pool_cents"], d["coupons"]):
            self.fail("coupons.budget", env[0], env[1],
                      f"team {d['team']!r} returned a pool of {d['pool_cents']} cents / "
                      f"{d['coupons']} coupons to campaign {d['campaign']!r} that "
                      + ("it never drew" if p is None else "was already returned" if p[2]
                         else f"differs from the {p[0]} cents / {p[1]} coupons it drew"))
            if p is None or p[2]:
                return
        p[2] = True
        c = self.campaigns.get(d["campaign"])
        if c is not None:
            c[2] -= p[1]
            c[3] -= p[0]

    # --- teams -------------------------------------------------------------------------

    def team_created(self, env: tuple) -> None:
        d = env[8]
        if d["team"] in self.teams:
            self.fail("teams.members", env[0], env[1], f"team {d['team']!r} created a second time")
            return
        self.teams[d["team"]] = Team(d, env[0], env[1])

    def _team(self, env: tuple, what: str) -> Team | None:
        t = self.teams.get(env[8]["team"])
        if t is None:
            self.fail("teams.members", env[0], env[1],
                      f"team {env[8]['team']!r} {what}, but it was never created")
        return t

    def member_joined(self, env: tuple) -> None:
        t = self._team(env, "got a member")
        if t is None:
            return
        d = env[8]
        if t.completed or t.expired or d["user"] in t.members or d["position"] != len(t.members):
            self.fail("teams.members", env[0], env[1],
                      f"team {d['team']!r}: {d['user']!r} joined at position {d['position']} "
                      f"with members {t.members}"
                      + (" after the team was " + ("completed" if t.completed else "expired")
                         if t.completed or t.expired else ""))
        t.members.append(d["user"])

    def team_completed(self, env: tuple) -> None:
        t = self._team(env, "completed")
        if t is None:
            return
        members = list(env[8]["members"])
        if (members != t.members or len(members) != t.size or len(set(members)) != t.size
                or t.completed or t.expired):
            self.fail("teams.members", env[0], env[1],
                      f"team {env[8]['team']!r} completed with {members}, but it needs {t.size} "
                      f"distinct members and its members in join order are {t.members}")
        t.completed = True

    def red_packet_split(self, env: tuple) -> None:
        t = self._team(env, "split its red packet")
        if t is None:
            return
        d = env[8]
        shares = [tuple(s) for s in d["shares"]]
        cents = [c for _, c in shares]
        problems = []
        if t.split:
            problems.append("it was already split")
        if not t.completed:
            problems.append("the team is not complete")
        if [m for m, _ in shares] != t.members:
            problems.append(f"the shares go to {[m for m, _ in shares]}, not the members "
                            f"{t.members} in join order")
        if sum(cents) != t.pool:
            problems.append(f"the shares sum to {sum(cents)} cents, not the pool of {t.pool}")
        if cents and min(cents) < t.min_share:
            problems.append(f"a share of {min(cents)} cents is below the minimum of {t.min_share}")
        if not problems and shares != split_red_packet(t.pool, t.size, t.min_share, t.seed, t.members):
            problems.append("the shares are not the documented split of the pool by its seed")
        if problems:
            self.fail("teams.split", env[0], env[1],
                      f"team {d['team']!r}'s red packet: " + "; ".join(problems))
        t.split = True

    def team_expired(self, env: tuple) -> None:
        t = self._team(env, "expired")
        if t is None:
            return
        d = env[8]
        if t.completed or t.expired or list(d["members"]) != t.members or d["pool_cents"] != t.pool:
            self.fail("teams.members", env[0], env[1],
                      f"team {d['team']!r} expired unfilled with {list(d['members'])} and "
                      f"{d['pool_cents']} cents, but it " + ("had completed" if t.completed else
                                                             f"has {t.members} and {t.pool} cents"))
        t.expired = True

    # --- orders ------------------------------------------------------------------------

    def _order(self, env: tuple, what: str) -> Order | None:
        o = self.orders.get(env[8]["order_id"])
        if o is None or not o.status:
            self.fail("orders.settlement", env[0], env[1],
                      f"order {env[8]['order_id']!r} {what} before its checkout started")
        return o

    def checkout_started(self, env: tuple) -> None:
        d = env[8]
        oid = d["order_id"]
        o = self.orders.get(oid)
        if o is not None and o.status:  # (an order only refunded so far has no status)
            self.fail("orders.settlement", env[0], env[1],
                      f"order {oid!r} started after it was already {o.status}")
            return
        if o is None:
            o = self.orders[oid] = Order(oid, env[0], env[1])
        o.stream, o.version = env[0], env[1]
        o.user, o.lines, o.coupon = d["user"], d["lines"], d["coupon_id"]
        o.deadline, o.started_at, o.status = d["payment_deadline"], d["started_at"], "trying"

    def order_placed(self, env: tuple) -> None:
        o = self._order(env, "placed")
        if o is None:
            return
        d = env[8]
        oid = o.oid
        if o.status != "trying":
            self.fail("orders.settlement", env[0], env[1], f"order {oid!r} placed while {o.status}")
        lp = d["line_prices"]
        problems = []
        if d["user"] != o.user:
            problems.append(f"placed for user {d['user']!r}, started by {o.user!r}")
        if len(lp) != len(o.lines) or any(len(p) != q for p, (_, q) in zip(lp, o.lines)):
            problems.append(f"line prices {lp} do not give one price per unit of {o.lines}")
        if sum(map(sum, lp)) != d["subtotal_cents"]:
            problems.append(f"subtotal {d['subtotal_cents']} is not the sum of the line prices")
        if not 0 <= d["discount_cents"] <= d["subtotal_cents"] or (d["discount_cents"] and not o.coupon):
            problems.append(f"discount {d['discount_cents']} on a subtotal of {d['subtotal_cents']}"
                            + ("" if o.coupon else " without a coupon"))
        if d["total_cents"] != d["subtotal_cents"] - d["discount_cents"]:
            problems.append(f"total {d['total_cents']} is not subtotal {d['subtotal_cents']} - "
                            f"discount {d['discount_cents']}")
        if problems:
            self.fail("orders.money", env[0], env[1], f"order {oid!r}: " + "; ".join(problems))
        o.status, o.placed = "placed", True
        o.line_prices, o.subtotal = lp, d["subtotal_cents"]
        o.discount, o.total = d["discount_cents"], d["total_cents"]

    def order_voided(self, env: tuple) -> None:
        oid = env[8]["order_id"]
        o = self.orders.get(oid)
        if o is not None and o.status:
            self.fail("orders.settlement", env[0], env[1],
                      f"order {oid!r} voided after it started ({o.status})")
            return
        if o is None:
            o = self.orders[oid] = Order(oid, env[0], env[1])
        o.status = "voided"

    def checkout_cancelled(self, env: tuple) -> None:
        o = self._order(env, "cancelled")
        if o is None:
            return
        if o.status not in ("trying", "placed") or env[8]["was_placed"] != (o.status == "placed"):
            self.fail("orders.settlement", env[0], env[1],
                      f"order {o.oid!r} cancelled (was_placed={env[8]['was_placed']}) while {o.status}")
        o.status = "cancelled"

    def payment_captured(self, env: tuple) -> None:
        o = self._order(env, "captured a payment")
        if o is None:
            return
        d = env[8]
        if o.status != "placed" or d["amount_cents"] != o.total:
            self.fail("orders.money", env[0], env[1],
                      f"order {o.oid!r} captured {d['amount_cents']} cents ({d['payment_id']!r}) "
                      f"while {o.status}, total {o.total}")
        o.captured.append((d["payment_id"], d["amount_cents"]))
        o.status = "paid"

    def refund_issued(self, env: tuple) -> None:
        d = env[8]
        oid, pid = d["order_id"], d["payment_id"]
        o = self.orders.get(oid)
        if o is None:
            o = self.orders[oid] = Order(oid, env[0], env[1])  # a payment for an unknown order
        if pid in o.refunds or any(pid == p for p, _ in o.captured):
            self.fail("orders.money", env[0], env[1],
                      f"order {oid!r}: payment {pid!r} refunded after it was "
                      + ("refunded already" if pid in o.refunds else "captured"))
        o.refunds[pid] = d["amount_cents"]

    # --- the end of the log ----------------------------------------------------------

    def finish(self, last_time: int) -> None:
        """The checks that need the whole log; `last_time` is its last event time (ms)."""
        self._stock_at_end()
        self._leaks(last_time)
        self._orders_at_end(last_time)
        self._teams_at_end()
        self._referrals_at_end()

    def _count(self, rule: str, n: int) -> None:
        self.end_checks[rule] = self.end_checks.get(rule, 0) + n

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
            if (s.available + s.reserved + s.sold != s.stocked or min(s.reserved, s.sold) < 0
                    or s.reserved != held.get(s.name, 0) or s.sold < sold.get(s.name, 0)):
                self.fail("stock.conservation", s.stream, None,
                          f"SKU {s.name!r}: available {s.available} + reserved {s.reserved} + sold "
                          f"{s.sold} against {s.stocked} stocked, with {held.get(s.name, 0)} units "
                          f"in held reservations and {sold.get(s.name, 0)} confirmed")

    def _leaks(self, last_time: int) -> None:
        self._count("reservations.leak", len(self.res))
        for (name, rid), r in self.res.items():
            if r[0] is OPEN and r[_DEADLINE] <= last_time:
                self.fail("reservations.leak", r[_STREAM], r[_VERSION],
                          f"reservation {rid!r} of SKU {name!r} ({r[_QTY]} units for {r[_USER]!r}) "
                          f"was due at {r[_DEADLINE]} but is still held at the end of the log "
                          f"({last_time})")

    def _orders_at_end(self, last_time: int) -> None:
        self._count("orders.settlement", len(self.orders))
        self._count("orders.money", len(self.orders))
        for o in self.orders.values():
            if o.lines:
                self._order_lines(o, last_time)
            if o.coupon:
                self._order_coupon(o, last_time)
            if o.status == "paid" and len(o.captured) != 1:
                self.fail("orders.money", o.stream, o.version,
                          f"order {o.oid!r} is paid but captured {len(o.captured)} payments")

    def _order_lines(self, o: Order, last_time: int) -> None:
        for i, (sku, _) in enumerate(o.lines):
            rid = f"{o.oid}/{i}"
            r = self.res.get((sku, rid))
            if r is not None and o.placed and i < len(o.line_prices) \
                    and list(r[_PRICES]) != list(o.line_prices[i]):
                self.fail("orders.money", o.stream, o.version,
                          f"order {o.oid!r} line {i} ({sku!r}) priced {list(o.line_prices[i])} but "
                          f"reservation {rid!r} holds it at {list(r[_PRICES])}")
            if o.status == "paid":
                if r is None:
                    self.fail("orders.settlement", o.stream, o.version,
                              f"order {o.oid!r} is paid but line {i} ({sku!r}) was never reserved "
                              f"(no reservation {rid!r})")
                elif r[0] is not CONFIRMED and not (r[0] is OPEN and r[_DEADLINE] > last_time):
                    self.fail("orders.settlement", o.stream, o.version,
                              f"order {o.oid!r} is paid but its reservation {rid!r} of SKU {sku!r} "
                              f"was {r[0]}, not confirmed")
            elif o.status in ("cancelled", "voided") and r is not None and r[0] is CONFIRMED:
                self.fail("orders.settlement", o.stream, o.version,
                          f"order {o.oid!r} is {o.status} but its reservation {rid!r} of SKU "
                          f"{sku!r} was confirmed (sold), not released")

    def _order_coupon(self, o: Order, last_time: int) -> None:
        c = self.coupons.get((o.user, o.coupon))
        if c is None:
            if o.status == "paid":
                self.fail("orders.settlement", o.stream, o.version,
                          f"order {o.oid!r} is paid with coupon {o.coupon!r}, which user "
                          f"{o.user!r} never received")
            return
        redeemed_by = c[6]
        if o.status == "paid":
            if redeemed_by != o.oid and not (c[0] is LOCKED and c[3] == o.oid and o.deadline > last_time):
                self.fail("orders.settlement", o.stream, o.version,
                          f"order {o.oid!r} is paid but its coupon {o.coupon!r} was not redeemed "
                          f"by it ({c[0]}" + (f" by {redeemed_by!r})" if redeemed_by else ")"))
        elif o.status in ("cancelled", "voided") and redeemed_by == o.oid:
            self.fail("orders.settlement", o.stream, o.version,
                      f"order {o.oid!r} is {o.status} but redeemed coupon {o.coupon!r}")
        if redeemed_by == o.oid:
            at = c[7]
            if o.started_at >= c[2]:
                self.fail("coupons.redemption", at[0], at[1],
                          f"coupon {o.coupon!r} of user {o.user!r} redeemed by order {o.oid!r} "
                          f"checked out at {o.started_at}, after it was valid (until {c[2]})")
        if o.placed and o.discount != min(c[1], o.subtotal):
            self.fail("orders.money", o.stream, o.version,
                      f"order {o.oid!r} took {o.discount} cents off for coupon {o.coupon!r}, "
                      f"worth {c[1]} on a subtotal of {o.subtotal}")

    def _teams_at_end(self) -> None:
        self._count("coupons.budget", len(self.teams))
        for name, t in self.teams.items():
            if t.campaign not in self.campaigns:
                continue  # the campaign's stream is not in this log
            p = self.pools.get((t.campaign, name))
            if p is None or (p[0], p[1]) != (t.pool, t.size):
                self.fail("coupons.budget", t.stream, t.version,
                          f"team {name!r} has a red packet of {t.pool} cents for {t.size} members "
                          f"that campaign {t.campaign!r} " + ("never drew" if p is None else
                                                              f"drew as {p[0]} cents / {p[1]} coupons"))

    def _referrals_at_end(self) -> None:
        self._count("referrals.first_touch", len(self.inviter))
        self._count("referrals.no_cycles", len(self.inviter))
        for user, (inviter, at, stream, version) in self.inviter.items():
            seen = self.users.get(inviter)
            if seen is None or not seen[0] < at:
                self.fail("referrals.first_touch", stream, version,
                          f"user {user!r} attributed to {inviter!r} at {at}, who was "
                          + ("never seen" if seen is None else f"first seen at {seen[0]}, not before"))
        done: set[str] = set()
        for start in self.inviter:
            path: dict[str, int] = {}
            user = start
            while user in self.inviter and user not in done and user not in path:
                path[user] = len(path)
                user = self.inviter[user][0]
            if user in path:
                cycle = list(path)[path[user]:]
                first = min(cycle)
                _, _, stream, version = self.inviter[first]
                self.fail("referrals.no_cycles", stream, version,
                          "referral cycle: " + " -> ".join([*cycle, user]) + " (each invited by the next)")
            done.update(path)


def _ignore(env: tuple) -> None:
    return None


def split_red_packet(pool: int, size: int, min_share: int, seed: int,
                     members: list[str]) -> list[tuple[str, int]]:
    """The "double the mean" split of actors/team.py from a splitmix64 of `seed` (the rule
    is restated in docs/AUDIT.md so an auditor can recompute it)."""
    if len(members) != size or size < 1:
        return []
    state = seed & _MASK64
    left, k, shares = pool, size, []
    for member in members[:-1]:
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        r = z ^ (z >> 31)
        upper = min(2 * left // k, left - min_share * (k - 1))
        share = min_share + r % (upper - min_share + 1)
        shares.append((member, share))
        left -= share
        k -= 1
    shares.append((members[-1], left))
    return shares


def describe(rule: str) -> str:
    return RULES.get(rule, rule)


