"""bn_gradient_explosion, specified on hand-made tables: v1 (in the deepest net, BN's per-layer
gradient growth toward the input >= 1.05x plain's per layer, and BN's spread over the conv layers
>= 10). `hand_made()` feeds the same tables to re-certification."""

import numpy as np
import pandas as pd
import pytest

from bnexp.claims import bn_gradient_explosion as be
from bnexp.claims import by_id
from bnexp.method.contract import Context
from bnexp.method.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

TWELVE = range(31, 43)


def nets(seeds, rate: float = 1.15, depths=(15, 30, 60)) -> pd.DataFrame:
    """Per seed and depth: plain's growth 0.98 (its widths shrink the norms toward the input),
    BN's `rate` x that, 1% wider per seed mod 3; BN's spread rate^depth, plain's 5."""
    rows = []
    for seed in seeds:
        w = 1 + 0.01 * (seed % 3)
        for d in depths:
            rows += [{"seed": seed, "choice_model": "plain", "depth": d, "growth_init": 0.98,
                      "spread_conv_init": 5.0},
                     {"seed": seed, "choice_model": "bn", "depth": d, "growth_init": 0.98 * rate * w,
                      "spread_conv_init": (rate * w) ** d}]
    return pd.DataFrame(rows).assign(final_acc=0.1)


def verdict(t: pd.DataFrame):
    return by_id()["bn_gradient_explosion"].versions[1].verdict(t, Context())


def hand_made() -> list[pd.DataFrame]:
    return [nets(TWELVE), nets(TWELVE, rate=1.0), nets(TWELVE, rate=1.04)]


def test_growth_is_the_least_squares_rate_toward_the_input():
    norms = 2.0 * 1.2 ** -np.arange(10.0)  # each layer 1.2x the next one's: growth 1.2 toward the input
    assert be.growth(norms) == pytest.approx(1.2)
    assert np.isnan(be.growth(np.array([1.0, 0.0, 2.0])))  # a zero norm has no log: no rate


def test_explosion_at_the_deepest_net_is_reproduced_at_the_first_look():
    res = verdict(nets(TWELVE))
    assert res.verdict == REPRODUCED, res.detail
    assert res.derived["seeds"] == [31, 32, 33, 34, 35]
    seeds = res.derived["seeds"]  # the deciding part: the smaller margin, growth 1.15 against 1.05
    assert res.effect == pytest.approx(float(np.exp(np.mean(np.log([1.15 * (1 + 0.01 * (s % 3)) for s in seeds])))))
    assert sum(line.startswith("depth ") for line in res.detail) == 3  # the rate at every depth


def test_no_explosion_is_not_reproduced():
    """BN's rate equal to plain's, its spread 1: both parts clear on the wrong side."""
    t = nets(TWELVE, rate=1.0)
    t.loc[t["choice_model"] == "bn", "spread_conv_init"] = 1.0
    assert verdict(t).verdict == NOT_REPRODUCED


def test_a_rate_at_the_threshold_is_inconclusive():
    """Growth 1.04-1.06 per layer across seeds: the interval straddles 1.05 at every look."""
    t = nets(TWELVE, rate=1.04)
    assert verdict(t).verdict == INCONCLUSIVE
