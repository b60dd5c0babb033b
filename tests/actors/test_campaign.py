"""The campaign decider: terms, grants, team pools, and the budget as stock."""

from __future__ import annotations

import pickle

import pytest

from saleday.actors.campaign import (
    UNLIMITED,
    BudgetExhausted,
    CampaignCreated,
    CampaignNotActive,
    CouponGranted,
    CreateCampaign,
    DrawPool,
    GrantCoupon,
    PoolDrawn,
    PoolNotFound,
    PoolReturned,
    ReturnPool,
    UnknownCampaign,
    campaign_decider,
)
from saleday.actors.decider import InvalidCommand
from saleday.events.registry import registry
from tests.actors.given import given

CAMPAIGN = "c-1111"
FROM, UNTIL = 1_000, 2_000
NOW = 1_500


def created(value: int = 500, min_spend: int = 2_000, coupons: int = 3,
            cents: int = 0) -> CampaignCreated:
    return CampaignCreated(campaign=CAMPAIGN, value_cents=value, min_spend_cents=min_spend,
                           valid_from=FROM, valid_until=UNTIL, budget_coupons=coupons,
                           budget_cents=cents)


def create(value: int = 500, min_spend: int = 2_000, coupons: int = 3, cents: int = 0,
           valid_from: int = FROM, valid_until: int = UNTIL, now: int = NOW) -> CreateCampaign:
    return CreateCampaign(campaign=CAMPAIGN, value_cents=value, min_spend_cents=min_spend,
                          valid_from=valid_from, valid_until=valid_until,
                          budget_coupons=coupons, budget_cents=cents, now=now)


def grant(gid: str = "g1", user: str = "alice", now: int = NOW, value: int = 0) -> GrantCoupon:
    return GrantCoupon(campaign=CAMPAIGN, grant_id=gid, user=user, now=now, value_cents=value)


def granted(gid: str = "g1", user: str = "alice", value: int = 500) -> CouponGranted:
    return CouponGranted(campaign=CAMPAIGN, coupon_id=gid, user=user, value_cents=value,
                         min_spend_cents=2_000, valid_until=UNTIL)


def draw(team: str = "t1", cents: int = 1_000, coupons: int = 4, now: int = NOW) -> DrawPool:
    return DrawPool(campaign=CAMPAIGN, team=team, pool_cents=cents, coupons=coupons, now=now)


def drawn(team: str = "t1", cents: int = 1_000, coupons: int = 4) -> PoolDrawn:
    return PoolDrawn(campaign=CAMPAIGN, team=team, pool_cents=cents, coupons=coupons)


def returned(team: str = "t1", cents: int = 1_000, coupons: int = 4) -> PoolReturned:
    return PoolReturned(campaign=CAMPAIGN, team=team, pool_cents=cents, coupons=coupons)


def running(*events, coupons: int = 3, cents: int = 0):
    """A created campaign, then `events`."""
    return given(campaign_decider, created(coupons=coupons, cents=cents), *events)


# --- creating ---------------------------------------------------------------------------


def test_creating_a_campaign_records_its_terms():
    """Creating a campaign records its terms and a full budget; 0 budgets are unlimited."""
    outcome = given(campaign_decider).when(create(coupons=3, cents=0)).then(created())
    state = outcome.state
    assert state.created and (state.remaining_coupons, state.remaining_cents) == (3, UNLIMITED)


def test_creating_again_with_the_same_terms_does_nothing():
    """Creating a campaign again with identical terms (a retry) decides nothing."""
    running().when(create(now=NOW + 99)).then()


def test_creating_again_with_other_terms_is_invalid():
    """Creating an existing campaign with different terms is an InvalidCommand."""
    running().when(create(value=501)).then_rejected(InvalidCommand)


@pytest.mark.parametrize("command", [
    create(coupons=0, cents=0),
    create(valid_from=UNTIL, valid_until=UNTIL),
    create(valid_from=UNTIL + 1, valid_until=UNTIL),
    create(value=-1),
    create(min_spend=-1),
    create(coupons=-1),
    create(cents=-5, coupons=3),
])
def test_bad_terms_are_invalid(command):
    """A campaign with no budget, an empty window or negative values is an InvalidCommand."""
    given(campaign_decider).when(command).then_rejected(InvalidCommand)


# --- granting ---------------------------------------------------------------------------


