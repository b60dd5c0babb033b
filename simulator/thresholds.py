"""The seed's targets as thresholds, k6-style: each run shows them passed or failed.

    latency p99 < 500 ms, payment success > 99.5 %, coupon redemption > 40 %

(the same targets as the HTTP war room, `saleday.http.warroom`). `evaluate(report)`
measures each on a finished run: p99 of command latency (the gateway's, or the HTTP
client's), payment success as orders paid / placed, coupon redemption as coupons redeemed
/ received (received counts grants and red-packet shares). A figure the run did not
produce (no latency measured, no order placed) is `None`: neither passed nor failed.
`saleday simulate --fail-on NAME` turns chosen thresholds into a non-zero exit.
"""

from __future__ import annotations

from dataclasses import dataclass

from saleday.simulator.results import RunReport, ThresholdResult


@dataclass(frozen=True, slots=True)
class Threshold:
    name: str
    what: str
    above: bool   # True: the figure must be above `target`; False: below
    target: float
    unit: str     # "ms" or "ratio"

    def describe(self) -> str:
        sign = ">" if self.above else "<"
        value = f"{self.target:g} ms" if self.unit == "ms" else f"{self.target * 100:g}%"
        return f"{sign} {value}"


THRESHOLDS = (
    Threshold("p99_ms", "command latency p99", False, 500.0, "ms"),
    Threshold("payment_success", "payment success (paid / placed)", True, 0.995, "ratio"),
    Threshold("coupon_redemption", "coupon redemption (redeemed / received)", True, 0.40, "ratio"),
)
NAMES = tuple(t.name for t in THRESHOLDS)


def _ratio(part: int | None, whole: int | None) -> float | None:
    return round(part / whole, 6) if part is not None and whole else None


def measure(report: RunReport) -> dict[str, float | None]:
    """Each threshold's figure on `report` (None when the run did not produce it)."""
    return {
        "p99_ms": report.latency_ms.p99 if report.latency_ms is not None else None,
        "payment_success": _ratio(report.orders.get("paid"), report.orders.get("placed")),
        "coupon_redemption": _ratio(report.coupons.get("redeemed"),
                                    report.coupons.get("received")),
    }


def evaluate(report: RunReport) -> list[ThresholdResult]:
    """Every threshold, measured on `report`, passed or failed (None: not measured)."""
    figures = measure(report)
    out = []
    for t in THRESHOLDS:
        value = figures[t.name]
        passed = None if value is None else (value > t.target if t.above else value < t.target)
        out.append(ThresholdResult(name=t.name, what=t.what, target=t.describe(),
                                   measured=value, unit=t.unit, passed=passed))
    return out


def failed(results: list[ThresholdResult], chosen: set[str]) -> list[ThresholdResult]:
    """The chosen thresholds that did not pass (a figure not measured does not pass)."""
    return [r for r in results if r.name in chosen and r.passed is not True]
