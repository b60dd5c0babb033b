"""The team decider: a team-up red packet's members, deadline and split."""

from __future__ import annotations

import pickle

import pytest

from saleday.actors.decider import InvalidCommand
from saleday.actors.team import (
    MAX_SIZE,
    AlreadyMember,
    CreateTeam,
    ExpireTeam,
    JoinTeam,
    MemberJoined,
    RedPacketSplit,
    TeamAlreadyCompleted,
    TeamCompleted,
    TeamCreated,
    TeamExpired,
    TeamExpiredUnfilled,
    UnknownTeam,
    split_red_packet,
    splitmix64,
    team_decider,
)
from saleday.events.registry import registry
from tests.actors.given import given

TEAM, CAMPAIGN = "team-1", "c-1111"
NOW, EXPIRES = 1_000, 5_000
SEED = 20241111
POOL, SIZE, MIN = 1_000, 4, 100


def reference_splitmix64(seed: int, n: int) -> list[int]:
    """The first `n` splitmix64 outputs, written out independently of actors.team."""
    outputs, state = [], seed
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) % 2**64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
        outputs.append(z ^ (z >> 31))
    return outputs


def team_created(pool: int = POOL, size: int = SIZE, min_share: int = MIN,
                 seed: int = SEED) -> TeamCreated:
    return TeamCreated(team=TEAM, leader="leader", campaign=CAMPAIGN, pool_cents=pool, size=size,
                       min_share_cents=min_share, expires=EXPIRES, seed=seed)


def create(pool: int = POOL, size: int = SIZE, min_share: int = MIN, seed: int = SEED,
           expires: int = EXPIRES, now: int = NOW, leader: str = "leader") -> CreateTeam:
    return CreateTeam(team=TEAM, leader=leader, campaign=CAMPAIGN, pool_cents=pool, size=size,
                      min_share_cents=min_share, expires=expires, seed=seed, now=now)


def join(user: str, now: int = NOW + 1) -> JoinTeam:
    return JoinTeam(team=TEAM, user=user, now=now)


def joined(user: str, position: int) -> MemberJoined:
    return MemberJoined(team=TEAM, user=user, position=position)


def open_team(*events, **terms):
    """A created team, then `events`."""
    return given(team_decider, team_created(**terms), *events)


FILLED = (joined("ann", 1), joined("bob", 2), joined("cat", 3),
          TeamCompleted(team=TEAM, campaign=CAMPAIGN, members=("leader", "ann", "bob", "cat")))


# --- the split --------------------------------------------------------------------------


def test_splitmix64_matches_the_published_outputs():
    """splitmix64 seeded with 0 gives the reference outputs, as does the test's own copy."""
    expected = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    outputs = splitmix64(0)
    assert [next(outputs) for _ in range(3)] == expected == reference_splitmix64(0, 3)


def test_a_worked_split_with_a_fixed_seed():
    """1000 cents among 4 with a 100 minimum and seed 20241111 split as worked out by hand."""
    r1, r2, r3 = reference_splitmix64(SEED, 3)
    # R=1000, k=4: upper = min(2*1000//4, 1000-100*3) = 500, span 401
    assert r1 == 0x22CDB04B890F1FFF and r1 % 401 == 24       # share 124, R=876
    # R=876, k=3: upper = min(2*876//3, 876-100*2) = min(584, 676) = 584, span 485
    assert r2 == 0x8835E51A90F9B3DE and r2 % 485 == 63       # share 163, R=713
    # R=713, k=2: upper = min(2*713//2, 713-100) = 613, span 514
    assert r3 == 0xEEE7659E4FBB7FCF and r3 % 514 == 495      # share 595, R=118
    assert split_red_packet(POOL, SIZE, MIN, SEED, ("a", "b", "c", "d")) == (
        ("a", 124), ("b", 163), ("c", 595), ("d", 118))


def test_a_pool_of_exactly_the_minimum_gives_everyone_the_minimum():
    """With pool == size * min there is no room to draw: every share is the minimum."""
    assert split_red_packet(400, 4, 100, 7, ("a", "b", "c", "d")) == (
        ("a", 100), ("b", 100), ("c", 100), ("d", 100))


