"""How a member's events fold into its state (`evolve`), and the arithmetic of its lots
of points that both the fold and the ledger's decisions use.

A lot is `(order_ref, points left, expires_at)`; a member's lots are kept soonest to
expire first (ties by order ref). Pure: no validation (the event already happened).
"""

from __future__ import annotations

from typing import assert_never

from saleday.actors.fields import fast_replace
from saleday.actors.member.state import MemberState
from saleday.actors.member.words import (
    InvoiceChosen,
    Lots,
    MemberEvent,
    OrderRecorded,
    PointsEarned,
    PointsExpired,
    PointsHeld,
    PointsRedeemed,
    PointsReleased,
    PointsTakenBack,
    PriceProtectionRefunded,
    Taken,
    TierChanged,
)

replace = fast_replace(MemberState)


def evolve(state: MemberState, event: MemberEvent) -> MemberState:
    """The state after `event`. No validation: the event already happened."""
    match event:
        case OrderRecorded():
            terms = (event.ordered_at, event.amount_cents, event.source)
            return replace(state, orders=state.orders.set(event.order_ref, terms))
        case TierChanged():
            return replace(state, tiers=(*state.tiers, (event.changed_at, event.tier)))
        case PointsEarned():
            lot = (event.order_ref, event.points, event.expires_at)
            lots = tuple(sorted((*state.lots, lot), key=lot_order))
            return replace(state, lots=lots, earned=state.earned + event.points,
                           earnings=state.earnings.set(event.order_ref, event.points))
        case PointsRedeemed():
            redemptions = state.redemptions.set(event.redemption_id, event.points)
            if event.redemption_id in state.holds:   # a hold spent: its points left the lots
                return replace(state, holds=state.holds.delete(event.redemption_id),
                               redeemed=state.redeemed + event.points, redemptions=redemptions)
            return replace(state, lots=take(state.lots, dict(event.taken)),
                           redeemed=state.redeemed + event.points, redemptions=redemptions)
        case PointsHeld():
            hold = (event.points, event.taken, event.until)
            return replace(state, lots=take(state.lots, dict(refs(event.taken))),
                           holds=state.holds.set(event.hold_id, hold))
        case PointsReleased():
            return replace(state, lots=give_back(state.lots, event.taken),
                           holds=state.holds.delete(event.hold_id),
                           released=state.released.set(event.hold_id, event.points))
        case PointsExpired():
            lots = tuple(lot for lot in state.lots if lot[0] != event.order_ref)
            return replace(state, lots=lots, expired=state.expired + event.points)
        case PriceProtectionRefunded():
            key = f"{event.order_ref}\x1f{event.sku}"
            return replace(state, protected=state.protected.set(key, event.refund_cents))
        case InvoiceChosen():
            return replace(state, invoices=state.invoices.set(event.order_ref, event.invoice))
        case PointsTakenBack():
            return replace(state, lots=take(state.lots, {event.order_ref: event.points}),
                           taken_back=state.taken_back.set(event.order_ref, event.points))
        case _:
            assert_never(event)


def refs(taken: Lots) -> Taken:
    return tuple((ref, points) for ref, points, _ in taken)


def lot_order(lot: tuple[str, int, int]) -> tuple[int, str]:
    return lot[2], lot[0]


def give_back(lots: Lots, taken: Lots) -> Lots:
    """`lots` with the points of `taken` ((ref, points, expires_at), ...) added back."""
    merged = {ref: [points, expires_at] for ref, points, expires_at in lots}
    for ref, points, expires_at in taken:
        lot = merged.setdefault(ref, [0, expires_at])
        lot[0] += points
    return tuple(sorted(((ref, p, e) for ref, (p, e) in merged.items()), key=lot_order))


def take(lots: Lots, taken: dict[str, int]) -> Lots:
    out = []
    for ref, points, expires_at in lots:
        left = points - taken.get(ref, 0)
        if left > 0:
            out.append((ref, left, expires_at))
    return tuple(out)
