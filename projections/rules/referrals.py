"""Referrals: first-touch attribution, no self-referral, no cycles (session streams)."""

from __future__ import annotations

from saleday.projections.rules.common import RulesBase


class ReferralRules(RulesBase):
    """sessions.session_started and referral_attributed."""

    # --- sessions: referrals ------------------------------------------------------------

    def session_started(self, env: tuple) -> None:
        d = env[8]
        u = self.users.get(d["user"])
        if u is None:
            self.users[d["user"]] = [d["started_at"], env[5], 1]
        else:
            u[2] += 1

    def referral_attributed(self, env: tuple) -> None:
        d = env[8]
        user, inviter = d["user"], d["inviter"]
        if inviter == user:  # the one rule it breaks: not also a cycle, nor seen-before
            self.fail("referrals.no_self", env[0], env[1], f"user {user!r} credited as their own inviter")
            return
        before = self.inviter.get(user)
        u = self.users.get(user)
        if before is not None:
            self.fail("referrals.first_touch", env[0], env[1],
                      f"user {user!r} attributed to {inviter!r} after already being attributed "
                      f"to {before[0]!r}")
        elif u is None or u[2] != 1 or u[1] != env[5]:
            self.fail("referrals.first_touch", env[0], env[1],
                      f"user {user!r} attributed to {inviter!r} outside their first session")
        else:
            self.inviter[user] = (inviter, d["attributed_at"], env[0], env[1])


    def _referrals_at_end(self) -> None:
        self._count("referrals.first_touch", len(self.inviter))
        self._count("referrals.no_cycles", len(self.inviter))
        for user, (inviter, at, stream, version) in self.inviter.items():
            seen = self.users.get(inviter)
            if seen is None or not seen[0] < at:
                self.fail("referrals.first_touch", stream, version,
                          f"user {user!r} attributed to {inviter!r} at {at}, who was "
                          + ("never seen" if seen is None else f"first seen at {seen[0]}, not before"))
        done: set[str] = set()
        for start in self.inviter:
            path: dict[str, int] = {}
            user = start
            while user in self.inviter and user not in done and user not in path:
                path[user] = len(path)
                user = self.inviter[user][0]
            if user in path:
                cycle = list(path)[path[user]:]
                first = min(cycle)
                _, _, stream, version = self.inviter[first]
                self.fail("referrals.no_cycles", stream, version,
                          "referral cycle: " + " -> ".join([*cycle, user]) + " (each invited by the next)")
            done.update(path)

