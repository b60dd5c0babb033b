"""Properties of the campaign and team deciders, and of the red packet split.

Hypothesis drives random sequences of commands against one campaign and one team while
time moves forward. After every step the invariants the audit proves must hold: the
budget is never overdrawn, a grant id takes effect at most once, shares sum exactly to
the pool; and folding the decided events from `initial` gives the state the decider saw.
"""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from saleday.actors.campaign import (
    CampaignCreated,
    CouponGranted,
    CreateCampaign,
    DrawPool,
    GrantCoupon,
    PoolDrawn,
    PoolReturned,
    ReturnPool,
    campaign_decider,
)
from saleday.actors.decider import Decider, InvalidCommand, Rejection, fold
from saleday.actors.team import (
    CreateTeam,
    ExpireTeam,
    JoinTeam,
    RedPacketSplit,
    TeamCompleted,
    TeamCreated,
    TeamExpiredUnfilled,
    split_red_packet,
    team_decider,
)
from saleday.events.chain import seal
from saleday.events.codec import decode_commit
from saleday.events.envelope import ZERO_HASH
from saleday.events.registry import registry

FAST = settings(max_examples=300, deadline=None)


# --- the split --------------------------------------------------------------------------


@st.composite
def splits(draw):
    """Any pool, size, minimum and seed with pool >= size * minimum."""
    size = draw(st.integers(1, 12))
    min_share = draw(st.integers(0, 500))
    pool = size * min_share + draw(st.one_of(st.integers(0, 50), st.integers(0, 10**7)))
    seed = draw(st.integers(0, 2**64 - 1))
    return pool, size, min_share, seed


@FAST
@given(splits())
def test_shares_sum_to_the_pool_and_respect_the_minimum(split):
    """Any split gives one share per member in join order, each at least the minimum,
    summing exactly to the pool."""
    pool, size, min_share, seed = split
    members = tuple(f"u{i}" for i in range(size))
    shares = split_red_packet(pool, size, min_share, seed, members)
    assert len(shares) == size
    assert tuple(member for member, _ in shares) == members
    assert sum(cents for _, cents in shares) == pool
    assert all(type(cents) is int and cents >= min_share for _, cents in shares)
    assert shares == split_red_packet(pool, size, min_share, seed, members), "not deterministic"


# --- running commands -------------------------------------------------------------------


def run(decider: Decider, entity: str, commands) -> Iterator[tuple[list, object]]:
    """Decide each command in turn and yield the log and the state after each one taken,
    once folding that log from `initial` has given the same state."""
    log: list = []
    state = decider.initial(entity)
    for command in commands:
        result = decider.decide(command, state)
        if isinstance(result, Rejection):
            assert type(result) is not Rejection
            continue
        assert_loggable(decider.kind, entity, result)
        for event in result:
            state = decider.evolve(state, event)
        log.extend(result)
        assert fold(decider, entity, log) == state, "replaying the log gave another state"
        yield log, state


def assert_loggable(kind: str, entity: str, events: list) -> None:
    """The events seal into a commit and decode back from its bytes unchanged."""
    if not events:
        return
    new = [registry.new_event(e, command_id=f"cmd-{i}", recorded_at=0)
           for i, e in enumerate(events)]
    commit = seal(f"{kind}|{entity}", 0, ZERO_HASH, new)
    envelopes = decode_commit(commit.stream, commit.first_version, commit.last_version,
                              commit.prev_hash, commit.hashes, commit.body)
    assert [registry.decode(env) for env in envelopes] == events


# --- the campaign -----------------------------------------------------------------------

CAMPAIGN = "c-1"
GRANT_IDS = st.sampled_from([f"g{i}" for i in range(8)])
USERS = st.sampled_from(("u1", "u2", "u3"))
TEAMS = st.sampled_from(("t1", "t2", "t3"))


def campaign_commands():
    """Steps `(ms to wait, command maker)`; the maker takes `now`."""
    grant = st.builds(lambda gid, user, value: lambda now: GrantCoupon(
        campaign=CAMPAIGN, grant_id=gid, user=user, now=now, value_cents=value),
        GRANT_IDS, USERS, st.sampled_from((0, 0, 100, 250, 999, -1)))
    draw = st.builds(lambda team, cents, coupons: lambda now: DrawPool(
        campaign=CAMPAIGN, team=team, pool_cents=cents, coupons=coupons, now=now),
        TEAMS, st.sampled_from((100, 400, 1_000, 0)), st.integers(0, 4))
    give_back = st.builds(lambda team: lambda now: ReturnPool(campaign=CAMPAIGN, team=team,
                                                              now=now), TEAMS)
    return st.lists(st.tuples(st.integers(0, 100), st.one_of(grant, grant, draw, give_back)),
                    min_size=1, max_size=40)


