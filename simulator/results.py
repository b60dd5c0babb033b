"""What a simulated sale day produced: the `RunReport` a run fills and the report renders.

One pydantic model at the boundary between a run (the engines fill it) and the ways it is
shown (`simulator.report`: rich tables; `simulator.charts`: PNG charts;
`simulator.report_html`: one HTML file) or stored (`--json`).
Times: `t_s` and `*_s` of simulated time are seconds of the sale clock (0 = midnight, when
the sale opens; negative before it when the window opens early, from `window_start_s`);
`sim_duration_s` is how long the simulated run lasted from the window's opening;
`duration_s` and `throughput_per_s` are wall-clock. Counts are never negative.
"""

from __future__ import annotations

import os
import platform
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt

Count = NonNegativeInt


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON has no NaN


class LatencyMs(_Model):
    """Command latency percentiles over a run, in milliseconds."""

    p50: NonNegativeFloat
    p95: NonNegativeFloat
    p99: NonNegativeFloat
    max: NonNegativeFloat


class TimelinePoint(_Model):
    """One bucket of simulated time: what was offered and what came back."""

    t_s: float  # sale clock (s; 0 = midnight), bucket start
    offered: Count  # commands the scenario generated in the bucket
    served: Count  # commands answered (accepted or rejected by the business rules)
    busy: Count = 0
    errors: Count = 0
    p50_ms: NonNegativeFloat | None = None
    p99_ms: NonNegativeFloat | None = None
    rejected: Count = 0  # of the served: refused by the business rules
    p95_ms: NonNegativeFloat | None = None
    max_ms: NonNegativeFloat | None = None


class TeamPoint(_Model):
    """Team-ups so far at a moment of simulated time (cumulative counts)."""

    t_s: float
    formed: Count = 0
    completed: Count = 0
    expired: Count = 0
    shares: Count = 0  # red-packet shares paid out


class StockPoint(_Model):
    """Units of a SKU still available at a moment of simulated time."""

    t_s: float
    remaining: Count


class Finding(_Model):
    """One broken invariant, where the audit saw it."""

    rule: str
    stream: str | None = None
    version: int | None = None
    message: str


class Invariants(_Model):
    """The audit's verdict: how many violations, and the findings behind them."""

    violations: Count = 0
    findings: list[Finding] = Field(default_factory=list)


class CommandStats(_Model):
    """One command type (HTTP engine: one route) over a run, as Locust tabulates requests."""

    name: str
    count: Count
    rejected: Count = 0  # refused by the business rules (answered)
    refusals: dict[str, Count] = Field(default_factory=dict)  # rejection code -> count
    busy: Count = 0  # shed by the gateway (not decided)
    unavailable: Count = 0  # the store or shard could not be reached (not decided)
    p50_ms: NonNegativeFloat | None = None
    p90_ms: NonNegativeFloat | None = None
    p99_ms: NonNegativeFloat | None = None
    max_ms: NonNegativeFloat | None = None
    per_s: NonNegativeFloat = 0.0  # per wall-clock second of the run


class ThresholdResult(_Model):
    """One of the seed's targets on a run (simulator/thresholds.py)."""

    name: str  # p99_ms, payment_success, coupon_redemption
    what: str
    target: str  # e.g. "< 500 ms", "> 99.5%"
    measured: float | None = None  # ms or a ratio 0..1; None: the run did not produce it
    unit: str = "ratio"
    passed: bool | None = None


class RunReport(_Model):
    """Everything one simulated sale day produced, in the order a reader wants it."""

    scenario: str
    seed: int
    engine: Literal["ray", "inprocess", "http"]
    users: Count
    store: str  # the store URL, credentials redacted
    data_dir: str
    started_at: str  # ISO 8601
    commands: Count
    events: Count
    duration_s: NonNegativeFloat  # wall clock
    sim_duration_s: NonNegativeFloat  # simulated s from the window's opening to the run's end
    throughput_per_s: NonNegativeFloat  # commands per wall-clock second
    latency_ms: LatencyMs | None = None
    late_start_s: LatencyMs | None = None  # how far behind schedule visits started (wall s)
    driver_cpu: NonNegativeFloat | None = None  # the driver process's CPU over the traffic (cores)
    driver_loop_lag_ms: LatencyMs | None = None  # how late the driver's event loop ran a timer
    busy: Count = 0
    unavailable: Count = 0
    rejections: dict[str, Count] = Field(default_factory=dict)  # by rejection type
    timeline: list[TimelinePoint] = Field(default_factory=list)
    sellout_s: dict[str, NonNegativeFloat] = Field(default_factory=dict)  # hottest first
    stock_depletion: dict[str, list[StockPoint]] = Field(default_factory=dict)  # top SKUs
    orders: dict[str, Count] = Field(default_factory=dict)
    coupons: dict[str, Count] = Field(default_factory=dict)
    red_packets: dict[str, Count] = Field(default_factory=dict)
    funnel: dict[str, Count] = Field(default_factory=dict)  # stages in funnel order
    referral: dict[str, float] = Field(default_factory=dict)
    invariants: Invariants = Field(default_factory=Invariants)
    audit_ok: bool = False
    views: dict[str, str] = Field(default_factory=dict)  # view name -> digest
    faults_injected: dict[str, Count] = Field(default_factory=dict)
    fault_mix: dict[str, Any] | None = None  # --faults swarm: the classes on, the reproducer
    log_digest: str = ""
    charts: list[str] = Field(default_factory=list)  # paths written
    html: str | None = None
    machine: dict[str, Any] = Field(default_factory=dict)
    previous_run: str | None = None  # where the log this run replaced was moved
    target: str | None = None  # the HTTP engine: the API it drove (base URL)
    audit_skipped: str | None = None  # why the log was not audited (then audit_ok is False)
    http: dict[str, Any] = Field(default_factory=dict)  # requests by route, retries, statuses
    interrupted: bool = False  # stopped early (Ctrl-C, SIGTERM): a partial sale day
    bucket_s: NonNegativeFloat = 0.0  # simulated seconds per timeline bucket
    window_start_s: float = 0.0  # when the window opened on the sale clock (-lead_s)
    files: list[str] = Field(default_factory=list)  # report.json, timeline.csv
    thresholds: list[ThresholdResult] = Field(default_factory=list)  # the seed's targets
    audit_rules: dict[str, dict[str, Any]] = Field(default_factory=dict)  # rule -> checks, passed, failed, about
    by_command: list[CommandStats] = Field(default_factory=list)  # busiest first
    tier_marks: dict[str, list[Count]] = Field(default_factory=dict)  # top SKU -> units left where a price tier ends
    teams_timeline: list[TeamPoint] = Field(default_factory=list)  # cumulative, per bucket
    experiments: list[dict[str, Any]] = Field(default_factory=list)  # simulator.experiments
    behaviour: dict[str, Any] = Field(default_factory=dict)  # windows and cost per order
    members: dict[str, Any] = Field(default_factory=dict)  # simulator.members: tiers, points, refunds, presale

    def to_json_dict(self) -> dict[str, Any]:
        """The whole report as one JSON-native object (dict orders kept, e.g. the funnel)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> RunReport:
        """A report read back from `to_json_dict()` output (validated)."""
        return cls.model_validate(data)


def machine_info() -> dict[str, Any]:
    """What a run was measured on: CPU model, cores, Python and platform (as every
    benchmark reports it)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}
