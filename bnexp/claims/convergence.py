"""convergence: BN trains in fewer steps."""

from __future__ import annotations

import dataclasses
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from bnexp.method import protocol as pr
from bnexp.method.contract import Claim, Context, Pilot, Question, Use, Version, from_estimate
from bnexp.method.readings import arm, final_acc, rows
from bnexp.method.sequential import PLAN_V4, Plan
from bnexp.method.stats import bracket_interval, decide, paired, per_seed, t_interval
from bnexp.records import Record

# --- v0 and v1: steps to 90% of plain's best accuracy, each model at its best lr -----------------
# v0 is the rule the first quick report used; v1 changed how a run that never reaches the
# target is counted, after those runs were seen (the ledger's first deviation).

TARGET_FRAC_V1 = 0.9  # the target: this fraction of plain's best mean accuracy over its lrs
CENSOR_V1 = 2  # a run that never reaches the target counts as this many times a run's length
THRESHOLD_V1 = 0.5  # BN's steps / plain's


def endpoints_v1(rec: Record) -> dict:
    """The test-accuracy curve as [[step, acc], ...]: enough to find the first step at any target."""
    acc = rec.metric("test/acc")
    return {"final_acc": final_acc(rec),
            "acc_curve": json.dumps([[int(s), float(v)] for s, v in zip(acc["step"], acc["value"], strict=True)])}


def _first_step(curve: str, target: float) -> float:
    return next((float(s) for s, v in json.loads(curve) if v >= target), float("nan"))


def _steps_to_target(t: pd.DataFrame, censored_at: pd.Series, censor_words: str):
    plain = t[t["choice_model"] == "plain"]
    target = TARGET_FRAC_V1 * plain.groupby("lr")["best_test_acc"].mean().max()
    t = t.assign(to_target=t["acc_curve"].map(lambda c: _first_step(c, target)).fillna(censored_at))
    mean_steps = t.groupby(["choice_model", "lr"])["to_target"].mean()
    best_lr = {model: float(g.droplevel(0).idxmin()) for model, g in mean_steps.groupby(level=0)}

    def at(model: str, lr: float) -> pd.Series:
        return per_seed(t[(t["choice_model"] == model) & np.isclose(t["lr"], lr)], "to_target")

    ratio = t_interval(paired(at("bn", best_lr["bn"]), at("plain", best_lr["plain"]), lambda a, b: a / b), log=True)
    detail = [f"target: {target:.3f} test accuracy ({TARGET_FRAC_V1:.0%} of plain's best mean accuracy over its "
              f"lrs); runs that never reach it count as {censor_words}",
              f"steps to target at each model's best lr (BN {best_lr['bn']:g}, plain {best_lr['plain']:g}): "
              f"BN / plain = {ratio}"]
    for lr in sorted(set(t.loc[t["choice_model"] == "bn", "lr"]) & set(plain["lr"])):
        est = t_interval(paired(at("bn", lr), at("plain", lr), lambda a, b: a / b), log=True)
        detail.append(f"at the shared lr {lr:g}: BN / plain = {est}")
    detail.append("mean steps to target: " + ", ".join(f"{m} lr {lr:g}: {v:.0f}" for (m, lr), v in mean_steps.items()))
    return from_estimate(decide(ratio, THRESHOLD_V1, at_least=False), ratio, detail,
                         {"target": target, "best_lr": best_lr})


def verdict_v0(t: pd.DataFrame, ctx: Context):
    return _steps_to_target(t, CENSOR_V1 * t["steps"].astype(float), f"{CENSOR_V1}x their own length")


def verdict_v1(t: pd.DataFrame, ctx: Context):
    planned = float(t["steps"].max())
    return _steps_to_target(t, pd.Series(CENSOR_V1 * planned, index=t.index),
                            f"{CENSOR_V1 * planned:.0f} steps ({CENSOR_V1}x the planned length)")


# --- v2: a fixed target; each model at its lr tuned on tuning seeds -----------------------------

TARGET_V2 = 0.2  # test accuracy (twice chance), fixed before the runs
CENSOR_V2 = 2  # a run that never reaches it counts twice the planned length
THRESHOLD_V2 = 0.5  # BN's steps / plain's


def endpoints_v2(rec: Record) -> dict:
    return endpoints_v1(rec) | {"arm": arm(rec)}


