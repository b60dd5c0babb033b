"""A window that opens before midnight (`traffic.lead_s`): early visitors browse, claim and
team up, nobody buys before 00:00, and the charts' curve shows the step at midnight."""

from __future__ import annotations

import asyncio

import pytest

from saleday.actors.campaign import CreateCampaign
from saleday.actors.sku import ConfigureSale
from saleday.simulator.driver import SimClock
from saleday.simulator.engine import clock_opening_at, setup_commands, wall_pace
from saleday.simulator.generator import catalog, visits
from saleday.simulator.run import RunOptions, simulate
from saleday.simulator.scenario import ScenarioError, Traffic, load, preset


def test_the_rate_before_midnight_is_the_lead_and_steps_up_at_midnight():
    """Before midnight the rate is `lead_x` back to `-lead_s`, nothing earlier, then `start_x`."""
    tr = Traffic(lead_s=300, lead_x=2.0, start_x=8.0)
    assert tr.start_s == -300
    assert tr.rate(-300) == tr.rate(-1) == 2.0
    assert tr.rate(-301) == 0.0
    assert tr.rate(0) == 8.0
    assert Traffic().start_s == 0 and Traffic().rate(-1) == 0.0


def test_the_default_scenario_opens_a_few_minutes_before_midnight():
    """double11 opens five minutes early at a rate well below the step at 00:00."""
    tr = preset("double11").traffic
    assert tr.lead_s == 300
    assert tr.rate(0) >= 3 * tr.rate(-1)


@pytest.mark.parametrize("text,needle", [
    ("traffic:\n  lead_s: -1\n", "traffic.lead_s"),
    ("traffic:\n  lead_s: 3601\n", "traffic.lead_s"),
    ("traffic:\n  lead_x: 0\n", "traffic.lead_x"),
])
def test_a_lead_out_of_bounds_is_refused_with_its_field(tmp_path, text, needle):
    """A lead longer than an hour, negative, or at a rate of zero is refused in words."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load(str(path))
    assert needle in str(caught.value)


def test_without_a_lead_nobody_arrives_before_midnight():
    """A scenario with no lead draws every arrival from midnight on, as before the lead."""
    sc = preset("team-up").with_overrides(users=3_000)
    assert sc.traffic.lead_s == 0
    assert min(v.t_s for v in visits(sc, 5)) >= 0


def test_early_visitors_arrive_before_midnight_but_order_only_once_the_sale_opens():
    """Visits start before 00:00, but every order (and payment) falls after it: the early
    ones bunch in the first seconds."""
    sc = preset("double11").with_overrides(users=20_000)
    vs = list(visits(sc, 4))
    early = [v for v in vs if v.t_s < 0]
    assert early and min(v.t_s for v in early) >= -sc.traffic.lead_s
    assert any(v.claim for v in early) and any(v.team_create for v in early)
    early_orders = [v.order for v in early if v.order is not None]
    assert early_orders
    assert all(o.t_s >= 0 and o.pay_t_s >= o.t_s for o in early_orders)
    orders = [v.order.t_s for v in vs if v.order is not None]
    assert min(orders) >= 0
    first_ten = sum(1 for t in orders if t < 10)
    assert first_ten > 3 * sum(1 for t in orders if 10 <= t < 20)


def test_campaigns_open_with_the_window_and_skus_at_midnight():
    """Setup lets early visitors claim (campaigns from the window's start) but not buy (SKUs
    from midnight), and is stamped before both."""
    sc = preset("double11").with_overrides(users=100)
    clock = SimClock(sc.sale_start_ms, sc.compression)
    now = clock.ms(-300) - 1
    setup = [cmd for _, cmd in setup_commands(sc, catalog(sc, 1), clock, now, clock.ms(0))]
    sales = [c for c in setup if isinstance(c, ConfigureSale)]
    campaigns = [c for c in setup if isinstance(c, CreateCampaign)]
    assert sales and {c.start for c in sales} == {clock.ms(0)}
    assert campaigns and {c.valid_from for c in campaigns} == {clock.ms(-300)}
    assert all(c.now < clock.ms(-300) for c in setup)


def test_the_wall_pace_maps_the_window_opening_to_the_run_start():
    """Paced engines start at the window's opening: now is -lead_s, midnight comes later."""
    sc = preset("double11").with_overrides(compression=3_000.0)
    clock = clock_opening_at(1_000_000, sc)
    assert clock.ms(-300) == 1_000_000 and clock.ms(0) == 1_000_100

    async def pace() -> tuple[float, float]:
        _, now_s, wait_until = wall_pace(sc.compression, sc.traffic.start_s)
        first = now_s()
        await wait_until(-297.0)   # 1 ms of wall time at 3,000x
        return first, now_s()

    first, later = asyncio.run(pace())
    assert -300 <= first < -290 and later >= -297


def test_an_in_process_sale_with_a_lead_shows_the_step_at_midnight(tmp_path):
    """The default scenario runs clean: commands before 00:00, none refused as too early,
    and the offered load steps up at midnight."""
    sc = preset("double11").with_overrides(users=1_000)
    report = simulate(RunOptions(scenario=sc, engine="inprocess", data_dir=tmp_path / "d",
                                 progress=False, charts=False, seed=11))
    assert report.audit_ok and report.invariants.violations == 0
    assert not {"sale_not_open", "campaign_not_active"} & set(report.rejections)
    assert report.window_start_s == -300 and report.sim_duration_s > sc.traffic.window_s
    before = [p for p in report.timeline if p.t_s < 0]
    assert before and before[0].t_s == -300 and all(p.offered > 0 for p in before)
    at_midnight = next(p for p in report.timeline if p.t_s == 0)
    assert at_midnight.offered > 3 * sum(p.offered for p in before) / len(before)
    assert report.orders["paid"] > 0
    assert report.teams_timeline and report.teams_timeline[0].t_s == -300
