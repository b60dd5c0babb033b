"""The rules of a member: what each command decides, and how its events fold.

- `RecordOrder` (`saleday import orders`, or a paid checkout): adds the order to the
  history. The same `order_ref` again with the same terms decides nothing (an import run
  twice records nothing twice); other terms under a known ref are an `InvalidCommand`.
  `source` is "import" or "checkout"; `amount_cents` and `ordered_at` are >= 0.
- `ChangeTier` (`saleday members tiers`, from the RFM view and the tier rule): records a
  `TierChanged` when the tier differs from the current one, else nothing. Tier changes
  are in time order: one dated before the last change is an `InvalidCommand`. The tier
  at any moment is the last change at or before it (`MemberState.tier_at`).
- `ChooseInvoice` (checkout, before the order starts): records the invoice asked for an
  order ref (none, paper or electronic, with its title and tax id), once; the same choice
  again decides nothing, another one is an `InvalidCommand`.
- `EarnPoints` (a paid order; the invoice must be the one chosen for it, "none" if none
  was): `points = amount_cents // 100 * points_per_yuan`, doubled
  for an electronic invoice, as one lot valid `valid_days` days from `now`; once per
  order ref (a repeat decides nothing). Zero points decide nothing.
- `RedeemPoints` (checkout, as a discount): takes `points` from the lots that expire
  first (ties by order ref). Lots already lapsed at `now` are expired first, in the same
  decision; a redemption above the remaining balance is refused (`InsufficientPoints`),
  so the balance never goes below zero. A repeated redemption id decides nothing
  (another amount under the same id is an `InvalidCommand`).
- `HoldPoints` (checkout, before the order is placed: points redeemed as a discount):
  takes `points` from the lots that expire first (lapsed lots expire first, in the same
  decision) and sets them aside for the order (`hold_id`) until `until`; more than the
  balance is `InsufficientPoints`. The same hold again decides nothing.
- `SpendPoints` (the order was paid): the hold's points are redeemed (`PointsRedeemed`
  under the hold id, taken from the lots the hold took them from). A spent hold again
  decides nothing; a released one, or none, is `PointsNotHeld`.
- `ReleasePoints` (the order was cancelled) and the timer at the hold's `until` (an
  abandoned order): the points go back to their lots with their expiry; a lot that has
  lapsed meanwhile expires in the same decision. A spent hold cannot be released
  (`PointsNotHeld`); an unknown or released one decides nothing.
- `ClaimPriceProtection` (the protection reaction following price drops, or a member's
  request): refunds, for one paid line, what each unit paid above the new price
  (`sum(max(0, unit - price))`) when some unit paid more, the member's tier at `paid_at` (the tier the log says it had when it
  paid) has a protection period in `windows`, and `paid_at <= dropped_at <= paid_at +
  days`. Once per line (order ref and SKU): any later claim is `NotProtected`
  ("already_refunded"). The refund is never above the drop, nor above what was paid.
- `ExpirePoints` (the shard's timer at the earliest lot's `expires_at` or hold's
  `until`): every lot with `expires_at <= now` lapses with what is left of it, and every
  hold with `until <= now` is released ("hold_expired").

- `TakeBackPoints` (the member follower, once a paid order was refunded,
  `orders.order_refunded`): records `PointsTakenBack` once per order ref, taking out of
  the balance what is left of the points that order earned (its lot: not yet redeemed,
  held or expired; 0 when it earned none). Points of it already spent stay spent: the
  discount they bought went to another order, and other lots are not touched. From then
  on `EarnPoints` for the ref decides nothing and `ClaimPriceProtection` for it is
  `NotProtected` ("order_refunded"). A repeat decides nothing.

The ledger adds up: balance (the lots) + held = earned - redeemed - expired - taken back,
balance >= 0.

The words (commands, events, refusals) are `actors/member/words.py`'s, the state
`actors/member/state.py`'s, the points ledger's decisions `actors/member/ledger.py`'s and
the fold `actors/member/fold.py`'s; `actors/member/__init__.py` makes them the
`member_decider`.
Pure: no I/O, clock, randomness or logging. `now` and ids arrive in the commands.
"""

from __future__ import annotations

from saleday.actors.decider import InvalidCommand, Rejection
from saleday.actors.fields import INT64_MAX, Intake
from saleday.actors.member.ledger import (
    MAX_VALID_DAYS,
    earn,
    expire_due,
    hold,
    redeem,
    release,
    spend,
    take_back,
)
from saleday.actors.member.state import MemberState
from saleday.actors.member.words import (
    COMMANDS,
    DAY_MS,
    INVOICES,
    SOURCES,
    TIERS,
    ChangeTier,
    ChooseInvoice,
    ClaimPriceProtection,
    EarnPoints,
    ExpirePoints,
    HoldPoints,
    InvoiceChosen,
    MemberCommand,
    MemberEvent,
    NotProtected,
    OrderRecorded,
    PointsEarned,
    PointsHeld,
    PriceProtectionRefunded,
    RecordOrder,
    RedeemPoints,
    ReleasePoints,
    SpendPoints,
    TakeBackPoints,
    TierChanged,
)

_INTAKE = Intake("member", COMMANDS, entity="user", noun="member",
                 optional_strs=("title", "tax_id", "reason"),
                 non_negative=("ordered_at", "amount_cents", "points_per_yuan", "valid_days",
                               "points", "paid_at", "price_cents",
                               "dropped_at", "until"))
"""Each command's int and str fields and its member, checked before any business rule."""

# --- decide ---------------------------------------------------------------------------


