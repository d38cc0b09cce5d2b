"""bias_redundancy, specified on measured errors: a conv bias before BN changes the output by, and
receives a gradient of, at most 1e-10. `hand_made()` feeds the same measurements to re-certification."""

import pandas as pd

from bnexp.claims import by_id
from bnexp.method.contract import Context
from bnexp.method.stats import NOT_REPRODUCED, REPRODUCED

HOLDS = Context(measured={"output_err": 1.7e-14, "bias_grad": 1.7e-13})
BREAKS = Context(measured={"output_err": 1.7e-14, "bias_grad": 1e-3})  # the bias learns: not cancelled


def hand_made() -> list:
    return [(pd.DataFrame(), HOLDS), (pd.DataFrame(), BREAKS)]


def test_v1_holds_only_when_the_bias_gets_no_gradient():
    v = by_id()["bias_redundancy"].versions[1]
    assert v.verdict(pd.DataFrame(), HOLDS).verdict == REPRODUCED
    assert v.verdict(pd.DataFrame(), BREAKS).verdict == NOT_REPRODUCED
