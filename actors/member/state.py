"""What a member knows: the order history, the tier over time, the points ledger, and
the lines refunded by price protection.

Snapshots name this class (actors/state_codec.py encodes a state by its class's qualified
name and declared fields), so its name and fields are part of the snapshot format: a
field is added last, with a default.
"""

from __future__ import annotations

from dataclasses import dataclass

import immutables

from saleday.actors.decider import compact_pickle
from saleday.actors.member.words import Lots
from saleday.events.values import quick_init


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class MemberState:
    """One member (entity id = the user).

    `orders` maps each order ref to `(ordered_at, amount_cents, source)`. `tiers` is the
    tier history `((since, tier), ...)` in time order ("regular" before the first).
    The ledger: `lots` holds what is left of each earning, `earned`, `redeemed` and
    `expired` the totals, `redemptions` each redemption id's points, `holds` the points
    orders set aside, `taken_back` what refunded orders took back;
    `sum(lot points) + held == earned - redeemed - expired - sum(taken_back)`, and
    neither the balance nor a hold is ever negative.
    """

    user: str
    orders: immutables.Map[str, tuple[int, int, str]]
    tiers: tuple[tuple[int, str], ...]
    earnings: immutables.Map[str, int]
    lots: Lots
    earned: int
    redeemed: int
    expired: int
    redemptions: immutables.Map[str, int]
    protected: immutables.Map[str, int]
    """`order_ref \x1f sku` -> the price-protection refund of that line (once per line)."""
    invoices: immutables.Map[str, str]
    """Order ref -> the invoice chosen at checkout (none, paper, electronic)."""
    holds: immutables.Map[str, tuple[int, Lots, int]] = immutables.Map()
    """Hold id (the order) -> (points, the lots they were taken from, until): points set
    aside at checkout, out of the balance and not yet redeemed."""
    released: immutables.Map[str, int] = immutables.Map()
    """Hold id -> the points that went back when the hold was released."""
    taken_back: immutables.Map[str, int] = immutables.Map()
    """Refunded order ref -> the points taken back from its lot (`PointsTakenBack`): it
    earns no points and is not price-protected."""

    @property
    def tier(self) -> str:
        """The tier now (the last one recorded)."""
        return self.tiers[-1][1] if self.tiers else "regular"

    def tier_at(self, at: int) -> str:
        """The tier the log says the member had at `at` (ms)."""
        current = "regular"
        for since, tier in self.tiers:
            if since > at:
                break
            current = tier
        return current

    @property
    def balance(self) -> int:
        """Points that can be redeemed or held (in the lots: not redeemed, not held)."""
        return sum(points for _, points, _ in self.lots)

    @property
    def held(self) -> int:
        """Points set aside by orders not yet paid or given up."""
        return sum(hold[0] for hold in self.holds.values())


_EMPTY: immutables.Map = immutables.Map()


def initial(user: str) -> MemberState:
    """A member nothing happened to yet."""
    return MemberState(user=user, orders=_EMPTY, tiers=(), earnings=_EMPTY, lots=(), earned=0,
                       redeemed=0, expired=0, redemptions=_EMPTY, protected=_EMPTY,
                       invoices=_EMPTY)
