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


def v4_cells(seeds, plain_gain: float, bn_gain: float, train_acc: float = 1.0) -> pd.DataFrame:
    """`cells`, named as v4's arms (v4_<model>_p0 / v4_<model>_pbest), p after every hidden unit."""
    t = cells(seeds, plain_gain, bn_gain, train_acc)
    return t.assign(arm="v4_" + t["arm"])


FIVE = range(21, 26)


def draft(n: int):
    claim = by_id()["dropout_redundancy"]
    return claim.versions.get(n) or claim.drafts[n]


def test_v4_decides_at_its_first_look_where_plain_overfits_and_dropout_clearly_helps_it():
    res = draft(4).verdict(v4_cells(FIVE, 0.04, 0.0), Context())
    assert res.verdict == REPRODUCED and res.n_seeds == 5, res.detail
    assert draft(4).verdict(v4_cells(FIVE, 0.01, 0.03), Context()).verdict == NOT_REPRODUCED


def test_v4_guards_read_intervals_not_means():
    """Plain's gain from dropout averaging +0.01 but -0.006..+0.026 by seed: the mean would pass v3's
    guard, the interval's lower end (below 0) fails v4's; a 2-point train-test gap fails the overfitting one."""
    wobbly = v4_cells(FIVE, 0.01, 0.0)
    wobbly.loc[wobbly["arm"] == "v4_plain_pbest", "final_acc"] += [0.016, -0.016, 0.012, -0.012, 0.0]
    res = draft(4).verdict(wobbly, Context())
    assert res.verdict == UNTESTABLE and any("does not clearly help plain" in line for line in res.detail), res.detail
    res = draft(4).verdict(v4_cells(FIVE, 0.04, 0.0, train_acc=0.40), Context())
    assert res.verdict == UNTESTABLE and any("does not overfit" in line for line in res.detail)


def test_v4_pilot_reads_the_lr_sweep_without_dropout_and_the_rate_sweep_at_the_tuned_lr():
    from bnexp.method import pilot

    runs = []
    for k, seed in enumerate((9000, 9001)):
        for norm, train, p0, pbest in (("none", 0.95, 0.30, 0.34 + 0.01 * k), ("batch", 0.99, 0.40, 0.40)):
            runs += [{"experiment": "dropout_redundancy/tune_v4", "norm": norm, "lr": lr, "dropout": 0.0,
                      "seed": seed, "val_acc": p0 - (lr != 0.1) * 0.05, "train_acc": train} for lr in (0.03, 0.1)]
            runs += [{"experiment": "dropout_redundancy/tune_p_v4", "norm": norm, "lr": 0.1, "dropout": p,
                      "seed": seed, "val_acc": pbest - (p != 0.2) * 0.05, "train_acc": train} for p in (0.1, 0.2)]
    tuned = {"dropout_redundancy/lr_v4": {"values": {"none": 0.1, "batch": 0.1}},
             "dropout_redundancy/p_v4": {"values": {"none": 0.2, "batch": 0.2}}}
    overfits, helps = pilot.run(draft(4), pd.DataFrame(runs), tuned)
    assert overfits.value == pytest.approx(0.65) and overfits.holds  # train 0.95 - validation 0.30
    assert helps.value == pytest.approx(0.045) and helps.holds  # 0.34 / 0.35 with dropout - 0.30 without


def test_v5_a_dropout_guard_still_open_keeps_the_plan_going():
    """Plain's gain from dropout +0.02 on average but 0..+0.04 by seed (BN's -0.005): v4 stops untestable at its
    first look; v5 (open guards) reads the look undecided and asks for 8 seeds, and decides once the
    guard's interval has closed above 0. A gain clearly below 0 is untestable at once under v5 too."""
    def spread(seeds, wobble):
        t = v4_cells(seeds, 0.02, -0.005)
        t.loc[t["arm"] == "v4_plain_pbest", "final_acc"] += wobble
        return t

    five = spread(FIVE, [0.02, -0.02, 0.016, -0.016, 0.0])
    assert verdict(4, five).verdict == UNTESTABLE
    res = verdict(5, five)
    assert res.verdict == INCONCLUSIVE and res.derived["next_seeds"] == 8, res.detail
    res = verdict(5, spread(range(21, 29), [0.02, -0.02, 0.016, -0.016, 0.0, 0.002, -0.002, 0.0]))
    assert res.verdict == REPRODUCED and res.n_seeds == 8, res.detail
    assert verdict(5, v4_cells(FIVE, -0.02, 0.0)).verdict == UNTESTABLE