@FAST
@given(value=st.integers(0, 600), coupons=st.integers(0, 10), cents=st.integers(0, 5_000),
       length=st.integers(1, 6_000), steps=campaign_commands())
def test_a_campaign_never_overdraws_its_budget(value, coupons, cents, length, steps):
    """Whatever grants, draws and returns arrive, grants plus unreturned pools stay within
    each limited budget, each grant id is granted at most once, and replay matches."""

    def commands():
        now = 1_000
        yield CreateCampaign(campaign=CAMPAIGN, value_cents=value, min_spend_cents=0,
                             valid_from=now, valid_until=now + length, budget_coupons=coupons,
                             budget_cents=cents, now=now)
        for wait, make in steps:
            now += wait
            yield make(now)

    for log, state in run(campaign_decider, CAMPAIGN, commands()):
        created = [e for e in log if type(e) is CampaignCreated]
        assert len(created) == 1
        grants = [e for e in log if type(e) is CouponGranted]
        assert len({g.coupon_id for g in grants}) == len(grants), "a grant id took effect twice"
        out = {e.team: e for e in log if type(e) is PoolDrawn}
        back = {e.team for e in log if type(e) is PoolReturned}
        assert back <= set(out)
        used_coupons = len(grants) + sum(p.coupons for t, p in out.items() if t not in back)
        used_cents = (sum(g.value_cents for g in grants)
                      + sum(p.pool_cents for t, p in out.items() if t not in back))
        if coupons:
            assert used_coupons <= coupons
            assert state.remaining_coupons == coupons - used_coupons
        else:
            assert state.remaining_coupons == -1
        if cents:
            assert used_cents <= cents
            assert state.remaining_cents == cents - used_cents
        else:
            assert state.remaining_cents == -1
        assert dict(state.granted) == {g.coupon_id: g.user for g in grants}


@FAST
@given(gid=GRANT_IDS, users=st.lists(USERS, min_size=1, max_size=5))
def test_a_grant_id_takes_effect_at_most_once(gid, users):
    """Repeating a grant id, for the same user or another, never grants a second coupon."""
    created = CampaignCreated(campaign=CAMPAIGN, value_cents=100, min_spend_cents=0,
                              valid_from=0, valid_until=10_000, budget_coupons=0,
                              budget_cents=10**6)
    state = campaign_decider.evolve(campaign_decider.initial(CAMPAIGN), created)
    granted = 0
    for user in users:
        result = campaign_decider.decide(GrantCoupon(campaign=CAMPAIGN, grant_id=gid, user=user,
                                                     now=5), state)
        if isinstance(result, Rejection):
            assert isinstance(result, InvalidCommand) and user != users[0]
            continue
        granted += len(result)
        for event in result:
            state = campaign_decider.evolve(state, event)
    assert granted == 1 and state.remaining_cents == 10**6 - 100


# --- the team ---------------------------------------------------------------------------

TEAM = "team-1"


@FAST
@given(size=st.integers(2, 6), min_share=st.integers(1, 200), extra=st.integers(0, 5_000),
       seed=st.integers(0, 2**64 - 1), ttl=st.integers(1, 3_000),
       steps=st.lists(st.tuples(st.integers(0, 200),
                                st.sampled_from(("a", "b", "c", "d", "e", "f", "lead", None))),
                      min_size=1, max_size=20))
def test_a_team_completes_only_when_full_and_splits_exactly(size, min_share, extra, seed, ttl,
                                                             steps):
    """Whatever joins and expiries arrive, a team completes only with `size` distinct
    members, its shares sum to the pool, it never both completes and expires, and replay
    matches."""
    pool = size * min_share + extra

    def commands():
        now = 1_000
        yield CreateTeam(team=TEAM, leader="lead", campaign="c-1", pool_cents=pool, size=size,
                         min_share_cents=min_share, expires=now + ttl, seed=seed, now=now)
        for wait, user in steps:
            now += wait
            yield ExpireTeam(team=TEAM, now=now) if user is None else JoinTeam(
                team=TEAM, user=user, now=now)

    for log, state in run(team_decider, TEAM, commands()):
        assert sum(type(e) is TeamCreated for e in log) == 1
        completed = [e for e in log if type(e) is TeamCompleted]
        splits_ = [e for e in log if type(e) is RedPacketSplit]
        expired = [e for e in log if type(e) is TeamExpiredUnfilled]
        assert len(completed) == len(splits_) <= 1 and len(expired) <= 1
        assert not (completed and expired)
        assert len(set(state.members)) == len(state.members) <= size
        if completed:
            members = completed[0].members
            assert len(set(members)) == size and members == state.members
            shares = splits_[0].shares
            assert tuple(m for m, _ in shares) == members
            assert sum(c for _, c in shares) == pool and min(c for _, c in shares) >= min_share
        if expired:
            assert len(expired[0].members) < size
        assert team_decider.next_deadline(state) == (
            None if completed or expired else 1_000 + ttl)
