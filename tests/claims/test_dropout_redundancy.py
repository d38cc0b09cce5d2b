"""dropout_redundancy, specified on hand-made tables: dropout's test-accuracy gain with BN at most
half of its gain for plain. v1 (each net's best p on a grid), v2 (cells at the tuned p) and v3 (v2's
statistic on a sequential plan, guarded by plain overfitting and dropout helping plain).
`hand_made()` feeds the same tables to re-certification."""

import pandas as pd
import pytest

from bnexp.claims import by_id
from bnexp.claims import dropout_redundancy as dr
from bnexp.method.contract import Context
from bnexp.method.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, UNTESTABLE


def cells(seeds, plain_gain: float, bn_gain: float, train_acc: float = 1.0) -> pd.DataFrame:
    """Per seed: plain and BN without dropout (0.38, 0.39) and at p = 0.2, where each gains its
    `gain` (plain's +-0.004 by seed, BN's the other way). Train accuracy `train_acc` for every cell."""
    rows = []
    for seed in seeds:
        wobble = 0.004 * (seed % 3 - 1)
        for cell, model, p, acc in (("plain_p0", "plain", 0.0, 0.38),
                                    ("plain_pbest", "plain", 0.2, 0.38 + plain_gain + wobble),
                                    ("bn_p0", "bn", 0.0, 0.39), ("bn_pbest", "bn", 0.2, 0.39 + bn_gain - wobble)):
            rows.append({"seed": seed, "arm": cell, "choice_model": model, "dropout": p, "final_acc": acc,
                         "train_acc": train_acc})
    return pd.DataFrame(rows)


THREE, EIGHT = (3, 4, 5), range(11, 19)


def verdict(n: int, t: pd.DataFrame):
    return by_id()["dropout_redundancy"].versions[n].verdict(t, Context())


def hand_made() -> list[pd.DataFrame]:
    return [cells(THREE, 0.04, 0.0), cells(THREE, 0.014, 0.026), cells(THREE, 0.0, 0.0), cells(EIGHT, 0.04, 0.0),
            cells(EIGHT, 0.01, 0.03), cells(EIGHT, 0.04, 0.0, train_acc=0.40), cells(EIGHT, 0.0, 0.0)]


def test_v1_reads_each_nets_best_p_and_pairs_the_gains_by_seed():
    res = verdict(1, cells(THREE, 0.04, 0.0))
    assert res.verdict == REPRODUCED, res.detail
    assert res.effect == pytest.approx(0.0 - 0.04 / dr.SHARE_DIVISOR_V1)


def test_v2_is_undecided_unless_dropout_helps_the_plain_net():
    assert verdict(2, cells(THREE, 0.04, 0.0)).verdict == REPRODUCED
    assert verdict(2, cells(THREE, 0.014, 0.026)).verdict == NOT_REPRODUCED
    res = verdict(2, cells(THREE, 0.0, 0.0))
    assert res.verdict == INCONCLUSIVE and "did not clearly help" in res.detail[-1]


def test_v3_bn_gaining_nothing_where_plain_gains_four_points_is_reproduced():
    res = verdict(3, cells(EIGHT, 0.04, 0.0))
    assert res.verdict == REPRODUCED and res.ci_high <= 0, res.detail


def test_v3_bn_gaining_more_than_plain_is_not_reproduced():
    assert verdict(3, cells(EIGHT, 0.01, 0.03)).verdict == NOT_REPRODUCED


def test_v3_is_untestable_where_the_plain_net_does_not_overfit():
    """Train accuracy 0.40 against test 0.38: a 2-point gap, under the 5-point guard."""
    res = verdict(3, cells(EIGHT, 0.04, 0.0, train_acc=0.40))
    assert res.verdict == UNTESTABLE and any("does not overfit" in line for line in res.detail)
    res = verdict(3, cells(EIGHT, 0.0, 0.0))
    assert res.verdict == UNTESTABLE and any("dropout does not help plain" in line for line in res.detail)
