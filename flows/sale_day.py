"""The cross-shard flows of sale day other than checkout (`flows.checkout`).

Each step's command id is derived from its subject, so a retry does nothing twice, and its
events carry the flow's subject as their correlation id (the visit's session id, the team,
the grant id):
- `start_session`: looks up when the inviter was first seen, so the user's shard can
  attribute a referral only to someone seen before (attribution cannot form a cycle).
- `create_team`: draws the red-packet pool from the campaign's budget, then opens the team.
- `join_team`: one join per (team, user).
- `grant_coupon`: a campaign grant; the coupon reaches the wallet by reaction
  (`flows.reactions`, delivered by `flows.reactor.Reactor`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from saleday.actors.campaign import DrawPool, GrantCoupon
from saleday.actors.host import Accepted
from saleday.actors.session import StartSession
from saleday.actors.team import CreateTeam, JoinTeam
from saleday.flows.gateway import Gateway

log = structlog.get_logger("saleday.flows")


async def follow_until(run_once: Callable[[], Awaitable[int]], stop: asyncio.Event,
                       poll_s: float, *, final_s: float = 5.0) -> None:
    """Call a follower's `run_once` until `stop` is set, waiting `poll_s` (or for `stop`)
    after a pass that found nothing to do; then make one last pass (at most `final_s`), so
    what was recorded just before the stop is followed now rather than at the next start."""
    while not stop.is_set():
        if not await run_once():
            try:
                await asyncio.wait_for(stop.wait(), poll_s)
            except asyncio.TimeoutError:
                pass
    try:
        await asyncio.wait_for(run_once(), final_s)
    except asyncio.TimeoutError:
        log.warning("follower_final_pass_timed_out", after_s=final_s)


def submit(gateway: Gateway, command: Any, command_id: str, *, correlation_id: str = "",
           causation_id: str = "") -> Awaitable[Any]:
    """The gateway's submission, riding out `Busy`, to be awaited (handed back, not awaited
    here: a coroutine frame fewer on each command's path)."""
    return gateway.submit_retrying_busy(command, command_id=command_id,
                                        correlation_id=correlation_id,
                                        causation_id=causation_id)


class SaleDayFlows:
    """The gateway-driven flows other than checkout (which is `flows.checkout`)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def start_session(self, *, user: str, session_id: str, utm_source: str = "",
                            utm_medium: str = "", utm_campaign: str = "", inviter: str = "",
                            now: int) -> Any:
        """Record an arrival. Its command id leads with the session id, which is minted in
        time order, not with the user: ids that arrive in order append at the end of the
        log's command-id index instead of anywhere in it (docs/DESIGN_NOTES.md, "Command
        ids in time order")."""
        inviter_since = 0
        if inviter and inviter != user:
            inviter_since = (await self.gateway.query("session", inviter)).first_seen
        return await submit(self.gateway, StartSession(
            user=user, session_id=session_id, utm_source=utm_source, utm_medium=utm_medium,
            utm_campaign=utm_campaign, inviter=inviter, inviter_since=inviter_since, now=now),
            f"session/{session_id}/{user}", correlation_id=session_id)

    async def create_team(self, *, team: str, leader: str, campaign: str, pool_cents: int,
                          size: int = 4, min_share_cents: int = 1, expires: int, seed: int,
                          now: int) -> Any:
        """Draw the pool from the campaign, then open the team; a refusal of either is returned."""
        drawn = await submit(self.gateway, DrawPool(campaign=campaign, team=team,
                                                    pool_cents=pool_cents, coupons=size, now=now),
                             f"team/{team}/draw", correlation_id=team)
        if not isinstance(drawn, Accepted):
            return drawn
        return await submit(self.gateway, CreateTeam(
            team=team, leader=leader, campaign=campaign, pool_cents=pool_cents, size=size,
            min_share_cents=min_share_cents, expires=expires, seed=seed, now=now),
            f"team/{team}/create", correlation_id=team)

    async def join_team(self, *, team: str, user: str, now: int) -> Any:
        return await submit(self.gateway, JoinTeam(team=team, user=user, now=now),
                            f"team/{team}/join/{user}", correlation_id=team)

    async def grant_coupon(self, *, campaign: str, grant_id: str, user: str, now: int,
                           value_cents: int = 0) -> Any:
        return await submit(self.gateway, GrantCoupon(campaign=campaign, grant_id=grant_id,
                                                      user=user, now=now, value_cents=value_cents),
                            f"grant/{campaign}/{grant_id}", correlation_id=grant_id)


