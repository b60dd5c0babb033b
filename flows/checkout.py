"""Checkout as a TCC flow across shards, driven through the gateway.

    place:   [ChooseInvoice (member), when an invoice is asked for] ->
             StartCheckout (order) -> ReserveStock per line (SKU shards) -> LockCoupon
             (the user's wallet) -> [HoldPoints (member), when points are redeemed] ->
             RecordTry (order: prices, coupon, points, total) -> placed
    paid:    RecordPayment (order) -> ConfirmReservation per line, RedeemCoupon, then
             SpendPoints (last) -> paid;
             a hold or lock that ran out first: take it again and confirm it -> paid,
             else (or when the points' hold lapsed) RefundOrder (order) ->
             ReleaseReservation (or ReturnSoldUnits, for a line confirmed already),
             UnlockCoupon then ReturnCoupon, ReleasePoints -> refunded
    cancel:  CancelOrder (order) first, then ReleaseReservation per line (naming the
             order's user, the reservations' owner), UnlockCoupon, ReleasePoints

Every step's command id is derived from the order id (`<order>/start`, `<order>/try/<line>`,
...), and every step's events carry the order id as their correlation id, so a retried call, a duplicate payment callback or a whole flow driven again after a
crash does nothing twice. A cancel that overtakes its try voids the ids it names, so the
late try is refused. A payment that lands after a cancel is refunded by the order, never
resurrecting it. Reservations and the coupon lock are held a grace period past the payment
deadline, so a payment captured just before the deadline can still confirm them; and all
of them, and the order itself, expire on their own, so an abandoned flow releases itself.

A shard that cannot commit for longer than the grace (its store stalled or full) expires
those holds before it decides the confirmations sent in time. The payment is captured by
then, so the books are made right after the fact (`_make_good`): a SKU line whose hold is
gone is reserved again under the same reservation id and confirmed, if the stock is still
there at the prices the order was placed at; a coupon whose lock ran out is locked again
for the order and redeemed. If anything cannot be taken again (sold out, the price moved,
the coupon used or lapsed), the order is refunded (`RefundOrder`: paid -> refunded, all it
captured goes back), what it still holds is released, the units its lines had confirmed
already go back on the shelf (`ReturnSoldUnits`), a coupon it redeemed goes back to the
wallet if still valid (`ReturnCoupon`; docs/DESIGN_NOTES.md says why), the member
follower takes back its points (flows/points.py), and the user's record says refunded.
Each step is a command under its own id (`<order>/rehold/<line>`,
`<order>/reconfirm/<line>`, `<order>/relock/coupon`, `<order>/reconfirm/coupon`,
`<order>/refund`, `<order>/refund/<line>`, `<order>/return/<line>`,
`<order>/return/coupon`, ...), so driving it again does nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import structlog

from saleday.actors.decider import Rejection
from saleday.actors.host import Accepted, TransportFailure, Unavailable
from saleday.actors.member import (
    ChooseInvoice,
    HoldPoints,
    PointsNotHeld,
    ReleasePoints,
    SpendPoints,
)
from saleday.actors.order import (
    CancelOrder,
    CheckoutCancelled,
    CheckoutStarted,
    OrderPlaced,
    PointsApplied,
    RecordPayment,
    RecordTry,
    RefundOrder,
    StartCheckout,
)
from saleday.actors.order import evolve as order_evolve
from saleday.actors.order import initial as order_initial
from saleday.actors.session import (
    LockCoupon,
    RedeemCoupon,
    RelockCoupon,
    ReturnCoupon,
    TrackOrder,
    UnlockCoupon,
)
from saleday.actors.sku import (
    MAX_UNITS_PER_RESERVATION,
    ConfirmReservation,
    ReleaseReservation,
    ReserveStock,
    ReturnSoldUnits,
)
from saleday.events.values import quick_init
from saleday.flows.gateway import Gateway

log = structlog.get_logger("saleday.checkout")

CENTS_PER_POINT = 1
"""What one member point takes off an order at checkout: 100 points = 1 yuan."""


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutResult:
    """Where an order stands after a checkout call."""

    order_id: str
    status: str
    """placed, paid, cancelled, refunded, refused (the order cannot take this step), or
    unavailable (not decided: call again with the same order id)."""
    total_cents: int = 0
    reason: str = ""
    order: Any = None
    """The order's state as read after the step, where the step read it (`place`)."""


