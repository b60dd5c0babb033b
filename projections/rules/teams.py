"""Team-up red packets: members, completion and the split (team streams)."""

from __future__ import annotations

from saleday.projections.rules.common import (
    _MASK64,
    RulesBase,
)


class Team:
    __slots__ = (
        "campaign",
        "completed",
        "expired",
        "leader",
        "members",
        "min_share",
        "pool",
        "seed",
        "size",
        "split",
        "stream",
        "version",
    )

    def __init__(self, d: dict, stream: str, version: int) -> None:
        self.stream, self.version = stream, version
        self.leader, self.campaign = d["leader"], d["campaign"]
        self.pool, self.size, self.min_share, self.seed = (d["pool_cents"], d["size"],
                                                           d["min_share_cents"], d["seed"])
        self.members = [self.leader]
        self.completed = self.expired = self.split = False



class TeamRules(RulesBase):
    """teams.* events: distinct members, shares summing to the pool as drawn."""

    # --- teams -------------------------------------------------------------------------

    def team_created(self, env: tuple) -> None:
        d = env[8]
        if d["team"] in self.teams:
            self.fail("teams.members", env[0], env[1], f"team {d['team']!r} created a second time")
            return
        self.teams[d["team"]] = Team(d, env[0], env[1])

    def _team(self, env: tuple, what: str) -> Team | None:
        t = self.teams.get(env[8]["team"])
        if t is None:
            self.fail("teams.members", env[0], env[1],
                      f"team {env[8]['team']!r} {what}, but it was never created")
        return t

    def member_joined(self, env: tuple) -> None:
        t = self._team(env, "got a member")
        if t is None:
            return
        d = env[8]
        if t.completed or t.expired or d["user"] in t.members or d["position"] != len(t.members):
            self.fail("teams.members", env[0], env[1],
                      f"team {d['team']!r}: {d['user']!r} joined at position {d['position']} "
                      f"with members {t.members}"
                      + (" after the team was " + ("completed" if t.completed else "expired")
                         if t.completed or t.expired else ""))
        t.members.append(d["user"])

    def team_completed(self, env: tuple) -> None:
        t = self._team(env, "completed")
        if t is None:
            return
        members = list(env[8]["members"])
        if (members != t.members or len(members) != t.size or len(set(members)) != t.size
                or t.completed or t.expired):
            self.fail("teams.members", env[0], env[1],
                      f"team {env[8]['team']!r} completed with {members}, but it needs {t.size} "
                      f"distinct members and its members in join order are {t.members}")
        t.completed = True

    def red_packet_split(self, env: tuple) -> None:
        t = self._team(env, "split its red packet")
        if t is None:
            return
        d = env[8]
        shares = [tuple(s) for s in d["shares"]]
        cents = [c for _, c in shares]
        problems = []
        if t.split:
            problems.append("it was already split")
        if not t.completed:
            problems.append("the team is not complete")
        if [m for m, _ in shares] != t.members:
            problems.append(f"the shares go to {[m for m, _ in shares]}, not the members "
                            f"{t.members} in join order")
        if sum(cents) != t.pool:
            problems.append(f"the shares sum to {sum(cents)} cents, not the pool of {t.pool}")
        if cents and min(cents) < t.min_share:
            problems.append(f"a share of {min(cents)} cents is below the minimum of {t.min_share}")
        if not problems and shares != split_red_packet(t.pool, t.size, t.min_share, t.seed, t.members):
            problems.append("the shares are not the documented split of the pool by its seed")
        if problems:
            self.fail("teams.split", env[0], env[1],
                      f"team {d['team']!r}'s red packet: " + "; ".join(problems))
        t.split = True

    def team_expired(self, env: tuple) -> None:
        t = self._team(env, "expired")
        if t is None:
            return
        d = env[8]
        if t.completed or t.expired or list(d["members"]) != t.members or d["pool_cents"] != t.pool:
            self.fail("teams.members", env[0], env[1],
                      f"team {d['team']!r} expired unfilled with {list(d['members'])} and "
                      f"{d['pool_cents']} cents, but it " + ("had completed" if t.completed else
                                                             f"has {t.members} and {t.pool} cents"))
        t.expired = True


    def _teams_at_end(self) -> None:
        self._count("coupons.budget", len(self.teams))
        for name, t in self.teams.items():
            if t.campaign not in self.campaigns:
                continue  # the campaign's stream is not in this log
            p = self.pools.get((t.campaign, name))
            if p is None or (p[0], p[1]) != (t.pool, t.size):
                self.fail("coupons.budget", t.stream, t.version,
                          f"team {name!r} has a red packet of {t.pool} cents for {t.size} members "
                          f"that campaign {t.campaign!r} " + ("never drew" if p is None else
                                                              f"drew as {p[0]} cents / {p[1]} coupons"))



def split_red_packet(pool: int, size: int, min_share: int, seed: int,
                     members: list[str]) -> list[tuple[str, int]]:
    """The "double the mean" split of actors/team.py from a splitmix64 of `seed` (the rule
    is restated in docs/AUDIT.md so an auditor can recompute it)."""
    if len(members) != size or size < 1:
        return []
    state = seed & _MASK64
    left, k, shares = pool, size, []
    for member in members[:-1]:
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        r = z ^ (z >> 31)
        upper = min(2 * left // k, left - min_share * (k - 1))
        share = min_share + r % (upper - min_share + 1)
        shares.append((member, share))
        left -= share
        k -= 1
    shares.append((members[-1], left))
    return shares

