"""eval_semantics, specified on measured errors and small_batch rows: the errors <= 1e-5 decide; the
accuracy with batch statistics minus running statistics is reported from the BN arms.
`hand_made()` feeds the same inputs to re-certification."""

import pandas as pd

from bnexp.claims import by_id
from bnexp.method.contract import Context
from bnexp.method.stats import NOT_REPRODUCED, REPRODUCED

ERRORS = {"train_output_err": 1.8e-15, "running_mean_err": 1.2e-16, "running_var_err": 8.9e-16,
          "eval_output_err": 2.2e-16, "fold_err_float32": 7.2e-7, "fold_err_float32_with_bias": 9.5e-7}
HOLDS, BIASED = Context(measured=ERRORS), Context(measured=ERRORS | {"running_var_err": 0.02})  # biased variance


def rows() -> pd.DataFrame:
    """small_batch's BN arm at 2 and 128 images per statistic, evaluated both ways."""
    return pd.DataFrame([{"seed": s, "arm": "bn", "per_stat": b, "final_acc": acc, "test_batchstats_acc": acc + gap}
                         for s in (0, 1) for b, acc, gap in ((2, 0.30, 0.05), (128, 0.40, -0.01))])


def hand_made() -> list:
    return [(rows(), HOLDS), (rows(), BIASED), (pd.DataFrame(), HOLDS)]


def test_v1_decides_on_the_errors_and_reports_the_batch_statistics_gap():
    v = by_id()["eval_semantics"].versions[1]
    res = v.verdict(rows(), HOLDS)
    assert res.verdict == REPRODUCED and res.effect == 9.5e-7
    assert res.detail[-1] == ("eval with batch statistics minus running statistics (accuracy): bn 2: +0.050, "
                              "bn 128: -0.010")
    assert v.verdict(rows(), BIASED).verdict == NOT_REPRODUCED
    assert len(v.verdict(pd.DataFrame(), HOLDS).detail) == 1  # no runs: the errors alone