@pytest.mark.parametrize("pool, size, min_share, members", [
    (399, 4, 100, ("a", "b", "c", "d")),
    (1_000, 4, 100, ("a", "b", "c")),
    (1_000, 0, 100, ()),
])
def test_an_impossible_split_is_a_value_error(pool, size, min_share, members):
    """Splitting a pool too small for the minimum, or among the wrong number, raises."""
    with pytest.raises(ValueError):
        split_red_packet(pool, size, min_share, 1, members)


# --- creating ---------------------------------------------------------------------------


def test_creating_a_team_makes_the_leader_its_first_member():
    """A new team is open with its leader as the first member."""
    state = given(team_decider).when(create()).then(team_created()).state
    assert state.members == ("leader",) and state.is_open


def test_creating_again_identically_does_nothing():
    """Creating a team again with identical terms (a retry) decides nothing."""
    open_team().when(create(now=NOW + 10)).then()


def test_creating_again_with_other_terms_is_invalid():
    """Creating an existing team with different terms is an InvalidCommand."""
    open_team().when(create(seed=SEED + 1)).then_rejected(InvalidCommand)


@pytest.mark.parametrize("command", [
    create(size=1, pool=100, min_share=1),
    create(size=MAX_SIZE + 1, pool=10**6, min_share=1),
    create(min_share=0),
    create(pool=399),
    create(expires=NOW),
    create(seed=-1),
    create(seed=2**64),
    create(seed=True),
    create(pool=1_000.0),
    create(size=True),
    create(leader=""),
])
def test_bad_team_terms_are_invalid(command):
    """A team under 2 or over the maximum size, a minimum below 1, a pool too small for
    the minimum, a deadline not in the future or a bad seed is an InvalidCommand."""
    given(team_decider).when(command).then_rejected(InvalidCommand)


def test_the_largest_seed_is_accepted():
    """A seed of 2**64 - 1 fits the log's unsigned 64 bits."""
    given(team_decider).when(create(seed=2**64 - 1)).then(team_created(seed=2**64 - 1))


# --- joining ----------------------------------------------------------------------------


def test_joining_adds_a_member_in_order():
    """A user joining an open team becomes the next member."""
    state = open_team().when(join("ann")).then(joined("ann", 1)).state
    assert state.members == ("leader", "ann") and state.is_open


def test_the_member_who_fills_the_team_completes_it_and_splits_the_packet():
    """The last member's join completes the team and splits the pool in join order."""
    members = ("leader", "ann", "bob", "cat")
    outcome = (open_team(joined("ann", 1), joined("bob", 2)).when(join("cat"))
               .then(joined("cat", 3),
                     TeamCompleted(team=TEAM, campaign=CAMPAIGN, members=members),
                     RedPacketSplit(team=TEAM, campaign=CAMPAIGN,
                                    shares=(("leader", 124), ("ann", 163), ("bob", 595),
                                            ("cat", 118)))))
    state = outcome.state
    assert state.completed and not state.is_open and state.members == members
    assert sum(cents for _, cents in state.shares) == POOL


def test_a_team_of_two_completes_on_the_first_join():
    """A team of two completes when its first member joins the leader."""
    outcome = open_team(size=2).when(join("ann"))
    assert [type(e) for e in outcome.events] == [MemberJoined, TeamCompleted, RedPacketSplit]


def test_joining_an_unknown_team_is_refused():
    """Joining a team never created is refused as UnknownTeam."""
    given(team_decider).when(join("ann")).then_rejected(UnknownTeam, team=TEAM)


def test_joining_twice_is_refused():
    """A member joining again while the team is open is refused as AlreadyMember."""
    open_team(joined("ann", 1)).when(join("ann")).then_rejected(AlreadyMember, user="ann")


def test_the_leader_cannot_join():
    """The leader is already a member, so joining is refused as AlreadyMember."""
    open_team().when(join("leader")).then_rejected(AlreadyMember, user="leader")


def test_joining_a_full_team_is_refused():
    """Joining a completed team is refused as TeamAlreadyCompleted, members included."""
    open_team(*FILLED).when(join("dan")).then_rejected(TeamAlreadyCompleted, team=TEAM)
    open_team(*FILLED).when(join("ann")).then_rejected(TeamAlreadyCompleted, team=TEAM)


@pytest.mark.parametrize("now", [EXPIRES, EXPIRES + 1])
def test_joining_at_or_after_the_deadline_is_refused(now):
    """Joining once `now` reaches `expires` is refused as TeamExpired."""
    open_team().when(join("ann", now=now)).then_rejected(TeamExpired, expires=EXPIRES)


