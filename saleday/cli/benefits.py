"""`saleday price set`, `saleday members protect` and `saleday members points`: the
members' benefits, each a follower of the log run as a command (docs/MEMBERS.md).

    saleday price set sku-1 70.00 --at 2026-03-01T10:00:00+08:00   # a price change (event)
    saleday members protect [--order O]                            # refund price drops
    saleday members points [--rate 1] [--valid-days 365]           # points for paid orders

`members protect` follows the order, price and session streams (flows/protection.py) and claims
price protection for every paid checkout line a drop reaches (or, with `--order`, for one
order at the current prices); the member decider refunds each line once. `members points`
follows the order and member streams (flows/points.py) and earns each paid checkout order
its points, double for an electronic invoice, once per order. The member and price kinds'
shard counts (`--shards`) must be the ones the rest of the system uses for this log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from saleday.cli.common import console, fail, opened
from saleday.cli.members import DataOpt, MemberShards, ShardsOpt, StoreOpt, _store_url


def register(app: typer.Typer, members_app: typer.Typer) -> None:
    """Add `members protect|points` and `price set`."""
    members_app.command("protect")(protect)
    members_app.command("points")(earn_points)
    price_app = typer.Typer(help="SKU list prices (each change an event).", no_args_is_help=True)
    price_app.command("set")(set_price)
    app.add_typer(price_app, name="price")


def parse_windows(text: str) -> tuple[tuple[str, int], ...]:
    """`diamond=365,gold=30,silver=7` as ((tier, days), ...); tiers left out get none."""
    from saleday.actors.member import TIERS

    out = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        tier, sep, days = item.partition("=")
        if not sep or tier.strip() not in TIERS or not days.strip().isdigit():
            raise typer.BadParameter(f"{item!r} must read tier=days with tier one of "
                                     f"{', '.join(TIERS)}", param_hint="--windows")
        out.append((tier.strip(), int(days)))
    return tuple(out)


def set_price(
    sku: Annotated[str, typer.Argument(help="The SKU.")],
    amount: Annotated[str, typer.Argument(help="The new unit price in yuan (e.g. 70 or 69.90).")],
    at: Annotated[str | None, typer.Option(
        "--at", help="When (ISO 8601 date-time, UTC unless an offset is given; "
                     "default now).")] = None,
    data: DataOpt = Path("./saleday-data"),
    store: StoreOpt = None,
    shards: ShardsOpt = 1,
) -> None:
    """Record a SKU's new list price (prices.price_changed)."""
    from saleday.actors.host import Accepted, Request, wall_clock_ms
    from saleday.actors.price import SetPrice
    from saleday.flows.history import parse_amount, parse_ordered_at

    cents = parse_amount(amount)
    if cents is None or cents < 1:
        raise typer.BadParameter(f"{amount!r} is not a price in yuan (> 0, two decimals)",
                                 param_hint="AMOUNT")
    now = wall_clock_ms() if at is None else parse_ordered_at(at)
    if now is None:
        raise typer.BadParameter(f"{at!r} is not an ISO 8601 date-time", param_hint="--at")
    with opened(_store_url(data, store, must_exist=False)) as s:
        (reply,) = MemberShards(s, shards, kind="price").run(
            [Request(f"price:{sku}:{now}:{cents}", SetPrice(sku=sku, price_cents=cents, now=now))])
    if not isinstance(reply, Accepted):
        fail(ValueError(reply.describe()))
    console().print(f"{escape(sku)}: {'price set to' if reply.events else 'price already'} "
                    f"{cents / 100:.2f} at {now}")