def test_granting_a_coupon_draws_from_the_budget():
    """A grant gives the user a coupon of the campaign's value and draws one coupon."""
    outcome = running().when(grant()).then(granted())
    assert outcome.state.remaining_coupons == 2
    assert outcome.state.granted["g1"] == "alice"


def test_a_grant_may_carry_its_own_value():
    """A grant with a value of its own draws that value from the cents budget."""
    outcome = running(cents=1_000).when(grant(value=700)).then(granted(value=700))
    assert outcome.state.remaining_cents == 300


def test_granting_the_same_grant_id_again_does_nothing():
    """A grant id already granted decides nothing, even once the window has closed."""
    running(granted()).when(grant(now=UNTIL + 5)).then()


def test_a_grant_id_cannot_be_reused_for_another_user():
    """Reusing a granted id for another user is an InvalidCommand, not a second coupon."""
    running(granted()).when(grant(user="bob")).then_rejected(InvalidCommand)


def test_granting_from_an_unknown_campaign_is_refused():
    """Granting from a campaign that was never created is refused as UnknownCampaign."""
    given(campaign_decider).when(grant()).then_rejected(UnknownCampaign, campaign=CAMPAIGN)


@pytest.mark.parametrize("now", [FROM - 1, UNTIL, UNTIL + 1])
def test_granting_outside_the_window_is_refused(now):
    """Granting before valid_from or at/after valid_until is refused as CampaignNotActive."""
    running().when(grant(now=now)).then_rejected(
        CampaignNotActive, now=now, valid_from=FROM, valid_until=UNTIL)


def test_granting_at_the_start_is_accepted():
    """The window includes valid_from."""
    running().when(grant(now=FROM)).then(granted())


def test_granting_past_the_coupon_budget_is_refused():
    """Once every coupon is granted, a grant is refused as BudgetExhausted."""
    (running(granted("g1"), granted("g2"), granted("g3"))
     .when(grant("g4")).then_rejected(BudgetExhausted, requested_cents=500,
                                       remaining_coupons=0, remaining_cents=UNLIMITED))


def test_granting_past_the_cents_budget_is_refused():
    """A grant worth more than the cents left is refused, with -1 for the unlimited kind."""
    (running(granted("g1", value=500), coupons=0, cents=800)
     .when(grant("g2")).then_rejected(BudgetExhausted, requested_cents=500,
                                       remaining_coupons=UNLIMITED, remaining_cents=300))


def test_the_last_cents_can_be_granted():
    """A grant worth exactly the cents left is accepted and empties the budget."""
    outcome = running(coupons=0, cents=500).when(grant()).then(granted())
    assert outcome.state.remaining_cents == 0


# --- team pools -------------------------------------------------------------------------


def test_drawing_a_pool_takes_cents_and_coupons_at_once():
    """A team's pool draws its cents and its coupons from the budget in one event."""
    outcome = running(coupons=10, cents=5_000).when(draw()).then(drawn())
    assert (outcome.state.remaining_coupons, outcome.state.remaining_cents) == (6, 4_000)


def test_drawing_the_same_team_again_does_nothing():
    """A team that already drew its pool decides nothing on a retry, returned or not."""
    running(drawn(), coupons=10).when(draw()).then()
    running(drawn(), returned(), coupons=10).when(draw()).then()


def test_drawing_another_pool_for_the_same_team_is_invalid():
    """A team that drew one pool cannot draw a different one."""
    running(drawn(), coupons=10).when(draw(cents=2_000)).then_rejected(InvalidCommand)


def test_drawing_more_than_the_budget_is_refused():
    """A pool larger than what is left is refused as BudgetExhausted."""
    (running(coupons=3).when(draw(coupons=4))
     .then_rejected(BudgetExhausted, requested_cents=1_000, remaining_coupons=3))
    (running(coupons=0, cents=999).when(draw())
     .then_rejected(BudgetExhausted, requested_cents=1_000, remaining_cents=999))


def test_drawing_outside_the_window_is_refused():
    """A pool drawn after the window is refused as CampaignNotActive."""
    running(coupons=10).when(draw(now=UNTIL)).then_rejected(CampaignNotActive, now=UNTIL)


def test_drawing_from_an_unknown_campaign_is_refused():
    """Drawing a pool from a campaign never created is refused as UnknownCampaign."""
    given(campaign_decider).when(draw()).then_rejected(UnknownCampaign)


