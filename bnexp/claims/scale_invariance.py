"""scale_invariance: BN's output is invariant to the weight scale; the gradient scales by 1/a."""

from __future__ import annotations

from bnexp import exact
from bnexp.claims.common import Version, exact_result

STATEMENT = "BN's output is invariant to the weight scale; the gradient scales by 1/a."
SOURCE = "Ioffe & Szegedy 2015, Sec. 3.3"
PUBLISHED = "BN(aWu) = BN(Wu); dBN(aWu)/d(aW) = (1/a) dBN(Wu)/dW."
UNIT = "max error"
ORDER = 110

TOLERANCE_V1 = 1e-10


def verdict_v1(t, measured: dict[str, float]):
    return exact_result(measured, TOLERANCE_V1)


VERSIONS = {1: Version(f"holds to {TOLERANCE_V1:g} in float64", "exact check (float64)", None, verdict_v1,
                       measure=exact.scale_invariance)}
