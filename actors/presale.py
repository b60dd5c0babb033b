"""The presale decider: deposits (定金) before the sale, the balance after (entity id = the SKU).

A presale is opened with its terms: `units` held for deposit holders, a `deposit_cents`
paid per unit that counts as `deposit_value_cents` at final payment (¥50 counts as ¥150),
the final `price_cents`, the deposit window `[deposits_from, balance_from)` and the
balance window `[balance_from, balance_until)`.

- `PayDeposit`: inside the deposit window, while units are left, holds `qty` units for the
  user (`DepositPaid`, `deposit_cents x qty`). The units a deposit holds are reserved for
  its holder first: nobody else can take them until the deposit is forfeited.
- `PayBalance`: inside the balance window, the exact balance `(price - deposit value) x
  qty` pays the deposit through (`BalancePaid`); the same payment again decides nothing.
- `ForfeitDeposits` (the shard's timer at `balance_until`): every deposit still unpaid is
  forfeited (`DepositForfeited`): the deposit is kept, its units released. Never before.

Money adds up per deposit: deposit + balance = what the holder paid in all; units held =
units deposited - units forfeited. Pure: no I/O, clock or logging; `now` arrives in the
commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

import immutables

from saleday.actors.decider import Decider, InvalidCommand, Rejection, compact_pickle
from saleday.actors.fields import INT64_MAX, Intake, fast_replace
from saleday.events.registry import event_type
from saleday.events.values import quick_init

# --- commands -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenPresale:
    """Open `sku`'s presale on these terms (see the module docstring)."""

    sku: str
    units: int
    deposit_cents: int
    deposit_value_cents: int
    price_cents: int
    deposits_from: int
    balance_from: int
    balance_until: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PayDeposit:
    """`user` pays the deposit for `qty` units under `deposit_id`."""

    sku: str
    deposit_id: str
    user: str
    qty: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PayBalance:
    """`amount_cents` pays the balance of deposit `deposit_id`, by `payment_id`."""

    sku: str
    deposit_id: str
    payment_id: str
    amount_cents: int
    now: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ForfeitDeposits:
    """Forfeit every deposit still unpaid once the balance window has closed."""

    sku: str
    now: int


PresaleCommand = OpenPresale | PayDeposit | PayBalance | ForfeitDeposits
COMMANDS = (OpenPresale, PayDeposit, PayBalance, ForfeitDeposits)


# --- events ---------------------------------------------------------------------------


@event_type("presales.presale_opened")
@dataclass(frozen=True, slots=True, kw_only=True)
class PresaleOpened:
    """`sku`'s presale opened on these terms."""

    sku: str
    units: int
    deposit_cents: int
    deposit_value_cents: int
    price_cents: int
    deposits_from: int
    balance_from: int
    balance_until: int


@event_type("presales.deposit_paid")
@dataclass(frozen=True, slots=True, kw_only=True)
class DepositPaid:
    """`user` paid `deposit_cents` for `qty` units held under `deposit_id` at `paid_at`."""

    sku: str
    deposit_id: str
    user: str
    qty: int
    deposit_cents: int
    paid_at: int


@event_type("presales.balance_paid")
@dataclass(frozen=True, slots=True, kw_only=True)
class BalancePaid:
    """The deposit `deposit_id` was paid through: `balance_cents` by `payment_id`."""

    sku: str
    deposit_id: str
    payment_id: str
    qty: int
    balance_cents: int
    paid_at: int


@event_type("presales.deposit_forfeited")
@dataclass(frozen=True, slots=True, kw_only=True)
class DepositForfeited:
    """The deposit `deposit_id` was not paid through by `balance_until`: its
    `deposit_cents` are kept and its `qty` units released at `forfeited_at`."""

    sku: str
    deposit_id: str
    qty: int
    deposit_cents: int
    forfeited_at: int


PresaleEvent = PresaleOpened | DepositPaid | BalancePaid | DepositForfeited


