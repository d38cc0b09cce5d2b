"""A claim's contract: what a claim module declares (`CLAIM = Claim(...)`), each registered version
of its criterion, the tuning questions it asks, the context every verdict reads beside its rows,
and the result a verdict returns.

A claim module (bnexp/claims/<id>.py) ends with one `CLAIM = Claim(...)`; nothing else about it is
found by name or signature. Each `Version` names its experiment, its verdict (one signature for
all: `verdict(rows, ctx) -> Result`), from v3 on its protocol (parts, guards, plan and
neighbouring choices, bnexp/method/protocol.py), and the tuned constants its runs use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from bnexp.records import Record

if TYPE_CHECKING:
    from bnexp.method.protocol import Protocol


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
class Context:
    """What a verdict reads beside its own rows of the table."""

    tuned: dict[str, Any] = field(default_factory=dict)  # the profile's calibrated constants (tuned.json)
    tuning: pd.DataFrame | None = None  # the usable rows of the claim's tuning sweeps
    measured: dict[str, float] = field(default_factory=dict)  # exact claims: the errors measured afresh


Verdict = Callable[[pd.DataFrame, Context], Result]


@dataclass(frozen=True)
class Version:
    """One registered version of a claim's criterion. The ledger holds a hash of all of it
    (bnexp/method/ledger/hashing.py), so none of it can change once registered."""

    criterion: str  # in words, generated from the constants the verdict uses
    method: str  # the statistic and interval, in words
    endpoints: Callable[[Record], dict[str, Any]] | None  # one run -> its columns of the table
    verdict: Verdict  # its rows of the table and the context -> Result
    experiment: str | None = None  # whose runs it reads; None: none
    measure: Callable[[], dict[str, float]] | None = None  # exact claims: errors measured afresh
    # The tuned constants its runs must have been made with (bnexp/calibration.py): part of the
    # registration by name, never by value. Empty for the versions registered before calibration.
    uses: tuple[Use, ...] = ()
    # From v3 on: the registered protocol (parts, guards, sequential plan, neighbouring choices),
    # built by a function so that its code is part of the version's hash.
    protocol: Callable[[], Protocol] | None = None
    # From v4 on: where its guards are piloted before registration (bnexp/method/pilot.py).
    pilot: Pilot | None = None


@dataclass(frozen=True)
class Pilot:
    """A version's guards measured on tuning seeds at the candidate regime, before registration:
    `rows` turns the tuning sweep's usable rows and the profile's tuned answers into rows shaped
    like the verdict's (its arms, and validation accuracy where the verdict reads test accuracy:
    test images never inform a choice), on which every guard is evaluated."""

    rows: Callable[[pd.DataFrame, dict[str, Any]], pd.DataFrame]


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
    a claim lists its questions in `Claim.tuning`; a version names the ones it uses, never
    their answers, which each profile's calibration writes to results/<profile>/tuned.json."""

    id: str  # "<claim>/<name>", as the verdict configs name it: ${bnexp_tuned:...,<id>,<arm>}
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


@dataclass(frozen=True)
class Claim:
    """One claim of CLAIMS.md, as its module declares it."""

    id: str  # the module's name
    statement: str
    source: str
    published: str  # the published numbers
    unit: str  # the headline effect's unit
    order: int  # its place in the report
    versions: dict[int, Version]  # every version of its criterion, each registered in ledger.yaml
    tuning: tuple[Question, ...] = ()  # the constants calibration tunes for it at every profile
    notes: tuple[str, ...] = ()  # what a reader needs to read its numbers (in the report)
    figure: Callable[[pd.DataFrame, pd.DataFrame, Result], Any] | None = None  # (rows, curves, result) -> figure
    curves: Callable[[Record], pd.DataFrame] | None = None  # one run -> the series its figure draws
    # Versions written to be piloted before they are registered (`python -m bnexp.method.ledger pilot`):
    # never judged, never registered from here; registering one is moving it into `versions`.
    drafts: dict[int, Version] = field(default_factory=dict)

    @property
    def latest(self) -> int:
        return max(self.versions)

    @property
    def exact(self) -> bool:
        """An exact property, measured afresh rather than read off runs."""
        return self.versions[self.latest].measure is not None


def missing(experiment: str | None) -> Result:
    from bnexp.method.stats import INCONCLUSIVE

    return Result(INCONCLUSIVE, detail=[f"no runs of experiment `{experiment}` in the table"])


def from_estimate(verdict: str, est, detail: list[str], derived: dict[str, Any] | None = None) -> Result:
    return Result(verdict, est.mean, est.low, est.high, est.n, detail, derived or {})


def exact_result(errors: dict[str, float], tolerance: float, note: str = "") -> Result:
    """An exact property holds when the largest error is within the tolerance."""
    from bnexp.method.stats import NOT_REPRODUCED, REPRODUCED

    worst = max(errors.values())
    lines = [", ".join(f"{k} = {v:.2e}" for k, v in errors.items()) + f" (tolerance {tolerance:g})"]
    return Result(REPRODUCED if worst <= tolerance else NOT_REPRODUCED, worst, None, None, 0,
                  lines + ([note] if note else []))
