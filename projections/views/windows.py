"""The seed article's two event-time window views over product views, keyed by user.

- `browse-5m`: per user, 5-minute tumbling windows: products viewed (distinct), how many
  views, and the latest category viewed (by event time).
- `trail-30m`: per user, 30-minute windows sliding every 5 minutes: the browsing trail
  (the latest 20 (time, product) pairs), views, distinct products and categories, the
  latest category.

Both read `sessions.behaviour_recorded` events with action "view", on their event time
(`at`), with a watermark 30 s behind the latest view of each stream and 60 s of allowed
lateness (docs/PROJECTIONS.md, "Event-time windows"). Times are the log's ms: in a
compressed simulation, five minutes of event time are five minutes of the system's clock.
"""

from __future__ import annotations

from saleday.projections.view import View
from saleday.projections.windows import (
    SESSION,
    SLIDING,
    TUMBLING,
    Agg,
    WindowSpec,
    WindowView,
    window_view,
)

MINUTE_MS = 60_000
VIEWS_ONLY = (("action", "view"),)

BROWSE_5M = WindowSpec(
    kind=TUMBLING, size_ms=5 * MINUTE_MS, key="user", where=VIEWS_ONLY,
    out_of_orderness_ms=30_000, allowed_lateness_ms=60_000,
    aggs=(Agg("products", "distinct", "sku"), Agg("views", "count"),
          Agg("last_category", "last", "category")))

TRAIL_30M = WindowSpec(
    kind=SLIDING, size_ms=30 * MINUTE_MS, hop_ms=5 * MINUTE_MS, key="user", where=VIEWS_ONLY,
    out_of_orderness_ms=30_000, allowed_lateness_ms=60_000,
    aggs=(Agg("trail", "trail", "sku", limit=20), Agg("views", "count"),
          Agg("products", "distinct", "sku"), Agg("categories", "distinct", "category"),
          Agg("last_category", "last", "category")))

SESSIONS_30M = WindowSpec(
    kind=SESSION, gap_ms=30 * MINUTE_MS, key="user", out_of_orderness_ms=30_000,
    allowed_lateness_ms=60_000,
    aggs=(Agg("events", "count"), Agg("products", "distinct", "sku"),
          Agg("last_action", "last", "action")))

Browse5m = window_view("browse-5m", BROWSE_5M)
Trail30m = window_view("trail-30m", TRAIL_30M)
Sessions30m = window_view("sessions-30m", SESSIONS_30M)

WINDOW_VIEWS: dict[str, type[WindowView]] = {c.name: c for c in (Browse5m, Trail30m, Sessions30m)}


class UnknownWindowView(ValueError):
    """A window view name that is not one of `WINDOW_VIEWS`."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown window view {name!r}: use one of {', '.join(WINDOW_VIEWS)}")


def window_view_class(name: str) -> type[View]:
    try:
        return WINDOW_VIEWS[name]
    except KeyError:
        raise UnknownWindowView(name) from None
