"""RFM scores by the documented quintile rule, and the tier rule."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saleday.projections.rfm import DAY_MS, TierRule, TierRuleError, day_start_ms, rfm, scores


def test_scores_follow_one_plus_five_times_worse_over_n():
    """Score = 1 + floor(5 * W / N), W = users strictly worse; ties score alike."""
    values = {"a": 10, "b": 20, "c": 20, "d": 30, "e": 40, "f": 50, "g": 60, "h": 70, "i": 80,
              "j": 90}
    assert scores(values, higher_is_better=True) == {
        "a": 1, "b": 1, "c": 1, "d": 2, "e": 3, "f": 3, "g": 4, "h": 4, "i": 5, "j": 5}
    assert scores(values, higher_is_better=False) == {
        "a": 5, "b": 4, "c": 4, "d": 4, "e": 3, "f": 3, "g": 2, "h": 2, "i": 1, "j": 1}


@given(st.dictionaries(st.text(max_size=3), st.integers(0, 20), min_size=1, max_size=40),
       st.booleans())
def test_scores_are_one_to_five_ordered_and_equal_for_equal_values(values, higher):
    """A better value never scores lower, equal values score equal, all in 1..5."""
    got = scores(values, higher_is_better=higher)
    assert set(got.values()) <= {1, 2, 3, 4, 5}
    for a in values:
        for b in values:
            better = values[a] > values[b] if higher else values[a] < values[b]
            if values[a] == values[b]:
                assert got[a] == got[b]
            elif better:
                assert got[a] >= got[b]
    worst = min(values.values()) if higher else max(values.values())
    assert all(got[u] == 1 for u, v in values.items() if v == worst)


def test_rfm_rows_count_orders_up_to_the_end_of_the_as_of_day():
    """Recency is whole days to the as-of date; later orders are left out."""
    day = date(2025, 11, 11)
    t = day_start_ms(day)
    rows = rfm({"a": [(t - 3 * DAY_MS, 1_000), (t + DAY_MS - 1, 250)],
                "b": [(t - 10 * DAY_MS + 5, 99_999)],
                "c": [(t + DAY_MS, 5)]}, day)
    assert [r["user"] for r in rows] == ["a", "b"]
    a, b = rows
    assert (a["recency_days"], a["frequency"], a["monetary"]) == (0, 2, 12.5)
    assert (b["recency_days"], b["frequency"], b["monetary"]) == (10, 1, 999.99)
    assert set(a) == {"user", "recency_days", "frequency", "monetary", "r", "f", "m",
                      "segment", "tier"}
    assert (a["r"], a["f"], a["m"], a["segment"]) == (3, 3, 1, "331")


def test_the_tier_rule_reads_thresholds_and_refuses_nonsense():
    """Tiers by r+f+m thresholds; thresholds must fall from diamond to silver within 3..15."""
    rule = TierRule.parse("diamond=14, gold=9")
    assert (rule.diamond, rule.gold, rule.silver) == (14, 9, 7)
    assert [rule.tier(5, 5, 4), rule.tier(3, 3, 3), rule.tier(3, 2, 2), rule.tier(1, 1, 4)] == \
        ["diamond", "gold", "silver", "regular"]
    assert TierRule.parse(TierRule().text) == TierRule()
    for bad in ("platinum=3", "gold", "gold=x", "silver=12", "diamond=16"):
        with pytest.raises(TierRuleError):
            TierRule.parse(bad)
