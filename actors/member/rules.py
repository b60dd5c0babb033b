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
`actors/member/state.py`'s; `actors/member/__init__.py` makes them the `member_decider`.
Pure: no I/O, clock, randomness or logging. `now` and ids arrive in the commands.
"""

from __future__ import annotations

from typing import assert_never

from saleday.actors.decider import InvalidCommand, Rejection
from saleday.actors.fields import INT64_MAX, Intake, fast_replace
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
    InsufficientPoints,
    InvoiceChosen,
    Lots,
    MemberCommand,
    MemberEvent,
    NotProtected,
    OrderRecorded,
    PointsEarned,
    PointsExpired,
    PointsHeld,
    PointsNotHeld,
    PointsRedeemed,
    PointsReleased,
    PointsTakenBack,
    PriceProtectionRefunded,
    RecordOrder,
    RedeemPoints,
    ReleasePoints,
    SpendPoints,
    TakeBackPoints,
    Taken,
    TierChanged,
)

_INTAKE = Intake("member", COMMANDS, entity="user", noun="member",
                 optional_strs=("title", "tax_id", "reason"),
                 non_negative=("ordered_at", "amount_cents", "points_per_yuan", "valid_days",
                               "points", "paid_at", "price_cents",
                               "dropped_at", "until"))
"""Each command's int and str fields and its member, checked before any business rule."""

MAX_VALID_DAYS = 3650
"""Points valid longer than ten years are a mistake in the rate table, not a policy."""


def points_for(amount_cents: int, invoice: str, points_per_yuan: int) -> int:
    """The points a paid order earns: per whole yuan, doubled for an electronic invoice."""
    points = amount_cents // 100 * points_per_yuan
    return points * 2 if invoice == "electronic" else points


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
            return _earn(command, state)
        case RedeemPoints():
            return _redeem(command, state)
        case ExpirePoints():
            return _expire_due(state, command.now)
        case ClaimPriceProtection():
            return _protect(command, state)
        case ChooseInvoice():
            return _choose_invoice(command, state)
        case HoldPoints():
            return _hold(command, state)
        case SpendPoints():
            return _spend(command, state)
        case ReleasePoints():
            return _release(command.user, command.hold_id, command.reason, command.now, state)
        case TakeBackPoints():
            return _take_back(command, state)
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


def _earn(command: EarnPoints, state: MemberState) -> list[MemberEvent] | Rejection:
    if command.invoice not in INVOICES:
        return InvalidCommand(reason=f"invoice must be one of {INVOICES}, "
                                     f"not {command.invoice!r}")
    chosen = state.invoices.get(command.order_ref, "none")
    if command.invoice != chosen:
        return InvalidCommand(reason=f"order {command.order_ref!r} asked for invoice "
                                     f"{chosen!r}, not {command.invoice!r}")
    if not 1 <= command.valid_days <= MAX_VALID_DAYS:
        return InvalidCommand(reason=f"valid_days must be 1..{MAX_VALID_DAYS}, "
                                     f"not {command.valid_days}")
    if command.order_ref in state.earnings or command.order_ref in state.taken_back:
        return []   # earned once already, or refunded: nothing to earn
    points = points_for(command.amount_cents, command.invoice, command.points_per_yuan)
    expires_at = command.now + command.valid_days * DAY_MS
    if points > INT64_MAX or state.earned + points > INT64_MAX or expires_at > INT64_MAX:
        return InvalidCommand(reason="the points or their expiry do not fit a 64-bit int")
    if points == 0:
        return []
    return [PointsEarned(user=command.user, order_ref=command.order_ref,
                         amount_cents=command.amount_cents, invoice=command.invoice,
                         points=points, earned_at=command.now, expires_at=expires_at)]


def _take_back(command: TakeBackPoints, state: MemberState) -> list[MemberEvent]:
    ref = command.order_ref
    if ref in state.taken_back:
        return []
    left = sum(points for lot_ref, points, _ in state.lots if lot_ref == ref)
    return [PointsTakenBack(user=command.user, order_ref=ref, earned=state.earnings.get(ref, 0),
                            points=left, reason=command.reason, taken_back_at=command.now)]


