"""The registered sequential plans: boundaries against published tables, and the error rate of
the repeated confidence intervals the verdicts read."""

import numpy as np
import pytest

from bnexp.method import sequential
from bnexp.method.sequential import Plan

# Jennison & Turnbull (2000), Group Sequential Methods with Applications to Clinical Trials,
# Table 2.1 (Pocock's C_P) and Table 2.3 (O'Brien & Fleming's C_B): two-sided tests, alpha 0.05,
# K equally spaced looks, printed to 3 decimals.
POCOCK = {2: 2.178, 3: 2.289, 4: 2.361, 5: 2.413}
OBRIEN_FLEMING = {2: 1.977, 3: 2.004, 4: 2.024, 5: 2.040}


@pytest.mark.parametrize("k", sorted(POCOCK))
def test_the_recursion_reproduces_jennison_and_turnbulls_constants(k):
    assert round(sequential.constant_boundary(k, 0.05, "pocock"), 3) == POCOCK[k]
    assert round(sequential.constant_boundary(k, 0.05, "obf"), 3) == OBRIEN_FLEMING[k]


def test_spending_boundaries_spend_exactly_alpha_and_obf_spends_little_early():
    plan = Plan((3, 5, 8), 0.05, "obf")
    z = plan.z()
    fractions = tuple(n / 8 for n in plan.looks)
    assert sum(sequential.crossing(fractions, z)) == pytest.approx(0.05, abs=1e-7)
    assert z[0] > z[1] > z[2] > 1.96  # the last look pays a little for the early ones
    assert z[0] == pytest.approx(3.2006, abs=1e-4)  # the first look spends 2 - 2 Phi(1.96 / sqrt(3/8)) = 0.00137
    pocock = Plan((3, 5, 8), 0.05, "pocock").z()
    assert pocock[0] < z[0] and pocock[-1] > z[-1]


def test_one_look_is_the_fixed_n_interval():
    plan = Plan((5,), 0.05, "obf")
    assert plan.z()[0] == pytest.approx(1.959964, abs=1e-6)
    assert plan.multiplier(0, 5) == pytest.approx(2.776445, abs=1e-6)  # t_{4}, 0.975


def test_repeated_intervals_cover_the_true_mean_as_often_as_one_fixed_n_interval():
    """Normal per-seed effects with no effect: the chance that any look's interval excludes 0
    (a false decision at some look) is the plan's alpha, within Monte Carlo error."""
    plan = Plan((3, 5, 8), 0.05, "obf")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200_000, 8))
    wrong = np.zeros(len(x), dtype=bool)
    for k, n in enumerate(plan.looks):
        v = x[:, :n]
        half = plan.multiplier(k, n) * v.std(axis=1, ddof=1) / np.sqrt(n)
        wrong |= np.abs(v.mean(axis=1)) > half
    assert wrong.mean() == pytest.approx(0.05, abs=0.004)
    # ... whereas reading a plain 95% interval at every look would err far more often
    naive = np.zeros(len(x), dtype=bool)
    for n in plan.looks:
        v = x[:, :n]
        naive |= np.abs(v.mean(axis=1)) > Plan((n,)).multiplier(0, n) * v.std(axis=1, ddof=1) / np.sqrt(n)
    assert naive.mean() > 0.08


def test_an_unknown_spending_function_is_refused():
    with pytest.raises(ValueError, match="no function 'linear'"):
        Plan((3, 5), 0.05, "linear").z()
