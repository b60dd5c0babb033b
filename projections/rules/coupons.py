"""Coupons: campaign budgets (campaign streams) and the wallet's redemptions (session streams)."""

from __future__ import annotations

from saleday.projections.rules.common import (
    HELD,
    LAPSED,
    LOCKED,
    REDEEMED,
    RulesBase,
)


class CouponRules(RulesBase):
    """coupons.* and the wallet's sessions.coupon_* events."""

    # --- sessions: the wallet ---------------------------------------------------------

    # coupon record: [status, value, valid_until, order_id, stream, version, redeemed_by,
    #                 (stream, version) of the redemption, orders that returned it]
    def coupon_received(self, env: tuple) -> None:
        d = env[8]
        key = (d["user"], d["coupon_id"])
        if key in self.coupons:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {key[1]!r} received a second time by user {key[0]!r}")
            return
        self.coupons[key] = [HELD, d["value_cents"], d["valid_until"], "", env[0], env[1], "", None,
                             []]

    def _coupon(self, env: tuple, what: str) -> list | None:
        d = env[8]
        c = self.coupons.get((d["user"], d["coupon_id"]))
        if c is None:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {d['coupon_id']!r} of user {d['user']!r} {what}, but the user never "
                      "received it")
        return c

    def coupon_locked(self, env: tuple) -> None:
        c = self._coupon(env, "locked")
        if c is None:
            return
        d = env[8]
        if c[0] is not HELD:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {d['coupon_id']!r} of user {d['user']!r} locked for order "
                      f"{d['order_id']!r} while {c[0]}" + (f" by {c[3]!r}" if c[3] else ""))
        c[0], c[3] = LOCKED, d["order_id"]

    def coupon_redeemed(self, env: tuple) -> None:
        c = self._coupon(env, "redeemed")
        if c is None:
            return
        d = env[8]
        cid, oid = d["coupon_id"], d["order_id"]
        if c[6]:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {cid!r} of user {d['user']!r} redeemed a second time (by order "
                      f"{oid!r}; first by {c[6]!r})")
        elif c[0] is not LOCKED or c[3] != oid:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {cid!r} of user {d['user']!r} redeemed by order {oid!r} while "
                      f"{c[0]}" + (f" by {c[3]!r}" if c[3] and c[3] != oid else "")
                      + " (not locked by that order)")
        if d["value_cents"] != c[1]:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {cid!r} redeemed for {d['value_cents']} cents; it is worth {c[1]}")
        c[0], c[3] = REDEEMED, oid
        if not c[6]:
            c[6], c[7] = oid, (env[0], env[1])

    def coupon_unlocked(self, env: tuple) -> None:
        c = self._coupon(env, "unlocked")
        if c is None:
            return
        d = env[8]
        if c[0] is not LOCKED or c[3] != d["order_id"]:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {d['coupon_id']!r} of user {d['user']!r} unlocked by order "
                      f"{d['order_id']!r}, which does not hold it")
        c[0], c[3] = HELD, ""

    def coupon_returned(self, env: tuple) -> None:
        """A refunded order's coupon back in the wallet: redeemed by that order, still valid."""
        c = self._coupon(env, "returned")
        if c is None:
            return
        d = env[8]
        cid, oid = d["coupon_id"], d["order_id"]
        if c[0] is not REDEEMED or c[6] != oid or env[4] >= c[2] or d["value_cents"] != c[1]:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {cid!r} of user {d['user']!r} returned by order {oid!r} while "
                      f"{c[0]}" + (f" by {c[6]!r}" if c[6] else "")
                      + f", at {env[4]} (valid until {c[2]}), worth {d['value_cents']} (not "
                      f"{c[1]})")
        c[0], c[3], c[6], c[7] = HELD, "", "", None
        c[8].append((oid, env[0], env[1]))

    def coupon_lapsed(self, env: tuple) -> None:
        c = self._coupon(env, "lapsed")
        if c is None:
            return
        d = env[8]
        if c[0] is not HELD or env[4] < c[2]:
            self.fail("coupons.redemption", env[0], env[1],
                      f"coupon {d['coupon_id']!r} of user {d['user']!r} lapsed at {env[4]} while "
                      f"{c[0]}, valid until {c[2]}")
        c[0] = LAPSED


    # --- campaigns ---------------------------------------------------------------------

    # campaign record: [budget_coupons, budget_cents, coupons out, cents out, stream]
    def campaign_created(self, env: tuple) -> None:
        d = env[8]
        if d["campaign"] in self.campaigns:
            self.fail("coupons.budget", env[0], env[1],
                      f"campaign {d['campaign']!r} created a second time")
            return
        self.campaigns[d["campaign"]] = [d["budget_coupons"], d["budget_cents"], 0, 0, env[0]]

    def _draw(self, env: tuple, campaign: str, coupons: int, cents: int, what: str) -> None:
        c = self.campaigns.get(campaign)
        if c is None:
            self.fail("coupons.budget", env[0], env[1],
                      f"{what} from campaign {campaign!r}, which was never created")
            return
        c[2] += coupons
        c[3] += cents
        if (c[0] and c[2] > c[0]) or (c[1] and c[3] > c[1]):
            self.fail("coupons.budget", env[0], env[1],
                      f"campaign {campaign!r} is over its budget after {what}: {c[2]} coupons and "
                      f"{c[3]} cents out (granted + pools drawn - returned), budget "
                      f"{c[0] or 'unlimited'} coupons and {c[1] or 'unlimited'} cents")

    def coupon_granted(self, env: tuple) -> None:
        d = env[8]
        key = (d["campaign"], d["coupon_id"])
        if key in self.grants:
            self.fail("coupons.budget", env[0], env[1],
                      f"grant {d['coupon_id']!r} of campaign {d['campaign']!r} granted twice")
        self.grants.add(key)
        self._draw(env, d["campaign"], 1, d["value_cents"],
                   f"granting coupon {d['coupon_id']!r} ({d['value_cents']} cents)")

    def pool_drawn(self, env: tuple) -> None:
        d = env[8]
        key = (d["campaign"], d["team"])
        if key in self.pools:
            self.fail("coupons.budget", env[0], env[1],
                      f"team {d['team']!r} drew a second pool from campaign {d['campaign']!r}")
        self.pools[key] = [d["pool_cents"], d["coupons"], False]
        self._draw(env, d["campaign"], d["coupons"], d["pool_cents"],
                   f"drawing team {d['team']!r}'s pool ({d['pool_cents']} cents)")

    def pool_returned(self, env: tuple) -> None:
        d = env[8]
        key = (d["campaign"], d["team"])
        p = self.pools.get(key)
        if p is None or p[2] or (p[0], p[1]) != (d["pool_cents"], d["coupons"]):
            self.fail("coupons.budget", env[0], env[1],
                      f"team {d['team']!r} returned a pool of {d['pool_cents']} cents / "
                      f"{d['coupons']} coupons to campaign {d['campaign']!r} that "
                      + ("it never drew" if p is None else "was already returned" if p[2]
                         else f"differs from the {p[0]} cents / {p[1]} coupons it drew"))
            if p is None or p[2]:
                return
        p[2] = True
        c = self.campaigns.get(d["campaign"])
        if c is not None:
            c[2] -= p[1]
            c[3] -= p[0]

