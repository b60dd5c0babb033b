"""`saleday presale open|deposit|balance`: presale (定金) steps as commands on the log.

    saleday presale open sku-9 --units 500 --deposit 50 --counts-as 150 --price 399 \\
        --deposits-from 2025-10-20 --balance-from 2025-11-11 --balance-until 2025-11-12
    saleday presale deposit sku-9 d-1 alice 2 --at 2025-10-21T09:00:00+08:00
    saleday presale balance sku-9 d-1 pay-7 498 --at 2025-11-11T00:05:00+08:00

Each is decided by the presale shard hosts in this process (actors/presale.py) and
answered with what was recorded or why it was refused (exit 2). Unpaid deposits are
forfeited by the presale shard's timer once the balance window has closed: the next
command on that presale's shard (or `saleday serve`'s ticks) records it. The units a
deposit holds are set aside on the SKU's own stock by `saleday serve`'s follower when it
serves the presale and sku kinds (flows/presale_stock.py), not by these commands, which
leave the sku streams to their shards. Amounts are yuan
with up to two decimals; times ISO 8601 (UTC unless an offset is given; default now).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from saleday.cli.common import console, fail, opened
from saleday.cli.members import DataOpt, MemberShards, ShardsOpt, StoreOpt, _store_url


def register(app: typer.Typer) -> None:
    presale_app = typer.Typer(help="Presales: deposits before the sale, the balance after; "
                                   "`saleday serve` with the presale and sku kinds sets the "
                                   "deposits' units aside on the SKU (docs/MEMBERS.md).",
                              no_args_is_help=True)
    presale_app.command("open")(open_presale)
    presale_app.command("deposit")(pay_deposit)
    presale_app.command("balance")(pay_balance)
    app.add_typer(presale_app, name="presale")


def _cents(text: str, hint: str) -> int:
    from saleday.flows.history import parse_amount

    cents = parse_amount(text)
    if cents is None:
        raise typer.BadParameter(f"{text!r} is not an amount in yuan (two decimals)",
                                 param_hint=hint)
    return cents


def _ms(text: str | None, hint: str) -> int:
    from saleday.actors.host import wall_clock_ms
    from saleday.flows.history import parse_ordered_at

    if text is None:
        return wall_clock_ms()
    ms = parse_ordered_at(text)
    if ms is None:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 date or date-time",
                                 param_hint=hint)
    return ms


def _run(command: Any, command_id: str, data: Path, store: str | None, shards: int) -> None:
    from saleday.actors.host import Accepted, Request

    with opened(_store_url(data, store, must_exist=False)) as s:
        (reply,) = MemberShards(s, shards, kind="presale").run([Request(command_id, command)])
    if not isinstance(reply, Accepted):
        fail(ValueError(reply.describe()))
    if not reply.events:
        console().print("nothing new: already recorded")
    for event in reply.events:
        console().print(escape(f"{type(event).__name__}: {event}"))


def open_presale(
    sku: Annotated[str, typer.Argument(help="The presale SKU.")],
    units: Annotated[int, typer.Option("--units", min=1, help="Units held for deposits.")],
    deposit: Annotated[str, typer.Option("--deposit", help="Deposit per unit, yuan.")],
    counts_as: Annotated[str, typer.Option("--counts-as", help="What a deposit counts for "
                                           "at the balance, yuan.")],
    price: Annotated[str, typer.Option("--price", help="Final unit price, yuan.")],
    deposits_from: Annotated[str, typer.Option("--deposits-from", help="Deposits open.")],
    balance_from: Annotated[str, typer.Option("--balance-from", help="Deposits close, the "
                                              "balance window opens (the sale start).")],
    balance_until: Annotated[str, typer.Option("--balance-until", help="The balance window "
                                               "closes; unpaid deposits are forfeited.")],
    data: DataOpt = Path("./saleday-data"),
    store: StoreOpt = None,
    shards: ShardsOpt = 1,
) -> None:
    """Open a presale on these terms."""
    from saleday.actors.presale import OpenPresale

    command = OpenPresale(sku=sku, units=units, deposit_cents=_cents(deposit, "--deposit"),
                          deposit_value_cents=_cents(counts_as, "--counts-as"),
                          price_cents=_cents(price, "--price"),
                          deposits_from=_ms(deposits_from, "--deposits-from"),
                          balance_from=_ms(balance_from, "--balance-from"),
                          balance_until=_ms(balance_until, "--balance-until"),
                          now=_ms(None, ""))
    _run(command, f"presale-open:{sku}", data, store, shards)


def pay_deposit(
    sku: Annotated[str, typer.Argument(help="The presale SKU.")],
    deposit_id: Annotated[str, typer.Argument(help="The deposit's id.")],
    user: Annotated[str, typer.Argument(help="Who pays it.")],
    qty: Annotated[int, typer.Argument(min=1, help="Units it holds.")],
    at: Annotated[str | None, typer.Option("--at", help="When (default now).")] = None,
    data: DataOpt = Path("./saleday-data"),
    store: StoreOpt = None,
    shards: ShardsOpt = 1,
) -> None:
    """Record a deposit holding units for its payer."""
    from saleday.actors.presale import PayDeposit

    _run(PayDeposit(sku=sku, deposit_id=deposit_id, user=user, qty=qty, now=_ms(at, "--at")),
         f"presale-deposit:{sku}:{deposit_id}", data, store, shards)


def pay_balance(
    sku: Annotated[str, typer.Argument(help="The presale SKU.")],
    deposit_id: Annotated[str, typer.Argument(help="The deposit paid through.")],
    payment_id: Annotated[str, typer.Argument(help="The payment's id.")],
    amount: Annotated[str, typer.Argument(help="The balance paid, yuan.")],
    at: Annotated[str | None, typer.Option("--at", help="When (default now).")] = None,
    data: DataOpt = Path("./saleday-data"),
    store: StoreOpt = None,
    shards: ShardsOpt = 1,
) -> None:
    """Record a balance payment (the exact balance, inside the balance window)."""
    from saleday.actors.presale import PayBalance

    _run(PayBalance(sku=sku, deposit_id=deposit_id, payment_id=payment_id,
                    amount_cents=_cents(amount, "AMOUNT"), now=_ms(at, "--at")),
         f"presale-balance:{sku}:{deposit_id}:{payment_id}", data, store, shards)
