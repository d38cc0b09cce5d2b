"""A version's pilot: its fidelity guards measured on tuning seeds at the candidate regime before it
is registered, so that a regime whose guard is expected to fail is changed rather than registered
to fail (a guard failure that data at hand could predict is a design defect, not a result).

The pilot's rows are the tuning sweep's, at the tuned answers, shaped like the verdict's by the
version's `Pilot.rows` (validation accuracy standing for test accuracy). Each guard is then judged
as the verdict will judge it at the plan's first look:

    interval guard   the pilot's per-seed mean and spread, projected to the first look's seeds:
                     mean -+ t(0.975, n1 - 1) * sd / sqrt(n1) must meet the threshold (the end that
                     could fail it); fewer than 2 pilot seeds cannot estimate a spread and fail
    point guard      the measured value on the pilot rows must meet the threshold

Only the expected value of the first look's interval is projected (the spread is taken as measured),
so a pilot that passes narrowly says the guard is about even to hold: the report shows both numbers.

The parts are projected the same way (`parts`), where the pilot rows hold both arms: the look of the
plan at which the expected interval is clear of the threshold, on either side, or the seeds a fixed-n
95% interval would need: what a plan is sized by before registration. Nothing is judged on it.
A pilot's few tuning seeds estimate a spread poorly (from 2 seeds the sd's 90% upper bound is 8x
the estimate), so each part is projected a second time at that bound (chi-square, one-sided): a plan
sized on a spread that bound would overturn is sized on luck, and the pilot says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bnexp.method.contract import Context, Version
from bnexp.method.protocol import IntervalGuard


@dataclass
class GuardPilot:
    guard: str
    threshold: float
    at_least: bool
    seeds: int  # pilot seeds it was measured on
    value: float  # interval guard: the pilot's per-seed mean; point guard: the measured value
    projected: float | None  # interval guard: the first look's projected far end
    first_look: int
    holds: bool

    def __str__(self) -> str:
        need = f"{'>=' if self.at_least else '<='} {self.threshold:g}"
        if self.projected is None:
            return (f"{self.guard}: pilot {self.value:.3g} on {self.seeds} tuning seeds (needs {need}): "
                    f"{'expected to hold' if self.holds else 'expected to fail'}")
        return (f"{self.guard}: pilot mean {self.value:.3g} on {self.seeds} tuning seeds, projected interval end "
                f"{self.projected:.3g} at the first look's {self.first_look} seeds (needs {need}): "
                f"{'expected to hold' if self.holds else 'expected to fail'}")

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _meets(value: float, threshold: float, at_least: bool) -> bool:
    return not math.isnan(value) and (value >= threshold if at_least else value <= threshold)


def run(version: Version, tuning: pd.DataFrame, tuned: dict[str, Any]) -> list[GuardPilot]:
    """Every guard of `version`'s protocol on its pilot rows (the usable tuning rows of its claim)."""
    if version.pilot is None or version.protocol is None:
        raise ValueError("this version declares no pilot")
    protocol = version.protocol()
    rows = version.pilot.rows(tuning, tuned)
    ctx = Context(tuned, tuning)
    first = protocol.plan.looks[0]
    out = []
    for g in protocol.guards:
        if isinstance(g, IntervalGuard) and g.values is not None:
            v = np.asarray([x for x in g.values(rows, ctx) if x is not None and not math.isnan(x)], dtype=float)
            mean = float(v.mean()) if len(v) else math.nan
            if len(v) >= 2:
                half = float(stats.t.ppf(0.975, first - 1)) * float(v.std(ddof=1)) / math.sqrt(first)
                end = mean - half if g.at_least else mean + half
            else:
                end = math.nan  # no spread from one seed: the pilot cannot show the guard will hold
            out.append(GuardPilot(g.name, g.threshold, g.at_least, len(v), mean, end, first,
                                  _meets(end, g.threshold, g.at_least)))
        else:
            value = float(g.measure(rows, ctx))
            seeds = int(rows["seed"].nunique()) if "seed" in rows else 0
            out.append(GuardPilot(g.name, g.threshold, g.at_least, seeds, value, None, first, g.holds(value)))
    return out


