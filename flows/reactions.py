"""The reactions: which commands a recorded fact calls for (pure; no I/O).

A split red packet becomes a coupon in each member's wallet, an expired team returns its
pool to the campaign, a campaign grant is delivered to the wallet, a store visit earns that
store's coupon. Each command's id is derived from the fact, and the deciders make every
reaction idempotent (a coupon id is received once, a pool returned once, a grant id granted
once), so the follow-ups of a fact may be submitted again from any position of the log.
"""

from __future__ import annotations

from typing import Any

from saleday.actors.campaign import CouponGranted, GrantCoupon, ReturnPool
from saleday.actors.session import ReceiveCoupon, StoreVisited
from saleday.actors.team import RedPacketSplit, TeamExpiredUnfilled
from saleday.events import Envelope

SHARE_VALIDITY_MS = 7 * 86_400_000
"""How long a red-packet share coupon stays valid after the split."""


def follow_ups(env: Envelope, event: Any) -> list[tuple[str, Any]]:
    """The commands (with their ids) that a recorded fact calls for."""
    match event:
        case RedPacketSplit(team=team, campaign=campaign, shares=shares):
            return [(f"team/{team}/share/{member}", ReceiveCoupon(
                user=member, coupon_id=f"share/{team}/{member}", campaign=campaign,
                value_cents=cents, min_spend_cents=0,
                valid_until=env.recorded_at + SHARE_VALIDITY_MS, now=env.recorded_at))
                for member, cents in shares]
        case TeamExpiredUnfilled(team=team, campaign=campaign):
            return [(f"team/{team}/return-pool",
                     ReturnPool(campaign=campaign, team=team, now=env.recorded_at))]
        case CouponGranted():
            return [(f"grant/{event.campaign}/{event.coupon_id}/deliver", ReceiveCoupon(
                user=event.user, coupon_id=event.coupon_id, campaign=event.campaign,
                value_cents=event.value_cents, min_spend_cents=event.min_spend_cents,
                valid_until=event.valid_until, now=env.recorded_at))]
        case StoreVisited(user=user, store_id=store, campaign=campaign):
            return [(f"geo/{store}/{user}/grant", GrantCoupon(
                campaign=campaign, grant_id=f"geo/{store}/{user}", user=user, now=env.recorded_at))]
    return []
