"""The live followers `saleday serve` runs next to its shards, chosen by the kinds served.

- the `Reactor` (`flows.reactor`: red-packet shares, returned pools, grants and store-visit
  coupons delivered to wallets), when asked (`serve --http` runs it);
- the `MemberFollower` (`flows.member_follower`: points earned and price protection
  claimed as paid orders and price drops arrive) when the member kind is served;
- the `PresaleStockFollower` (`flows.presale_stock`: each deposit's units set aside on its
  SKU, sold when the balance is paid, returned when the deposit is forfeited) when both
  the presale and the sku kinds are served.

Every follower submits under ids derived from the facts it follows, so running one
twice, or from the start of the log, records nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

from saleday.events import EventStore
from saleday.flows.gateway import Gateway


def live_followers(store: EventStore, gateway: Gateway, kinds: Iterable[str],
                   stop: asyncio.Event, *, reactor: bool = True) -> dict[str, Coroutine[Any, Any, None]]:
    """The followers the served `kinds` call for, by name, each running until `stop`."""
    kinds = set(kinds)
    out: dict[str, Coroutine[Any, Any, None]] = {}
    if reactor:
        from saleday.flows.reactor import Reactor

        out["reactor"] = Reactor(store, gateway).run(stop)
    if "member" in kinds:   # points and price protection, live
        from saleday.flows.member_follower import MemberFollower

        out["members"] = MemberFollower(store, gateway).run(stop)
    if {"presale", "sku"} <= kinds:   # the deposits' units on their SKUs, live
        from saleday.flows.presale_stock import PresaleStockFollower

        out["presale_stock"] = PresaleStockFollower(store, gateway).run(stop)
    return out