# --- rejections -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PresaleClosed(Rejection):
    """Not inside the window this step needs (`window`: deposit or balance), or no presale."""

    sku: str
    window: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PresaleSoldOut(Rejection):
    """Fewer units are left for deposits than asked."""

    sku: str
    left: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DepositNotPayable(Rejection):
    """The deposit is unknown, or forfeited (`reason`), or the amount is not its balance."""

    sku: str
    deposit_id: str
    reason: str


# --- state ----------------------------------------------------------------------------


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class PresaleState:
    """One presale: its terms (zeros until opened), and each deposit
    `deposit_id -> (user, qty, status)` with status held, paid or forfeited."""

    sku: str
    opened: bool
    units: int
    deposit_cents: int
    deposit_value_cents: int
    price_cents: int
    deposits_from: int
    balance_from: int
    balance_until: int
    deposits: immutables.Map[str, tuple[str, int, str]]
    held: int
    """Units held by deposits not forfeited (held or paid through)."""
    balances: immutables.Map[str, str]
    """Deposit id -> the payment id that paid its balance."""
    unpaid: int
    """Deposits held and not yet paid through (what the forfeit timer waits for)."""

    @property
    def left(self) -> int:
        return self.units - self.held

    def balance_of(self, qty: int) -> int:
        return (self.price_cents - self.deposit_value_cents) * qty


_EMPTY: immutables.Map = immutables.Map()


def initial(sku: str) -> PresaleState:
    return PresaleState(sku=sku, opened=False, units=0, deposit_cents=0, deposit_value_cents=0,
                        price_cents=0, deposits_from=0, balance_from=0, balance_until=0,
                        deposits=_EMPTY, held=0, balances=_EMPTY, unpaid=0)


# --- decide ---------------------------------------------------------------------------

_INTAKE = Intake("presale", COMMANDS, entity="sku", noun="sku",
                 non_negative=("units", "deposit_cents", "deposit_value_cents", "price_cents",
                               "qty", "amount_cents"))


def decide(command: PresaleCommand, state: PresaleState) -> list[PresaleEvent] | Rejection:
    """The facts `command` establishes against `state`, or why it is refused."""
    refused = _INTAKE.refusal(command, state.sku)
    if refused is not None:
        return refused
    match command:
        case OpenPresale():
            return _open(command, state)
        case PayDeposit():
            return _deposit(command, state)
        case PayBalance():
            return _balance(command, state)
        case ForfeitDeposits():
            return _forfeit(state, command.now)
        case _:
            return _INTAKE.not_taken(command)


def _open(c: OpenPresale, state: PresaleState) -> list[PresaleEvent] | Rejection:
    opened = PresaleOpened(sku=c.sku, units=c.units, deposit_cents=c.deposit_cents,
                           deposit_value_cents=c.deposit_value_cents, price_cents=c.price_cents,
                           deposits_from=c.deposits_from, balance_from=c.balance_from,
                           balance_until=c.balance_until)
    if state.opened:
        same = (state.units, state.deposit_cents, state.deposit_value_cents, state.price_cents,
                state.deposits_from, state.balance_from, state.balance_until) == (
            c.units, c.deposit_cents, c.deposit_value_cents, c.price_cents, c.deposits_from,
            c.balance_from, c.balance_until)
        return [] if same else InvalidCommand(reason=f"presale {c.sku!r} is open on other terms")
    if c.units < 1 or not 1 <= c.deposit_cents <= c.deposit_value_cents <= c.price_cents:
        return InvalidCommand(reason="need units >= 1 and 1 <= deposit <= deposit value <= price")
    if not c.deposits_from < c.balance_from < c.balance_until:
        return InvalidCommand(reason="need deposits_from < balance_from < balance_until")
    if c.price_cents * c.units > INT64_MAX:
        return InvalidCommand(reason="price x units does not fit a 64-bit int")
    return [opened]


def _deposit(c: PayDeposit, state: PresaleState) -> list[PresaleEvent] | Rejection:
    known = state.deposits.get(c.deposit_id)
    if known is not None:
        if known[:2] != (c.user, c.qty):
            return InvalidCommand(reason=f"deposit {c.deposit_id!r} was paid on other terms")
        return []
    if not state.opened or not state.deposits_from <= c.now < state.balance_from:
        return PresaleClosed(sku=c.sku, window="deposit")
    if c.qty < 1:
        return InvalidCommand(reason="a deposit holds at least one unit")
    if c.qty > state.left:
        return PresaleSoldOut(sku=c.sku, left=state.left)
    return [DepositPaid(sku=c.sku, deposit_id=c.deposit_id, user=c.user, qty=c.qty,
                        deposit_cents=state.deposit_cents * c.qty, paid_at=c.now)]


