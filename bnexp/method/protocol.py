"""A claim's protocol from v3 on: the parts it decides, the fidelity guards without which a part
cannot show, the registered sequential plan that adds seeds, and the neighbouring choices whose
verdicts are shown beside the registered one.

    parts      each a per-seed effect (paired by seed), its threshold and direction; the claim
               holds when every part holds (an intersection-union rule: no multiplicity
               adjustment is needed for it, each part is read at the plan's level)
    guards     each a measured condition on the look's runs; a failed guard makes the parts it
               guards "untestable at this scale", with the measured reason, never "not reproduced"
    plan       looks after n_1 < n_2 < ... seeds (sequential.Plan); at each look every part reads its
               repeated confidence interval; the claim stops at the first look where its verdict
               can no longer change, and otherwise asks for the next look's seeds

A look uses the first n_k of the version's seeds present in the table (seeds are run in their
registered order, a look's at a time), so a later look never changes an earlier one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from bnexp.method.contract import Context, Result
from bnexp.method.sequential import Plan
from bnexp.method.stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    UNTESTABLE,
    Estimate,
    bracket_interval,
    combine,
    decide,
    t_interval,
)

# What a part's function returns: per-seed values, or per-seed brackets (lows, highs) of a value
# known only between two grid points.
Values = list[float] | tuple[list[float], list[float]]


@dataclass(frozen=True)
class Part:
    name: str  # what is measured, in words
    values: Callable[[pd.DataFrame, Context], Values]  # the look's rows and the context -> per-seed values
    threshold: float
    at_least: bool
    log: bool = False  # a ratio: the interval on the log, shown as a ratio


@dataclass(frozen=True)
class Guard:
    name: str  # the condition, in words
    measure: Callable[[pd.DataFrame, Context], float]  # the look's rows and the context -> the measured value
    threshold: float
    at_least: bool
    guards: tuple[str, ...] = ()  # names of the parts it guards; () = every part
    why: str = ""  # what a failure means for the claim

    def holds(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value >= self.threshold if self.at_least else value <= self.threshold


@dataclass(frozen=True)
class IntervalGuard(Guard):
    """From v4 on: a guard judged by its interval rather than a point estimate. Its measured value
    is the end of the 95% t-interval of its per-seed `values` that could fail it (the upper end
    for a `<=` guard), so it holds only where the runs show it holds; a pilot on tuning seeds
    (bnexp/method/pilot.py) projects that end to the first look before registration."""

    values: Callable[[pd.DataFrame, Context], list[float]] | None = None  # the look's rows -> per-seed values


def interval_guard(name: str, values: Callable[[pd.DataFrame, Context], list[float]], threshold: float,
                   at_least: bool, guards: tuple[str, ...] = (), why: str = "") -> IntervalGuard:
    def far_end(rows: pd.DataFrame, ctx: Context) -> float:
        est = t_interval(values(rows, ctx))
        return est.low if at_least else est.high

    return IntervalGuard(name, far_end, threshold, at_least, guards, why, values)


@dataclass(frozen=True)
class Protocol:
    parts: tuple[Part, ...]
    plan: Plan = Plan()  # noqa: RUF009 (a frozen dataclass: one shared default is safe)
    guards: tuple[Guard, ...] = ()
    # Registered neighbouring choices: (label, the protocol with that choice) for the sensitivity
    # table, built with with_threshold / with_guard (or the version's own builder, where a choice
    # moves a statistic rather than a threshold) and attached by with_neighbours.
    neighbours: tuple[tuple[str, Protocol], ...] = field(default=(), compare=False)
    # From v5 on: an interval guard that fails only because its interval still reaches past the
    # threshold (its mean on the holding side) leaves the claim undecided and the plan going; it
    # makes the parts it guards untestable once it fails clearly, or at the plan's last look.
    open_guards: bool = False


# --- intervals at a look ------------------------------------------------------------------------

def estimate(part: Part, rows: pd.DataFrame, ctx: Context, multiplier: float) -> Estimate:
    v = part.values(rows, ctx)
    if isinstance(v, tuple):
        return bracket_interval(v[0], v[1], part.log, multiplier)
    return t_interval(v, part.log, multiplier)


def margin(part: Part, est: Estimate) -> float:
    """How far the interval's near end clears the threshold (negative: it does not); for a ratio,
    the factor by which it clears (below 1: it does not)."""
    if part.log:
        if part.at_least:
            return est.low / part.threshold if part.threshold else math.inf
        return part.threshold / est.high if est.high > 0 else math.inf
    return est.low - part.threshold if part.at_least else part.threshold - est.high


# --- one look, then the plan ------------------------------------------------------------------

@dataclass
class Look:
    n: int
    seeds: list[int]
    multiplier: float
    parts: dict[str, tuple[str, Estimate]]  # name -> (verdict, interval)
    guards: dict[str, float]  # name -> measured value
    failed: list[str]  # guards that failed
    verdict: str
    final: bool  # the verdict can no longer change


def look(protocol: Protocol, t: pd.DataFrame, ctx: Context, k: int, seeds: list[int]) -> Look:
    n = protocol.plan.looks[k]
    rows = t[t["seed"].isin(seeds[:n])]
    mult = protocol.plan.multiplier(k, n)
    measured = {g.name: float(g.measure(rows, ctx)) for g in protocol.guards}
    failed = [g.name for g in protocol.guards if not g.holds(measured[g.name])]
    still_open = {g.name for g in protocol.guards if g.name in failed and _open(protocol, g, rows, ctx, k)}
    parts = {}
    for p in protocol.parts:
        est = estimate(p, rows, ctx, mult)
        blocked = [g.name for g in protocol.guards if g.name in failed and (not g.guards or p.name in g.guards)]
        if blocked:
            parts[p.name] = (INCONCLUSIVE if set(blocked) <= still_open else UNTESTABLE, est)
        else:
            parts[p.name] = (decide(est, p.threshold, p.at_least), est)
    verdict = combine(*(v for v, _ in parts.values()))
    # More seeds can only narrow an interval: an open part may still close, a decided one stays.
    return Look(n, list(seeds[:n]), mult, parts, measured, failed, verdict, verdict != INCONCLUSIVE)


def _open(protocol: Protocol, g: Guard, rows: pd.DataFrame, ctx: Context, k: int) -> bool:
    """A failed interval guard whose mean is on the holding side, before the plan's last look, under
    a protocol with `open_guards`: more seeds may yet show that it holds."""
    if not protocol.open_guards or k == len(protocol.plan.looks) - 1:
        return False
    if not isinstance(g, IntervalGuard) or g.values is None:
        return False
    values = [v for v in g.values(rows, ctx) if v is not None and not math.isnan(v)]
    return len(values) > 0 and g.holds(sum(values) / len(values))


def run(protocol: Protocol, t: pd.DataFrame, ctx: Context) -> tuple[list[Look], int | None]:
    """Every look the table allows, up to the first whose verdict is final; and the seeds the
    plan asks for next (None once it has stopped, or at its last look)."""
    seeds = sorted(int(s) for s in t["seed"].unique())
    looks: list[Look] = []
    for k, n in enumerate(protocol.plan.looks):
        if len(seeds) < n:
            return looks, n
        looks.append(look(protocol, t, ctx, k, seeds))
        if looks[-1].final:
            return looks, None
    return looks, None


def deciding(protocol: Protocol, last: Look) -> Part:
    """The part that decides the claim's verdict, whose effect is the headline."""
    by = {p.name: p for p in protocol.parts}
    for wanted in (NOT_REPRODUCED, UNTESTABLE, INCONCLUSIVE):
        hit = [name for name, (v, _) in last.parts.items() if v == wanted]
        if last.verdict == wanted and hit:
            return by[hit[0]]
    return min(protocol.parts, key=lambda p: _normalised_margin(p, last.parts[p.name][1]))  # the closest call


