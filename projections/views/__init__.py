"""The views: orders, referrals, metrics, live stock and members (one class each).

`all_views()` returns fresh instances of every view; `view_class(name)` finds one by name.
"""

from __future__ import annotations

from saleday.projections.view import View
from saleday.projections.views.members import MembersView
from saleday.projections.views.metrics import MetricsView
from saleday.projections.views.orders import OrdersView
from saleday.projections.views.referrals import ReferralsView, graphml
from saleday.projections.views.stock import StockView

VIEWS: dict[str, type[View]] = {cls.name: cls for cls in (OrdersView, ReferralsView,
                                                           MetricsView, StockView, MembersView)}


class UnknownView(ValueError):
    """A view name that is not one of `VIEWS`."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown view {name!r}: use one of {', '.join(VIEWS)}")


def all_views() -> list[View]:
    """A fresh instance of every view."""
    return [cls() for cls in VIEWS.values()]


def view_class(name: str) -> type[View]:
    try:
        return VIEWS[name]
    except KeyError:
        raise UnknownView(name) from None


__all__ = ["VIEWS", "MembersView", "MetricsView", "OrdersView", "ReferralsView", "StockView", "UnknownView",
           "all_views", "graphml", "view_class"]
