"""The team decider: a team-up red packet, its members, its deadline and its split.

A leader opens a team of `size` members (the leader is the first) that must fill before
`expires`. The member who fills it completes the team, and the red packet's `pool_cents`
is split among the members at once, in join order, each share at least `min_share_cents`
and the shares summing exactly to the pool. A team that reaches `expires` unfilled is
expired, once, by the host's timer; its pool goes back to the campaign (the campaign
decider's `ReturnPool`, driven by whoever reads `TeamExpiredUnfilled`).

The split is "double the mean", drawn from a seeded splitmix64 so that anyone can
recompute it from the log: see `split_red_packet`.

Pure: no I/O, clock, randomness or logging. `now`, ids and the seed arrive in commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, assert_never

from saleday.actors.decider import Decider, InvalidCommand, Rejection, compact_pickle
from saleday.actors.fields import Intake, fast_replace
from saleday.events.registry import event_type
from saleday.events.values import quick_init

Shares = tuple[tuple[str, int], ...]
"""A split red packet: `((member, cents), ...)` in join order."""

MAX_SIZE = 100
"""The largest team; team-ups are a handful of friends (the usual size is 4)."""

_MASK64 = 2**64 - 1


# --- the split ------------------------------------------------------------------------


def splitmix64(seed: int):  # noqa: ANN201 - an endless iterator of 64-bit ints
    """The outputs of splitmix64 (Steele, Lea, Flood 2014) seeded with `seed`.

    All arithmetic is modulo 2**64 on unsigned integers; for each output:

        state = (state + 0x9E3779B97F4A7C15) mod 2**64
        z = state
        z = ((z XOR (z >> 30)) * 0xBF58476D1CE4E5B9) mod 2**64
        z = ((z XOR (z >> 27)) * 0x94D049BB133111EB) mod 2**64
        output z XOR (z >> 31)

    starting from state = seed. With seed 0 the first output is 0xE220A8397B1DCDAF.
    """
    state = seed & _MASK64
    while True:
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        yield z ^ (z >> 31)


def split_red_packet(pool_cents: int, size: int, min_share_cents: int, seed: int,
                     members: tuple[str, ...]) -> Shares:
    """Split `pool_cents` among `members` (in join order) by "double the mean".

    With R the cents still to give and k the members still to serve (R = pool, k = size
    at first), every member but the last takes

        upper = min(2 * R // k, R - min_share_cents * (k - 1))
        share = min_share_cents + r mod (upper - min_share_cents + 1)

    where r is the next output of `splitmix64(seed)`; then R -= share and k -= 1. The
    last member takes R. Since R >= k * min_share_cents throughout, every share is at
    least the minimum and the shares sum to the pool exactly.
    """
    if size < 1 or len(members) != size:
        raise ValueError(f"a split needs size >= 1 members, got size {size} and {len(members)}")
    if min_share_cents < 0 or pool_cents < size * min_share_cents:
        raise ValueError(f"a pool of {pool_cents} cannot give {size} shares of {min_share_cents}")
    outputs = splitmix64(seed)
    left, k = pool_cents, size
    shares = []
    for member in members[:-1]:
        upper = min(2 * left // k, left - min_share_cents * (k - 1))
        share = min_share_cents + next(outputs) % (upper - min_share_cents + 1)
        shares.append((member, share))
        left -= share
        k -= 1
    shares.append((members[-1], left))
    return tuple(shares)


# --- commands -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTeam:
    """Open a team of `size` led by `leader`, with a red packet of `pool_cents` from
    `campaign`, to fill before `expires`; `seed` (in [0, 2**64)) drives its split."""

    STAMPED: ClassVar[frozenset[str]] = frozenset({"expires"})
    """Not fingerprinted (actors/decider.py): the caller derives it from `now`."""

    team: str
    leader: str
    campaign: str
    pool_cents: int
    size: int
    min_share_cents: int
    expires: int
    seed: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinTeam:
    """`user` joins the team."""

    team: str
    user: str
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpireTeam:
    """End the team if it is still unfilled at its deadline."""

    team: str
    now: int


TeamCommand = CreateTeam | JoinTeam | ExpireTeam

COMMANDS = (CreateTeam, JoinTeam, ExpireTeam)

_INTAKE = Intake("team", COMMANDS, entity="team", unsigned=("seed",))
"""Each command's int and str fields (all strs required, the seed unsigned) and its team,
checked before any business rule."""


# --- events ---------------------------------------------------------------------------


@event_type("teams.team_created")
@dataclass(frozen=True, slots=True, kw_only=True)
class TeamCreated:
    """The team is open, with `leader` as its first member, until `expires`."""

    team: str
    leader: str
    campaign: str
    pool_cents: int
    size: int
    min_share_cents: int
    expires: int
    seed: int


@event_type("teams.member_joined")
@dataclass(frozen=True, slots=True, kw_only=True)
class MemberJoined:
    """`user` joined as member number `position` (the leader is 0)."""

    team: str
    user: str
    position: int


@event_type("teams.team_completed")
@dataclass(frozen=True, slots=True, kw_only=True)
class TeamCompleted:
    """The team filled with these `members`, in join order, leader first."""

    team: str
    campaign: str
    members: tuple[str, ...]


@event_type("teams.red_packet_split")
@dataclass(frozen=True, slots=True, kw_only=True)
class RedPacketSplit:
    """The pool was split: `((member, cents), ...)` in join order, summing to the pool."""

    team: str
    campaign: str
    shares: Shares


@event_type("teams.team_expired_unfilled")
@dataclass(frozen=True, slots=True, kw_only=True)
class TeamExpiredUnfilled:
    """The team reached its deadline with only these `members`; its pool is not split."""

    team: str
    campaign: str
    pool_cents: int
    members: tuple[str, ...]


TeamEvent = TeamCreated | MemberJoined | TeamCompleted | RedPacketSplit | TeamExpiredUnfilled


# --- rejections -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownTeam(Rejection):
    """No team was created under this id."""

    team: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AlreadyMember(Rejection):
    """`user` is already in the team (the leader counts)."""

    team: str
    user: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamAlreadyCompleted(Rejection):
    """The team is full."""

    team: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamExpired(Rejection):
    """The team's deadline `expires` has passed."""

    team: str
    expires: int


# --- state ----------------------------------------------------------------------------


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class TeamState:
    """One team: its terms, its members in join order and where its lifecycle is.

    A team is open once `created`, until it is `completed` (then `shares` holds the
    split) or `expired`, never both.
    """

    team: str
    created: bool
    leader: str
    campaign: str
    pool_cents: int
    size: int
    min_share_cents: int
    expires: int
    seed: int
    members: tuple[str, ...]
    completed: bool
    expired: bool
    shares: Shares

    @property
    def is_open(self) -> bool:
        """Created, and neither completed nor expired."""
        return self.created and not (self.completed or self.expired)


def initial(team: str) -> TeamState:
    """A team nobody has created yet."""
    return TeamState(team=team, created=False, leader="", campaign="", pool_cents=0, size=0,
                     min_share_cents=0, expires=0, seed=0, members=(), completed=False,
                     expired=False, shares=())


# --- decide ---------------------------------------------------------------------------


def decide(command: TeamCommand, state: TeamState) -> list[TeamEvent] | Rejection:
    """The facts `command` establishes against `state`, or why it is refused."""
    refused = _INTAKE.refusal(command, state.team)
    if refused is not None:
        return refused
    match command:
        case CreateTeam():
            return _create(command, state)
        case JoinTeam():
            return _join(command, state)
        case ExpireTeam():
            return _expire_due(command, state)
        case _:
            return _INTAKE.not_taken(command)


def _create(command: CreateTeam, state: TeamState) -> list[TeamEvent] | Rejection:
    c = command
    if not 2 <= c.size <= MAX_SIZE:
        return InvalidCommand(reason=f"a team has 2 to {MAX_SIZE} members, not {c.size}")
    if c.min_share_cents < 1:
        return InvalidCommand(reason=f"min_share_cents must be >= 1, not {c.min_share_cents}")
    if c.pool_cents < c.size * c.min_share_cents:
        return InvalidCommand(reason=f"a pool of {c.pool_cents} cents cannot give {c.size} "
                                     f"shares of at least {c.min_share_cents}")
    if c.expires <= c.now:
        return InvalidCommand(reason=f"expires ({c.expires}) is not after now ({c.now})")
    event = TeamCreated(team=c.team, leader=c.leader, campaign=c.campaign, pool_cents=c.pool_cents,
                        size=c.size, min_share_cents=c.min_share_cents, expires=c.expires,
                        seed=c.seed)
    if not state.created:
        return [event]
    if _terms(event) == _terms(state):
        return []
    return InvalidCommand(reason=f"team {c.team!r} already exists with other terms")


def _join(command: JoinTeam, state: TeamState) -> list[TeamEvent] | Rejection:
    team, user = state.team, command.user
    if not state.created:
        return UnknownTeam(team=team)
    if state.completed:
        return TeamAlreadyCompleted(team=team)
    if state.expired or command.now >= state.expires:
        return TeamExpired(team=team, expires=state.expires)
    if user in state.members:
        return AlreadyMember(team=team, user=user)
    joined = MemberJoined(team=team, user=user, position=len(state.members))
    if len(state.members) + 1 < state.size:
        return [joined]
    members = (*state.members, user)
    shares = split_red_packet(state.pool_cents, state.size, state.min_share_cents, state.seed,
                              members)
    return [joined, TeamCompleted(team=team, campaign=state.campaign, members=members),
            RedPacketSplit(team=team, campaign=state.campaign, shares=shares)]


def _expire_due(command: ExpireTeam, state: TeamState) -> list[TeamEvent]:
    if not state.is_open or command.now < state.expires:
        return []
    return [TeamExpiredUnfilled(team=state.team, campaign=state.campaign,
                                pool_cents=state.pool_cents, members=state.members)]


def _terms(x: TeamCreated | TeamState) -> tuple:
    """The terms that make a team what it is, to tell a retry from a conflict."""
    return (x.leader, x.campaign, x.pool_cents, x.size, x.min_share_cents, x.expires, x.seed)


# --- evolve ---------------------------------------------------------------------------


replace = fast_replace(TeamState)


def evolve(state: TeamState, event: TeamEvent) -> TeamState:
    """The state after `event`. No validation: the event already happened."""
    match event:
        case TeamCreated():
            return replace(state, created=True, leader=event.leader, campaign=event.campaign,
                           pool_cents=event.pool_cents, size=event.size,
                           min_share_cents=event.min_share_cents, expires=event.expires,
                           seed=event.seed, members=(event.leader,))
        case MemberJoined():
            return replace(state, members=(*state.members, event.user))
        case TeamCompleted():
            return replace(state, completed=True, members=event.members)
        case RedPacketSplit():
            return replace(state, shares=event.shares)
        case TeamExpiredUnfilled():
            return replace(state, expired=True)
        case _:
            assert_never(event)


# --- what a shard host needs ----------------------------------------------------------


def entity_of(x: TeamCommand | TeamEvent) -> str:
    """The team a command or an event is about."""
    return x.team


def deadline_of(event: TeamEvent) -> int | None:
    """When a new team is due to expire; None for events that start no timer."""
    return event.expires if type(event) is TeamCreated else None


def next_deadline(state: TeamState) -> int | None:
    """The team's deadline while it is open; None once it is full or expired."""
    return state.expires if state.is_open else None


def expire(team: str, now: int) -> ExpireTeam:
    """The command a host issues once `team` is due."""
    return ExpireTeam(team=team, now=now)


team_decider: Decider[TeamCommand, TeamEvent, TeamState] = Decider(
    kind="team", initial=initial, decide=decide, evolve=evolve, entity_of=entity_of,
    commands=COMMANDS, deadline_of=deadline_of, next_deadline=next_deadline, expire=expire)
