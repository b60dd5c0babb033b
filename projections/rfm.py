"""RFM scores and the tier rule: pure arithmetic an auditor can redo by hand.

Given each user's orders up to an as-of date (UTC calendar days):

- `recency_days`: whole days from the date of the user's last order to the as-of date;
- `frequency`: how many orders;
- `monetary`: their total (cents here; yuan in what `saleday view members` prints).

Scores `r`, `f`, `m` are 1..5 by quintile, with one rule for ranks and ties: among the N
users scored, a user's score for a metric is

    1 + floor(5 * W / N)

where W is the number of users whose value is strictly *worse* (for recency: more days;
for frequency and monetary: smaller). Equal values therefore always get equal scores, the
best value scores 5 when N >= 5 (4 with N = 4, ...; a lone user scores 1: W = 0), and the
worst scores 1. The segment is the three scores as digits, `f"{r}{f}{m}"` (e.g. "545").

The tier rule (`TierRule`) maps the sum r + f + m to a tier by thresholds, highest tier
first: the default is diamond >= 13, gold >= 10, silver >= 7, else regular; it reads and
writes as `diamond=13,gold=10,silver=7`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

DAY_MS = 86_400_000
TIER_NAMES = ("diamond", "gold", "silver")
"""The tiers a rule sets thresholds for, highest first; below them all is "regular"."""


class TierRuleError(ValueError):
    """A tier rule that does not read `diamond=N,gold=N,silver=N` with falling thresholds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TierRule:
    """Thresholds on r + f + m (3..15), one per tier above regular, highest tier first."""

    diamond: int = 13
    gold: int = 10
    silver: int = 7

    @classmethod
    def parse(cls, text: str) -> TierRule:
        """`diamond=13,gold=10,silver=7` (any subset; the rest keep their defaults)."""
        values: dict[str, int] = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in TIER_NAMES or not value.strip().isdigit():
                raise TierRuleError(f"tier rule item {item!r} must read tier=N with tier one of "
                                    f"{', '.join(TIER_NAMES)}")
            values[name] = int(value)
        rule = cls(**values)
        if not 3 <= rule.silver <= rule.gold <= rule.diamond <= 15:
            raise TierRuleError(f"tier thresholds must satisfy 3 <= silver <= gold <= diamond "
                                f"<= 15, not {rule.text}")
        return rule

    @property
    def text(self) -> str:
        return f"diamond={self.diamond},gold={self.gold},silver={self.silver}"

    def tier(self, r: int, f: int, m: int) -> str:
        total = r + f + m
        for name in TIER_NAMES:
            if total >= getattr(self, name):
                return name
        return "regular"


def day_of(ms: int) -> date:
    """The UTC calendar date of a time in ms."""
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def day_start_ms(day: date) -> int:
    """Midnight UTC at the start of `day`, in ms."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


def scores(values: Mapping[str, int], *, higher_is_better: bool) -> dict[str, int]:
    """Each user's 1..5 score for one metric: 1 + floor(5 * W / N), W = users strictly worse."""
    ordered = sorted(values.values())
    n = len(ordered)
    out = {}
    for user, value in values.items():
        if higher_is_better:
            worse = bisect_left(ordered, value)
        else:
            worse = n - bisect_right(ordered, value)
        out[user] = 1 + 5 * worse // n
    return out


def rfm(orders: Mapping[str, Iterable[tuple[int, int]]], as_of: date,
        rule: TierRule = TierRule()) -> list[dict]:
    """One row per user with an order on or before `as_of`: user, recency_days, frequency,
    monetary (yuan), r, f, m, segment and tier, sorted by user. `orders` maps a user to its
    `(ordered_at ms, amount cents)` pairs."""
    cutoff = day_start_ms(as_of) + DAY_MS
    recency, frequency, monetary = {}, {}, {}
    for user, pairs in orders.items():
        kept = [(at, cents) for at, cents in pairs if at < cutoff]
        if not kept:
            continue
        recency[user] = (as_of - day_of(max(at for at, _ in kept))).days
        frequency[user] = len(kept)
        monetary[user] = sum(cents for _, cents in kept)
    r = scores(recency, higher_is_better=False)
    f = scores(frequency, higher_is_better=True)
    m = scores(monetary, higher_is_better=True)
    return [{"user": user, "recency_days": recency[user], "frequency": frequency[user],
             "monetary": yuan(monetary[user]), "r": r[user], "f": f[user], "m": m[user],
             "segment": f"{r[user]}{f[user]}{m[user]}",
             "tier": rule.tier(r[user], f[user], m[user])}
            for user in sorted(recency)]


def yuan(cents: int) -> float:
    """Cents as yuan with two decimals (a JSON number: 12345 -> 123.45)."""
    return round(cents / 100, 2)
