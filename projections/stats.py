"""The statistics of an A/B test on conversion rates: intervals, the two-proportion test and
the sample-ratio-mismatch check (docs/EXPERIMENTS.md says what each means and when to read it).

For a variant with `x` conversions of `n` exposed users against the control's `xc` of `nc`:

- absolute lift `p - pc`, with a 95 % Wald interval `d +- 1.96 * sqrt(p(1-p)/n + pc(1-pc)/nc)`;
- relative lift `p / pc - 1`, with a 95 % interval from the delta method on the log of the
  ratio: `exp(log(p/pc) +- 1.96 * sqrt((1-p)/x + (1-pc)/xc)) - 1` (none while x or xc is 0);
- the two-sided two-proportion z-test with the pooled rate: its p-value;
- sample-ratio mismatch: Pearson's chi-square of the exposures against the weights, with
  k - 1 degrees of freedom; p < `SRM_ALPHA` flags a broken assignment.

Plain `math`, no scipy: the normal tail is `erfc`, the chi-square tail the regularized
upper incomplete gamma function (series and continued fraction, as in Numerical Recipes).
Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054
"""The standard normal's 97.5th percentile: two-sided 95 %."""
ALPHA = 0.05
SRM_ALPHA = 0.001
"""The SRM check's threshold: strict, since it guards the whole experiment."""


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def two_proportion(x: int, n: int, xc: int, nc: int) -> dict[str, float | None]:
    """Absolute and relative lift of x/n over xc/nc, their 95 % intervals, z and p-value
    (None where undefined: an empty arm, a zero control rate, no variance)."""
    if n <= 0 or nc <= 0:
        return {"abs_lift": None, "abs_ci": None, "rel_lift": None, "rel_ci": None,
                "z": None, "p_value": None}
    p, pc = x / n, xc / nc
    d = p - pc
    se = math.sqrt(p * (1 - p) / n + pc * (1 - pc) / nc)
    abs_ci = [d - Z95 * se, d + Z95 * se]
    rel = rel_ci = None
    if pc > 0:
        rel = p / pc - 1
        if x > 0:
            se_log = math.sqrt((1 - p) / x + (1 - pc) / xc)
            log_ratio = math.log(p / pc)
            rel_ci = [math.exp(log_ratio - Z95 * se_log) - 1, math.exp(log_ratio + Z95 * se_log) - 1]
    pooled = (x + xc) / (n + nc)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / nc))
    z = d / se0 if se0 > 0 else None
    p_value = 2 * normal_sf(abs(z)) if z is not None else None
    return {"abs_lift": d, "abs_ci": abs_ci, "rel_lift": rel, "rel_ci": rel_ci, "z": z,
            "p_value": p_value}


def srm(observed: Sequence[int], weights: Sequence[int]) -> dict[str, float | bool | None]:
    """Pearson's chi-square of `observed` counts against shares `weights`: the statistic,
    its p-value (k - 1 degrees of freedom) and whether it flags a mismatch."""
    total, wsum = sum(observed), sum(weights)
    if total == 0 or len(observed) < 2:
        return {"chi2": None, "p_value": None, "mismatch": False}
    chi2 = sum((o - total * w / wsum) ** 2 / (total * w / wsum) for o, w in zip(observed, weights))
    p = chi2_sf(chi2, len(observed) - 1)
    return {"chi2": chi2, "p_value": p, "mismatch": p < SRM_ALPHA}


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X chi-square with `df` degrees of freedom."""
    if x <= 0:
        return 1.0
    return gamma_q(df / 2.0, x / 2.0)


def gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x)."""
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - math.lgamma(a)))
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h
