"""The coupon campaign decider: a campaign's terms and its budget, which is stock too.

A campaign hands out coupons of `value_cents` off an order of at least `min_spend_cents`,
while `now` is in its window `[valid_from, valid_until)`. Its budget has two kinds, each
0 for "no limit of this kind" (at least one is limited): `budget_coupons` coupons and
`budget_cents` cents of coupon value. Every coupon granted draws one coupon and its value
from the budget, for good: a granted coupon is the user's whether or not it is redeemed.

A team-up red packet draws its whole pool at once (`pool_cents` and `coupons` coupons)
when the team forms, and returns it if the team expires unfilled. So at every point

    coupons granted + coupons in unreturned pools <= budget_coupons   (when limited)
    cents granted   + cents in unreturned pools   <= budget_cents     (when limited)

and `remaining_coupons` / `remaining_cents` are exactly what is left (-1: unlimited).

Grants are idempotent by grant id (the id becomes the coupon id), pool draws by team:
a retry of either decides nothing (`[]`). Reusing an id for other terms is malformed.

Pure: no I/O, clock, randomness or logging. `now` and ids arrive in the commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

import immutables

from saleday.actors.decider import Decider, InvalidCommand, Rejection, compact_pickle
from saleday.actors.fields import Intake, fast_replace
from saleday.events.registry import event_type
from saleday.events.values import quick_init

UNLIMITED = -1
"""A remaining budget of this kind that has no limit (its budget was 0)."""


# --- commands -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateCampaign:
    """Open a campaign with these terms; a budget of 0 means no limit of that kind."""

    campaign: str
    value_cents: int
    min_spend_cents: int
    valid_from: int
    valid_until: int
    budget_coupons: int
    budget_cents: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantCoupon:
    """Give `user` one coupon under `grant_id`, worth `value_cents` (0: the campaign's)."""

    campaign: str
    grant_id: str
    user: str
    now: int
    value_cents: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DrawPool:
    """Set aside a team-up red packet's pool: `pool_cents` and `coupons` coupons at once."""

    campaign: str
    team: str
    pool_cents: int
    coupons: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnPool:
    """Give a team's pool back to the budget (the team expired unfilled)."""

    campaign: str
    team: str
    now: int


CampaignCommand = CreateCampaign | GrantCoupon | DrawPool | ReturnPool

COMMANDS = (CreateCampaign, GrantCoupon, DrawPool, ReturnPool)

_INTAKE = Intake("campaign", COMMANDS, entity="campaign")
"""Each command's int and str fields (all strs required) and its campaign, checked before
any business rule."""


# --- events ---------------------------------------------------------------------------


@event_type("coupons.campaign_created")
@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignCreated:
    """The campaign exists with these terms; a budget of 0 means no limit of that kind."""

    campaign: str
    value_cents: int
    min_spend_cents: int
    valid_from: int
    valid_until: int
    budget_coupons: int
    budget_cents: int


@event_type("coupons.coupon_granted")
@dataclass(frozen=True, slots=True, kw_only=True)
class CouponGranted:
    """`user` holds coupon `coupon_id`: `value_cents` off `min_spend_cents`, until
    `valid_until`. It drew one coupon and `value_cents` from the budget."""

    campaign: str
    coupon_id: str
    user: str
    value_cents: int
    min_spend_cents: int
    valid_until: int


@event_type("coupons.pool_drawn")
@dataclass(frozen=True, slots=True, kw_only=True)
class PoolDrawn:
    """`team`'s red packet took `pool_cents` and `coupons` coupons from the budget."""

    campaign: str
    team: str
    pool_cents: int
    coupons: int


@event_type("coupons.pool_returned")
@dataclass(frozen=True, slots=True, kw_only=True)
class PoolReturned:
    """`team`'s pool went back to the budget."""

    campaign: str
    team: str
    pool_cents: int
    coupons: int


CampaignEvent = CampaignCreated | CouponGranted | PoolDrawn | PoolReturned


# --- rejections -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownCampaign(Rejection):
    """No campaign was created under this id."""

    campaign: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignNotActive(Rejection):
    """`now` is outside the campaign's window `[valid_from, valid_until)`."""

    campaign: str
    now: int
    valid_from: int
    valid_until: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetExhausted(Rejection):
    """What is left of the budget does not cover the request (-1: that kind is unlimited)."""

    campaign: str
    requested_cents: int
    remaining_coupons: int
    remaining_cents: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolNotFound(Rejection):
    """No pool was ever drawn for this team."""

    campaign: str
    team: str


# --- state ----------------------------------------------------------------------------


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    """A team's red packet pool, drawn from the budget and maybe returned to it."""

    pool_cents: int
    coupons: int
    returned: bool


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignState:
    """One campaign: its terms, what is left of its budget, its grants and its pools.

    `remaining_coupons` / `remaining_cents` are `UNLIMITED` (-1) for a kind whose budget
    is 0. `granted` maps each grant id (= coupon id) to its user.
    """

    campaign: str
    created: bool
    value_cents: int
    min_spend_cents: int
    valid_from: int
    valid_until: int
    budget_coupons: int
    budget_cents: int
    remaining_coupons: int
    remaining_cents: int
    granted: immutables.Map[str, str]
    pools: immutables.Map[str, Pool]


_EMPTY: immutables.Map = immutables.Map()


def initial(campaign: str) -> CampaignState:
    """A campaign nobody has created yet."""
    return CampaignState(campaign=campaign, created=False, value_cents=0, min_spend_cents=0,
                         valid_from=0, valid_until=0, budget_coupons=0, budget_cents=0,
                         remaining_coupons=0, remaining_cents=0, granted=_EMPTY, pools=_EMPTY)


# --- decide ---------------------------------------------------------------------------


def decide(command: CampaignCommand, state: CampaignState) -> list[CampaignEvent] | Rejection:
    """The facts `command` establishes against `state`, or why it is refused."""
    refused = _INTAKE.refusal(command, state.campaign)
    if refused is not None:
        return refused
    match command:
        case CreateCampaign():
            return _create(command, state)
        case GrantCoupon():
            return _grant(command, state)
        case DrawPool():
            return _draw_pool(command, state)
        case ReturnPool():
            return _return_pool(command, state)
        case _:
            return _INTAKE.not_taken(command)


def _create(command: CreateCampaign, state: CampaignState) -> list[CampaignEvent] | Rejection:
    c = command
    for name in ("value_cents", "min_spend_cents", "budget_coupons", "budget_cents"):
        value = getattr(c, name)
        if value < 0:
            return InvalidCommand(reason=f"CreateCampaign.{name} must be >= 0, not {value}")
    if c.valid_from >= c.valid_until:
        return InvalidCommand(
            reason=f"the campaign window [{c.valid_from}, {c.valid_until}) is empty")
    if not (c.budget_coupons or c.budget_cents):
        return InvalidCommand(
            reason="a campaign needs a budget: budget_coupons or budget_cents > 0")
    event = CampaignCreated(campaign=c.campaign, value_cents=c.value_cents,
                            min_spend_cents=c.min_spend_cents, valid_from=c.valid_from,
                            valid_until=c.valid_until, budget_coupons=c.budget_coupons,
                            budget_cents=c.budget_cents)
    if not state.created:
        return [event]
    if _terms(event) == _terms(state):
        return []
    return InvalidCommand(reason=f"campaign {c.campaign!r} already exists with other terms")


def _grant(command: GrantCoupon, state: CampaignState) -> list[CampaignEvent] | Rejection:
    if command.value_cents < 0:
        return InvalidCommand(
            reason=f"GrantCoupon.value_cents must be >= 0, not {command.value_cents}")
    if not state.created:
        return UnknownCampaign(campaign=state.campaign)
    holder = state.granted.get(command.grant_id)
    if holder is not None:
        if holder == command.user:
            return []
        return InvalidCommand(reason=f"grant {command.grant_id!r} already went to another user")
    refused = _inactive(state, command.now)
    if refused is not None:
        return refused
    value = command.value_cents or state.value_cents
    refused = _short(state, value, 1)
    if refused is not None:
        return refused
    return [CouponGranted(campaign=state.campaign, coupon_id=command.grant_id, user=command.user,
                          value_cents=value, min_spend_cents=state.min_spend_cents,
                          valid_until=state.valid_until)]


def _draw_pool(command: DrawPool, state: CampaignState) -> list[CampaignEvent] | Rejection:
    if command.pool_cents < 1 or command.coupons < 1:
        return InvalidCommand(reason=f"a pool needs pool_cents >= 1 and coupons >= 1, not "
                                     f"{command.pool_cents} and {command.coupons}")
    if not state.created:
        return UnknownCampaign(campaign=state.campaign)
    drawn = state.pools.get(command.team)
    if drawn is not None:
        if (drawn.pool_cents, drawn.coupons) == (command.pool_cents, command.coupons):
            return []
        return InvalidCommand(reason=f"team {command.team!r} already drew another pool")
    refused = _inactive(state, command.now) or _short(state, command.pool_cents, command.coupons)
    if refused is not None:
        return refused
    return [PoolDrawn(campaign=state.campaign, team=command.team, pool_cents=command.pool_cents,
                      coupons=command.coupons)]


def _return_pool(command: ReturnPool, state: CampaignState) -> list[CampaignEvent] | Rejection:
    if not state.created:
        return UnknownCampaign(campaign=state.campaign)
    drawn = state.pools.get(command.team)
    if drawn is None:
        return PoolNotFound(campaign=state.campaign, team=command.team)
    if drawn.returned:
        return []
    return [PoolReturned(campaign=state.campaign, team=command.team,
                         pool_cents=drawn.pool_cents, coupons=drawn.coupons)]


def _inactive(state: CampaignState, now: int) -> CampaignNotActive | None:
    """Why the campaign takes nothing at `now`, or None while its window is open."""
    if state.valid_from <= now < state.valid_until:
        return None
    return CampaignNotActive(campaign=state.campaign, now=now, valid_from=state.valid_from,
                             valid_until=state.valid_until)


def _short(state: CampaignState, cents: int, coupons: int) -> BudgetExhausted | None:
    """Why the budget cannot give `cents` and `coupons` coupons, or None if it can."""
    if _covers(state.remaining_coupons, coupons) and _covers(state.remaining_cents, cents):
        return None
    return BudgetExhausted(campaign=state.campaign, requested_cents=cents,
                           remaining_coupons=state.remaining_coupons,
                           remaining_cents=state.remaining_cents)


def _covers(remaining: int, amount: int) -> bool:
    """Whether a remaining budget (maybe `UNLIMITED`) covers `amount`."""
    return remaining == UNLIMITED or amount <= remaining


def _terms(x: CampaignCreated | CampaignState) -> tuple[int, ...]:
    """The terms that make a campaign what it is, to tell a retry from a conflict."""
    return (x.value_cents, x.min_spend_cents, x.valid_from, x.valid_until, x.budget_coupons,
            x.budget_cents)


# --- evolve ---------------------------------------------------------------------------


replace = fast_replace(CampaignState)


def evolve(state: CampaignState, event: CampaignEvent) -> CampaignState:
    """The state after `event`. No validation: the event already happened."""
    match event:
        case CampaignCreated():
            return replace(state, created=True, value_cents=event.value_cents,
                           min_spend_cents=event.min_spend_cents, valid_from=event.valid_from,
                           valid_until=event.valid_until, budget_coupons=event.budget_coupons,
                           budget_cents=event.budget_cents,
                           remaining_coupons=event.budget_coupons or UNLIMITED,
                           remaining_cents=event.budget_cents or UNLIMITED)
        case CouponGranted():
            return replace(state, remaining_coupons=_less(state.remaining_coupons, 1),
                           remaining_cents=_less(state.remaining_cents, event.value_cents),
                           granted=state.granted.set(event.coupon_id, event.user))
        case PoolDrawn():
            pool = Pool(pool_cents=event.pool_cents, coupons=event.coupons, returned=False)
            return replace(state, remaining_coupons=_less(state.remaining_coupons, event.coupons),
                           remaining_cents=_less(state.remaining_cents, event.pool_cents),
                           pools=state.pools.set(event.team, pool))
        case PoolReturned():
            pool = Pool(pool_cents=event.pool_cents, coupons=event.coupons, returned=True)
            return replace(state, remaining_coupons=_less(state.remaining_coupons, -event.coupons),
                           remaining_cents=_less(state.remaining_cents, -event.pool_cents),
                           pools=state.pools.set(event.team, pool))
        case _:
            assert_never(event)


def _less(remaining: int, amount: int) -> int:
    """`remaining` less `amount`; an unlimited budget stays unlimited."""
    return remaining if remaining == UNLIMITED else remaining - amount


# --- what a shard host needs ----------------------------------------------------------


def entity_of(x: CampaignCommand | CampaignEvent) -> str:
    """The campaign a command or an event is about."""
    return x.campaign


campaign_decider: Decider[CampaignCommand, CampaignEvent, CampaignState] = Decider(
    kind="campaign", initial=initial, decide=decide, evolve=evolve, entity_of=entity_of,
    commands=COMMANDS)