class Checkout:
    """Drives orders through the gateway; holds no state of its own (the order shard does)."""

    def __init__(self, gateway: Gateway, *, payment_window_ms: int = 900_000,
                 grace_ms: int = 60_000, busy_retries: int = 50,
                 cents_per_point: int = CENTS_PER_POINT) -> None:
        self.gateway = gateway
        self.cents_per_point = cents_per_point
        self.payment_window_ms = payment_window_ms
        self.grace_ms = grace_ms
        self.busy_retries = busy_retries

    def _submit(self, command: Any, order_id: str, step: str) -> Awaitable[Any]:
        """Submit one step of an order's flow under the id `<order id>/<step>`; its events
        carry the order id as their correlation id. (The gateway's awaitable is handed
        back, not awaited here: a coroutine frame fewer on each step's path.)"""
        return self.gateway.submit_retrying_busy(command, command_id=f"{order_id}/{step}",
                                                 busy_retries=self.busy_retries,
                                                 correlation_id=order_id)

    # -- try ----------------------------------------------------------------------------

    async def place(self, *, order_id: str, user: str, lines: tuple[tuple[str, int], ...],
                    coupon_id: str = "", now: int,
                    invoice: tuple[str, str, str] | None = None,
                    points: int = 0, new_order: bool = False) -> CheckoutResult:
        """Start an order and hold everything it needs; cancel what was held on any refusal.

        A line of more than `MAX_UNITS_PER_RESERVATION` units is refused before anything
        is recorded (its reservation would be refused anyway). `invoice` = (kind, title,
        tax id), kind none/paper/electronic, is recorded on the user's member first
        (`<order>/invoice`; an electronic one earns double points once paid, see
        docs/MEMBERS.md); without it no member is involved. `points` (> 0) of the user's
        member points are redeemed as a discount of `cents_per_point` each: held on the
        member (`<order>/try/points`) once stock and coupon are held, spent when the order
        is paid, given back when it is cancelled (or by the member's timer when the hold
        ends, a grace period after the payment deadline, like the reservations). Points
        worth more than what is left to pay are refused ("points_exceed_total").

        `new_order`: the caller made `order_id` just now, so no cancel can have named it
        yet; the order's start then travels with its reservations (one round trip less),
        and a start that is refused releases the reservations this call made. Otherwise
        the start goes first, so an order given up before its start reserves nothing.
        A new order is answered from the replies' own events when both the start and the
        try were decided now (a repeat, or an order not new, is read back from its shard)."""
        if _too_many_units(lines):
            return CheckoutResult(order_id=order_id, status="refused", reason="quantity_too_large")
        if invoice is not None:
            kind, title, tax_id = invoice
            chosen = await self._submit(ChooseInvoice(user=user, order_ref=order_id, invoice=kind,
                                                      title=title, tax_id=tax_id, now=now),
                                        order_id, "invoice")
            if not isinstance(chosen, Accepted):
                return _refused(order_id, chosen)
        deadline = now + self.payment_window_ms
        hold_until = deadline + self.grace_ms
        start = self._submit(StartCheckout(order_id=order_id, user=user, lines=lines,
                                           coupon_id=coupon_id, payment_deadline=deadline,
                                           now=now), order_id, "start")

        def reserve() -> list[Any]:
            return [self._submit(ReserveStock(reservation_id=f"{order_id}/{i}", user=user, sku=sku,
                                              qty=qty, now=now, deadline=hold_until),
                                 order_id, f"try/{i}")
                    for i, (sku, qty) in enumerate(lines)]

        if new_order:   # the start and the reservations in one round trip
            started, *tries = await asyncio.gather(start, *reserve())
            if not isinstance(started, Accepted):
                await self._undo_reserves(order_id, user, lines, tries, started, now)
                return _refused(order_id, started)
        else:           # the start first: an order given up before it reserves nothing
            started = await start
            if not isinstance(started, Accepted):
                return _refused(order_id, started)
            tries = await asyncio.gather(*reserve())
        fresh = started if new_order else None   # the start, when nothing can precede it
        refused = next((r for r in tries if not isinstance(r, Accepted)), None)
        if refused is not None:
            return await self._cancel_after(order_id, refused, now, started=fresh)
        line_prices = tuple(_unit_prices(r) for r in tries)
        subtotal = sum(sum(p) for p in line_prices)
        coupon_value = 0
        if coupon_id:
            wallet = await self.gateway.query("session", user)
            coupon = wallet.coupons.get(coupon_id)
            locked = await self._submit(LockCoupon(user=user, coupon_id=coupon_id, order_id=order_id,
                                                   order_total_cents=subtotal, until=hold_until,
                                                   now=now), order_id, "try/coupon")
            if not isinstance(locked, Accepted):
                return await self._cancel_after(order_id, locked, now, started=fresh)
            coupon_value = coupon.value_cents if coupon is not None else 0
        points_cents = points * self.cents_per_point if points > 0 else 0
        if points_cents:
            if points_cents > subtotal - min(coupon_value, subtotal):
                return await self.cancel(order_id=order_id, reason="points_exceed_total", now=now,
                                         started=fresh)
            held = await self._submit(HoldPoints(user=user, hold_id=order_id, points=points,
                                                 until=hold_until, now=now),
                                      order_id, "try/points")
            if not isinstance(held, Accepted):
                return await self._cancel_after(order_id, held, now, started=fresh)
        placed = await self._submit(RecordTry(order_id=order_id, line_prices=line_prices,
                                              coupon_value_cents=coupon_value, now=now,
                                              points=points if points_cents else 0,
                                              points_cents=points_cents),
                                    order_id, "placed")
        if not isinstance(placed, Accepted):
            return await self._cancel_after(order_id, placed, now, points_held=bool(points_cents))
        order = _decided_now(order_id, started, placed) if new_order else None
        total = next((e.total_cents for e in placed.events if isinstance(e, OrderPlaced)), None)
        if total is None:   # a repeated try answers without its events: ask the order
            total = (await self.gateway.query("order", order_id)).total_cents
        track = self._submit(TrackOrder(user=user, order_id=order_id, status="placed",
                                        amount_cents=total, now=now), order_id, "track/placed")
        if order is not None:   # the order as the shard decided it just now, and the user's record
            await track
        else:                   # the order as it now stands, and the user's record
            order, _ = await asyncio.gather(self.gateway.query("order", order_id), track)
        return CheckoutResult(order_id=order_id, status="placed", total_cents=total, order=order)

    async def _undo_reserves(self, order_id: str, user: str, lines: Any, tries: list[Any],
                             refusal: Any, now: int) -> None:
        """Release the reservations this call made for an order whose start was refused
        (`new_order` only). A reservation answered as a repeat was not made by this call
        and is left alone; one left undecided expires on its own."""
        reason = getattr(refusal, "code", type(refusal).__name__)
        await asyncio.gather(*(
            self._submit(ReleaseReservation(reservation_id=f"{order_id}/{i}", sku=sku, user=user,
                                            reason=reason, now=now), order_id, f"undo/{i}")
            for i, ((sku, _), reply) in enumerate(zip(lines, tries))
            if isinstance(reply, Accepted) and reply.events and not reply.duplicate))

    # -- confirm ------------------------------------------------------------------------

    async def payment_succeeded(self, *, order_id: str, payment_id: str, amount_cents: int,
                                now: int) -> CheckoutResult:
        """Record the payment; confirm what the order holds, or refund a late payment."""
        paid = await self._submit(RecordPayment(order_id=order_id, payment_id=payment_id,
                                                amount_cents=amount_cents, now=now),
                                  order_id, f"pay/{payment_id}")
        if not isinstance(paid, Accepted):
            return _refused(order_id, paid)
        order = await self.gateway.query("order", order_id)
        kinds = {type(e).__name__ for e in paid.events}
        if "CheckoutCancelled" in kinds:  # paid at or after the deadline: cancel, then refund
            await self._release(order, "payment_timeout", now)
        if "RefundIssued" in kinds:
            await self._submit(TrackOrder(user=order.user, order_id=order_id, status="refunded",
                                          amount_cents=amount_cents, now=now),
                               order_id, f"track/refunded/{payment_id}")
            return CheckoutResult(order_id=order_id, status="refunded", total_cents=amount_cents,
                                  reason="payment after the order was cancelled or paid")
        if order.status != "paid":  # a duplicate callback of a payment already handled
            return CheckoutResult(order_id=order_id, status=order.status,
                                  total_cents=order.total_cents)
        confirms = await asyncio.gather(*(
            self._submit(ConfirmReservation(reservation_id=f"{order_id}/{i}", sku=sku, now=now),
                         order_id, f"confirm/{i}")
            for i, (sku, _) in enumerate(order.lines)))
        if order.coupon_id:
            confirms.append(await self._submit(
                RedeemCoupon(user=order.user, coupon_id=order.coupon_id, order_id=order_id, now=now),
                order_id, "confirm/coupon"))
        if any(_ran_out(r) for r in confirms):
            return await self._make_good(order, confirms, now)
        return await self._settle(order, confirms, now)

    async def _settle(self, order: Any, confirms: list[Any], now: int) -> CheckoutResult:
        """The paid order's holds are confirmed: spend the points it holds (last, so a
        refund never has spent points to give back), then record it paid."""
        order_id = order.order_id
        if order.points:
            spent = await self._submit(SpendPoints(user=order.user, hold_id=order_id, now=now),
                                       order_id, "confirm/points")
            if _ran_out(spent):   # the points' hold lapsed first: the discount is not covered
                return await self._refund(order, ["points: hold_expired"], now)
            confirms = [*confirms, spent]
        failed = [r for r in confirms if not isinstance(r, Accepted)]
        if failed:
            log.error("checkout_confirm_refused", order=order_id,
                      refusals=[getattr(r, "code", type(r).__name__) for r in failed])
            return CheckoutResult(order_id=order_id, status="paid", total_cents=order.total_cents,
                                  reason="confirm refused: " + ", ".join(
                                      getattr(r, "code", type(r).__name__) for r in failed))
        await self._submit(TrackOrder(user=order.user, order_id=order_id, status="paid",
                                      amount_cents=order.total_cents, now=now),
                           order_id, "track/paid")
        return CheckoutResult(order_id=order_id, status="paid", total_cents=order.total_cents)

    async def _make_good(self, order: Any, confirms: list[Any], now: int) -> CheckoutResult:
        """A paid order some of whose holds or coupon lock ran out before their confirms
        were decided: take each again and confirm it; refund the order if any cannot be."""
        oid = order.order_id
        until = now + self.payment_window_ms + self.grace_ms   # as long as a new checkout's
        lost: list[str] = []
        for i, (sku, qty) in enumerate(order.lines):
            if not _ran_out(confirms[i]):
                continue
            again = await self._submit(ReserveStock(reservation_id=f"{oid}/{i}", user=order.user,
                                                    sku=sku, qty=qty, now=now, deadline=until),
                                       oid, f"rehold/{i}")
            if not isinstance(again, Accepted):
                lost.append(f"line {i}: {getattr(again, 'code', type(again).__name__)}")
                continue
            if again.events and _unit_prices(again) != tuple(order.line_prices[i]):
                lost.append(f"line {i}: price_changed")
                continue
            confirmed = await self._submit(ConfirmReservation(reservation_id=f"{oid}/{i}",
                                                              sku=sku, now=now),
                                           oid, f"reconfirm/{i}")
            if not isinstance(confirmed, Accepted):
                lost.append(f"line {i}: {getattr(confirmed, 'code', type(confirmed).__name__)}")
        if order.coupon_id and _ran_out(confirms[len(order.lines)]) and not lost:   # else it stays held
            relocked = await self._submit(RelockCoupon(user=order.user, coupon_id=order.coupon_id,
                                                       order_id=oid, until=until, now=now),
                                          oid, "relock/coupon")
            redeemed = relocked if not isinstance(relocked, Accepted) else await self._submit(
                RedeemCoupon(user=order.user, coupon_id=order.coupon_id, order_id=oid, now=now),
                oid, "reconfirm/coupon")
            if not isinstance(redeemed, Accepted):
                lost.append(f"coupon: {getattr(redeemed, 'code', type(redeemed).__name__)}")
        if not lost:
            log.warning("checkout_hold_taken_again", order=oid)
            return await self._settle(order, [], now)
        return await self._refund(order, lost, now)

    async def _refund(self, order: Any, lost: list[str], now: int) -> CheckoutResult:
        """Give the paid order up: refund all it captured, release its holds, its coupon
        and the points it still holds (`lost` says what could not be confirmed)."""
        oid = order.order_id
        reason = "hold_expired"
        log.warning("checkout_refunded_after_expiry", order=oid, lost=lost)
        refunded = await self._submit(RefundOrder(order_id=oid, reason=reason, now=now),
                                      oid, "refund")
        if not isinstance(refunded, Accepted):
            return _refused(oid, refunded)
        steps = [self._give_back_line(order, i, sku, reason, now)
                 for i, (sku, _) in enumerate(order.lines)]
        if order.coupon_id:
            steps.append(self._give_back_coupon(order, now))
        if order.points:
            steps.append(self._submit(ReleasePoints(user=order.user, hold_id=oid, reason=reason,
                                                    now=now), oid, "refund/points"))
        steps.append(self._submit(TrackOrder(user=order.user, order_id=oid, status="refunded",
                                             amount_cents=order.total_cents, now=now),
                                  oid, "track/refunded"))
        await asyncio.gather(*steps)
        return CheckoutResult(order_id=oid, status="refunded", total_cents=order.total_cents,
                              reason=f"{reason} ({'; '.join(lost)})")

    async def _give_back_line(self, order: Any, i: int, sku: str, reason: str,
                              now: int) -> Any:
        """A refunded order's line goes back to the shelf: released if it is still held
        (`<order>/refund/<line>`), its sold units returned if it was confirmed
        (`<order>/return/<line>`)."""
        oid = order.order_id
        released = await self._submit(ReleaseReservation(reservation_id=f"{oid}/{i}", sku=sku,
                                                         user=order.user, reason=reason, now=now),
                                      oid, f"refund/{i}")
        if getattr(released, "code", "") != "already_confirmed":
            return released
        return await self._submit(ReturnSoldUnits(reservation_id=f"{oid}/{i}", sku=sku,
                                                  reason=reason, now=now),
                                  oid, f"return/{i}")

    async def _give_back_coupon(self, order: Any, now: int) -> Any:
        """A refunded order's coupon goes back to the wallet: unlocked if it is still locked
        (`<order>/refund/coupon`), returned if the order redeemed it and it is still valid
        (`<order>/return/coupon`; refused, and left redeemed, otherwise)."""
        oid = order.order_id
        await self._submit(UnlockCoupon(user=order.user, coupon_id=order.coupon_id,
                                        order_id=oid, now=now), oid, "refund/coupon")
        return await self._submit(ReturnCoupon(user=order.user, coupon_id=order.coupon_id,
                                               order_id=oid, now=now), oid, "return/coupon")

    # -- cancel -------------------------------------------------------------------------

    async def cancel(self, *, order_id: str, reason: str, now: int,
                     points_held: bool = False, started: Accepted | None = None) -> CheckoutResult:
        """Cancel the order first (so a late try is refused), then release what it holds
        (`points_held`: points were held for it that the order has not recorded).

        `started`: the reply to a new order's start, given by `place` before the order's
        try is recorded; if the start and this cancel were both decided just now, the order
        is folded from their events instead of read back from its shard (one round trip
        less on every sold-out order)."""
        cancelled = await self._submit(CancelOrder(order_id=order_id, reason=reason, now=now),
                                       order_id, "cancel")
        if not isinstance(cancelled, Accepted):
            return _refused(order_id, cancelled)
        order = _cancelled_now(order_id, started, cancelled)
        if order is None:
            order = await self.gateway.query("order", order_id)
        await self._release(order, reason, now, points_held=points_held)
        return CheckoutResult(order_id=order_id, status="cancelled", reason=reason)

    async def payment_failed(self, *, order_id: str, now: int) -> CheckoutResult:
        return await self.cancel(order_id=order_id, reason="payment_failed", now=now)

    async def _cancel_after(self, order_id: str, refusal: Any, now: int,
                            points_held: bool = False,
                            started: Accepted | None = None) -> CheckoutResult:
        reason = getattr(refusal, "code", type(refusal).__name__)
        if isinstance(refusal, Unavailable):
            # Not decided: leave the order to a retry of `place` or to its deadline.
            return CheckoutResult(order_id=order_id, status="unavailable", reason=refusal.reason)
        return await self.cancel(order_id=order_id, reason=reason, now=now,
                                 points_held=points_held, started=started)

    async def _release(self, order: Any, reason: str, now: int,
                       points_held: bool = False) -> None:
        steps = [self._submit(ReleaseReservation(reservation_id=f"{order.order_id}/{i}", sku=sku,
                                                 user=order.user, reason=reason, now=now),
                              order.order_id, f"cancel/{i}")
                 for i, (sku, _) in enumerate(order.lines)]
        if order.coupon_id:
            steps.append(self._submit(UnlockCoupon(user=order.user, coupon_id=order.coupon_id,
                                                   order_id=order.order_id, now=now),
                                      order.order_id, "cancel/coupon"))
        if order.user and (order.points or points_held):
            steps.append(self._submit(ReleasePoints(user=order.user, hold_id=order.order_id,
                                                    reason=reason, now=now),
                                      order.order_id, "cancel/points"))
        if order.user and order.line_prices:   # the wallet only knows orders that were placed
            steps.append(self._submit(TrackOrder(user=order.user, order_id=order.order_id,
                                                 status="cancelled", amount_cents=order.total_cents,
                                                 now=now), order.order_id, "track/cancelled"))
        await asyncio.gather(*steps)


