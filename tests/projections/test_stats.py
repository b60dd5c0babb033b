"""The A/B statistics: tails match known quantiles; over many seeded experiments the 95 %
intervals cover a known effect about 95 % of the time, the test rejects a null effect
about 5 % of the time, and the SRM check flags a biased assignment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saleday.projections.stats import Z95, chi2_sf, normal_sf, srm, two_proportion

RUNS = 2000


@pytest.mark.parametrize(("x", "df", "p"), [(3.841458820694124, 1, 0.05), (6.634896601021214, 1, 0.01),
                                            (5.991464547107979, 2, 0.05), (11.070497693516351, 5, 0.05),
                                            (0.5, 3, 0.918891411), (40.0, 10, 1.6944e-05)])
def test_the_chi_square_tail_matches_known_quantiles(x, df, p):
    """chi2_sf gives the textbook tail probabilities (series and continued-fraction regions)."""
    assert chi2_sf(x, df) == pytest.approx(p, rel=1e-3)


def test_the_normal_tail_at_the_95_percent_point_is_2_5_percent():
    """normal_sf(1.96) is 0.025, so the intervals are two-sided 95 %."""
    assert normal_sf(Z95) == pytest.approx(0.025, rel=1e-9)


def simulate(pc: float, lift: float, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    xc = rng.binomial(n, pc, RUNS)
    xt = rng.binomial(n, pc * (1 + lift), RUNS)
    return [two_proportion(int(t), n, int(c), n) for t, c in zip(xt, xc)]


def test_intervals_cover_a_known_effect_about_95_percent_of_the_time():
    """With a true relative lift of 17.3 % on a 5 % rate, the absolute and relative 95 %
    intervals each hold the truth in 93-97 % of 2,000 seeded experiments."""
    pc, lift = 0.05, 0.173
    results = simulate(pc, lift, 20_000, seed=1)
    abs_cover = np.mean([r["abs_ci"][0] <= pc * lift <= r["abs_ci"][1] for r in results])
    rel_cover = np.mean([r["rel_ci"][0] <= lift <= r["rel_ci"][1] for r in results])
    assert 0.93 <= abs_cover <= 0.97
    assert 0.93 <= rel_cover <= 0.97
    power = np.mean([r["p_value"] < 0.05 for r in results])
    assert power > 0.8  # 20,000 a side is enough to detect it


def test_with_no_true_effect_the_test_rejects_about_5_percent_of_the_time():
    """Under the null, p < 0.05 in 3.5-6.5 % of 2,000 seeded experiments."""
    rejected = np.mean([r["p_value"] < 0.05 for r in simulate(0.05, 0.0, 10_000, seed=2)])
    assert 0.035 <= rejected <= 0.065


def test_a_biased_assignment_is_flagged_and_a_fair_one_is_not():
    """A 50/50 split that is really 52/48 is flagged by the SRM check; fair splits
    are flagged about 0.1 % of the time (at most 1 % of 2,000)."""
    rng = np.random.default_rng(3)
    assert srm([10_300, 9_700], [1, 1])["mismatch"]
    biased = rng.binomial(20_000, 0.52, 200)
    assert np.mean([srm([int(a), 20_000 - int(a)], [1, 1])["mismatch"] for a in biased]) > 0.95
    fair = rng.multinomial(30_000, [0.2, 0.3, 0.5], RUNS)
    assert np.mean([srm(list(map(int, f)), [2, 3, 5])["mismatch"] for f in fair]) <= 0.01


def test_empty_or_degenerate_arms_give_no_numbers_rather_than_wrong_ones():
    """An empty arm, a zero control rate or no conversions at all give None, not a crash."""
    assert two_proportion(0, 0, 5, 100)["p_value"] is None
    zero = two_proportion(3, 100, 0, 100)
    assert zero["rel_lift"] is None and zero["p_value"] is not None
    none = two_proportion(0, 100, 0, 100)
    assert none["p_value"] is None and none["abs_lift"] == 0
    assert math.isclose(two_proportion(60, 1000, 50, 1000)["abs_lift"], 0.01)


def test_peeking_at_every_tenth_of_an_a_a_test_rejects_far_more_than_5_percent():
    """Checking an A/A experiment at ten interim looks and stopping at the first p < 0.05
    rejects in well over 5 % of runs (why the view gives no verdict before the end)."""
    rng = np.random.default_rng(4)
    looks, n_per_look, runs = 10, 1_000, 1_000
    a = rng.binomial(n_per_look, 0.1, (runs, looks)).cumsum(axis=1)
    b = rng.binomial(n_per_look, 0.1, (runs, looks)).cumsum(axis=1)
    n = n_per_look * np.arange(1, looks + 1)
    peeked = np.mean([any(two_proportion(int(a[r, k]), int(n[k]), int(b[r, k]), int(n[k]))["p_value"] < 0.05
                          for k in range(looks)) for r in range(runs)])
    at_end = np.mean([two_proportion(int(a[r, -1]), int(n[-1]), int(b[r, -1]), int(n[-1]))["p_value"] < 0.05
                      for r in range(runs)])
    assert peeked > 0.12 and at_end < 0.075
