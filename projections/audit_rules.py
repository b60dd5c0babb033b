"""The invariants of ARCHITECTURE.md, checked by folding events (wire names, payload dicts).

The families live in projections/rules/ (stock, coupons, teams, orders, referrals,
causes, members, followups), each a
mixin over `RulesBase`; `Rules` composes them and dispatches by wire type.

`Rules` keeps plain dicts and lists per SKU, reservation, order, coupon, campaign, team
and user, fed one event at a time through a dispatch table keyed by wire type name.
Rules that need the whole log (a reservation left open past its deadline, a paid order
whose reservations were not confirmed, a referral cycle) run in `finish`, once the last
event time is known. Each rule is explained in words in docs/AUDIT.md; the readers of
each wire type follow actors/*.py, which write them.

Pure: no I/O, clock or logging. A finding is `(rule, stream, version, message)`.
"""

from __future__ import annotations

from collections.abc import Callable

from saleday.projections.rules.causes import CausationRules
from saleday.projections.rules.coupons import CouponRules
from saleday.projections.rules.followups import FollowUpRules
from saleday.projections.rules.members import MemberRules
from saleday.projections.rules.orders import OrderRules
from saleday.projections.rules.referrals import ReferralRules
from saleday.projections.rules.stock import StockRules
from saleday.projections.rules.teams import TeamRules, split_red_packet

__all__ = ["READS", "RULES", "Rules", "describe", "split_red_packet"]

RULES: dict[str, str] = {
    "log.chain": "gapless versions from 1 and intact hash chains (docs/LOG_FORMAT.md)",
    "log.commands": "each command's effects are recorded once (one run of events, one stream)",
    "log.schema": "every event has a type and schema version this audit knows, and its shape",
    "log.causation": "every causation id names an event of the log recorded before the one it caused",
    "stock.conservation": "per SKU available + reserved + set aside + sold = stocked; moves "
                          "match the reservation or hold; only sold units are returned, once",
    "stock.oversell": "no reservation or presale hold takes more units than are available "
                      "(never negative)",
    "sale.window": "units are reserved only while the SKU's sale is open",
    "sale.tiers": "unit k is taken from the lowest tier with room, at that tier's price",
    "sale.limits": "no user holds or bought more units of a SKU than its per-user limit",
    "reservations.lifecycle": "only a held reservation is confirmed, released or expired, once",
    "reservations.leak": "no reservation is still held after its deadline at the end of the log",
    "coupons.budget": "grants + pools drawn - pools returned stay within each campaign budget",
    "coupons.redemption": "a coupon is received once, redeemed at most once (again only "
                          "after a refunded order returned it while valid), only if "
                          "received, locked by its order and valid",
    "teams.members": "a team completes only with `size` distinct members, in join order",
    "teams.split": "red-packet shares sum exactly to the pool, each >= the minimum, as drawn",
    "orders.settlement": "paid => every reservation confirmed and the coupon redeemed; "
                         "cancelled => none confirmed, all released; refunded => no units "
                         "left sold to it, and its coupon returned if still valid; every "
                         "captured payment "
                         "ends in a paid order so settled or a refunded one",
    "orders.money": "total = subtotal - discount - points applied; line prices = the "
                    "reservations' prices; a paid order captured its total once, other payments "
                    "are refunded; a refunded order gives back exactly what it captured",
    "followups.delivery": "every red-packet share and campaign grant reaches its wallet once, "
                          "on its terms, and an expired team's drawn pool goes back once",
    "referrals.first_touch": "one inviter per user, set on the first session, seen before",
    "referrals.no_self": "nobody is credited with inviting themselves",
    "referrals.no_cycles": "the referral graph has no cycles",
    "members.history": "an order ref enters a member's history once, amount >= 0",
    "members.tiers": "tier changes go forward in time, each from the tier the member had",
    "members.points": "points earned once per order (for the invoice chosen, doubled if "
                      "electronic), redeemed only from unexpired lots, expired only what was "
                      "left; a checkout's hold spent once (by its paid order, for the points "
                      "it applied) or given back; a refunded order's points taken back once "
                      "(what was left of its lot), never earned after; balance + held = "
                      "earned - redeemed - expired - taken back, balance >= 0",
    "members.protection": "one protection refund per paid line, = the drop below what each "
                          "unit paid, on a real paid line and a real price change, never on "
                          "an order whose refund the member has recorded",
    "prices.history": "each price change starts from the last price, in time order",
    "presales.windows": "deposits in the deposit window, balances in the balance window, "
                        "forfeits only after it",
    "presales.money": "deposit = deposit x qty, balance = (price - deposit value) x qty, "
                      "held <= units; deposits + balances = paid in",
    "presales.sku_holds": "a hold is set aside once, then sold or returned once, whole",
    "presales.stock": "each deposit's units are set aside on its SKU for its holder: held "
                      "while the deposit is, sold when its balance is paid, returned when "
                      "it is forfeited; units set aside for no deposit are returned",
}
"""Every rule the audit checks, with what it means in one line."""

