"""The presale demand forecast: the pickup model, the naive ones, accuracy and stock."""

from __future__ import annotations

import pytest

from saleday.projections.forecast import (
    Finished,
    History,
    accuracy,
    naive_linear,
    naive_to_date,
    pickup,
    recommend,
)


def test_history_learns_the_share_curve_and_the_conversion():
    """Finished presales give the mean share reached over the window and paid/deposited."""
    history = History.of([Finished((10, 0, 0, 10), 18), Finished((30, 10, 0, 40), 40)])
    assert history is not None and history.presales == 2
    assert history.conversion == pytest.approx(58 / 100)
    assert history.share_at(0.5) == pytest.approx((0.5 + 0.5) / 2)
    assert history.share_at(1.0) == pytest.approx(1.0)
    assert History.of([]) is None and History.of([Finished((0, 0), 0)]) is None


def test_pickup_scales_what_is_seen_by_the_share_history_says_is_reached():
    """Half the window showing half the usual share forecasts twice the deposits x conversion."""
    history = History.of([Finished((5, 5, 5, 5), 16)])      # linear curve, 80 % paid
    assert pickup((7, 5), 4, history) == pytest.approx(12 / 0.5 * 0.8)


def test_without_history_pickup_extrapolates_the_recent_rate():
    """No history: units so far + the last three days' mean rate for the days left, x 0.9."""
    assert pickup((1, 2, 3, 4), 10, None) == pytest.approx((10 + 3 * 6) * 0.9)


def test_the_naive_models_and_the_seed_accuracy():
    """Naive: what was seen, or it scaled to the window; accuracy 1 - |f - a| / a >= 0."""
    assert naive_to_date((3, 4), 10) == 7 and naive_linear((3, 4), 10) == 35
    assert accuracy(92, 100) == pytest.approx(0.92) and accuracy(108, 100) == pytest.approx(0.92)
    assert accuracy(500, 100) == 0.0 and accuracy(0, 0) == 1.0
    assert recommend(100) == 105 and recommend(99.2, margin=0) == 100