def verdict_v2(t: pd.DataFrame, ctx: Context):
    planned = float(t["steps"].max())
    t = t.assign(to_target=t["acc_curve"].map(lambda c: _first_step(c, TARGET_V2)).fillna(CENSOR_V2 * planned))

    def steps(cell: str) -> pd.Series:
        return per_seed(t[t["arm"] == cell], "to_target")

    ratio = t_interval(paired(steps("bn"), steps("plain"), lambda a, b: a / b), log=True)
    lrs = t.groupby("arm")["lr"].first()
    detail = [f"steps to {TARGET_V2:g} test accuracy, each at its own lr (BN {lrs.get('bn', float('nan')):g}, plain "
              f"{lrs.get('plain', float('nan')):g}; tuned on tuning seeds): BN / plain = {ratio}; runs that never "
              f"reach it count {CENSOR_V2 * planned:.0f} steps ({CENSOR_V2}x the planned length)"]
    if "bn_shared" in set(t["arm"]):
        shared = t_interval(paired(steps("bn_shared"), steps("plain"), lambda a, b: a / b), log=True)
        detail.append(f"BN at plain's lr ({lrs['bn_shared']:g}) / plain = {shared}")
    never = t[t["to_target"] >= CENSOR_V2 * planned].groupby("arm").size()
    means = t.groupby("arm")["to_target"].mean()
    detail.append("mean steps to target: " + ", ".join(f"{a}: {v:.0f}" for a, v in means.items())
                  + ("; never reached: " + ", ".join(f"{a} {n}" for a, n in never.items()) if len(never) else ""))
    return from_estimate(decide(ratio, THRESHOLD_V2, at_least=False), ratio, detail, {"target": TARGET_V2})


# --- v3: the tuned target; steps known only between two evaluations ----------------------------

FRACTION_V3 = 0.8  # the target: this fraction of plain's tuned validation accuracy (convergence/target)
THRESHOLD_V3 = 0.5  # BN's steps / plain's
CENSOR_V3 = 2  # a run that never reaches the target took between its last evaluation and this x planned steps
MEANINGFUL_V3 = 0.2  # guard: plain's tuned validation accuracy at least this (2x chance) for a target to mean anything


def _bracket(curve: str, target: float, planned: float) -> tuple[float, float]:
    """Steps to the target, known to lie between the evaluation before the first one at or above
    it (0 if that is the first) and that one; never reached: from the last evaluation on."""
    points = json.loads(curve)
    before = 0.0
    for step, acc in points:
        if acc >= target:
            return before, float(step)
        before = float(step)
    return before, CENSOR_V3 * planned


def _ratio_brackets(t: pd.DataFrame, target: float) -> tuple[list[float], list[float]]:
    """Per seed, BN's steps / plain's as a bracket: [BN low / plain high, BN high / plain low]."""
    planned = float(t["steps"].max())
    b = t.assign(**dict(zip(("lo", "hi"), zip(*t["acc_curve"].map(lambda c: _bracket(c, target, planned)),
                                                strict=True), strict=True)))

    def side(cell: str, column: str) -> pd.Series:
        return per_seed(b[b["arm"] == cell], column)

    lows = paired(side("bn", "lo"), side("plain", "hi"), lambda a, c: a / c)
    highs = paired(side("bn", "hi"), side("plain", "lo"), lambda a, c: a / c if c > 0 else float("inf"))
    return lows, highs


def _target(ctx: Context, fraction: float) -> float:
    answer = ctx.tuned.get("convergence/target")
    return fraction * float(answer["reference_val_acc"]) if answer else float("nan")


def _protocol_v3(fraction: float) -> pr.Protocol:
    part = pr.Part(f"steps to {fraction:g} x plain's tuned validation accuracy, BN / plain",
                   lambda r, c: _ratio_brackets(r, _target(c, fraction)), THRESHOLD_V3, False, log=True)
    guard = pr.Guard("plain's tuned validation accuracy (the target's reference)",
                     lambda r, c: _target(c, 1.0), MEANINGFUL_V3, True, (),
                     "plain does not learn in this regime, so a target relative to it is near chance")
    return pr.Protocol((part,), guards=(guard,))


def protocol_v3() -> pr.Protocol:
    # The neighbouring targets move the statistic itself, not a threshold: each is the protocol rebuilt.
    return pr.with_neighbours(_protocol_v3(FRACTION_V3),
                              *((f"target {f:g} x plain's", _protocol_v3(f)) for f in (0.7, 0.9)))