READS: dict[str, tuple[str, ...]] = {
    "stock.conservation": ("inventory.stock_added", "inventory.reservation_confirmed",
                           "inventory.reservation_released", "inventory.reservation_expired",
                           "inventory.set_aside_sold", "inventory.set_aside_returned",
                           "inventory.sold_units_returned"),
    "stock.oversell": ("inventory.stock_reserved", "inventory.stock_set_aside"),
    "presales.sku_holds": ("inventory.stock_set_aside", "inventory.set_aside_sold",
                        "inventory.set_aside_returned"),
    "sale.window": ("inventory.stock_reserved",),
    "sale.tiers": ("inventory.sale_configured", "inventory.stock_reserved",
                   "inventory.reservation_confirmed"),
    "sale.limits": ("inventory.stock_reserved",),
    "reservations.lifecycle": ("inventory.stock_reserved", "inventory.reservation_confirmed",
                               "inventory.reservation_released", "inventory.reservation_expired",
                               "inventory.reservation_voided"),
    "coupons.budget": ("coupons.campaign_created", "coupons.coupon_granted", "coupons.pool_drawn",
                       "coupons.pool_returned"),
    "coupons.redemption": ("sessions.coupon_received", "sessions.coupon_locked",
                           "sessions.coupon_redeemed", "sessions.coupon_unlocked",
                           "sessions.coupon_lapsed", "sessions.coupon_returned"),
    "teams.members": ("teams.team_created", "teams.member_joined", "teams.team_completed",
                      "teams.team_expired_unfilled"),
    "teams.split": ("teams.red_packet_split",),
    "orders.settlement": ("orders.checkout_started", "orders.order_voided",
                          "orders.checkout_cancelled"),
    "orders.money": ("orders.points_applied", "orders.order_placed", "orders.payment_captured",
                     "orders.refund_issued", "orders.order_refunded"),
    "referrals.first_touch": ("sessions.referral_attributed",),
    "referrals.no_self": ("sessions.referral_attributed",),
    "members.history": ("members.order_recorded",),
    "members.tiers": ("members.tier_changed",),
    "members.points": ("members.invoice_chosen", "members.points_earned",
                       "members.points_redeemed", "members.points_expired",
                       "members.points_held", "members.points_released",
                       "members.points_taken_back"),
    "members.protection": ("members.price_protection_refunded",),
    "prices.history": ("prices.price_changed",),
    "presales.windows": ("presales.deposit_paid", "presales.balance_paid",
                         "presales.deposit_forfeited"),
    "presales.money": ("presales.presale_opened", "presales.deposit_paid",
                       "presales.balance_paid", "presales.deposit_forfeited"),
    "presales.stock": ("presales.deposit_paid", "presales.balance_paid",
                       "presales.deposit_forfeited"),
}
"""Which event types each rule examines (its per-event check count)."""



