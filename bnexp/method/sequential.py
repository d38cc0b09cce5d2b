"""Registered sequential plans: seeds added in looks, with group-sequential boundaries.

A plan fixes, before any run, the looks (e.g. after 3, 5 and 8 seeds) and how the overall
two-sided error rate `alpha` is spent over them. At look k the verdict reads a *repeated
confidence interval* (Jennison & Turnbull 2000, ch. 9): the per-seed mean plus or minus c_k
standard errors, where c_k is the group-sequential boundary of look k. The intervals of all looks
together cover the true effect with probability 1 - alpha, so stopping at the first look whose
interval decides is not optional stopping: the error rate is that of one fixed-n 95% interval.

Boundaries come from the Lan-DeMets error-spending function that approximates O'Brien-Fleming
(`obf`: alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))), which spends almost nothing early: a
look at 3 seeds stops only a clear claim. `pocock` (alpha ln(1 + (e - 1) t)) spends evenly.
The boundary crossing probabilities are computed here by the standard recursive numerical
integration of the score process (Armitage, McPherson & Rowe 1969; Jennison & Turnbull ch. 19):
the maintained implementations (gsDesign, ldbounds, rpact) are R packages, the Python ones are
unmaintained or pull in plotting stacks, and the recursion is 30 deterministic lines of numpy,
checked in tests/test_sequential.py against Jennison & Turnbull's published tables.

With few seeds the standard error is estimated, so the boundary's nominal level is carried to
Student's t with n - 1 degrees of freedom (the usual small-sample adjustment of a repeated
confidence interval): c_k = t_{n_k - 1}(1 - p_k / 2), where p_k = 2 (1 - Phi(z_k)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import optimize, stats

_GRID = 1201  # points (odd, for Simpson's rule) of the integration grid per look: boundaries to 1e-6


@dataclass(frozen=True)
class Plan:
    """Looks after `looks` seeds; overall two-sided error `alpha` spent by `spending`."""

    looks: tuple[int, ...] = (3, 5, 8)
    alpha: float = 0.05
    spending: str = "obf"  # obf | pocock (Lan-DeMets)

    def __str__(self) -> str:
        name = {"obf": "O'Brien-Fleming-type", "pocock": "Pocock-type"}[self.spending]
        return (f"looks after {', '.join(map(str, self.looks))} seeds; Lan-DeMets {name} error spending, overall "
                f"two-sided alpha {self.alpha:g}")

    def z(self) -> tuple[float, ...]:
        """The boundary of each look on the standard normal scale."""
        return boundaries(tuple(n / self.looks[-1] for n in self.looks), self.alpha, self.spending)

    def nominal(self) -> tuple[float, ...]:
        """Each look's nominal two-sided level p_k = 2 (1 - Phi(z_k))."""
        return tuple(float(2 * stats.norm.sf(z)) for z in self.z())

    def multiplier(self, k: int, n: int) -> float:
        """c_k for a mean over n seeds at look k (0-based): Student's t at the look's nominal level."""
        return float(stats.t.isf(self.nominal()[k] / 2, n - 1))



# The plan of the versions built on protocol v4 (issue 29): looks at 5, 8 and 12 seeds, Pocock-type
# spending: +-3.41 standard errors at the first look (O'Brien-Fleming-type would give 6.84 there,
# v3's first look at 3 seeds 27), so that a first look can decide what is clear.
PLAN_V4 = Plan(looks=(5, 8, 12), spending="pocock")

def spent(t: float, alpha: float, spending: str) -> float:
    """Error spent by information fraction t (0 < t <= 1)."""
    if spending == "obf":
        return float(2 * stats.norm.sf(stats.norm.isf(alpha / 2) / math.sqrt(t)))
    if spending == "pocock":
        return float(alpha * math.log(1 + (math.e - 1) * t))
    raise ValueError(f"spending: no function {spending!r} (obf, pocock)")


