"""What every rule family shares: reservation records, statuses, and the base that
holds the audit's state and its findings (see projections/audit_rules.py)."""

from __future__ import annotations

OPEN, CONFIRMED, RELEASED, EXPIRED = "held", "confirmed", "released", "expired"
RETURNED = "returned"   # confirmed, then its units went back when its order was refunded
HELD, LOCKED, REDEEMED, LAPSED = "held", "locked", "redeemed", "lapsed"
_MASK64 = 2**64 - 1

# reservation record: [status, user, qty, unit_prices, deadline, stream, version]
_ST, _USER, _QTY, _PRICES, _DEADLINE, _STREAM, _VERSION = range(7)


class RulesBase:
    """The fold's state, shared by the rule families (each a mixin over it)."""

    def __init__(self) -> None:
        self.findings: list[tuple[str, str, int | None, str]] = []
        self.end_checks: dict[str, int] = {}
        self.skus: dict = {}
        self.res: dict[tuple[str, str], list] = {}
        self.voided: set[tuple[str, str]] = set()
        self.set_asides: dict[tuple[str, str], list] = {}   # (sku, hold) -> [status, user, qty, stream, version]
        self.orders: dict = {}
        self.coupons: dict[tuple[str, str], list] = {}
        self.campaigns: dict[str, list] = {}
        self.grants: set[tuple[str, str]] = set()
        self.pools: dict[tuple[str, str], list] = {}
        self.teams: dict = {}
        self.users: dict[str, list] = {}
        self.inviter: dict[str, tuple[str, int, str, int]] = {}

    def fail(self, rule: str, stream: str, version: int | None, message: str) -> None:
        self.findings.append((rule, stream, version, message))

    def _count(self, rule: str, n: int) -> None:
        self.end_checks[rule] = self.end_checks.get(rule, 0) + n