def test_joining_an_expired_team_is_refused():
    """Joining a team already expired is refused as TeamExpired, whatever `now` says."""
    expired = TeamExpiredUnfilled(team=TEAM, campaign=CAMPAIGN, pool_cents=POOL,
                                  members=("leader",))
    open_team(expired).when(join("ann", now=NOW)).then_rejected(TeamExpired)


# --- expiring ---------------------------------------------------------------------------


def test_an_unfilled_team_expires_at_its_deadline():
    """At its deadline an unfilled team expires, once, with the members it had."""
    outcome = (open_team(joined("ann", 1)).when(ExpireTeam(team=TEAM, now=EXPIRES))
               .then(TeamExpiredUnfilled(team=TEAM, campaign=CAMPAIGN, pool_cents=POOL,
                                         members=("leader", "ann"))))
    assert outcome.state.expired and not outcome.state.is_open


def test_expiring_twice_does_nothing():
    """A team already expired decides nothing when expired again."""
    expired = TeamExpiredUnfilled(team=TEAM, campaign=CAMPAIGN, pool_cents=POOL,
                                  members=("leader",))
    open_team(expired).when(ExpireTeam(team=TEAM, now=EXPIRES + 10)).then()


@pytest.mark.parametrize("events, now", [((), EXPIRES - 1), (FILLED, EXPIRES + 1)])
def test_expiring_early_or_after_completion_does_nothing(events, now):
    """Expiring before the deadline, or a completed team, decides nothing."""
    open_team(*events).when(ExpireTeam(team=TEAM, now=now)).then()


def test_expiring_an_unknown_team_does_nothing():
    """Expiring a team never created decides nothing."""
    given(team_decider).when(ExpireTeam(team=TEAM, now=EXPIRES)).then()


# --- malformed commands -----------------------------------------------------------------


@pytest.mark.parametrize("command", [
    join("ann", now=1.0),
    join("ann", now=True),
    join("ann", now=2**63),
    join(""),
    join(None),
    JoinTeam(team="other", user="ann", now=NOW),
    ExpireTeam(team=TEAM, now="5000"),
    create(min_share=-5, pool=1_000),
    create(pool=-1),
    "JoinTeam",
    object(),
])
def test_malformed_commands_are_invalid(command):
    """Wrong types, bools or floats for ints, negative money, empty ids, a command for
    another team, or something that is no command at all is an InvalidCommand."""
    assert isinstance(team_decider.decide(command, open_team().state), InvalidCommand)


# --- the log and the host ---------------------------------------------------------------


def test_events_have_stable_wire_names():
    """The team's events are registered under their documented wire names."""
    classes = (TeamCreated, MemberJoined, TeamCompleted, RedPacketSplit, TeamExpiredUnfilled)
    assert [registry.wire_name(cls) for cls in classes] == [
        "teams.team_created", "teams.member_joined", "teams.team_completed",
        "teams.red_packet_split", "teams.team_expired_unfilled"]


def test_a_new_team_sets_a_timer_at_its_deadline():
    """Creating a team starts a timer at `expires`; other events start none."""
    assert team_decider.deadline_of(team_created()) == EXPIRES
    assert team_decider.deadline_of(joined("ann", 1)) is None


def test_the_deadline_is_due_only_while_the_team_is_open():
    """An open team is next due at `expires`; a full, expired or unknown one never."""
    expired = TeamExpiredUnfilled(team=TEAM, campaign=CAMPAIGN, pool_cents=POOL,
                                  members=("leader",))
    assert team_decider.next_deadline(open_team().state) == EXPIRES
    assert team_decider.next_deadline(open_team(*FILLED).state) is None
    assert team_decider.next_deadline(open_team(expired).state) is None
    assert team_decider.next_deadline(team_decider.initial(TEAM)) is None


def test_the_host_expires_a_team_with_expire_team():
    """The command a host issues when a team is due is ExpireTeam."""
    assert team_decider.expire(TEAM, EXPIRES) == ExpireTeam(team=TEAM, now=EXPIRES)
    assert team_decider.entity_of(join("ann")) == TEAM == team_decider.entity_of(team_created())


def test_the_state_pickles_to_an_equal_state():
    """A team's state survives a snapshot's pickle unchanged."""
    state = open_team(*FILLED).state
    assert pickle.loads(pickle.dumps(state)) == state