def verdict_v3(t: pd.DataFrame, ctx: Context):
    target = _target(ctx, FRACTION_V3)
    planned = float(t["steps"].max())
    steps = t.assign(hit=t["acc_curve"].map(lambda c: _bracket(c, target, planned)[1]))
    never = steps[steps["hit"] > planned].groupby("arm").size()
    lrs = t.groupby("arm")["lr"].first()
    detail = [f"target {target:.4g} test accuracy ({FRACTION_V3:g} x plain's tuned validation accuracy); steps are "
              f"known to an evaluation interval ({int(t['steps'].max())} planned steps)",
              "mean first evaluation at the target: " + ", ".join(
                  f"{a} (lr {lrs.get(a, float('nan')):g}): {v:.0f}"
            for a, v in steps.groupby("arm")["hit"].mean().items())
              + ("; never reached: " + ", ".join(f"{a} {n}" for a, n in never.items()) if len(never) else "")]
    if "bn_shared" in set(t["arm"]):
        shared = bracket_interval(*_ratio_brackets(t.assign(arm=t["arm"].replace({"bn": "bn_own", "bn_shared": "bn"})),
                                                   target), log=True, multiplier=2.0)
        detail.append(f"BN at plain's lr / plain (descriptive): midpoint {shared.mean:.3g}")
    ref = float(t[t["arm"] == "bn"]["final_acc"].mean())
    return pr.verdict(protocol_v3(), t, ctx, detail, {"target": target, "reference_acc": ref, "reference_arm": "BN"})


# --- v4: a continuous time-to-target, evaluated often enough for the threshold's distance ---------
# v3 knew each run's steps only between two evaluations 8 steps apart at quick: the bracket's
# half-width (0.22 in log) exceeded the distance of the effect to the threshold, so no number of
# seeds could decide it. v4 interpolates the crossing linearly between the evaluation before it and
# the first at or above the target (from chance at step 0 when that is the first), evaluates every
# 2 steps at quick, and looks at 5, 8, 12 seeds.

FRACTION_V4 = 0.8  # the target: this fraction of plain's tuned validation accuracy (convergence/target)
THRESHOLD_V4 = 0.5  # BN's steps / plain's
CENSOR_V4 = 2  # a run that never reaches the target counts this many times the planned steps
CHANCE_V4 = 0.1  # CIFAR-10 accuracy at step 0, where the interpolation starts before the first evaluation


def time_to_target(curve: str, target: float, planned: float) -> float:
    """Steps at which the test accuracy first reaches `target`, interpolated linearly between the
    evaluation before the crossing (step 0 at chance, before the first) and the first one at or above
    it; CENSOR_V4 x planned if it never does."""
    before_step, before_acc = 0.0, CHANCE_V4
    for step, acc in json.loads(curve):
        if acc >= target:
            if acc <= before_acc:
                return float(step)
            return before_step + (target - before_acc) / (acc - before_acc) * (float(step) - before_step)
        before_step, before_acc = float(step), float(acc)
    return CENSOR_V4 * planned


def _times(t: pd.DataFrame, target: float) -> pd.DataFrame:
    planned = float(t["steps"].max())
    return t.assign(to_target=t["acc_curve"].map(lambda c: time_to_target(c, target, planned)))


def _ratios_v4(t: pd.DataFrame, target: float, bn: str = "bn") -> list[float]:
    s = _times(t, target)
    return paired(per_seed(s[s["arm"] == bn], "to_target"), per_seed(s[s["arm"] == "plain"], "to_target"),
                  lambda a, b: a / b)


def _protocol_v4(fraction: float) -> pr.Protocol:
    part = pr.Part(f"steps to {fraction:g} x plain's tuned validation accuracy (interpolated), BN / plain",
                   lambda r, c: _ratios_v4(r, _target(c, fraction)), THRESHOLD_V4, False, log=True)
    # The guard reads a tuned constant (the target's reference), not the verdict's runs: its pilot is
    # that constant itself, measured on the tuning seeds.
    guard = pr.Guard("plain's tuned validation accuracy (the target's reference)",
                     lambda r, c: _target(c, 1.0), MEANINGFUL_V3, True, (),
                     "plain does not learn in this regime, so a target relative to it is near chance")
    return pr.Protocol((part,), PLAN_V4, guards=(guard,))


def protocol_v4() -> pr.Protocol:
    return pr.with_neighbours(_protocol_v4(FRACTION_V4),
                              *((f"target {f:g} x plain's", _protocol_v4(f)) for f in (0.7, 0.9)))


