"""How the CLI shows figures to a person: one clock, percentages and yuan.

Event times (`recorded_at`, ms since the epoch) print on the sale's own clock, Beijing
time, where 11.11 starts at 00:00 (the simulator's report shows *simulated* time on the
sale clock, 0 = midnight, which is event time stretched by the scenario's compression).
Ratios
print as percentages and money, kept in integer cents, as yuan. `--json` keeps the raw
values.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

SALE_TZ = timezone(timedelta(hours=8))
"""Beijing time: the sale's clock (midnight of 11.11 is 00:00)."""


def event_time(ms: int | None, *, millis: bool = True) -> str:
    """`recorded_at` on the sale's clock: `00:27:54.123` (or `00:27:54`); `-` for None."""
    if ms is None:
        return "-"
    text = datetime.fromtimestamp(ms / 1000, SALE_TZ).strftime("%H:%M:%S.%f")
    return text[:-3] if millis else text[:-7]


def percent(ratio: float | None, digits: int = 1) -> str:
    """`0.994955` -> `99.5%`; `-` when there is no ratio (nothing to divide)."""
    return "-" if ratio is None else f"{ratio * 100:.{digits}f}%"


def yuan(cents: int | None) -> str:
    """Integer cents as yuan: `123456` -> `¥1,234.56`."""
    if cents is None:
        return "-"
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}¥{whole:,}.{part:02d}"