def _continue_density(grid: np.ndarray, density: np.ndarray, step: float, bound: float, new: np.ndarray) -> np.ndarray:
    """Density on `new` of the score after one more increment of variance `step`, having stayed
    inside (-bound, bound) (the mass on `grid`, Simpson-weighted)."""
    kernel = stats.norm.pdf((new[:, None] - grid[None, :]) / math.sqrt(step)) / math.sqrt(step)
    return kernel @ (density * _simpson(grid))


def _simpson(grid: np.ndarray) -> np.ndarray:
    h = grid[1] - grid[0]
    w = np.ones(len(grid))
    w[1:-1:2], w[2:-1:2] = 4, 2
    return w * h / 3


def _exit(grid: np.ndarray, density: np.ndarray, step: float, bound: float) -> float:
    """Probability of leaving (-bound, bound) at the next look from the mass `density` on `grid`."""
    s = math.sqrt(step)
    out = stats.norm.sf((bound - grid) / s) + stats.norm.cdf((-bound - grid) / s)
    return float(out @ (density * _simpson(grid)))


def _start(t: float, bound: float) -> tuple[np.ndarray, np.ndarray]:
    grid = np.linspace(-bound, bound, _GRID)
    return grid, stats.norm.pdf(grid / math.sqrt(t)) / math.sqrt(t)


def _advance(grid: np.ndarray, density: np.ndarray, step: float, bound: float) -> tuple[np.ndarray, np.ndarray]:
    new = np.linspace(-bound, bound, _GRID)
    return new, _continue_density(grid, density, step, bound, new)


def crossing(fractions: tuple[float, ...], z: tuple[float, ...]) -> list[float]:
    """Under no effect, the probability of first crossing +-z_k at look k, for given boundaries."""
    out, grid, density = [float(2 * stats.norm.sf(z[0]))], *_start(fractions[0], z[0] * math.sqrt(fractions[0]))
    for k in range(1, len(fractions)):
        step, bound = fractions[k] - fractions[k - 1], z[k] * math.sqrt(fractions[k])  # score scale: variance t
        out.append(_exit(grid, density, step, bound))
        grid, density = _advance(grid, density, step, bound)
    return out


@cache
def boundaries(fractions: tuple[float, ...], alpha: float, spending: str) -> tuple[float, ...]:
    """Boundaries z_k whose first-crossing probabilities spend alpha(t_k) - alpha(t_{k-1})."""
    z = [float(stats.norm.isf(spent(fractions[0], alpha, spending) / 2))]
    grid, density = _start(fractions[0], z[0] * math.sqrt(fractions[0]))
    for k in range(1, len(fractions)):
        target = spent(fractions[k], alpha, spending) - spent(fractions[k - 1], alpha, spending)
        step, root_t = fractions[k] - fractions[k - 1], math.sqrt(fractions[k])
        # the lambda is called only inside this iteration, so reading the loop's variables is intended
        zk = float(optimize.brentq(lambda c: _exit(grid, density, step, c * root_t) - target,  # noqa: B023
                                   0.5, 12.0, xtol=1e-10))
        z.append(zk)
        grid, density = _advance(grid, density, step, zk * root_t)
    return tuple(z)


def constant_boundary(k_looks: int, alpha: float, shape: str) -> float:
    """The classical (not spending) constant of K equally spaced looks: Pocock's C_P (z_k = C) or
    O'Brien & Fleming's C_B (z_k = C sqrt(K / k)), as tabulated by Jennison & Turnbull (2000)."""
    fractions = tuple((k + 1) / k_looks for k in range(k_looks))

    def z(c: float) -> tuple[float, ...]:
        return tuple(c if shape == "pocock" else c * math.sqrt(k_looks / (k + 1)) for k in range(k_looks))

    return float(optimize.brentq(lambda c: sum(crossing(fractions, z(c))) - alpha, 1.0, 6.0, xtol=1e-10))