def verdict_v4(t: pd.DataFrame, ctx: Context):
    return pr.verdict(protocol_v4(), t, ctx, *_shown_v4(t, ctx))


def _shown_v4(t: pd.DataFrame, ctx: Context) -> tuple[list[str], dict]:
    """What v4 and v5 show beside the verdict: the target, each arm's mean steps to it and the
    runs that never reach it, BN at plain's lr."""
    target = _target(ctx, FRACTION_V4)
    planned = float(t["steps"].max())
    s = _times(t, target)
    lrs = t.groupby("arm")["lr"].first()
    never = s[s["to_target"] >= CENSOR_V4 * planned].groupby("arm").size()
    detail = [f"target {target:.4g} test accuracy ({FRACTION_V4:g} x plain's tuned validation accuracy), crossing "
              f"interpolated between evaluations ({int(planned)} planned steps)",
              "mean steps to the target: " + ", ".join(f"{a} (lr {lrs.get(a, float('nan')):g}): {v:.1f}"
                                                       for a, v in s.groupby("arm")["to_target"].mean().items())
              + ("; never reached (counted " + f"{CENSOR_V4}x the planned steps): "
                 + ", ".join(f"{a} {n}" for a, n in never.items()) if len(never) else "")]
    if "bn_shared" in set(t["arm"]):
        shared = t_interval(_ratios_v4(t, target, "bn_shared"), log=True)
        detail.append(f"BN at plain's lr / plain (descriptive): {shared}")
    ref = float(t[t["arm"] == "bn"]["final_acc"].mean())
    return detail, {"target": target, "reference_acc": ref, "reference_arm": "BN"}


def pilot_rows_v4(tuning: pd.DataFrame, tuned: dict) -> pd.DataFrame:
    """The pilot: the guard reads the tuned target's reference (plain's validation accuracy at its
    tuned lr on the tuning seeds); the rows are plain's and BN's tuning runs at their tuned lrs."""
    answer = tuned["convergence/lr"]["values"]
    runs = tuning[tuning["experiment"] == "convergence/tune"]
    cells = [rows(runs[runs["choice_arm"] == f"convergence/{a}"], lr=float(answer[a])).assign(arm=a) for a in answer]
    return pd.concat(cells, ignore_index=True)


# --- v5: v4 with a plan sized by v4's spread ------------------------------------------------------
# v4 ended inconclusive at quick after its last look (12 seeds): 0.347 [0.208, 0.579] against <= 0.5.
# Its per-seed log ratios had an sd of 0.66, so 12 seeds could decide only an effect below about 0.30.
# v5 keeps v4's criterion, arms, constants, guard and pilot, and looks at 20, 30 and 40 fresh seeds
# (Pocock-type): with v4's sd, 40 seeds decide an effect of 0.39 or less, and simulated with v4's
# estimate and sd (4,000 draws) the plan decides 89% of the time, after 27 seeds on average.

PLAN_V5 = Plan(looks=(20, 30, 40), spending="pocock")


def protocol_v5() -> pr.Protocol:
    return pr.with_plan(protocol_v4(), PLAN_V5)


def verdict_v5(t: pd.DataFrame, ctx: Context):
    return pr.verdict(protocol_v5(), t, ctx, *_shown_v4(t, ctx))


_CRITERION = (f"steps to {TARGET_FRAC_V1:.0%} of plain's best accuracy, each at its best lr: "
              f"BN <= {THRESHOLD_V1:g}x plain")
_METHOD = "per-seed ratio of steps, paired by seed; 95% t-interval on the log ratio; best lr by mean over seeds"
TUNING = (  # tuned at every profile (bnexp/calibration.py); versions from v3 on read the answers
    Question("convergence/lr", "lr", ("plain", "bn")),  # each net's constant lr
    Question("convergence/target", "", ("plain",), rule="target", fraction=0.8, reference="convergence/lr"),
)