def protect(
    order: Annotated[str | None, typer.Option(
        "--order", help="Claim for this paid order only, at the current prices.")] = None,
    windows: Annotated[str, typer.Option(
        "--windows", help="Protection days per tier; tiers left out get none.")] =
        "diamond=365,gold=30,silver=7",
    data: DataOpt = Path("./saleday-data"),
    store: StoreOpt = None,
    shards: ShardsOpt = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Refund price drops on paid lines: every drop in the log, or one order on request."""
    from saleday.actors.host import Accepted, Request
    from saleday.events import Tail, registry
    from saleday.flows.protection import PriceProtection

    rules = PriceProtection(parse_windows(windows))
    claims = []
    with opened(_store_url(data, store, must_exist=True)) as s:
        tail = Tail(s, include=lambda stream: stream.startswith(("order-", "price-",
                                                                 "session-")))
        while batch := tail.poll():
            for env in batch:   # a paid order is protected once settled (its session says)
                if env.type.startswith(("orders.", "prices.", "sessions.order_status")):
                    claims += rules.observe(env, registry.decode(env))
        if order is not None:
            if order not in rules.paid:
                fail(LookupError(f"order {order!r} is not a paid checkout order in the log"))
            claims = rules.on_request(order)
        members = MemberShards(s, shards)
        outcome: dict[str, Any] = {"claims": len(claims), "refunded": 0, "refund_cents": 0,
                                   "already_refunded": 0, "not_protected": {}}
        fresh = []
        for cid, claim in claims:
            done = members.host_of(claim.user).state_of(claim.user).protected
            if f"{claim.order_ref}\x1f{claim.sku}" in done:
                outcome["already_refunded"] += 1
            else:
                fresh.append(Request(cid, claim))
        for reply in members.run(fresh):
            if isinstance(reply, Accepted) and reply.events and not reply.duplicate:
                outcome["refunded"] += 1
                outcome["refund_cents"] += sum(e.refund_cents for e in reply.events)
            elif isinstance(reply, Accepted):
                outcome["already_refunded"] += 1
            else:
                reason = getattr(reply, "reason", reply.code)
                if reason == "already_refunded":
                    outcome["already_refunded"] += 1
                else:
                    outcome["not_protected"][reason] = outcome["not_protected"].get(reason, 0) + 1
    if as_json:
        typer.echo(json.dumps(outcome))
        return
    console().print(f"{outcome['claims']:,} claims: {outcome['refunded']:,} lines refunded "
                    f"({outcome['refund_cents'] / 100:,.2f} yuan), {outcome['already_refunded']:,} "
                    f"refunded before, not protected: {outcome['not_protected'] or 'none'}")


def earn_points(
    rate: Annotated[int, typer.Option("--rate", min=0, max=1000,
                                      help="Points per whole yuan paid (doubled for an "
                                           "electronic invoice).")] = 1,
    valid_days: Annotated[int, typer.Option("--valid-days", min=1, max=3650,
                                            help="Days points stay valid.")] = 365,
    data: DataOpt = Path("./saleday-data"),
    store: StoreOpt = None,
    shards: ShardsOpt = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Earn points for every paid checkout order in the log (once per order)."""
    from saleday.actors.host import Accepted, Request
    from saleday.events import Tail, registry
    from saleday.flows.points import PointsEarning

    earning = PointsEarning(points_per_yuan=rate, valid_days=valid_days)
    outcome: dict[str, Any] = {"paid_orders": 0, "earned": 0, "points": 0, "electronic": 0,
                               "already": 0, "refused": {}}
    with opened(_store_url(data, store, must_exist=True)) as s:
        tail = Tail(s, include=lambda stream: stream.startswith(("order-", "member-")))
        while batch := tail.poll():
            for env in batch:
                if env.type in ("orders.checkout_started", "orders.payment_captured",
                                "members.invoice_chosen"):
                    earning.observe(env, registry.decode(env))
        members = MemberShards(s, shards)
        claims = earning.claims()
        outcome["paid_orders"] = len(claims)
        fresh = []
        for cid, claim in claims:
            if claim.order_ref in members.host_of(claim.user).state_of(claim.user).earnings:
                outcome["already"] += 1
            else:
                fresh.append(Request(cid, claim))
        for req, reply in zip(fresh, members.run(fresh)):
            if isinstance(reply, Accepted) and reply.events and not reply.duplicate:
                outcome["earned"] += 1
                outcome["points"] += sum(e.points for e in reply.events)
                outcome["electronic"] += req.command.invoice == "electronic"
            elif isinstance(reply, Accepted):
                outcome["already"] += 1
            else:
                outcome["refused"][reply.code] = outcome["refused"].get(reply.code, 0) + 1
    if as_json:
        typer.echo(json.dumps(outcome))
        return
    console().print(f"{outcome['paid_orders']:,} paid orders: {outcome['earned']:,} earned "
                    f"{outcome['points']:,} points ({outcome['electronic']:,} with an electronic "
                    f"invoice, double), {outcome['already']:,} earned before, refused: "
                    f"{outcome['refused'] or 'none'}")
