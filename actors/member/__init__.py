"""The member decider: a customer's order history, tier and points (entity id = the user).

A member's history is the orders it paid (imported from a file or paid at checkout), from
which the RFM view (projections/views/members.py) scores it; the tier the RFM rule gives
is recorded here as `TierChanged`, so a benefit checks the tier the log says the member
had at that moment (`MemberState.tier_at`): price protection refunds a paid line's price
drop once, within the period of the tier the member had when it paid. The points ledger earns per paid order
(double for an electronic invoice), holds points for an order at checkout (spent when
it is paid, given back when it is not), redeems and expires by a timer, and its balance
is never negative. An order refunded after it was paid takes back what is left of the
points it earned, and is protected no more.

One decider in five modules:

- `words`  its commands, events and refusals           `actors/member/words.py`
- `state`  what a member knows (the class snapshots name)   `actors/member/state.py`
- `rules`  what each command decides, the points-expiry timer
           `actors/member/rules.py` (the rules in words are its docstring)
- `ledger` the points ledger's decisions (earn, redeem, hold, spend, release, expire,
           take back)                                  `actors/member/ledger.py`
- `fold`   how events fold (`evolve`), and the lots' arithmetic  `actors/member/fold.py`

Every name a caller needs is importable from here. Pure: no I/O, clock, randomness or
logging; `now` and ids arrive in the commands.
"""

from __future__ import annotations

from saleday.actors.decider import Decider
from saleday.actors.member.fold import evolve
from saleday.actors.member.ledger import points_for
from saleday.actors.member.rules import (
    deadline_of,
    decide,
    entity_of,
    expire,
    next_deadline,
)
from saleday.actors.member.state import MemberState, initial
from saleday.actors.member.words import (
    COMMANDS,
    DAY_MS,
    INVOICES,
    PROTECTION_DAYS,
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
    TierChanged,
)

member_decider: Decider[MemberCommand, MemberEvent, MemberState] = Decider(
    kind="member", initial=initial, decide=decide, evolve=evolve, entity_of=entity_of,
    commands=COMMANDS, deadline_of=deadline_of, next_deadline=next_deadline, expire=expire)

__all__ = [
    "COMMANDS", "DAY_MS", "INVOICES", "PROTECTION_DAYS", "SOURCES", "TIERS", "ChangeTier",
    "ChooseInvoice", "ClaimPriceProtection", "EarnPoints", "ExpirePoints", "HoldPoints",
    "InsufficientPoints", "PointsHeld", "PointsNotHeld", "PointsReleased", "ReleasePoints",
    "SpendPoints", "PointsTakenBack", "TakeBackPoints",
    "InvoiceChosen", "MemberCommand", "MemberEvent", "MemberState", "NotProtected", "OrderRecorded",
    "PointsEarned", "PointsExpired", "PointsRedeemed", "PriceProtectionRefunded", "RecordOrder",
    "RedeemPoints", "TierChanged", "deadline_of", "decide", "entity_of", "evolve", "expire",
    "initial", "member_decider", "next_deadline", "points_for",
]
