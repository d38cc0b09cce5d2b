"""bias_redundancy: a conv bias before BN is cancelled."""

from __future__ import annotations

from bnexp import exact
from bnexp.claims.common import Version, exact_result

STATEMENT = "A conv bias before BN is cancelled."
SOURCE = "the BN notes"
PUBLISHED = "The mean subtraction removes any per-channel constant."
UNIT = "max error"
ORDER = 130

TOLERANCE_V1 = 1e-10


def verdict_v1(t, measured: dict[str, float]):
    return exact_result(measured, TOLERANCE_V1)


VERSIONS = {1: Version(f"output unchanged, bias gradient 0 (to {TOLERANCE_V1:g})", "exact check (float64)", None,
                       verdict_v1, measure=exact.bias_redundancy)}
