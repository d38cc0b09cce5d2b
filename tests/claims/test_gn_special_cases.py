"""gn_special_cases, specified on measured errors and the G sweep's rows: GN with G=1 and G=C match
torch's LayerNorm and InstanceNorm to 1e-6; the control (G=3, which is neither) is reported, not
decided; the G sweep is reported. `hand_made()` feeds the same inputs to re-certification."""

import pandas as pd

from bnexp.claims import by_id
from bnexp.method.contract import Context
from bnexp.method.stats import NOT_REPRODUCED, REPRODUCED

HOLDS = Context(measured={"layer_norm_err": 4.8e-7, "instance_norm_err": 2.4e-7, "group_norm_g3_is_neither": 4.97})
BREAKS = Context(measured={"layer_norm_err": 0.3, "instance_norm_err": 2.4e-7, "group_norm_g3_is_neither": 4.97})


def sweep() -> pd.DataFrame:
    return pd.DataFrame([{"seed": s, "groups": g, "final_acc": 0.3 + 0.01 * g + 0.002 * s}
                         for s in (0, 1) for g in (1, 2, 4)])


def hand_made() -> list:
    return [(sweep(), HOLDS), (sweep(), BREAKS)]


def test_v1_leaves_the_control_out_of_the_decision_and_reports_the_sweep():
    v = by_id()["gn_special_cases"].versions[1]
    res = v.verdict(sweep(), HOLDS)
    assert res.verdict == REPRODUCED and res.effect == 4.8e-7  # the control's 4.97 is not an error
    assert "control: GN with 3 groups differs from both by 4.97" in res.detail
    assert res.detail[-1].endswith("G=1: 0.311, G=2: 0.321, G=4: 0.341")
    assert v.verdict(sweep(), BREAKS).verdict == NOT_REPRODUCED