@pytest.mark.parametrize("cents, coupons", [(0, 4), (1_000, 0), (-1, 4), (1_000, -1)])
def test_an_empty_or_negative_pool_is_invalid(cents, coupons):
    """A pool with no cents or no coupons is an InvalidCommand."""
    running(coupons=10).when(draw(cents=cents, coupons=coupons)).then_rejected(InvalidCommand)


def test_returning_a_pool_gives_the_budget_back():
    """Returning a drawn pool puts its cents and coupons back in the budget."""
    outcome = (running(drawn(), coupons=10, cents=5_000)
               .when(ReturnPool(campaign=CAMPAIGN, team="t1", now=UNTIL + 1)).then(returned()))
    assert (outcome.state.remaining_coupons, outcome.state.remaining_cents) == (10, 5_000)
    assert outcome.state.pools["t1"].returned


def test_returning_a_pool_twice_does_nothing():
    """A pool already returned decides nothing when returned again."""
    (running(drawn(), returned(), coupons=10)
     .when(ReturnPool(campaign=CAMPAIGN, team="t1", now=NOW)).then())


def test_returning_a_pool_never_drawn_is_refused():
    """Returning the pool of a team that never drew one is refused as PoolNotFound."""
    (running().when(ReturnPool(campaign=CAMPAIGN, team="t9", now=NOW))
     .then_rejected(PoolNotFound, campaign=CAMPAIGN, team="t9"))


def test_returning_from_an_unknown_campaign_is_refused():
    """Returning a pool to a campaign never created is refused as UnknownCampaign."""
    (given(campaign_decider).when(ReturnPool(campaign=CAMPAIGN, team="t1", now=NOW))
     .then_rejected(UnknownCampaign))


def test_a_returned_pool_frees_budget_for_grants():
    """Coupons given back by a pool can be granted again."""
    running(drawn(coupons=3), returned(coupons=3)).when(grant()).then(granted())


def test_an_unlimited_kind_stays_unlimited():
    """Draws and returns leave an unlimited budget kind unlimited."""
    state = running(drawn(), returned(), granted(), coupons=0, cents=10_000).state
    assert state.remaining_coupons == UNLIMITED and state.remaining_cents == 9_500


# --- malformed commands -----------------------------------------------------------------


@pytest.mark.parametrize("command", [
    grant(value=-1),
    grant(value=True),
    grant(value=5.0),
    grant(now=1.5),
    grant(now=None),
    grant(now=2**63),
    grant(user=""),
    grant(gid=7),
    GrantCoupon(campaign="other", grant_id="g1", user="alice", now=NOW),
    create(value=True),
    create(cents=10.0),
    create(coupons="3"),
    draw(cents=False),
    draw(coupons=4.0),
    ReturnPool(campaign=CAMPAIGN, team=None, now=NOW),
    "GrantCoupon",
    object(),
])
def test_malformed_commands_are_invalid(command):
    """Wrong types (bools and floats for ints, empty ids), negative money, a command for
    another campaign, or something that is no command at all is an InvalidCommand."""
    state = running().state
    assert isinstance(campaign_decider.decide(command, state), InvalidCommand)


# --- the log and the host ---------------------------------------------------------------


def test_events_have_stable_wire_names():
    """The campaign's events are registered under their documented wire names."""
    assert [registry.wire_name(cls) for cls in (CampaignCreated, CouponGranted, PoolDrawn,
                                                 PoolReturned)] == [
        "coupons.campaign_created", "coupons.coupon_granted", "coupons.pool_drawn",
        "coupons.pool_returned"]


def test_the_decider_finds_campaigns_and_sets_no_timers():
    """Commands and events name their campaign; the campaign decider has no deadlines."""
    assert campaign_decider.kind == "campaign"
    assert campaign_decider.entity_of(grant()) == CAMPAIGN == campaign_decider.entity_of(drawn())
    assert campaign_decider.deadline_of(granted()) is None
    assert campaign_decider.next_deadline(running().state) is None


def test_the_state_pickles_to_an_equal_state():
    """A campaign's state survives a snapshot's pickle unchanged."""
    state = running(granted(), drawn(coupons=1), coupons=5).state
    assert pickle.loads(pickle.dumps(state)) == state
