"""What every claim module shares: a registered version of a criterion, the result of a
verdict, and the endpoints that several claims read off a run record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bnexp.records import Record


@dataclass
class Result:
    """A verdict with its headline effect, 95% interval and the numbers behind it."""

    verdict: str
    effect: float | None = None  # in the claim's unit
    ci_low: float | None = None
    ci_high: float | None = None
    n_seeds: int = 0
    detail: list[str] = field(default_factory=list)  # markdown lines: sub-criteria and numbers
    derived: dict[str, Any] = field(default_factory=dict)  # what the figure draws (a target, a best lr)


@dataclass(frozen=True)
class Version:
    """One registered version of a claim's criterion. The ledger holds a hash of all of it
    (bnexp/claims/ledger.py), so none of it can change once registered."""

    criterion: str  # in words, generated from the constants the verdict uses
    method: str  # the statistic and interval, in words
    endpoints: Callable[[Record], dict[str, Any]] | None  # one run -> its columns of the table
    verdict: Callable[..., Result]  # its rows of the table (and `measured` for exact claims) -> Result
    experiment: str | None = None  # whose runs it reads; None: none
    measure: Callable[[], dict[str, float]] | None = None  # exact claims: errors measured afresh


def missing(experiment: str | None) -> Result:
    from bnexp.claims.stats import INCONCLUSIVE

    return Result(INCONCLUSIVE, detail=[f"no runs of experiment `{experiment}` in the table"])


# --- endpoints several claims read ------------------------------------------------------------

def classes(rec: Record) -> int:
    d = rec.config["dataset"]
    return 10 if d["name"] == "cifar10" else 20 if d["coarse_labels"] else 100


def final_acc(rec: Record) -> float:
    """Final test accuracy; a diverged run ends where it was (at chance if never evaluated)."""
    acc = rec.summary.get("test_acc")
    return float(acc) if acc is not None else 1 / classes(rec)


def arm(rec: Record) -> str | None:
    """The arm's short name (`small_batch/gn` -> `gn`), for experiments with arms."""
    choice = rec.summary.get("choices", {}).get("arm")
    return choice.split("/")[-1] if choice else None


def images_per_statistic(rec: Record) -> int:
    """Images behind each BN statistic: the batch size, or ghost BN's virtual batch."""
    m = rec.config["model"]
    return int(m["virtual_batch"] if m["norm"] == "ghost_batch" else rec.config["train"]["batch_size"])


def rows(table: pd.DataFrame, **where) -> pd.DataFrame:
    """The rows whose columns equal the given values (floats compared with a tolerance)."""
    mask = pd.Series(True, index=table.index)
    for column, value in where.items():
        col = table[column]
        mask &= (col - value).abs() <= 1e-12 * max(abs(value), 1) if isinstance(value, float) else col == value
    return table[mask]


def from_estimate(verdict: str, est, detail: list[str], derived: dict[str, Any] | None = None) -> Result:
    return Result(verdict, est.mean, est.low, est.high, est.n, detail, derived or {})


def exact_result(errors: dict[str, float], tolerance: float, note: str = "") -> Result:
    """An exact property holds when the largest error is within the tolerance."""
    from bnexp.claims.stats import NOT_REPRODUCED, REPRODUCED

    worst = max(errors.values())
    lines = [", ".join(f"{k} = {v:.2e}" for k, v in errors.items()) + f" (tolerance {tolerance:g})"]
    return Result(REPRODUCED if worst <= tolerance else NOT_REPRODUCED, worst, None, None, 0,
                  lines + ([note] if note else []))