@dataclass
class PartPilot:
    part: str
    threshold: float
    at_least: bool
    seeds: int  # pilot seeds it was measured on
    mean: float  # the pilot's per-seed mean (geometric for a ratio part)
    sd: float  # per-seed sd (of the log for a ratio part)
    decides_at: int | None  # the first look whose expected interval is clear of the threshold; None: no look
    holds: bool | None  # on which side it is clear: the part expected to hold (True) or fail; None: no look
    seeds_needed: int | None  # a fixed-n 95% interval clear of it at this mean and spread; None: no spread
    log: bool = False  # a ratio part: its spread on the log
    sd_upper: float | None = None  # the sd's one-sided 90% upper bound from the pilot's seeds (chi-square)
    decides_at_upper: int | None = None  # decides_at with the spread at that bound; None: no look

    def __str__(self) -> str:
        need = f"{'>=' if self.at_least else '<='} {self.threshold:g}"
        where = (f"expected interval clear of it at the {self.decides_at}-seed look, the part expected to "
                 f"{'hold' if self.holds else 'fail'}" if self.decides_at
                 else "expected interval across it at every look of the plan")
        more = f"; a fixed-n 95% interval needs about {self.seeds_needed} seeds" if self.seeds_needed else ""
        upper = ""
        if self.sd_upper is not None and self.decides_at:
            upper = (f"; at the sd's 90% upper bound ({self.sd_upper:.3g}) "
                     + (f"at the {self.decides_at_upper}-seed look" if self.decides_at_upper
                        else "at no look of the plan: its sizing rests on a spread these seeds cannot pin down"))
        return (f"{self.part}: pilot mean {self.mean:.3g} on {self.seeds} tuning seeds (sd {self.sd:.3g}"
                f"{' on the log' if self.log else ''}; needs {need}): {where}{upper}{more}")

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def parts(version: Version, tuning: pd.DataFrame, tuned: dict[str, Any]) -> list[PartPilot]:
    """Every per-seed part of `version`'s protocol on its pilot rows, projected over the plan's looks with
    the pilot's mean and spread taken as measured (a part read as a bracket, or with no pilot rows of
    its arms, is left out)."""
    if version.pilot is None or version.protocol is None:
        raise ValueError("this version declares no pilot")
    protocol = version.protocol()
    rows = version.pilot.rows(tuning, tuned)
    ctx = Context(tuned, tuning)
    out = []
    for p in protocol.parts:
        try:
            got = p.values(rows, ctx)
        except Exception:
            continue
        if isinstance(got, tuple):
            continue
        v = np.asarray([x for x in got if x is not None and math.isfinite(x)], dtype=float)
        if p.log:
            v = np.log(v[v > 0])
        thr = math.log(p.threshold) if p.log else p.threshold
        if len(v) < 2:
            continue
        mean, sd = float(v.mean()), float(v.std(ddof=1))
        decides, holds = _first_look(protocol.plan, mean, sd, thr, p.at_least)
        upper = sd * math.sqrt((len(v) - 1) / float(stats.chi2.ppf(0.10, len(v) - 1)))
        need = None
        if sd > 0 and mean != thr:
            need = max(2, math.ceil((float(stats.norm.ppf(0.975)) * sd / abs(mean - thr)) ** 2))
        out.append(PartPilot(p.name, p.threshold, p.at_least, len(v), math.exp(mean) if p.log else mean, sd,
                             decides, holds, need, p.log, upper,
                             _first_look(protocol.plan, mean, upper, thr, p.at_least)[0]))
    return out


def _first_look(plan, mean: float, sd: float, thr: float, at_least: bool) -> tuple[int | None, bool | None]:
    """The first look of `plan` whose expected interval (this mean and spread) is clear of `thr`, and
    on which side: the part expected to hold (True) or fail; (None, None) where no look is."""
    for k, n in enumerate(plan.looks):
        half = plan.multiplier(k, n) * sd / math.sqrt(n)
        if mean - half > thr or mean + half < thr:
            return n, (mean > thr) == at_least
    return None, None


def advice(claim_id: str, number: int, profile: str, piloted: list[str] | tuple[str, ...]) -> str:
    """What to do where a registered version is not piloted: the reproduce stage and the report say
    it in these words."""
    return (f"{claim_id} v{number} is registered (piloted at {', '.join(piloted)}) but not piloted at {profile}, so "
            f"its verdict sweep is not run there; after that profile's calibration (`python scripts/reproduce.py "
            f"--profile {profile} --only {claim_id} --stage calibrate`), `python -m bnexp.method.ledger add-pilot "
            f"{claim_id} {number} --profile {profile} --reason ...` pilots it, and a passing pilot, committed, lets "
            "it run there")