def _normalised_margin(p: Part, est: Estimate) -> float:
    m = margin(p, est)
    return math.log(m) if p.log and m > 0 else m if not p.log else -math.inf


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def verdict(protocol: Protocol, t: pd.DataFrame, ctx: Context, detail: list[str] | None = None,
            derived: dict[str, Any] | None = None) -> Result:
    """The claim's sequential verdict, with every look, guard, part margin and neighbouring choice."""
    looks, next_n = run(protocol, t, ctx)
    lines = [f"sequential plan: {protocol.plan}"]
    if not looks:
        return Result(INCONCLUSIVE, n_seeds=t["seed"].nunique(),
                      detail=lines + [f"first look needs {next_n} seeds; the table has {t['seed'].nunique()}"],  # noqa: RUF005
                      derived={"next_seeds": next_n, "looks": []} | (derived or {}))
    last = looks[-1]
    head = deciding(protocol, last)
    est = last.parts[head.name][1]
    for lk in looks:
        lines.append(f"look at {lk.n} seeds ({', '.join(map(str, lk.seeds))}; interval +-{lk.multiplier:.3g} "
                     f"standard errors): **{lk.verdict}**"
                     + "".join(f"; {name}: {v} {e}" for name, (v, e) in lk.parts.items()))
    for g in protocol.guards:
        value = last.guards[g.name]
        ok = g.name not in last.failed
        lines.append(f"guard: {g.name}: measured {_fmt(value)} (needs {'>=' if g.at_least else '<='} "
                     f"{g.threshold:g}): {'holds' if ok else 'fails'}" + ("" if ok else f"; {g.why}"))
    parts = []
    for p in protocol.parts:
        v, e = last.parts[p.name]
        m = margin(p, e)
        shown = f"x{m:.3g}" if p.log else f"{m:+.3g}"
        lines.append(f"part: {p.name}: {e} (criterion {'>=' if p.at_least else '<='} {p.threshold:g}): {v}; "
                     f"margin of the interval's near end to the threshold {shown}")
        parts.append({"name": p.name, "verdict": v, "effect": e.mean, "ci_low": e.low, "ci_high": e.high,
                      "threshold": p.threshold, "margin": m, "log": p.log})
    sensitivity = []
    for label, alt in protocol.neighbours:
        alt_looks, _ = run(alt, t, ctx)
        if alt_looks:
            a = alt_looks[-1]
            ap = deciding(alt, a)
            sensitivity.append({"choice": label, "verdict": a.verdict, "effect": a.parts[ap.name][1].mean,
                                "n": a.n})
    if sensitivity:
        lines.append("neighbouring choices: " + "; ".join(
            f"{s['choice']}: {s['verdict']} ({_fmt(s['effect'])}, {s['n']} seeds)" for s in sensitivity))
    if next_n is not None:
        lines.append(f"the plan continues: the next look needs {next_n} seeds")
    out = {"looks": [{"n": lk.n, "verdict": lk.verdict, "multiplier": lk.multiplier} for lk in looks],
           "next_seeds": next_n, "parts": parts, "sensitivity": sensitivity, "seeds": last.seeds,
           "guards": {g.name: {"value": last.guards[g.name], "holds": g.name not in last.failed}
                      for g in protocol.guards},
           "deciding": head.name}
    return Result(last.verdict, est.mean, est.low, est.high, est.n, lines + (detail or []), out | (derived or {}))


