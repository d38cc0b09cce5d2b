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
    # The tuned constants its runs must have been made with (bnexp/calibration.py): part of the
    # registration by name, never by value. Empty for the versions registered before calibration.
    uses: tuple[Use, ...] = ()


@dataclass(frozen=True)
class Use:
    """Runs whose `column` is `value` (an arm) were made with `question`'s answer for `arm`."""

    question: str  # a Question id
    column: str  # the table column naming the verdict arm (choice_arm, choice_model, norm)
    value: str  # that arm in the verdict sweep
    arm: str  # whose tuned value it trains with


@dataclass(frozen=True)
class Question:
    """A constant a claim's protocol needs, tuned afresh at every profile (bnexp/calibration.py):
    a claim module lists its questions in `TUNING`; a version names the ones it uses, never
    their answers, which each profile's calibration writes to results/<profile>/tuned.json."""

    id: str  # "<claim>/<name>", as the verdict configs name it: ${bnexp_tuned:${profile.name},<id>,<arm>}
    knob: str  # the column of the table that is tuned (lr, dropout); "" for a target
    arms: tuple[str, ...]  # each gets an answer (`best`), or one for all (`shared`); a target's reference arm
    rule: str = "best"  # best | shared | target
    arm_column: str = "choice_arm"  # the column naming a run's arm (config-group choice, `<claim>/<arm>`)
    fraction: float | None = None  # target: this fraction of the reference arm's tuned validation accuracy
    reference: str | None = None  # target: the question whose tuned reference arm it is relative to
    sweep: str = "tune"  # its tuning sweep: configs/experiment/<claim>/<sweep>.yaml
    after: str | None = None  # a question whose answer its sweep trains with (tuned first)

    @property
    def claim(self) -> str:
        return self.id.split("/")[0]

    @property
    def experiment(self) -> str:
        """The tuning sweep as an experiment: `<claim>/tune`, its runs under runs/<claim>/tune/."""
        return f"{self.claim}/{self.sweep}"


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
