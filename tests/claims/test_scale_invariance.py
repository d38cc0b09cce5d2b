"""scale_invariance, specified on measured errors: holds when the largest error is <= 1e-10 (float64).
`hand_made()` feeds the same measurements to re-certification."""

import pandas as pd

from bnexp.claims import by_id
from bnexp.method.contract import Context
from bnexp.method.stats import NOT_REPRODUCED, REPRODUCED

HOLDS = Context(measured={"output_abs_err": 4.4e-15, "grad_rel_err": 1.6e-15})
BREAKS = Context(measured={"output_abs_err": 4.4e-15, "grad_rel_err": 0.5})  # a gradient not scaled by 1/a


def hand_made() -> list:
    return [(pd.DataFrame(), HOLDS), (pd.DataFrame(), BREAKS)]


def test_v1_holds_within_its_tolerance_and_reports_the_worst_error():
    v = by_id()["scale_invariance"].versions[1]
    res = v.verdict(pd.DataFrame(), HOLDS)
    assert res.verdict == REPRODUCED and res.effect == 4.4e-15
    res = v.verdict(pd.DataFrame(), BREAKS)
    assert res.verdict == NOT_REPRODUCED and res.effect == 0.5 and "grad_rel_err = 5.00e-01" in res.detail[0]