def decide(command: MemberCommand, state: MemberState) -> list[MemberEvent] | Rejection:
    """The facts `command` establishes against `state`, or why it is refused."""
    refused = _INTAKE.refusal(command, state.user)
    if refused is not None:
        return refused
    match command:
        case RecordOrder():
            return _record(command, state)
        case ChangeTier():
            return _change_tier(command, state)
        case EarnPoints():
            return earn(command, state)
        case RedeemPoints():
            return redeem(command, state)
        case ExpirePoints():
            return expire_due(state, command.now)
        case ClaimPriceProtection():
            return _protect(command, state)
        case ChooseInvoice():
            return _choose_invoice(command, state)
        case HoldPoints():
            return hold(command, state)
        case SpendPoints():
            return spend(command, state)
        case ReleasePoints():
            return release(command.user, command.hold_id, command.reason, command.now, state)
        case TakeBackPoints():
            return take_back(command, state)
        case _:
            return _INTAKE.not_taken(command)


def _record(command: RecordOrder, state: MemberState) -> list[MemberEvent] | Rejection:
    if command.source not in SOURCES:
        return InvalidCommand(reason=f"source must be one of {SOURCES}, not {command.source!r}")
    terms = (command.ordered_at, command.amount_cents, command.source)
    known = state.orders.get(command.order_ref)
    if known is not None:
        if known != terms:
            return InvalidCommand(reason=f"order {command.order_ref!r} was recorded with "
                                         f"other terms")
        return []
    return [OrderRecorded(user=command.user, order_ref=command.order_ref,
                          ordered_at=command.ordered_at, amount_cents=command.amount_cents,
                          source=command.source)]


def _change_tier(command: ChangeTier, state: MemberState) -> list[MemberEvent] | Rejection:
    if command.tier not in TIERS:
        return InvalidCommand(reason=f"tier must be one of {TIERS}, not {command.tier!r}")
    if state.tiers and command.now < state.tiers[-1][0]:
        return InvalidCommand(reason=f"a tier change at {command.now} is before the last "
                                     f"one ({state.tiers[-1][0]})")
    if command.tier == state.tier:
        return []
    return [TierChanged(user=command.user, previous=state.tier, tier=command.tier,
                        rule=command.rule, changed_at=command.now)]


def _choose_invoice(command: ChooseInvoice, state: MemberState) -> list[MemberEvent] | Rejection:
    if command.invoice not in INVOICES:
        return InvalidCommand(reason=f"invoice must be one of {INVOICES}, "
                                     f"not {command.invoice!r}")
    known = state.invoices.get(command.order_ref)
    if known is not None:
        if known != command.invoice:
            return InvalidCommand(reason=f"order {command.order_ref!r} asked for a {known} "
                                         f"invoice already")
        return []
    return [InvoiceChosen(user=command.user, order_ref=command.order_ref,
                          invoice=command.invoice, title=command.title, tax_id=command.tax_id,
                          chosen_at=command.now)]


def _protect(command: ClaimPriceProtection, state: MemberState) -> list[MemberEvent] | Rejection:
    windows = _windows(command.windows)
    if isinstance(windows, str):
        return InvalidCommand(reason=windows)
    units = command.unit_prices
    if (type(units) not in (tuple, list) or not units
            or not all(type(p) is int and 0 <= p <= INT64_MAX for p in units)
            or sum(units) > INT64_MAX):
        return InvalidCommand(reason=f"unit_prices must be one price (int >= 0) per unit, "
                                     f"not {units!r}")

    def refused(reason: str) -> NotProtected:
        return NotProtected(user=command.user, order_ref=command.order_ref, sku=command.sku,
                            reason=reason)

    if f"{command.order_ref}\x1f{command.sku}" in state.protected:
        return refused("already_refunded")
    if command.order_ref in state.taken_back:
        return refused("order_refunded")
    refund = sum(max(0, unit - command.price_cents) for unit in units)
    if refund == 0:
        return refused("no_drop")
    tier = state.tier_at(command.paid_at)
    days = windows.get(tier, 0)
    if days == 0:
        return refused("tier_not_protected")
    if not command.paid_at <= command.dropped_at <= command.paid_at + days * DAY_MS:
        return refused("outside_period")
    return [PriceProtectionRefunded(user=command.user, order_ref=command.order_ref,
                                    sku=command.sku, unit_prices=tuple(units),
                                    price_cents=command.price_cents, refund_cents=refund,
                                    tier=tier, dropped_at=command.dropped_at)]


def _windows(windows: object) -> dict[str, int] | str:
    """`windows` as {tier: days}, or what is wrong with it."""
    if type(windows) not in (tuple, list):
        return "windows must be ((tier, days), ...)"
    out = {}
    for item in windows:
        if (type(item) not in (tuple, list) or len(item) != 2 or item[0] not in TIERS
                or type(item[1]) is not int or not 0 <= item[1] <= MAX_VALID_DAYS):
            return f"each window must be (tier, days 0..{MAX_VALID_DAYS}), not {item!r}"
        out[item[0]] = item[1]
    return out


# --- what a shard host needs ----------------------------------------------------------


def entity_of(x: MemberCommand | MemberEvent) -> str:
    """The member a command or an event is about."""
    return x.user


def deadline_of(event: MemberEvent) -> int | None:
    """Earned points lapse at their expiry; a hold goes back at its `until`."""
    if type(event) is PointsEarned:
        return event.expires_at
    return event.until if type(event) is PointsHeld else None


def next_deadline(state: MemberState) -> int | None:
    """The first of: the expiry of the lot that lapses first, the end of the first hold."""
    due = [hold[2] for hold in state.holds.values()]
    if state.lots:
        due.append(state.lots[0][2])
    return min(due) if due else None


def expire(user: str, now: int) -> ExpirePoints:
    """The command a host issues once a member's earliest lot is due."""
    return ExpirePoints(user=user, now=now)