def with_threshold(protocol: Protocol, part: Part | str, threshold: float) -> Protocol:
    """The protocol with one part's threshold changed (a neighbouring choice)."""
    name = part if isinstance(part, str) else part.name
    if name not in {p.name for p in protocol.parts}:
        raise KeyError(f"no part {name!r} in this protocol")
    return replace(protocol, neighbours=(),
                   parts=tuple(replace(p, threshold=threshold) if p.name == name else p for p in protocol.parts))


def with_guard(protocol: Protocol, guard: Guard | str, threshold: float) -> Protocol:
    """The protocol with one guard's threshold changed (a neighbouring choice)."""
    name = guard if isinstance(guard, str) else guard.name
    if name not in {g.name for g in protocol.guards}:
        raise KeyError(f"no guard {name!r} in this protocol")
    return replace(protocol, neighbours=(),
                   guards=tuple(replace(g, threshold=threshold) if g.name == name else g for g in protocol.guards))


def with_open_guards(protocol: Protocol) -> Protocol:
    """The protocol, and each of its neighbouring choices, with open interval guards (`open_guards`)."""
    return replace(protocol, open_guards=True,
                   neighbours=tuple((label, replace(p, open_guards=True)) for label, p in protocol.neighbours))


def with_neighbours(protocol: Protocol, *choices: tuple[str, Protocol]) -> Protocol:
    """The protocol with its registered neighbouring choices, each (label, that choice's protocol)."""
    return replace(protocol, neighbours=tuple((label, replace(alt, neighbours=())) for label, alt in choices))


def with_plan(protocol: Protocol, plan: Plan) -> Protocol:
    """The protocol, and each of its neighbouring choices, looking by another sequential plan."""
    return replace(protocol, plan=plan,
                   neighbours=tuple((label, replace(p, plan=plan)) for label, p in protocol.neighbours))
