"""Scenarios (presets, files, errors) and the seeded generator (same seed, same traffic)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from saleday.simulator.generator import arrival_times, catalog, visits
from saleday.simulator.scenario import PRESETS, ScenarioError, load, preset


def test_every_preset_loads_and_double11_is_the_default_shape():
    """Every preset loads under its name, and double11 steps up at midnight, peaks near 00:05 and
    decays."""
    for name in PRESETS:
        assert preset(name).name == name
    d11 = preset("double11")
    tr = d11.traffic
    # A step at midnight to a plateau ~10-15x the mean, peaking near 00:05, then decay.
    assert 10 <= tr.plateau_x <= 15 and tr.peak_s == 300
    assert tr.rate(0) > 3 * tr.rate(tr.window_s)
    assert tr.rate(tr.peak_s) == max(tr.rate(t) for t in range(0, tr.window_s, 30))
    # the excess over the mean halves within 30-60 minutes of the peak
    assert 1800 <= tr.half_life_s <= 3600
    assert 0.9 <= d11.skus.zipf <= 1.1
    assert d11.funnel.view_to_cart == 0.06 and d11.funnel.cart_to_order == 0.30
    assert d11.funnel.payment_success == 0.995 and d11.funnel.payment_never_returns > 0


@pytest.mark.parametrize("suffix,text", [
    (".yaml", "preset: flash-half-price\nusers: 1234\nskus:\n  count: 7\n"),
    (".toml", 'preset = "flash-half-price"\nusers = 1234\n[skus]\ncount = 7\n'),
    (".json", json.dumps({"preset": "flash-half-price", "users": 1234, "skus": {"count": 7}})),
])
def test_a_scenario_file_overrides_a_preset_in_any_format(tmp_path, suffix, text):
    """A YAML, TOML or JSON scenario file overrides what it names and takes the rest from its
    preset."""
    path = tmp_path / f"my-sale{suffix}"
    path.write_text(text)
    sc = load(str(path))
    assert sc.users == 1234 and sc.skus.count == 7
    # what the file does not say comes from the preset, nested fields included
    assert sc.skus.flash_units == PRESETS["flash-half-price"]["skus"]["flash_units"]
    assert sc.traffic.window_s == PRESETS["flash-half-price"]["traffic"]["window_s"]


@pytest.mark.parametrize("text,needle", [
    ("users: -3\n", "users"),
    ("skus:\n  zipf: high\n", "skus.zipf"),
    ("bogus_field: 1\n", "bogus_field"),
    ("preset: nope\n", "no preset 'nope'"),
    ("campaigns:\n  - {name: c1, value_cents: 100}\n", "needs a budget"),
    ("- a list\n", "mapping"),
    ("users: [\n", "not valid YAML"),
])
def test_a_bad_scenario_is_refused_in_words(tmp_path, text, needle):
    """A bad scenario file is refused with a message that names what is wrong."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=None) as caught:
        load(str(path))
    assert needle in str(caught.value)


def test_an_unknown_preset_or_missing_file_is_refused():
    """A name that is neither a preset nor an existing file is refused."""
    with pytest.raises(ScenarioError, match="neither a preset"):
        load("no-such-thing")


def test_the_same_seed_gives_the_same_visits_and_another_seed_does_not():
    """The same seed gives the same visits and catalog, and another seed gives other visits."""
    sc = preset("double11").with_overrides(users=2_000)
    first = list(visits(sc, 7))
    assert first == list(visits(sc, 7))
    assert first != list(visits(sc, 8))
    assert catalog(sc, 7) == catalog(sc, 7)


def test_the_visits_do_not_depend_on_how_the_columns_are_chunked(monkeypatch):
    """The generator reads its random columns a chunk at a time; chunks of 7 (so that
    sharers, open teams and order lines carry across hundreds of boundaries) give the
    same visits as one chunk for the whole day."""
    from saleday.simulator import generator

    sc = preset("double11").with_overrides(users=3_000)
    monkeypatch.setattr(generator, "_CHUNK", 10**9)
    whole = list(visits(sc, 7))
    monkeypatch.setattr(generator, "_CHUNK", 7)
    assert list(visits(sc, 7)) == whole
    assert any(v.inviter for v in whole) and any(v.team_join for v in whole)
    assert sum(v.order is not None for v in whole) > 100


def test_visits_follow_the_curve_and_the_funnel():
    """Generated visits crowd the first minutes, convert at the funnel's rates, reach every user,
    name an inviter on shared links, and favour the hottest SKU."""
    sc = preset("double11").with_overrides(users=40_000)
    vs = list(visits(sc, 3))
    assert len(vs) == sc.visits
    times = [v.t_s for v in vs]
    assert times == sorted(times) and -sc.traffic.lead_s <= times[0]
    assert times[-1] <= sc.traffic.window_s
    # the first ten minutes carry well over their share of the two hours
    early = sum(1 for t in times if t < 600) / len(times)
    assert early > 1.5 * (600 / sc.traffic.window_s)
    views = sum(v.views for v in vs)
    carts = sum(v.carts for v in vs)
    assert abs(carts / views - sc.funnel.view_to_cart) < 0.005
    # every user visits at least once when there are more visits than users
    assert len({v.user for v in vs}) == sc.users
    # arrivals through a shared link name an inviter who is never the visitor
    invited = [v for v in vs if v.inviter]
    assert invited and all(v.inviter != v.user and v.utm_source == "share" for v in invited)
    # SKU popularity is Zipf-like: the hottest SKU is ordered far more than the median one
    lines = [sku for v in vs if v.order for sku, _ in v.order.lines]
    hottest = lines.count("P00000")
    median = lines.count(f"P{sc.skus.count // 2:05d}")
    assert hottest > 20 * max(median, 1)


def test_arrival_times_match_the_rate_curve():
    """Arrival times are distributed over the window as the scenario's rate curve says."""
    sc = preset("double11")
    t = arrival_times(sc, 200_000, np.random.default_rng(1))
    # 300 s bins from the window's opening (five minutes before midnight): 0 is an edge
    hist, edges = np.histogram(t, bins=25, range=(sc.traffic.start_s, sc.traffic.window_s))
    rate = np.array([sc.traffic.rate((a + b) / 2) for a, b in itertools.pairwise(edges)])
    expected = rate / rate.sum() * len(t)
    assert np.all(np.abs(hist - expected) < 0.05 * expected + 50)
