"""The statistics behind the verdicts: intervals, pairing by seed, and the decision rule."""

import math

import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bnexp.method import stats
from bnexp.method.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, decide


def test_identical_discrete_values_give_a_zero_width_interval_that_decides_nothing():
    # Three seeds whose grid ratio is 10 each time: a t-interval of zero width at 10, far past
    # a threshold of 4, which must not be called decisive.
    est = stats.t_interval([10.0, 10.0, 10.0], log=True)
    assert est.low == est.high == pytest.approx(10.0)
    assert est.degenerate
    assert decide(est, 4.0, at_least=True) == INCONCLUSIVE


def test_decide_needs_the_whole_interval_past_the_threshold():
    assert decide(stats.Estimate(5.0, 4.5, 6.0, 5), 4.0, at_least=True) == REPRODUCED
    assert decide(stats.Estimate(3.0, 2.0, 3.9, 5), 4.0, at_least=True) == NOT_REPRODUCED
    assert decide(stats.Estimate(4.2, 3.0, 6.0, 5), 4.0, at_least=True) == INCONCLUSIVE
    assert decide(stats.Estimate(0.3, 0.2, 0.45, 5), 0.5, at_least=False) == REPRODUCED
    assert decide(stats.Estimate(5.0, 4.5, 6.0, 1), 4.0, at_least=True) == INCONCLUSIVE  # one seed


def test_t_interval_matches_the_textbook_formula():
    est = stats.t_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t(0.975, 3) * s / sqrt(n)
    assert est.mean == 2.5 and est.low == pytest.approx(2.5 - half) and est.high == pytest.approx(2.5 + half)


def test_arms_are_paired_on_the_seed_not_on_position():
    bn = pd.Series({2: 30.0, 0: 10.0, 1: 20.0})  # seeds out of order
    plain = pd.Series({0: 1.0, 1: 2.0, 3: 4.0})  # seed 2 missing, seed 3 extra
    assert stats.paired(bn, plain, lambda a, b: a / b) == [10.0, 10.0]
    rows = pd.DataFrame({"seed": [0, 0], "x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="share a seed"):
        stats.per_seed(rows, "x")


def test_brackets_keep_the_grid_coarseness_in_both_ends():
    # Each seed's boundary lies between two grid points 3x apart.
    lows, highs = [1.0, 1.0, 1.0, 3.0], [3.0, 3.0, 3.0, 9.0]
    est = stats.bracket_interval(lows, highs, log=True)
    assert est.low <= stats.t_interval(lows, log=True).low and est.high >= stats.t_interval(highs, log=True).high
    assert est.low < est.mean < est.high


def test_criteria_combine_as_every_one_must_hold():
    from bnexp.method.stats import UNTESTABLE, combine

    assert combine(REPRODUCED, REPRODUCED) == REPRODUCED
    assert combine(REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE) == NOT_REPRODUCED  # a clear failure decides
    assert combine(REPRODUCED, INCONCLUSIVE, UNTESTABLE) == INCONCLUSIVE  # still open: more seeds may decide
    assert combine(REPRODUCED, UNTESTABLE) == UNTESTABLE


def test_seeds_to_decide_is_the_fixed_n_interval_that_clears_the_threshold_at_the_spread_measured():
    # 20 seeds of a spread-1 effect 0.5 from its threshold: sd recovered from the half-width,
    # then the smallest n whose t-interval half-width is below the distance (t(0.975, 17) 2.11).
    values = [0.5 + (1 if i % 2 else -1) * math.sqrt(19 / 20) for i in range(20)]  # sd 1 exactly
    est = stats.t_interval(values, multiplier=2.0)
    need = stats.seeds_to_decide(est, 0.0, log=False, multiplier=2.0)
    assert need == 18
    t = scipy_stats.t.ppf
    assert t(0.975, need - 1) / math.sqrt(need) <= 0.5 < t(0.975, need - 2) / math.sqrt(need - 1)
    # a ratio works on logs: 0.446 [0.363, 0.548] on 40 seeds at +-2.43 standard errors, bar 0.5
    assert stats.seeds_to_decide(stats.Estimate(0.446, 0.363, 0.548, 40), 0.5, log=True, multiplier=2.43) == 87
    # nothing to say: a mean on the threshold, a zero-width interval, one seed
    assert stats.seeds_to_decide(stats.Estimate(0.5, 0.4, 0.6, 10), 0.5, log=False, multiplier=2.0) is None
    assert stats.seeds_to_decide(stats.Estimate(0.5, 0.5, 0.5, 10), 0.4, log=False, multiplier=2.0) is None
    assert stats.seeds_to_decide(stats.Estimate(0.5, -math.inf, math.inf, 1), 0.4, log=False, multiplier=2.0) is None


def test_ratio_pseudo_values_give_the_ratio_of_means_and_its_delta_method_interval():
    """Their mean is mean(num) / mean(den); their t-interval's half-width is t sd(num - R den) /
    (sqrt(n) mean(den)), the delta method; a denominator that never varies gives the plain shares'
    interval, and a noisy one a wider interval than dividing by its mean as if it were known."""
    num = [0.22, 0.25, 0.19, 0.24, 0.21, 0.23]
    den = [0.26, 0.22, 0.27, 0.25, 0.20, 0.24]
    n, ratio = len(num), sum(num) / sum(den)
    est = stats.t_interval(stats.ratio_pseudo_values(num, den))
    assert est.mean == pytest.approx(ratio)
    resid = pd.Series([a - ratio * b for a, b in zip(num, den, strict=True)])
    half = scipy_stats.t.ppf(0.975, n - 1) * resid.std() / math.sqrt(n) / (sum(den) / n)
    assert (est.low, est.high) == (pytest.approx(ratio - half), pytest.approx(ratio + half))
    known = stats.t_interval([a / (sum(den) / n) for a in num])
    assert known.mean == pytest.approx(est.mean) and est.high - est.low > known.high - known.low
    fixed = stats.t_interval(stats.ratio_pseudo_values(num, [0.24] * n))
    plain = stats.t_interval([a / 0.24 for a in num])
    assert (fixed.low, fixed.high) == (pytest.approx(plain.low), pytest.approx(plain.high))
    assert stats.ratio_pseudo_values([0.1, math.nan], [0.2, 0.3]) == [pytest.approx(0.5)]
    assert stats.ratio_pseudo_values([], []) == []
    with pytest.raises(ValueError, match="2 numerators against 3 denominators"):
        stats.ratio_pseudo_values([0.1, 0.2], [0.1, 0.2, 0.3])
