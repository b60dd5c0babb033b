"""What the edges accept is what the system can hold: any scenario the model accepts sets
up a sale whose stock and prices reach the log unchanged, and a clickstream's stray rows
far outside its period neither shape the time mapping nor go uncounted."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from saleday.actors.campaign import campaign_decider
from saleday.actors.decider import Rejection
from saleday.actors.sku import sku_decider
from saleday.events.chain import seal
from saleday.events.codec import decode_commit
from saleday.events.envelope import ZERO_HASH
from saleday.events.registry import registry
from saleday.simulator import scenario as sm
from saleday.simulator.clickstream import HOUR_MS, bulk_bounds
from saleday.simulator.driver import SimClock
from saleday.simulator.generator import catalog
from saleday.simulator.run import setup_commands
from saleday.simulator.sessions import clickstream_visits

INT64_MAX = 2**63 - 1
EDGES = (1, 99, 100, 101, sm.MAX_PRICE_CENTS, sm.MAX_PRICE_CENTS + 1, sm.MAX_STOCK,
         sm.MAX_STOCK + 1, sm.MAX_CENTS, 2**62, INT64_MAX, 2**63, 10**20)


def big_ints(low: int = 0) -> st.SearchStrategy[int]:
    """Small ints, the bounds and their neighbours, and anything up to 10**20."""
    return st.one_of(st.integers(low, 10_000), st.sampled_from([e for e in EDGES if e >= low]),
                     st.integers(low, 10**20))


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    stock = sorted([draw(big_ints(1)), draw(big_ints(1))])
    price = sorted([draw(big_ints(1)), draw(big_ints(1))])
    return {
        "users": 10,
        "compression": draw(st.sampled_from([sm.MIN_COMPRESSION, 1.0, 120.0, sm.MAX_COMPRESSION])),
        "sale_start_ms": draw(st.sampled_from([sm.MIN_SALE_START_MS, 1_794_326_400_000, sm.MAX_SALE_START_MS])),
        "traffic": {"window_s": draw(st.sampled_from([1, 7200, sm.MAX_SPAN_S]))},
        "skus": {"count": draw(st.integers(1, 8)), "stock_min": stock[0], "stock_max": stock[1],
                 "price_min_cents": price[0], "price_max_cents": price[1],
                 "flash_share": draw(st.sampled_from([0.0, 1.0])),
                 "flash_units": draw(big_ints(1)), "per_user_limit": draw(big_ints()),
                 "flash_discount": draw(st.sampled_from([0.01, 0.5, 0.99]))},
        "campaigns": [{"name": "c", "value_cents": draw(big_ints(1)),
                       "min_spend_cents": draw(big_ints()), "budget_coupons": draw(big_ints(1)),
                       "budget_cents": draw(big_ints()),
                       "valid_s": draw(st.sampled_from([1, 86_400, sm.MAX_VALID_S]))}],
        "team_up": {"pool_cents": draw(big_ints(100)), "min_share_cents": 1,
                    "budget_teams": draw(big_ints(1)),
                    "expires_s": draw(st.sampled_from([1, sm.MAX_SPAN_S]))},
    }


def decided(decider, commands: list) -> list:
    """The events `commands` yield in order against one entity, each accepted."""
    state = decider.initial(decider.entity_of(commands[0]))
    out = []
    for cmd in commands:
        events = decider.decide(cmd, state)
        assert not isinstance(events, Rejection), (cmd, events)
        for e in events:
            state = decider.evolve(state, e)
        out.extend(events)
    return out


def survives_the_log(stream: str, events: list) -> None:
    new = [registry.new_event(e, command_id=f"c{i}", recorded_at=0) for i, e in enumerate(events)]
    commit = seal(stream, 0, ZERO_HASH, new)
    back = decode_commit(commit.stream, commit.first_version, commit.last_version,
                         commit.prev_hash, commit.hashes, commit.body)
    assert [registry.decode(env) for env in back] == events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=scenarios(), seed=st.integers(0, sm.MAX_SEED))
def test_any_accepted_scenario_sets_up_a_sale_whose_numbers_reach_the_log_unchanged(data, seed):
    """No wrap: an accepted scenario's stock and prices lie within its ranges, every setup
    command is accepted, and its events seal and decode back equal."""
    try:
        sc = sm.Scenario.model_validate(data)
    except ValidationError:
        return
    s = sc.skus
    skus = catalog(sc, seed)
    for sku in skus:
        assert s.stock_min <= sku.stock <= s.stock_max <= INT64_MAX
        assert 1 <= sku.price_cents <= s.price_max_cents
        assert sku.price_cents >= min(s.price_min_cents - 100, s.price_max_cents - 100)
        assert all(1 <= price <= sku.price_cents for _, price in sku.tiers)
    clock = SimClock(sc.sale_start_ms, sc.compression)
    commands = setup_commands(sc, skus, clock, clock.ms(0) - 1, clock.ms(0))
    by_entity: dict[tuple[str, str], list] = {}
    for _, cmd in commands:
        decider = sku_decider if isinstance(cmd, sku_decider.commands) else campaign_decider
        by_entity.setdefault((decider.kind, decider.entity_of(cmd)), []).append(cmd)
    for (kind, entity), cmds in by_entity.items():
        decider = sku_decider if kind == "sku" else campaign_decider
        events = decided(decider, cmds)
        survives_the_log(f"{kind}|{entity}", events)
        if kind == "sku":
            sku = next(x for x in skus if x.sku == entity)
            assert events[0].qty == sku.stock
            assert tuple(map(tuple, events[1].tiers)) == sku.tiers


def test_the_documented_maxima_themselves_are_accepted_and_fit_int64():
    """The bounds are reachable, and what the views sum of them still fits int64."""
    sc = sm.Scenario.model_validate({
        "users": sm.MAX_USERS, "visits_per_user": 1, "compression": sm.MAX_COMPRESSION,
        "sale_start_ms": sm.MAX_SALE_START_MS, "sku_shards": sm.MAX_SKU_SHARDS,
        "skus": {"count": 2, "stock_min": sm.MAX_STOCK, "stock_max": sm.MAX_STOCK,
                 "price_min_cents": sm.MAX_PRICE_CENTS, "price_max_cents": sm.MAX_PRICE_CENTS}})
    assert sc.visits <= sm.MAX_VISITS
    assert sm.MAX_SKUS * sm.MAX_STOCK <= INT64_MAX
    assert sm.MAX_VISITS * 3 * sm.MAX_PRICE_CENTS <= INT64_MAX
    assert sm.MAX_TEAMS * sm.MAX_PRICE_CENTS <= INT64_MAX


def test_a_scenario_built_around_the_checks_cannot_spin_the_clock_for_ever(tmp_path):
    """Defence in depth: an unvalidated scenario (model_construct) with an infinite
    compression is refused by the in-process engine instead of running rounds for ever."""
    import pytest

    from saleday.simulator.run import RunOptions, SimulationError, simulate

    base = sm.preset("double11").with_overrides(users=5)
    sc = sm.Scenario.model_construct(**{**dict(base), "compression": float("inf")})
    opts = RunOptions(scenario=sc, engine="inprocess", store_url="memory://spin",
                      data_dir=tmp_path, progress=False, charts=False, audit=False)
    with pytest.raises(SimulationError, match="rounds"):
        simulate(opts)


# -- clickstreams: the bulk of the time range ----------------------------------------------

DAY_S = 86_400
START_S = 1_511_568_000  # 2017-11-25T00:00:00Z


def taobao_csv(tmp_path, stray_at_s: int | None, rows: int = 40) -> str:
    """A small Taobao-layout file: `rows` clicks spread evenly over nine days, and, if
    given, one stray row far outside them, planted in the middle of the file."""
    lines = [f"{1 + i % 7},{100 + i},5,{'buy' if i % 9 == 0 else 'pv'},"
             f"{START_S + i * 9 * DAY_S // rows}" for i in range(rows)]
    if stray_at_s is not None:
        lines.insert(rows // 2, f"3,999,5,pv,{stray_at_s}")
    path = tmp_path / ("stray.csv" if stray_at_s is not None else "clean.csv")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def mapped(path: str) -> tuple[list[float], object]:
    src, run, sc = clickstream_visits(path, layout="taobao", scenario=sm.preset("double11"),
                                      seed=11)
    return [v.t_s for v in src], run


def test_a_far_out_of_range_row_does_not_shape_the_mapping_and_is_counted(tmp_path):
    """One row 75 days before the rest (as Taobao's September rows) is counted as
    timestamp_out_of_range, and the visits map exactly as without it."""
    stray = START_S - 75 * DAY_S
    clean_t, clean_run = mapped(taobao_csv(tmp_path, None))
    stray_t, stray_run = mapped(taobao_csv(tmp_path, stray))
    assert stray_t == clean_t
    assert stray_run.stats.malformed == {"timestamp_out_of_range": 1}
    assert stray_run.stats.samples["timestamp_out_of_range"] == [21]
    assert clean_run.stats.malformed == {}
    assert (stray_run.stats.first_ts, stray_run.stats.last_ts) == (
        clean_run.stats.first_ts, clean_run.stats.last_ts)
    window = sm.preset("double11").traffic.window_s
    early = sum(t < window / 2 for t in stray_t)
    assert early > len(stray_t) / 3, "the traffic is spread over the window, not pushed to its end"


def test_a_stray_row_after_the_period_is_dropped_too(tmp_path):
    """The fence is two-sided: a row a year later is counted and shapes nothing."""
    clean_t, _ = mapped(taobao_csv(tmp_path, None))
    stray_t, run = mapped(taobao_csv(tmp_path, START_S + 365 * DAY_S))
    assert stray_t == clean_t and run.stats.malformed == {"timestamp_out_of_range": 1}


def test_the_bulk_rule_is_tukeys_fences_on_hours():
    """Quartiles by nearest rank over the rows' unix hours, fences 1.5 IQR (at least a
    day) beyond them: the rule docs/SIMULATOR.md gives, recomputed by hand."""
    hours = {100: 1, 1000: 3, 1010: 3, 1020: 3, 1030: 3, 5000: 1}  # n = 14
    bulk = bulk_bounds(hours)
    # ceil(14/4) = 4th row -> hour 1000; ceil(42/4) = 11th row -> hour 1030
    assert (bulk.q1_h, bulk.q3_h) == (1000, 1030)
    assert bulk.margin_h == 45  # floor(1.5 * 30)
    assert (bulk.first_h, bulk.last_h) == (955, 1075)
    assert bulk.max_ts_ms == 1076 * HOUR_MS
    assert bulk_bounds({7: 5}).margin_h == 24  # all in one hour: a day either side


def test_steady_traffic_keeps_every_row(tmp_path):
    """A file of even traffic over its whole period loses nothing to the fence."""
    _, run = mapped(taobao_csv(tmp_path, None, rows=400))
    assert run.stats.malformed == {} and run.stats.clicks == 400
