"""Statistics over seeds for the verdicts: intervals that fit each kind of endpoint, pairing by
seed, and the decision rule.

- continuous per-seed effects: `t_interval` (95% Student t on the mean; on logs for ratios; with a
  sequential plan's multiplier, its repeated confidence interval);
- a per-seed value known only to lie in a bracket [low, high] (a grid point and the next one):
  `bracket_interval`, the lower end of the lows' interval to the upper end of the highs'.

An interval whose two ends coincide (identical per-seed values) says nothing about its own
uncertainty: `decide` never calls it decisive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
UNTESTABLE = "untestable at this scale"  # a fidelity guard failed: the regime cannot show the claim (v3 on)


@dataclass
class Estimate:
    """A per-seed mean (geometric for ratios) with its 95% interval over `n` seeds."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3g} [{self.low:.3g}, {self.high:.3g}]"

    @property
    def degenerate(self) -> bool:
        """No width although there are several seeds: identical per-seed values."""
        return self.n >= 2 and self.low == self.high


def _clean(values) -> np.ndarray:
    return np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))],
                      dtype=float)


def t_interval(values, log: bool = False, multiplier: float | None = None) -> Estimate:
    """95% t-interval of the mean of per-seed values; `log` for ratios (geometric mean). With a
    `multiplier`, the mean +- that many standard errors instead (a sequential plan's repeated
    confidence interval, bnexp/method/protocol.py)."""
    v = _clean(values)
    if log:
        v = np.log(np.clip(v, 1e-12, None))
    n = len(v)
    if n == 0:
        return Estimate(math.nan, -math.inf, math.inf, 0)
    mean = float(v.mean())
    if n < 2:
        low, high = -math.inf, math.inf
    else:
        t = stats.t.ppf(0.975, n - 1) if multiplier is None else multiplier
        half = float(t * v.std(ddof=1) / math.sqrt(n))
        low, high = mean - half, mean + half
    if log:
        return Estimate(math.exp(mean), math.exp(low) if low > -math.inf else 0.0,
                        math.exp(high) if high < math.inf else math.inf, n)
    return Estimate(mean, low, high, n)


def bracket_interval(lows, highs, log: bool = False, multiplier: float | None = None) -> Estimate:
    """Per-seed values known only as brackets [low, high] (a grid point and the next): the interval
    runs from the lower end of the lows' interval to the upper end of the highs' (so both ends carry
    the grid's coarseness); the centre is the mean of the bracket midpoints (geometric with `log`).
    A bracket of zero width on every seed is a point value, and reads as one."""
    lo, hi = t_interval(lows, log, multiplier), t_interval(highs, log, multiplier)
    centre = math.sqrt(lo.mean * hi.mean) if log else (lo.mean + hi.mean) / 2
    return Estimate(centre, lo.low, hi.high, min(lo.n, hi.n))


def ratio_pseudo_values(numerators, denominators) -> list[float]:
    """Per-seed values whose mean is the ratio of the means, mean(num) / mean(den), and whose t-interval
    is that ratio's delta-method interval, paired by seed: R + (num_i - R den_i) / mean(den). A share
    taken against a mean over the same seeds (a reference arm's) carries that mean's own uncertainty
    this way, which dividing every seed by the mean as if it were known does not."""
    num, den = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if num.shape != den.shape:
        raise ValueError(f"ratio_pseudo_values: {num.size} numerators against {den.size} denominators")
    keep = np.isfinite(num) & np.isfinite(den)
    num, den = num[keep], den[keep]
    if len(den) == 0 or den.mean() == 0:
        return []
    ratio = num.mean() / den.mean()
    return list(ratio + (num - ratio * den) / den.mean())


def seeds_to_decide(est: Estimate, threshold: float, log: bool, multiplier: float) -> int | None:
    """About how many seeds a fixed-n 95% t-interval would need to be clear of `threshold`, at the
    spread `est` shows: a planning figure for a new version, as the pilot's projection is (the mean
    and spread taken as measured). `multiplier`: the standard errors `est`'s half-width spans. None
    where the interval has no width or the mean sits on the threshold."""
    if est.n < 2 or est.degenerate or not math.isfinite(est.low) or not math.isfinite(est.high):
        return None
    if log:
        if min(est.mean, est.low, threshold) <= 0:
            return None
        half, distance = (math.log(est.high) - math.log(est.low)) / 2, abs(math.log(est.mean / threshold))
    else:
        half, distance = (est.high - est.low) / 2, abs(est.mean - threshold)
    if distance == 0 or half <= 0:
        return None
    sd = half / multiplier * math.sqrt(est.n)
    n = max(2, math.ceil((1.96 * sd / distance) ** 2))
    while stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) > distance:  # t's heavier tails: a few more
        n += 1
    return n


def decide(est: Estimate, threshold: float, at_least: bool) -> str:
    """The verdict of one criterion: effect >= threshold (at_least) or <= threshold, decided by
    the whole interval. Fewer than two seeds, or a zero-width interval, decide nothing."""
    if est.n < 2 or est.degenerate or math.isnan(est.mean):
        return INCONCLUSIVE
    if at_least:
        return REPRODUCED if est.low >= threshold else NOT_REPRODUCED if est.high < threshold else INCONCLUSIVE
    return REPRODUCED if est.high <= threshold else NOT_REPRODUCED if est.low > threshold else INCONCLUSIVE


def combine(*verdicts: str) -> str:
    """Every criterion must hold: one that clearly fails decides; then one still open; then one that
    cannot show at this scale (a failed guard); the claim holds only when every criterion does."""
    for first in (NOT_REPRODUCED, INCONCLUSIVE, UNTESTABLE):
        if first in verdicts:
            return first
    return REPRODUCED


# --- pairing ----------------------------------------------------------------------------------

def per_seed(rows: pd.DataFrame, column: str) -> pd.Series:
    """`column` indexed by seed; two rows with one seed are an error, not a silent pick."""
    s = rows.set_index("seed")[column]
    if s.index.has_duplicates:
        raise ValueError(f"several runs share a seed for `{column}`: {sorted(s.index[s.index.duplicated()])}")
    return s.astype(float)


def paired(a: pd.Series, b: pd.Series, f) -> list[float]:
    """f(a, b) for every seed both series have, joined on the seed (never on position)."""
    both = pd.concat({"a": a, "b": b}, axis=1, join="inner").sort_index()
    return [f(x, y) for x, y in zip(both["a"], both["b"], strict=True)]
