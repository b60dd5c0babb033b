"""What the simulator's engines share: the run's options, what an engine hands back, the
sale's setup commands, and the timeline's bucket size. `simulator.run` drives an engine;
the engines (`simulator.inprocess` via `run`, `simulator.ray_engine`) import only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saleday.actors.campaign import CreateCampaign
from saleday.actors.host import Accepted
from saleday.actors.sku import AddStock, ConfigureSale
from saleday.simulator.driver import Driver, Recorder, SimClock
from saleday.simulator.errors import SimulationError
from saleday.simulator.generator import Sku
from saleday.simulator.scenario import Scenario


@dataclass
class RunOptions:
    scenario: Scenario
    seed: int = 11
    engine: str = "ray"
    data_dir: Path = Path("saleday-data")
    store_url: str | None = None
    address: str | None = None
    faults: bool = False
    record: Path | None = None
    progress: bool = True
    num_cpus: int | None = None
    charts: bool = True
    tick_s: float = 1.0
    """In-process engine: simulated seconds per round of the virtual clock."""
    max_live_visits: int = 2_000
    """Ray engine: visits in flight at once before new arrivals wait. Past what the system
    serves, arrivals then start late (reported as `late_start_s`) instead of piling up
    retries: 20,000 in flight on 2 cores turned Busy retries into a storm that starved the
    shards (throughput fell from ~5,300 to ~2,200 commands/s, p99 from 0.5 s to 26 s)."""
    audit: bool = True
    overwrite: bool = False
    """An explicit `store_url` that already holds a SQLite log: move it aside instead of
    refusing (`simulator.datadir`)."""
    store_give_up_s: float = 30.0
    """In-process engine: how long an unreachable store is retried (with backoff) before
    the run gives up."""
    http_target: Any = None
    """HTTP engine: the front door to drive (a `simulator.http_client.HttpTarget`). Its log
    is the operator's: the run never prepares it, and audits it (read-only) only when
    `store_url` names it."""
    http_server: Any = None
    """HTTP engine without a target: (store URL, scenario) -> a context manager running a
    local front door over that store and yielding its `HttpTarget` (the composition root's
    `saleday.http.local`)."""
    run_tag: str | None = None
    """HTTP engine: prefix of every idempotency key (default: from the start time), so runs
    against the same target do not collide while each request's retries stay safe."""


@dataclass
class EngineRun:
    """What an engine hands back: the counters, the clock, and its own figures."""

    recorder: Recorder
    driver: Driver
    clock: SimClock
    wall_s: float
    sim_end_s: float
    faults_injected: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def setup_commands(sc: Scenario, skus: list[Sku], clock: SimClock, now: int,
                   opens_ms: int, *, margin_ms: int = 1) -> list[tuple[str, Any]]:
    """The catalogue and campaigns, as commands with their (deterministic) ids; the sale
    closes `margin_ms` after the window's last second."""
    end = clock.ms(sc.traffic.window_s) + margin_ms
    out: list[tuple[str, Any]] = []
    for s in skus:
        out.append((f"setup/{s.sku}/stock", AddStock(sku=s.sku, qty=s.stock, now=now)))
        out.append((f"setup/{s.sku}/sale", ConfigureSale(
            sku=s.sku, tiers=s.tiers, per_user_limit=sc.skus.per_user_limit, start=opens_ms,
            end=end, now=now)))
    for c in sc.campaigns:
        out.append((f"setup/campaign/{c.name}", CreateCampaign(
            campaign=c.name, value_cents=c.value_cents, min_spend_cents=c.min_spend_cents,
            valid_from=opens_ms, valid_until=end + clock.span_ms(c.valid_s),
            budget_coupons=c.budget_coupons, budget_cents=c.budget_cents, now=now)))
    tu = sc.team_up
    if tu.create_rate > 0:
        out.append((f"setup/campaign/{tu.campaign}", CreateCampaign(
            campaign=tu.campaign, value_cents=tu.pool_cents, min_spend_cents=0,
            valid_from=opens_ms, valid_until=end + clock.span_ms(tu.expires_s),
            budget_coupons=0, budget_cents=tu.pool_cents * tu.budget_teams, now=now)))
    return out


def check_setup(replies: list[tuple[str, Any]]) -> None:
    refused = [(cid, r) for cid, r in replies if not isinstance(r, Accepted)]
    if refused:
        cid, reply = refused[0]
        raise SimulationError(f"the sale could not be set up: {cid} was refused "
                              f"({getattr(reply, 'code', type(reply).__name__)}: {reply}); "
                              f"{len(refused)} setup commands refused in all")


def bucket_s(sc: Scenario) -> float:
    """Timeline buckets: about 120 over the window, in whole seconds."""
    return float(max(1, round(sc.traffic.window_s / 120)))
