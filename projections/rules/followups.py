"""Follow-ups: what a recorded fact calls for reaches its target, once (the reactor's work).

flows/reactions.py turns three facts into commands that the log then owes:
- a red-packet split (`teams.red_packet_split`) owes each member a share coupon
  `share/<team>/<member>` of the member's cents, campaign the team's, no minimum spend,
  valid until the split's time + `SHARE_VALIDITY_MS`;
- a campaign grant (`coupons.coupon_granted`) owes the user that coupon, on its terms;
- a team expired unfilled (`teams.team_expired_unfilled`) owes its campaign the pool back
  (`coupons.pool_returned`), when the pool was drawn (else there is nothing to return, and
  coupons.budget names the team).
A coupon reaches the wallet as a `sessions.coupon_received` of that user and coupon id.
A store visit's grant is not owed: the campaign may refuse it (its window, its budget).

Deliveries may sit in streams the fold reads before or after the fact that owes them, so
both are kept and matched in `_followups_at_end`: each owed follow-up delivered, on the
owed terms, and nothing owed delivered twice. A finding names the fact that owes a missing
one, and the event that repeats one or delivers other terms. A fact recorded at the log's
last event time *T* (within the shards' clock skew of it) may still be unanswered: the
reactor acts after a fact is recorded, and nothing in the log comes after it (as the
simulator's members day ends: its last timers expire teams, and the run stops there).
"""

from __future__ import annotations

from saleday.projections.rules.common import RulesBase

SHARE_VALIDITY_MS = 7 * 86_400_000
"""How long a red-packet share stays valid after its split (flows/reactions.py)."""

RULE = "followups.delivery"

# owed coupon: (kind, team or campaign, campaign, value, min_spend, valid_until, stream,
#               version, time of the fact)
# received coupon: (campaign, value, min_spend, valid_until, stream, version)


class FollowUpRules(RulesBase):
    """followups.delivery: shares, grants and pool returns delivered once, on their terms."""

    def __init__(self) -> None:
        super().__init__()
        self.owed_coupons: dict[tuple[str, str], tuple] = {}
        """(user, coupon id) -> what owes it, its terms and where (first owing fact)."""
        self.received: dict[tuple[str, str], tuple] = {}
        """(user, coupon id) -> the first `coupon_received`: its terms and where."""
        self.received_again: list[tuple[tuple[str, str], str, int]] = []
        """Every later `coupon_received` of a key: (key, stream, version)."""
        self.owed_returns: dict[tuple[str, str], tuple[str, int, int]] = {}
        """(campaign, team) -> where and when the team expired unfilled."""
        self.returned: dict[tuple[str, str], list[tuple[str, int]]] = {}
        """(campaign, team) -> where each `pool_returned` is."""

    # --- what is owed ---------------------------------------------------------------------

    def owe_shares(self, env: tuple) -> None:
        d = env[8]
        team, campaign, until = d["team"], d["campaign"], env[4] + SHARE_VALIDITY_MS
        owed = self.owed_coupons
        for member, cents in d["shares"]:
            key = (member, f"share/{team}/{member}")
            if key not in owed:
                owed[key] = ("share", team, campaign, cents, 0, until, env[0], env[1], env[4])

    def owe_grant(self, env: tuple) -> None:
        d = env[8]
        key = (d["user"], d["coupon_id"])
        if key not in self.owed_coupons:
            self.owed_coupons[key] = ("grant", d["campaign"], d["campaign"], d["value_cents"],
                                      d["min_spend_cents"], d["valid_until"], env[0], env[1],
                                      env[4])

    def owe_return(self, env: tuple) -> None:
        d = env[8]
        self.owed_returns.setdefault((d["campaign"], d["team"]), (env[0], env[1], env[4]))

    # --- what was delivered -----------------------------------------------------------------

    def coupon_delivered(self, env: tuple) -> None:
        d = env[8]
        key = (d["user"], d["coupon_id"])
        if key in self.received:
            self.received_again.append((key, env[0], env[1]))
            return
        self.received[key] = (d["campaign"], d["value_cents"], d["min_spend_cents"],
                              d["valid_until"], env[0], env[1])

    def pool_delivered(self, env: tuple) -> None:
        d = env[8]
        self.returned.setdefault((d["campaign"], d["team"]), []).append((env[0], env[1]))

    # --- at the end -----------------------------------------------------------------------

    def _followups_at_end(self, last_time: int) -> None:
        """Match what is owed with what was delivered; `last_time` is the log's *T*."""
        in_flight = last_time - getattr(self, "clock_skew_ms", 0)
        owed, received = self.owed_coupons, self.received
        self._count(RULE, len(owed))
        for (user, cid), (kind, source, *terms, stream, version, at) in owed.items():
            got = received.get((user, cid))
            if got is None:
                if at >= in_flight:
                    continue
                self.fail(RULE, stream, version,
                          f"{_what(kind, source, cid)} ({terms[1]} cents) owed to user {user!r} "
                          "never reached the wallet")
            elif list(got[:4]) != terms:
                self.fail(RULE, got[4], got[5],
                          f"{_what(kind, source, cid)} reached user {user!r}'s wallet as "
                          f"{_terms(got[:4])}; {stream} v{version} owes {_terms(terms)}")
        for key, stream, version in self.received_again:
            if key in owed:
                first = received[key]
                self.fail(RULE, stream, version,
                          f"{_what(*owed[key][:2], key[1])} reached user {key[0]!r}'s wallet a "
                          f"second time (first at {first[4]} v{first[5]})")
        drawn = [k for k in self.owed_returns if k in self.pools]
        self._count(RULE, len(drawn))
        for campaign, team in drawn:
            stream, version, at = self.owed_returns[(campaign, team)]
            returns = self.returned.get((campaign, team), [])
            if not returns and at < in_flight:
                self.fail(RULE, stream, version,
                          f"team {team!r} expired unfilled, but its pool never went back to "
                          f"campaign {campaign!r}")
            for again in returns[1:]:
                self.fail(RULE, again[0], again[1],
                          f"team {team!r}'s pool went back to campaign {campaign!r} a second "
                          f"time (first at {returns[0][0]} v{returns[0][1]})")


def _what(kind: str, source: str, coupon_id: str) -> str:
    if kind == "share":
        return f"red-packet share {coupon_id!r} of team {source!r}"
    return f"grant {coupon_id!r} of campaign {source!r}"


def _terms(terms: list | tuple) -> str:
    campaign, value, min_spend, until = terms
    return f"{value} cents off {min_spend} of campaign {campaign!r}, valid until {until}"
