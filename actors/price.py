"""The price decider: a SKU's list price over time, each change an event (entity id = the SKU).

Price protection (actors/member/) refunds a member when a SKU's price drops after it
paid for it; the drop it refunds is the one recorded here. `SetPrice` records a
`PriceChanged` with the previous and the new price (in cents) and when; the same price
again decides nothing, and a change dated before the last one is refused, so the price
at any moment is the last change at or before it.

Pure: no I/O, clock, randomness or logging. `now` arrives in the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from saleday.actors.decider import Decider, InvalidCommand, Rejection, compact_pickle
from saleday.actors.fields import Intake, fast_replace
from saleday.events.registry import event_type
from saleday.events.values import quick_init


@dataclass(frozen=True, slots=True, kw_only=True)
class SetPrice:
    """From `now` on, `sku` sells at `price_cents` a unit."""

    sku: str
    price_cents: int
    now: int


PriceCommand = SetPrice
COMMANDS = (SetPrice,)


@event_type("prices.price_changed")
@dataclass(frozen=True, slots=True, kw_only=True)
class PriceChanged:
    """`sku`'s unit price went from `previous_cents` (0: none before) to `price_cents`."""

    sku: str
    previous_cents: int
    price_cents: int
    changed_at: int


PriceEvent = PriceChanged


@quick_init
@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class PriceState:
    """One SKU's price: the current one (0 = never set) and when it was set."""

    sku: str
    price_cents: int
    since: int


def initial(sku: str) -> PriceState:
    return PriceState(sku=sku, price_cents=0, since=0)


_INTAKE = Intake("price", COMMANDS, entity="sku", noun="sku", non_negative=("price_cents",))


def decide(command: PriceCommand, state: PriceState) -> list[PriceEvent] | Rejection:
    """The price change `command` records, or why it is refused."""
    refused = _INTAKE.refusal(command, state.sku)
    if refused is not None:
        return refused
    match command:
        case SetPrice():
            if command.price_cents < 1:
                return InvalidCommand(reason="a price is at least 1 cent")
            if state.price_cents and command.now < state.since:
                return InvalidCommand(reason=f"a price change at {command.now} is before the "
                                             f"last one ({state.since})")
            if command.price_cents == state.price_cents:
                return []
            return [PriceChanged(sku=command.sku, previous_cents=state.price_cents,
                                 price_cents=command.price_cents, changed_at=command.now)]
        case _:
            return _INTAKE.not_taken(command)


replace = fast_replace(PriceState)


def evolve(state: PriceState, event: PriceEvent) -> PriceState:
    match event:
        case PriceChanged():
            return replace(state, price_cents=event.price_cents, since=event.changed_at)
        case _:
            assert_never(event)


def entity_of(x: PriceCommand | PriceEvent) -> str:
    return x.sku


price_decider: Decider[PriceCommand, PriceEvent, PriceState] = Decider(
    kind="price", initial=initial, decide=decide, evolve=evolve, entity_of=entity_of,
    commands=COMMANDS)
