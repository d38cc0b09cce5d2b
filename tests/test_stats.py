"""The statistics behind the verdicts: intervals, pairing by seed, and the decision rule."""

import math

import pandas as pd
import pytest

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
