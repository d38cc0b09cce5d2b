"""bias_redundancy: a conv bias before BN is cancelled."""

from __future__ import annotations

import pandas as pd

from bnexp import exact
from bnexp.method.contract import Claim, Context, Version, exact_result

TOLERANCE_V1 = 1e-10


def verdict_v1(t: pd.DataFrame, ctx: Context):
    return exact_result(ctx.measured, TOLERANCE_V1)


VERSIONS = {1: Version(f"output unchanged, bias gradient 0 (to {TOLERANCE_V1:g})", "exact check (float64)", None,
                       verdict_v1, measure=exact.bias_redundancy)}


CLAIM = Claim(
    "bias_redundancy",
    statement="A conv bias before BN is cancelled.",
    source="the BN notes",
    published="The mean subtraction removes any per-channel constant.",
    unit="max error",
    order=130,
    versions=VERSIONS,
)