def _redeem(command: RedeemPoints, state: MemberState) -> list[MemberEvent] | Rejection:
    known = state.redemptions.get(command.redemption_id)
    if known is not None:
        if known != command.points:
            return InvalidCommand(reason=f"redemption {command.redemption_id!r} was for "
                                         f"{known} points")
        return []
    if command.points < 1:
        return InvalidCommand(reason="a redemption takes at least one point")
    lapsed = _lapsed(state, command.now)
    live = [lot for lot in state.lots if lot[2] > command.now]
    balance = sum(points for _, points, _ in live)
    if command.points > balance:
        return InsufficientPoints(user=command.user, wanted=command.points, balance=balance)
    return [*lapsed, PointsRedeemed(user=command.user, redemption_id=command.redemption_id,
                                    points=command.points,
                                    taken=_refs(_take_soonest(tuple(live), command.points)),
                                    redeemed_at=command.now)]


def _take_soonest(live: Lots, wanted: int) -> Lots:
    """What `wanted` points take from `live` lots, soonest to expire first:
    `((ref, points, expires_at), ...)`."""
    taken = []
    for ref, points, expires_at in live:
        take = min(points, wanted)
        taken.append((ref, take, expires_at))
        wanted -= take
        if wanted == 0:
            break
    return tuple(taken)


def _refs(taken: Lots) -> Taken:
    return tuple((ref, points) for ref, points, _ in taken)


def _hold(command: HoldPoints, state: MemberState) -> list[MemberEvent] | Rejection:
    hold_id = command.hold_id
    known = state.holds.get(hold_id)
    if known is None:
        known_points = state.redemptions.get(hold_id, state.released.get(hold_id))
    else:
        known_points = known[0]
    if known_points is not None:
        if known_points != command.points:
            return InvalidCommand(reason=f"hold {hold_id!r} was for {known_points} points")
        return []
    if command.points < 1:
        return InvalidCommand(reason="a hold takes at least one point")
    if command.until <= command.now:
        return InvalidCommand(reason=f"a hold until {command.until} ends before it starts "
                                     f"({command.now})")
    lapsed = _lapsed(state, command.now)
    live = tuple(lot for lot in state.lots if lot[2] > command.now)
    balance = sum(points for _, points, _ in live)
    if command.points > balance:
        return InsufficientPoints(user=command.user, wanted=command.points, balance=balance)
    return [*lapsed, PointsHeld(user=command.user, hold_id=hold_id, points=command.points,
                                taken=_take_soonest(live, command.points),
                                held_at=command.now, until=command.until)]


def _spend(command: SpendPoints, state: MemberState) -> list[MemberEvent] | Rejection:
    hold = state.holds.get(command.hold_id)
    if hold is None:
        if command.hold_id in state.redemptions:
            return []
        reason = "released" if command.hold_id in state.released else "unknown_hold"
        return PointsNotHeld(user=command.user, hold_id=command.hold_id, reason=reason)
    points, taken, _ = hold
    return [PointsRedeemed(user=command.user, redemption_id=command.hold_id, points=points,
                           taken=_refs(taken), redeemed_at=command.now)]


def _release(user: str, hold_id: str, reason: str, now: int,
             state: MemberState) -> list[MemberEvent] | Rejection:
    """Give a hold's points back to their lots; a lot already lapsed by `now` then expires
    in the same decision (with what it then holds). Releasing a hold that was never made,
    or released already, decides nothing; a spent one cannot be released."""
    hold = state.holds.get(hold_id)
    if hold is None:
        if hold_id in state.redemptions:
            return PointsNotHeld(user=user, hold_id=hold_id, reason="spent")
        return []
    released = PointsReleased(user=user, hold_id=hold_id, points=hold[0], taken=hold[1],
                              reason=reason, released_at=now)
    after = evolve(state, released)
    back = {ref for ref, _, _ in hold[1]}
    return [released, *(e for e in _lapsed(after, now) if e.order_ref in back)]