VERSIONS = {
    0: Version(f"{_CRITERION}; a run that never reaches the target counts {CENSOR_V1}x its own length",
               _METHOD, endpoints_v1, verdict_v0, "convergence"),
    1: Version(f"{_CRITERION}; a run that never reaches the target counts {CENSOR_V1}x the planned length",
               _METHOD, endpoints_v1, verdict_v1, "convergence"),
    2: Version(f"steps to {TARGET_V2:g} test accuracy (fixed), each model at its own lr tuned on tuning seeds, "
               f"constant lr: BN <= {THRESHOLD_V2:g}x plain; a run that never reaches it counts {CENSOR_V2}x the "
               "planned length",
               "per-seed ratio of steps, paired by seed; 95% t-interval on the log ratio",
               endpoints_v2, verdict_v2, "convergence"),
    3: Version(f"steps to {FRACTION_V3:g} x plain's tuned validation accuracy (the profile's convergence/target), each "
               f"net at its own tuned constant lr: BN <= {THRESHOLD_V3:g}x plain; steps known only between two "
               f"evaluations (a run that never reaches it: from its last evaluation to {CENSOR_V3}x the planned "
               f"length); untestable unless plain's tuned validation accuracy is >= {MEANINGFUL_V3:g}",
               "per-seed bracket of the BN/plain step ratio, paired by seed; from the lower end of the low ratios' "
               "repeated log t-interval to the upper end of the high ratios' (sequential plan: looks at 3, 5, 8 "
               "seeds, O'Brien-Fleming-type spending)",
               endpoints_v2, verdict_v3, "convergence",
               uses=(Use("convergence/lr", "arm", "plain", "plain"), Use("convergence/lr", "arm", "bn", "bn"),
                     Use("convergence/lr", "arm", "bn_shared", "plain")),
               protocol=protocol_v3),
    4: Version(f"steps to {FRACTION_V4:g} x plain's tuned validation accuracy (the profile's convergence/target), each "
               f"net at its own tuned constant lr: BN <= {THRESHOLD_V4:g}x plain; each run's steps interpolated "
               f"linearly between the evaluations around its first crossing (from chance at step 0), a run that "
               f"never reaches it counting {CENSOR_V4}x the planned steps; untestable unless plain's tuned "
               f"validation accuracy is >= {MEANINGFUL_V3:g}",
               "per-seed ratio of interpolated steps, paired by seed; repeated 95% t-intervals on its log "
               f"(sequential plan: looks at {', '.join(map(str, PLAN_V4.looks))} seeds, Pocock-type spending); the "
               "guard reads the tuned target, piloted on the tuning seeds",
               endpoints_v2, verdict_v4, "convergence",
               uses=(Use("convergence/lr", "arm", "plain", "plain"), Use("convergence/lr", "arm", "bn", "bn"),
                     Use("convergence/lr", "arm", "bn_shared", "plain")),
               protocol=protocol_v4, pilot=Pilot(pilot_rows_v4)),
}
# v5: v4's criterion, sweep, constants and pilot; its own method, verdict and protocol (the larger plan).
VERSIONS[5] = dataclasses.replace(
    VERSIONS[4],
    method="v4's per-seed ratio of interpolated steps, paired by seed, repeated 95% t-intervals on its log, on "
           f"fresh seeds by a plan sized from v4's spread (sequential plan: looks at "
           f"{', '.join(map(str, PLAN_V5.looks))} seeds, Pocock-type spending); the guard reads the tuned target, "
           "piloted on the tuning seeds",
    verdict=verdict_v5, protocol=protocol_v5)


def curves(rec: Record) -> pd.DataFrame:
    return rec.metric("test/acc")[["name", "step", "value"]]


def figure(t: pd.DataFrame, curves: pd.DataFrame, result) -> plt.Figure:
    if "arm" in t and t["arm"].notna().all():  # v2: arms, each at its own lr
        t = t.assign(choice_model=t["arm"])
    m = curves[curves["name"] == "test/acc"].merge(t[["key", "choice_model", "lr"]], on="key")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(m.rename(columns={"choice_model": "model"}), x="step", y="value", hue="model", style="lr",
                 errorbar=("se", 2), ax=ax)
    if "target" in result.derived:
        target = result.derived["target"]
        ax.axhline(target, color="gray", ls="--", lw=1, label=f"target {target:.3f}")
    ax.set(xlabel="training step", ylabel="test accuracy", title="Test accuracy vs steps (constant lr)")
    ax.legend(fontsize=8)
    return fig


CLAIM = Claim(
    "convergence",
    statement="BN trains in fewer steps.",
    source="Ioffe & Szegedy 2015",
    published="Steps to 72.2%: Inception 31.0M, BN-Baseline 13.3M (0.43x), BN-x5 2.1M (0.07x).",
    unit="ratio",
    order=20,
    versions=VERSIONS,
    tuning=TUNING,
    figure=figure,
    curves=curves,
)
