"""scale_invariance: BN's output is invariant to the weight scale; the gradient scales by 1/a."""

from __future__ import annotations

import pandas as pd

from bnexp import exact
from bnexp.method.contract import Claim, Context, Version, exact_result

TOLERANCE_V1 = 1e-10


def verdict_v1(t: pd.DataFrame, ctx: Context):
    return exact_result(ctx.measured, TOLERANCE_V1)


VERSIONS = {1: Version(f"holds to {TOLERANCE_V1:g} in float64", "exact check (float64)", None, verdict_v1,
                       measure=exact.scale_invariance)}


CLAIM = Claim(
    "scale_invariance",
    statement="BN's output is invariant to the weight scale; the gradient scales by 1/a.",
    source="Ioffe & Szegedy 2015, Sec. 3.3",
    published="BN(aWu) = BN(Wu); dBN(aWu)/d(aW) = (1/a) dBN(Wu)/dW.",
    unit="max error",
    order=110,
    versions=VERSIONS,
)