def _too_many_units(lines: Any) -> bool:
    """Whether a line asks for more units than one reservation may hold."""
    try:
        return any(type(qty) is int and qty > MAX_UNITS_PER_RESERVATION for _, qty in lines)
    except (TypeError, ValueError):
        return False  # malformed lines: the order shard refuses them with its reasons


_RAN_OUT = frozenset({"reservation_not_found", "deadline_passed", "coupon_not_locked"})
"""The refusals of a confirmation whose hold or lock is gone (expired) or past its time."""


def _ran_out(reply: Any) -> bool:
    """Whether a confirm was refused because its hold or coupon lock ran out first."""
    if isinstance(reply, PointsNotHeld):   # the points' hold lapsed (released by its timer)
        return reply.reason == "released"
    return isinstance(reply, Rejection) and reply.code in _RAN_OUT


_DECIDED_NOW = ([CheckoutStarted, OrderPlaced], [CheckoutStarted, PointsApplied, OrderPlaced])
"""What a start and a try decided just now record (with points redeemed, or without)."""

_CANCELLED_NOW = ([CheckoutStarted, CheckoutCancelled],)
"""What a new order's start and its cancel decided just now record."""


def _folded_now(order_id: str, replies: tuple[Accepted, ...], shapes: tuple[list, ...]) -> Any:
    """The order's state folded (with the order's own `evolve`) from the events `replies`
    recorded just now; None when one was a repeat (answered without its events) or their
    events are not one of `shapes`."""
    if any(r.duplicate for r in replies):
        return None
    events = [e for r in replies for e in r.events]
    if [type(e) for e in events] not in shapes:
        return None
    state = order_initial(order_id)
    for event in events:
        state = order_evolve(state, event)
    return state


def _decided_now(order_id: str, started: Any, placed: Any) -> Any:
    """The order as its start and its try decided it just now, or None."""
    return _folded_now(order_id, (started, placed), _DECIDED_NOW)


def _cancelled_now(order_id: str, started: Accepted | None, cancelled: Accepted) -> Any:
    """A new order as its start and its cancel decided it just now, or None. Nothing else
    can have happened to the order in between: only its flow tries it, and a user's cancel
    or its deadline would have made this cancel record nothing."""
    return None if started is None else _folded_now(order_id, (started, cancelled),
                                                    _CANCELLED_NOW)


def _unit_prices(reply: Accepted) -> tuple[int, ...]:
    return reply.events[0].unit_prices


def _refused(order_id: str, reply: Any) -> CheckoutResult:
    if isinstance(reply, Unavailable):
        return CheckoutResult(order_id=order_id, status="unavailable", reason=reply.reason)
    reason = (reply.code if isinstance(reply, (Rejection, TransportFailure))
              else type(reply).__name__)
    return CheckoutResult(order_id=order_id, status="refused", reason=reason)