def _expire_due(state: MemberState, now: int) -> list[MemberEvent]:
    """The timer: lapsed lots expire, and holds past their `until` go back (and expire in
    turn if their lots have lapsed)."""
    events: list[MemberEvent] = _lapsed(state, now)
    for event in events:
        state = evolve(state, event)
    for hold_id, (_, _, until) in sorted(state.holds.items()):
        if until <= now:
            released = _release(state.user, hold_id, "hold_expired", now, state)
            assert isinstance(released, list)
            for event in released:
                state = evolve(state, event)
            events.extend(released)
    return events


def _lapsed(state: MemberState, now: int) -> list[MemberEvent]:
    return [PointsExpired(user=state.user, order_ref=ref, points=points, expires_at=expires_at)
            for ref, points, expires_at in state.lots if expires_at <= now]


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


# --- evolve ---------------------------------------------------------------------------


replace = fast_replace(MemberState)


def evolve(state: MemberState, event: MemberEvent) -> MemberState:
    """The state after `event`. No validation: the event already happened."""
    match event:
        case OrderRecorded():
            terms = (event.ordered_at, event.amount_cents, event.source)
            return replace(state, orders=state.orders.set(event.order_ref, terms))
        case TierChanged():
            return replace(state, tiers=(*state.tiers, (event.changed_at, event.tier)))
        case PointsEarned():
            lot = (event.order_ref, event.points, event.expires_at)
            lots = tuple(sorted((*state.lots, lot), key=_lot_order))
            return replace(state, lots=lots, earned=state.earned + event.points,
                           earnings=state.earnings.set(event.order_ref, event.points))
        case PointsRedeemed():
            redemptions = state.redemptions.set(event.redemption_id, event.points)
            if event.redemption_id in state.holds:   # a hold spent: its points left the lots
                return replace(state, holds=state.holds.delete(event.redemption_id),
                               redeemed=state.redeemed + event.points, redemptions=redemptions)
            return replace(state, lots=_take(state.lots, dict(event.taken)),
                           redeemed=state.redeemed + event.points, redemptions=redemptions)
        case PointsHeld():
            hold = (event.points, event.taken, event.until)
            return replace(state, lots=_take(state.lots, dict(_refs(event.taken))),
                           holds=state.holds.set(event.hold_id, hold))
        case PointsReleased():
            return replace(state, lots=_give_back(state.lots, event.taken),
                           holds=state.holds.delete(event.hold_id),
                           released=state.released.set(event.hold_id, event.points))
        case PointsExpired():
            lots = tuple(lot for lot in state.lots if lot[0] != event.order_ref)
            return replace(state, lots=lots, expired=state.expired + event.points)
        case PriceProtectionRefunded():
            key = f"{event.order_ref}\x1f{event.sku}"
            return replace(state, protected=state.protected.set(key, event.refund_cents))
        case InvoiceChosen():
            return replace(state, invoices=state.invoices.set(event.order_ref, event.invoice))
        case PointsTakenBack():
            return replace(state, lots=_take(state.lots, {event.order_ref: event.points}),
                           taken_back=state.taken_back.set(event.order_ref, event.points))
        case _:
            assert_never(event)


def _lot_order(lot: tuple[str, int, int]) -> tuple[int, str]:
    return lot[2], lot[0]


def _give_back(lots: Lots, taken: Lots) -> Lots:
    """`lots` with the points of `taken` ((ref, points, expires_at), ...) added back."""
    merged = {ref: [points, expires_at] for ref, points, expires_at in lots}
    for ref, points, expires_at in taken:
        lot = merged.setdefault(ref, [0, expires_at])
        lot[0] += points
    return tuple(sorted(((ref, p, e) for ref, (p, e) in merged.items()), key=_lot_order))


def _take(lots: Lots, taken: dict[str, int]) -> Lots:
    out = []
    for ref, points, expires_at in lots:
        left = points - taken.get(ref, 0)
        if left > 0:
            out.append((ref, left, expires_at))
    return tuple(out)


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
