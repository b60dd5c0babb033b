"""What a SKU knows: its stock buckets, its sale, its held reservations.

Snapshots name these classes (actors/state_codec.py encodes a state by its class's
qualified name and declared fields), so their names and fields are part of the snapshot
format: a field is added last, with a default.
"""

from __future__ import annotations

from dataclasses import dataclass

import immutables

from saleday.actors.decider import compact_pickle
from saleday.actors.sku.words import Tiers
from saleday.events.values import quick_init


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """Units held for a user until a deadline, with each unit's price and tier."""

    user: str
    qty: int
    unit_prices: tuple[int, ...]
    tiers: tuple[int, ...]
    deadline: int


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class SkuState:
    """One SKU: its stock buckets, sale configuration and held reservations.

    `tier_taken[i]` counts the reserved and sold units of tier i; `per_user` counts each
    user's reserved plus sold units (users at zero are dropped).
    """

    sku: str
    known: bool
    stocked: int
    available: int
    reserved: int
    sold: int
    tiers: Tiers
    tier_taken: tuple[int, ...]
    per_user_limit: int
    start: int
    end: int
    configured: bool
    reservations: immutables.Map[str, Reservation]
    per_user: immutables.Map[str, int]
    voided: immutables.Map[str, int]
    """Reservation ids cancelled before they were tried -> when."""
    confirmed: immutables.Map[str, Reservation] = immutables.Map()
    """Reservation ids confirmed (sold) -> the reservation as it was held (user, units,
    prices, tiers), so a refund can return its units (`ReturnSoldUnits`); a release of
    one is refused. (It held each user's name before refunds returned units; a snapshot
    written then, like one written before any field was added, is refused by the
    codec's schema check and the host replays the stream instead,
    actors/host/snapshots.py.)"""
    set_aside: int = 0
    """Units off the shelf kept for presale deposits (`SetAsideStock`), neither available
    nor reserved nor sold: available + reserved + set_aside + sold == stocked."""
    set_asides: immutables.Map[str, tuple[str, int]] = immutables.Map()
    """Hold id -> (user, qty) of the units set aside and not yet sold or returned."""
    set_aside_closed: immutables.Map[str, str] = immutables.Map()
    """Hold id -> `sold` or `returned`, once its units left the hold."""
    returned: immutables.Map[str, int] = immutables.Map()
    """Confirmed reservation id -> the units returned to the shelf when its order was
    refunded (once; it stays in `confirmed`, so it is never released)."""


_EMPTY: immutables.Map = immutables.Map()


def initial(sku: str) -> SkuState:
    """A SKU nobody has stocked or put on sale yet."""
    return SkuState(sku=sku, known=False, stocked=0, available=0, reserved=0, sold=0,
                    tiers=(), tier_taken=(), per_user_limit=0, start=0, end=0,
                    configured=False, reservations=_EMPTY, per_user=_EMPTY, voided=_EMPTY,
                    confirmed=_EMPTY)