def _balance(c: PayBalance, state: PresaleState) -> list[PresaleEvent] | Rejection:
    known = state.deposits.get(c.deposit_id)
    if known is None:
        return DepositNotPayable(sku=c.sku, deposit_id=c.deposit_id, reason="unknown_deposit")
    _, qty, status = known
    if status == "paid":
        if state.balances.get(c.deposit_id) == c.payment_id:
            return []
        return DepositNotPayable(sku=c.sku, deposit_id=c.deposit_id, reason="already_paid")
    if status == "forfeited":
        return DepositNotPayable(sku=c.sku, deposit_id=c.deposit_id, reason="forfeited")
    if not state.balance_from <= c.now < state.balance_until:
        return PresaleClosed(sku=c.sku, window="balance")
    if c.amount_cents != state.balance_of(qty):
        return DepositNotPayable(sku=c.sku, deposit_id=c.deposit_id, reason="wrong_amount")
    return [BalancePaid(sku=c.sku, deposit_id=c.deposit_id, payment_id=c.payment_id, qty=qty,
                        balance_cents=c.amount_cents, paid_at=c.now)]


def _forfeit(state: PresaleState, now: int) -> list[PresaleEvent]:
    if not state.opened or now < state.balance_until:
        return []
    return [DepositForfeited(sku=state.sku, deposit_id=did, qty=qty,
                             deposit_cents=state.deposit_cents * qty, forfeited_at=now)
            for did, (_, qty, status) in sorted(state.deposits.items()) if status == "held"]


# --- evolve ---------------------------------------------------------------------------

replace = fast_replace(PresaleState)


def evolve(state: PresaleState, event: PresaleEvent) -> PresaleState:
    """The state after `event`. No validation: the event already happened."""
    match event:
        case PresaleOpened():
            return replace(state, opened=True, units=event.units,
                           deposit_cents=event.deposit_cents,
                           deposit_value_cents=event.deposit_value_cents,
                           price_cents=event.price_cents, deposits_from=event.deposits_from,
                           balance_from=event.balance_from, balance_until=event.balance_until)
        case DepositPaid():
            return replace(state, held=state.held + event.qty, unpaid=state.unpaid + 1,
                           deposits=state.deposits.set(event.deposit_id,
                                                       (event.user, event.qty, "held")))
        case BalancePaid():
            user, qty, _ = state.deposits[event.deposit_id]
            return replace(state, deposits=state.deposits.set(event.deposit_id,
                                                              (user, qty, "paid")),
                           balances=state.balances.set(event.deposit_id, event.payment_id),
                           unpaid=state.unpaid - 1)
        case DepositForfeited():
            user, qty, _ = state.deposits[event.deposit_id]
            return replace(state, held=state.held - qty, unpaid=state.unpaid - 1,
                           deposits=state.deposits.set(event.deposit_id,
                                                       (user, qty, "forfeited")))
        case _:
            assert_never(event)


def entity_of(x: PresaleCommand | PresaleEvent) -> str:
    return x.sku


def deadline_of(event: PresaleEvent) -> int | None:
    """An open presale forfeits unpaid deposits when its balance window closes."""
    return event.balance_until if type(event) is PresaleOpened else None


def next_deadline(state: PresaleState) -> int | None:
    return state.balance_until if state.opened and state.unpaid else None


def expire(sku: str, now: int) -> ForfeitDeposits:
    return ForfeitDeposits(sku=sku, now=now)


presale_decider: Decider[PresaleCommand, PresaleEvent, PresaleState] = Decider(
    kind="presale", initial=initial, decide=decide, evolve=evolve, entity_of=entity_of,
    commands=COMMANDS, deadline_of=deadline_of, next_deadline=next_deadline, expire=expire)
