"""The other cross-shard flows of sale day, and the reactions that finish them.

Flows driven through the gateway (each step's command id derived from its subject, so a
retry does nothing twice):
- `start_session`: looks up when the inviter was first seen, so the user's shard can
  attribute a referral only to someone seen before (attribution cannot form a cycle).
- `create_team`: draws the red-packet pool from the campaign's budget, then opens the team.
- `join_team`: one join per (team, user).
- `grant_coupon`: a campaign grant; the coupon reaches the wallet by reaction.

Reactions (`Reactor`) follow the log and turn facts into the commands that complete a flow:
a split red packet becomes a coupon in each member's wallet, an expired team returns its
pool to the campaign, a campaign grant is delivered to the wallet, a store visit earns that
store's coupon. Deciders make every reaction idempotent (a coupon id is received once, a
pool returned once, a grant id granted once), so the reactor may replay from any position.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog

from actors.campaign import CouponGranted, DrawPool, GrantCoupon, ReturnPool
from actors.host import Accepted
from actors.session import ReceiveCoupon, StartSession, StoreVisited
from actors.team import CreateTeam, JoinTeam, RedPacketSplit, TeamExpiredUnfilled
from cluster.gateway import Gateway
from events import Envelope, EventStore, Tail, registry

log = structlog.get_logger("saleday.flows")

SHARE_VALIDITY_MS = 7 * 86_400_000
"""How long a red-packet share coupon stays valid after the split."""


async def submit(gateway: Gateway, command: Any, command_id: str) -> Any:
    return await gateway.submit_retrying_busy(command, command_id=command_id)


class SaleDayFlows:
    """The gateway-driven flows other than checkout (which is `cluster.checkout`)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def start_session(self, *, user: str, session_id: str, utm_source: str = "",
                            utm_medium: str = "", utm_campaign: str = "", inviter: str = "",
                            now: int) -> Any:
        inviter_since = 0
        if inviter and inviter != user:
            inviter_since = (await self.gateway.query("session", inviter)).first_seen
        return await submit(self.gateway, StartSession(
            user=user, session_id=session_id, utm_source=utm_source, utm_medium=utm_medium,
            utm_campaign=utm_campaign, inviter=inviter, inviter_since=inviter_since, now=now),
            f"session/{user}/{session_id}")

    async def create_team(self, *, team: str, leader: str, campaign: str, pool_cents: int,
                          size: int = 4, min_share_cents: int = 1, expires: int, seed: int,
                          now: int) -> Any:
        """Draw the pool from the campaign, then open the team; a refusal of either is returned."""
        drawn = await submit(self.gateway, DrawPool(campaign=campaign, team=team,
                                                    pool_cents=pool_cents, coupons=size, now=now),
                             f"team/{team}/draw")
        if not isinstance(drawn, Accepted):
            return drawn
        return await submit(self.gateway, CreateTeam(
            team=team, leader=leader, campaign=campaign, pool_cents=pool_cents, size=size,
            min_share_cents=min_share_cents, expires=expires, seed=seed, now=now),
            f"team/{team}/create")

    async def join_team(self, *, team: str, user: str, now: int) -> Any:
        return await submit(self.gateway, JoinTeam(team=team, user=user, now=now),
                            f"team/{team}/join/{user}")

    async def grant_coupon(self, *, campaign: str, grant_id: str, user: str, now: int,
                           value_cents: int = 0) -> Any:
        return await submit(self.gateway, GrantCoupon(campaign=campaign, grant_id=grant_id,
                                                      user=user, now=now, value_cents=value_cents),
                            f"grant/{campaign}/{grant_id}")


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


class Reactor:
    """Follows the streams of the given kinds and submits what their facts call for."""

    def __init__(self, store: EventStore, gateway: Gateway,
                 kinds: Iterable[str] = ("team", "campaign", "session")) -> None:
        prefixes = tuple(f"{kind}-" for kind in kinds)
        self.tail = Tail(store, include=lambda stream: stream.startswith(prefixes))
        self.gateway = gateway
        self.submitted = 0

    async def run_once(self) -> int:
        """React to everything recorded since the last call; return the commands submitted."""
        done = 0
        while batch := await asyncio.to_thread(self.tail.poll):
            steps = [(cid, command) for env in batch
                     for cid, command in follow_ups(env, registry.decode(env))]
            replies = await asyncio.gather(*(submit(self.gateway, command, cid)
                                             for cid, command in steps))
            for (cid, _), reply in zip(steps, replies):
                if not isinstance(reply, Accepted):
                    log.info("reaction_refused", command_id=cid,
                             reply=getattr(reply, "code", type(reply).__name__))
            done += len(steps)
        self.submitted += done
        return done

    async def run(self, stop: asyncio.Event, *, poll_s: float = 0.05) -> None:
        """React until `stop` is set."""
        while not stop.is_set():
            if not await self.run_once():
                try:
                    await asyncio.wait_for(stop.wait(), poll_s)
                except asyncio.TimeoutError:
                    pass