class Rules(StockRules, CouponRules, TeamRules, OrderRules, ReferralRules, CausationRules,
            MemberRules, FollowUpRules):
    """The audit's fold: call `apply(env)` per event (or `handlers[type](env)`), then `finish`."""

    def __init__(self) -> None:
        super().__init__()
        self.handlers: dict[str, Callable[[tuple], None]] = {
            "inventory.stock_added": self.stock_added,
            "inventory.sale_configured": self.sale_configured,
            "inventory.stock_reserved": self.stock_reserved,
            "inventory.reservation_confirmed": self.reservation_confirmed,
            "inventory.reservation_released": self.reservation_returned,
            "inventory.reservation_expired": self.reservation_returned,
            "inventory.reservation_voided": self.reservation_voided,
            "inventory.stock_set_aside": self.stock_set_aside,
            "inventory.set_aside_sold": self.set_aside_closed,
            "inventory.set_aside_returned": self.set_aside_closed,
            "inventory.sold_units_returned": self.sold_units_returned,
            "sessions.session_started": self.session_started,
            "sessions.referral_attributed": self.referral_attributed,
            "sessions.coupon_received": _both(self.coupon_received, self.coupon_delivered),
            "sessions.coupon_locked": self.coupon_locked,
            "sessions.coupon_redeemed": self.coupon_redeemed,
            "sessions.coupon_unlocked": self.coupon_unlocked,
            "sessions.coupon_lock_voided": _ignore,
            "sessions.coupon_lapsed": self.coupon_lapsed,
            "sessions.coupon_returned": self.coupon_returned,
            "sessions.order_status_changed": _ignore,
            "sessions.push_delivered": _ignore,
            "sessions.store_visited": _ignore,
            "sessions.behaviour_recorded": _ignore,
            "sessions.exposure_recorded": _ignore,
            "experiments.experiment_defined": _ignore,
            "coupons.campaign_created": self.campaign_created,
            "coupons.coupon_granted": _both(self.coupon_granted, self.owe_grant),
            "coupons.pool_drawn": self.pool_drawn,
            "coupons.pool_returned": _both(self.pool_returned, self.pool_delivered),
            "teams.team_created": self.team_created,
            "teams.member_joined": self.member_joined,
            "teams.team_completed": self.team_completed,
            "teams.red_packet_split": _both(self.red_packet_split, self.owe_shares),
            "teams.team_expired_unfilled": _both(self.team_expired, self.owe_return),
            "orders.checkout_started": self.checkout_started,
            "orders.order_placed": self.order_placed,
            "orders.order_voided": self.order_voided,
            "orders.checkout_cancelled": self.checkout_cancelled,
            "orders.payment_captured": self.payment_captured,
            "orders.refund_issued": self.refund_issued,
            "orders.order_refunded": self.order_refunded,
            "orders.points_applied": self.points_applied,
            "members.order_recorded": self.order_recorded,
            "members.tier_changed": self.tier_changed,
            "members.invoice_chosen": self.invoice_chosen,
            "members.points_earned": self.points_earned,
            "members.points_redeemed": self.points_redeemed,
            "members.points_expired": self.points_expired,
            "members.points_held": self.points_held,
            "members.points_released": self.points_released,
            "members.points_taken_back": self.points_taken_back,
            "members.price_protection_refunded": self.protection_refunded,
            "prices.price_changed": self.price_changed,
            "presales.presale_opened": self.presale_opened,
            "presales.deposit_paid": self.deposit_paid,
            "presales.balance_paid": self.balance_paid,
            "presales.deposit_forfeited": self.deposit_forfeited,
        }

    def finish(self, last_time: int) -> None:
        """The checks that need the whole log; `last_time` is its last event time (ms)."""
        self._stock_at_end()
        self._leaks(last_time)
        self._orders_at_end(last_time)
        self._teams_at_end()
        self._referrals_at_end()
        self._causes_at_end()
        self.members_at_end()
        self._followups_at_end(last_time)


def _ignore(env: tuple) -> None:
    return None


def _both(first: Callable[[tuple], None],
          then: Callable[[tuple], None]) -> Callable[[tuple], None]:
    """One handler for a wire type that two rule families read."""
    def handler(env: tuple) -> None:
        first(env)
        then(env)
    return handler


def describe(rule: str) -> str:
    return RULES.get(rule, rule)


