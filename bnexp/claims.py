"""Each claim of CLAIMS.md as data plus code: statement, source, published figures, the
experiment it reads, the criterion (fixed before any result was seen), and a function that
turns the runs into a verdict with the effect size and its 95% interval over seeds.

Verdicts: `reproduced` when the effect is past the threshold in the claimed direction with the
whole interval clear of it; `not reproduced` when the interval is clear of the threshold on the
wrong side; `inconclusive` otherwise (too few seeds, or an interval that straddles it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from bnexp import exact
from bnexp.analysis import Estimate, arm_of, images_per_statistic, layer_spread, load_metrics, t_interval

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
EXPERIMENTS = ("lr_tolerance", "convergence", "init_insensitivity", "small_batch", "dropout_redundancy",
               "gradient_flow", "sigmoid", "landscape", "gn_groups")


@dataclass
class Result:
    verdict: str
    effect: float | None = None  # the headline effect, in `unit`
    ci_low: float | None = None
    ci_high: float | None = None
    n_seeds: int = 0
    detail: list[str] = field(default_factory=list)  # markdown lines: the sub-criteria and numbers


@dataclass
class Claim:
    id: str
    statement: str
    source: str
    published: str
    experiment: str | None  # None: an exact property, checked by bnexp.exact
    criterion: str
    unit: str
    evaluate: Callable[[pd.DataFrame], Result]
    figure: str | None = None  # the figure's experiment, when it is not `experiment`


def verdict(est: Estimate, threshold: float, at_least: bool) -> str:
    """The verdict of one criterion: effect >= threshold (at_least) or <= threshold."""
    if est.n < 2:
        return INCONCLUSIVE
    if at_least:
        return REPRODUCED if est.low >= threshold else NOT_REPRODUCED if est.high < threshold else INCONCLUSIVE
    return REPRODUCED if est.high <= threshold else NOT_REPRODUCED if est.low > threshold else INCONCLUSIVE


def combine(*verdicts: str) -> str:
    """All criteria must hold; one that clearly fails decides."""
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    return REPRODUCED if all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE


def result(v: str, est: Estimate, detail: list[str]) -> Result:
    return Result(v, est.mean, est.low, est.high, est.n, detail)


def _experiment(runs: pd.DataFrame, name: str) -> pd.DataFrame:
    return runs[runs["experiment"] == name] if len(runs) else runs


def _missing(name: str) -> Result:
    return Result(INCONCLUSIVE, detail=[f"no runs of experiment `{name}` found"])


def _per_seed(values: pd.Series) -> dict[int, float]:
    return {int(k): float(v) for k, v in values.items()}


def _paired(a: dict[int, float], b: dict[int, float], f) -> list[float]:
    return [f(a[s], b[s]) for s in sorted(set(a) & set(b))]


# --- the experiments --------------------------------------------------------------------------

GOOD = 0.05  # "within a few points of the model's best": 5 points of test accuracy
CHANCE_BAND = 0.11  # CIFAR-10 accuracy at or below this is reported as "at chance"


def lr_tolerance(runs: pd.DataFrame) -> Result:
    r = _experiment(runs, "lr_tolerance")
    if r.empty:
        return _missing("lr_tolerance")

    def max_good_lr(g: pd.DataFrame) -> float:
        return float(g.loc[g["final_acc"] >= g["final_acc"].max() - GOOD, "lr"].max())

    good = r.groupby(["choice_model", "seed"])[["final_acc", "lr"]].apply(max_good_lr)
    ratio = t_interval(_paired(_per_seed(good["bn"]), _per_seed(good["plain"]), lambda a, b: a / b), log=True)
    gn = t_interval(_paired(_per_seed(good["gn"]), _per_seed(good["plain"]), lambda a, b: a / b), log=True) \
        if "gn" in good else None
    table = r.groupby(["choice_model", "lr"]).agg(acc=("final_acc", "mean"),
                                                  diverged=("status", lambda s: int((s == "diverged").sum())))
    detail = [f"largest lr within {GOOD * 100:.0f} points of the model's best: BN / plain = {ratio}"]
    if gn is not None:
        detail.append(f"GN / plain = {gn}")
    for model, g in table.groupby(level=0):
        cells = ", ".join(f"{lr:g}: {row.acc:.3f}" + (f" ({row.diverged} diverged)" if row.diverged else "")
                          for (_, lr), row in g.iterrows())
        detail.append(f"{model} mean test acc by lr: {cells}")
    return result(verdict(ratio, 4.0, at_least=True), ratio, detail)


def convergence(runs: pd.DataFrame) -> Result:
    r = _experiment(runs, "convergence")
    if r.empty:
        return _missing("convergence")
    plain = r[r["choice_model"] == "plain"]
    target = 0.9 * plain.groupby("lr")["best_test_acc"].mean().max()
    m = load_metrics(r, "test/acc")
    m = m[m["name"] == "test/acc"]
    reached = m[m["value"] >= target].groupby("run_dir")["step"].min()
    # A run that never reaches the target is censored at twice the planned run length (not its
    # own length: a run that diverged early is slow, not fast).
    planned = float(r["steps"].max())
    r = r.assign(to_target=r["run_dir"].map(reached).fillna(2 * planned))
    mean_steps = r.groupby(["choice_model", "lr"])["to_target"].mean()
    best_lr = {model: float(g.droplevel(0).idxmin()) for model, g in mean_steps.groupby(level=0)}

    def at(model: str, lr: float) -> dict[int, float]:
        g = r[(r["choice_model"] == model) & np.isclose(r["lr"], lr)]
        return _per_seed(g.set_index("seed")["to_target"])

    ratio = t_interval(_paired(at("bn", best_lr["bn"]), at("plain", best_lr["plain"]), lambda a, b: a / b), log=True)
    detail = [f"target: {target:.3f} test accuracy (90% of plain's best mean accuracy over its lrs); runs that "
              f"never reach it count as {2 * planned:.0f} steps (twice the planned length)",
              f"steps to target at each model's best lr (BN {best_lr['bn']:g}, plain {best_lr['plain']:g}): "
              f"BN / plain = {ratio}"]
    shared = sorted(set(r.loc[r["choice_model"] == "bn", "lr"]) & set(plain["lr"]))
    for lr in shared:
        est = t_interval(_paired(at("bn", lr), at("plain", lr), lambda a, b: a / b), log=True)
        detail.append(f"at the shared lr {lr:g}: BN / plain = {est}")
    detail.append("mean steps to target: " + ", ".join(f"{m} lr {lr:g}: {v:.0f}" for (m, lr), v in mean_steps.items()))
    return result(verdict(ratio, 0.5, at_least=False), ratio, detail)


def init_insensitivity(runs: pd.DataFrame) -> Result:
    r = _experiment(runs, "init_insensitivity")
    if r.empty:
        return _missing("init_insensitivity")
    spread = r.groupby(["choice_model", "seed"])["final_acc"].agg(lambda a: a.max() - a.min())
    ratio = t_interval(_paired(_per_seed(spread["bn"]), _per_seed(spread["plain"]), lambda a, b: a / max(b, 1e-6)),
                       log=True)
    detail = [f"accuracy spread (max - min over init scheme x scale) BN / plain = {ratio}",
              f"spread BN {t_interval(spread['bn'])}, plain {t_interval(spread['plain'])}"]
    table = r.groupby(["choice_model", "init_scheme", "init_scale"])["final_acc"].mean()
    for model, g in table.groupby(level=0):
        detail.append(f"{model} mean test acc: " + ", ".join(f"{s} x{k:g}: {v:.3f}" for (_, s, k), v in g.items()))
        # A net that stays at chance everywhere has no spread: say so, so the ratio is read right.
        at_chance = int((g <= CHANCE_BAND).sum())
        if at_chance:
            detail.append(f"{model}: {at_chance} of {len(g)} cells within 1 point of chance (a floor on the spread)")
    return result(verdict(ratio, 1 / 3, at_least=False), ratio, detail)



def _small_batch_runs(r: pd.DataFrame) -> pd.DataFrame:
    """Adds the arm, the test error and the images per BN statistic (ghost BN: its virtual batch)."""
    r = r.assign(arm=arm_of(r), err=1 - r["final_acc"])
    return r.assign(per_stat=images_per_statistic(r))


def small_batch(runs: pd.DataFrame) -> Result:
    r = _experiment(runs, "small_batch")
    if r.empty:
        return _missing("small_batch")
    r = _small_batch_runs(r)
    lo, hi = r["per_stat"].min(), r["per_stat"].max()

    def err(arm: str, b: int) -> dict[int, float]:
        g = r[(r["arm"] == arm) & (r["per_stat"] == b)]
        return _per_seed(g.set_index("seed")["err"])

    def rise(arm: str) -> list[float]:
        return _paired(err(arm, lo), err(arm, hi), lambda a, b: a - b)

    bn_rise = t_interval(rise("bn"))
    gn_vs = t_interval([g - b / 3 for g, b in zip(rise("gn"), rise("bn"), strict=True)])
    gap = t_interval(_paired(err("bn", lo), err("gn", lo), lambda a, b: a - b))
    v = combine(verdict(bn_rise, 0.05, at_least=True), verdict(gn_vs, 0.0, at_least=False),
                verdict(gap, 0.0, at_least=True))
    detail = [f"BN test error rise from {hi} to {lo} images per statistic: {bn_rise} (criterion >= 0.05)",
              f"GN rise - BN rise / 3: {gn_vs} (criterion <= 0)",
              f"BN error - GN error at {lo}: {gap} (criterion > 0)"]
    for arm in ("frozen_bn", "ghost_bn"):
        if arm in set(r["arm"]):
            detail.append(f"{arm} rise: {t_interval(rise(arm))}")
    table = r.groupby(["arm", "per_stat"])["err"].mean()
    for arm, g in table.groupby(level=0):
        detail.append(f"{arm} mean test error by images per statistic: "
                      + ", ".join(f"{b}: {e:.3f}" for (_, b), e in g.items()))
    detail += _batchstats_gap(r)
    return result(v, bn_rise, detail)


def _batchstats_gap(r: pd.DataFrame) -> list[str]:
    """small_batch runs with `arm` and `per_stat`: accuracy with batch minus running statistics."""
    bs = r.dropna(subset=["test_batchstats_acc"])
    bs = bs[bs["arm"].isin(["bn", "ghost_bn"])]
    if bs.empty:
        return []
    gaps = (bs["test_batchstats_acc"] - bs["final_acc"]).groupby([bs["arm"], bs["per_stat"]]).mean()
    return ["eval with batch statistics minus running statistics (accuracy): "
            + ", ".join(f"{a} {b}: {g:+.3f}" for (a, b), g in gaps.items())]


def dropout_redundancy(runs: pd.DataFrame) -> Result:
    r = _experiment(runs, "dropout_redundancy")
    if r.empty:
        return _missing("dropout_redundancy")
    gains, detail = {}, []
    for model in ("plain", "bn"):
        g = r[r["choice_model"] == model]
        by_p = g.groupby("dropout")["final_acc"].mean()
        best_p = float(by_p.drop(0.0, errors="ignore").idxmax())
        gains[model] = _paired(_per_seed(g[g["dropout"] == best_p].set_index("seed")["final_acc"]),
                               _per_seed(g[g["dropout"] == 0.0].set_index("seed")["final_acc"]), lambda a, b: a - b)
        gap = (g["train_acc"] - g["final_acc"]).groupby(g["dropout"]).mean()
        detail.append(f"{model}: best p {best_p:g}, gain over p=0 {t_interval(gains[model])}; mean test acc by p: "
                      + ", ".join(f"{p:g}: {a:.3f}" for p, a in by_p.items())
                      + "; train-test gap by p: " + ", ".join(f"{p:g}: {a:+.3f}" for p, a in gap.items()))
    d = t_interval([b - a / 2 for b, a in zip(gains["bn"], gains["plain"], strict=True)])
    v = verdict(d, 0.0, at_least=False)
    plain_gain = t_interval(gains["plain"])
    if v == REPRODUCED and plain_gain.low <= 0:
        v = INCONCLUSIVE
        detail.append("dropout did not clearly help the plain net, so 'adds little with BN' cannot be told apart")
    detail.insert(0, f"BN gain - plain gain / 2: {d} (criterion <= 0)")
    return result(v, d, detail)


def gradient_flow(runs: pd.DataFrame) -> Result:
    r = _experiment(runs, "gradient_flow")
    if r.empty:
        return _missing("gradient_flow")
    m = load_metrics(r, "grad_norm/")
    init = m[m["step"] == 0]
    spread = layer_spread(init).droplevel("step")
    r = r.assign(spread=r["run_dir"].map(spread))
    worst = r.groupby(["choice_model", "seed"])["spread"].max()
    bn, plain = t_interval(worst["bn"], log=True), t_interval(worst["plain"], log=True)
    v = combine(verdict(bn, 10.0, at_least=False), verdict(plain, 100.0, at_least=True))
    detail = [f"worst (over init scales) max/min per-layer gradient norm at init: BN {bn} (criterion <= 10), "
              f"plain {plain} (criterion >= 100)"]
    table = r.groupby(["choice_model", "init_scale"])["spread"].mean()
    detail.append("mean spread by init scale: " + ", ".join(f"{mo} x{s:g}: {v:.3g}" for (mo, s), v in table.items()))
    # Reported beside the criterion: the size of the gradients (not their spread over layers),
    # and the spread over the whole run.
    size = init.groupby("run_dir")["value"].median()
    r = r.assign(size=r["run_dir"].map(size))
    sizes = r.groupby(["choice_model", "init_scale"])["size"].median()
    detail.append("median per-layer gradient norm at init: "
                  + ", ".join(f"{mo} x{s:g}: {v:.2g}" for (mo, s), v in sizes.items()))
    during = layer_spread(m).groupby(level="run_dir").max()
    r = r.assign(during=r["run_dir"].map(during))
    detail.append("largest spread at any logged step: " + ", ".join(
        f"{mo} x{s:g}: {v:.3g}" for (mo, s), v in r.groupby(["choice_model", "init_scale"])["during"].mean().items()))
    return result(v, bn, detail)


def sigmoid(runs: pd.DataFrame) -> Result:
    r = _experiment(runs, "sigmoid")
    if r.empty:
        return _missing("sigmoid")
    r = r.assign(arm=arm_of(r))
    pre = load_metrics(r, "preact/")
    drift = pre.sort_values("step").groupby(["run_dir", "name"])["value"].agg(lambda v: abs(v.iloc[-1] - v.iloc[0]))
    r = r.assign(drift=r["run_dir"].map(drift.groupby(level=0).mean()))
    detail, out = [], {}
    for arm in ("cnn", "fc"):
        a = r[r["arm"] == arm]
        if a.empty:
            continue
        best = {n: float(g.groupby("lr")["final_acc"].mean().idxmax()) for n, g in a.groupby("norm")}
        pick = {n: a[(a["norm"] == n) & np.isclose(a["lr"], lr)].set_index("seed") for n, lr in best.items()}
        acc = t_interval(_paired(_per_seed(pick["batch"]["final_acc"]), _per_seed(pick["none"]["final_acc"]),
                                 lambda x, y: x - y))
        dr = t_interval(_paired(_per_seed(pick["batch"]["drift"]), _per_seed(pick["none"]["drift"]),
                                lambda x, y: x / max(y, 1e-9)), log=True)
        out[arm] = (acc, dr)
        detail.append(f"{arm}: BN - plain test acc at each's best lr (BN {best['batch']:g}, plain {best['none']:g}) "
                      f"= {acc}; percentile drift BN / plain = {dr}; mean acc BN "
                      f"{pick['batch']['final_acc'].mean():.3f}, plain {pick['none']['final_acc'].mean():.3f}")
    if "cnn" not in out:
        return Result(INCONCLUSIVE, detail=[*detail, "no CNN arm"])
    acc, dr = out["cnn"]
    v = combine(verdict(acc, 0.20, at_least=True), verdict(dr, 1.0, at_least=False))
    detail.insert(0, "criterion on the sigmoid CNN: accuracy gain >= 0.20 and percentile drift smaller with BN")
    return result(v, acc, detail)


def landscape(runs: pd.DataFrame) -> Result:
    r = _experiment(runs, "landscape")
    if r.empty:
        return _missing("landscape")
    m = load_metrics(r, "landscape/")
    per_run = m.groupby(["run_dir", "name"])["value"].mean().unstack()
    r = r.join(per_run, on="run_dir")

    def seeds(model: str, column: str) -> dict[int, float]:
        return _per_seed(r[r["choice_model"] == model].set_index("seed")[column])

    loss = t_interval(_paired(seeds("bn", "landscape/loss_range"), seeds("plain", "landscape/loss_range"),
                              lambda a, b: a / b), log=True)
    grad = t_interval(_paired(seeds("bn", "landscape/grad_change"), seeds("plain", "landscape/grad_change"),
                              lambda a, b: a / b), log=True)
    noisy = t_interval(_paired(seeds("bn", "final_acc"), seeds("noisy_bn", "final_acc"), lambda a, b: a - b))
    v = combine(verdict(loss, 0.5, at_least=False), verdict(grad, 0.5, at_least=False),
                verdict(noisy, 0.03, at_least=False))
    detail = [f"loss range along the gradient, BN / plain: {loss} (criterion <= 0.5)",
              f"gradient change along the gradient, BN / plain: {grad} (criterion <= 0.5)",
              f"BN - noisy BN test accuracy: {noisy} (criterion <= 0.03)",
              "mean test acc: " + ", ".join(f"{k}: {v:.3f}"
                                            for k, v in r.groupby("choice_model")["final_acc"].mean().items())]
    beta = r.groupby("choice_model")["landscape/beta"].mean()
    detail.append("mean effective beta-smoothness: " + ", ".join(f"{k}: {v:.3g}" for k, v in beta.items()))
    return result(v, loss, detail)


# --- the exact claims -------------------------------------------------------------------------

def _exact(errors: dict[str, float], tolerance: float, note: str = "") -> Result:
    worst = max(errors.values())
    lines = [", ".join(f"{k} = {v:.2e}" for k, v in errors.items()) + f" (tolerance {tolerance:g})"]
    return Result(REPRODUCED if worst <= tolerance else NOT_REPRODUCED, worst, None, None, 0,
                  lines + ([note] if note else []))


def scale_invariance(_: pd.DataFrame) -> Result:
    return _exact(exact.scale_invariance(), 1e-10)


def eval_semantics(runs: pd.DataFrame) -> Result:
    errors = exact.running_statistics() | {"fold_err_float32": exact.fold_error(torch.float32),
                                           "fold_err_float32_with_bias": exact.fold_error(torch.float32, True)}
    res = _exact(errors, 1e-5)
    sb = _experiment(runs, "small_batch")
    res.detail += _batchstats_gap(_small_batch_runs(sb)) if len(sb) else []
    return res


def bias_redundancy(_: pd.DataFrame) -> Result:
    return _exact(exact.bias_redundancy(), 1e-10)


def gn_special_cases(runs: pd.DataFrame) -> Result:
    errors = exact.gn_special_cases()
    res = _exact({k: v for k, v in errors.items() if k != "group_norm_g3_is_neither"}, 1e-6,
                 f"control: GN with 3 groups differs from both by {errors['group_norm_g3_is_neither']:.2f}")
    g = _experiment(runs, "gn_groups")
    if len(g):
        acc = g.groupby("groups")["final_acc"].agg(["mean", "std", "count"])
        res.detail.append("G sweep (experiment gn_groups), mean test acc by groups (G=1 is LN): "
                          + ", ".join(f"G={k}: {r['mean']:.3f}" for k, r in acc.iterrows()))
    return res


CLAIMS = [
    Claim("lr_tolerance", "BN tolerates far higher learning rates.",
          "Ioffe & Szegedy 2015; Bjorck et al. 2018",
          "BN-x5 and BN-x30 (5x, 30x lr) trained Inception; 5x sent plain Inception to 'machine infinity'. "
          "ResNet-110: lr 0.1 with BN, 0.0001 without.",
          "lr_tolerance", "largest lr whose accuracy is within 5 points of the model's best is >= 4x higher "
          "with BN than plain", "ratio", lr_tolerance),
    Claim("convergence", "BN trains in fewer steps.", "Ioffe & Szegedy 2015",
          "Steps to 72.2%: Inception 31.0M, BN-Baseline 13.3M (0.43x), BN-x5 2.1M (0.07x).",
          "convergence", "steps to 90% of plain's best accuracy, each at its best lr: BN <= 0.5x plain", "ratio",
          convergence),
    Claim("init_insensitivity", "BN removes the need for careful initialisation.",
          "Ioffe & Szegedy 2015; the BN notes", "Qualitative: BN 'reduces the dependence of gradients on the "
          "scale of the parameters or of their initial values'.",
          "init_insensitivity", "accuracy spread over init schemes x scales with BN <= 1/3 of plain's", "ratio",
          init_insensitivity),
    Claim("small_batch", "BN degrades at small batch sizes; GN does not.", "Wu & He 2018",
          "ResNet-50 ImageNet val error at 32/16/8/4/2 images per GPU: BN 23.6/23.7/24.8/27.3/34.7 "
          "(+11.1 points), GN 24.1/24.2/24.0/24.2/24.1.",
          "small_batch", "BN error rises >= 5 points from the largest to the smallest batch; GN's rise <= 1/3 of "
          "BN's; GN beats BN at the smallest batch", "test-error points", small_batch),
    Claim("dropout_redundancy", "With BN, dropout adds little.", "Ioffe & Szegedy 2015; the BN notes",
          "BN-Inception removed dropout 'without an increase in overfitting'.",
          "dropout_redundancy", "the accuracy gain of the best dropout rate is at most half as large with BN",
          "accuracy points", dropout_redundancy),
    Claim("gradient_flow", "BN keeps gradients from vanishing or exploding.", "Bjorck et al. 2018; the BN notes",
          "Without BN, gradients at initialisation are far larger and heavy-tailed (ResNet-110).",
          "gradient_flow", "max/min per-layer gradient norm at init stays <= 10x with BN at every init scale while "
          "plain's exceeds 100x at its worst scale", "ratio", gradient_flow),
    Claim("sigmoid", "BN lets saturating nets train; their input distributions stay stable.",
          "Ioffe & Szegedy 2015", "BN-x5-Sigmoid Inception 69.8% while plain sigmoid Inception stayed at chance; "
          "MNIST Fig. 1(b,c): stable sigmoid-input percentiles with BN, drifting without.",
          "sigmoid", "sigmoid CNN: BN accuracy >= plain + 20 points, and smaller percentile drift with BN",
          "accuracy points", sigmoid),
    Claim("landscape", "BN smooths the loss landscape; reducing internal covariate shift is not why it helps.",
          "Santurkar et al. 2018", "VGG/CIFAR-10: loss range, gradient predictiveness and effective "
          "beta-smoothness all much better with BN; noisy BN trains about as well as BN.",
          "landscape", "loss range and gradient change along the gradient <= 0.5x with BN; noisy BN within 3 "
          "points of BN", "ratio", landscape),
    Claim("scale_invariance", "BN's output is invariant to the weight scale; the gradient scales by 1/a.",
          "Ioffe & Szegedy 2015, Sec. 3.3", "BN(aWu) = BN(Wu); dBN(aWu)/d(aW) = (1/a) dBN(Wu)/dW.",
          None, "holds to 1e-10 in float64", "max error", scale_invariance),
    Claim("eval_semantics", "Training uses batch statistics, eval running averages (momentum, unbiased "
          "variance); the eval transform folds into the conv.", "Ioffe & Szegedy 2015; the BN notes",
          "PyTorch momentum 0.1 = Keras 0.9; unbiased running variance.",
          None, "errors <= 1e-5; the running- vs batch-statistics accuracy gap is reported", "max error",
          eval_semantics),
    Claim("bias_redundancy", "A conv bias before BN is cancelled.", "the BN notes",
          "The mean subtraction removes any per-channel constant.", None, "output unchanged, bias gradient 0",
          "max error", bias_redundancy),
    Claim("gn_special_cases", "LN and IN are GN with G=1 and G=C.", "Wu & He 2018",
          "At 32 images/GPU: BN 23.6, GN 24.1, LN 25.3, IN 28.4 (val error).", None,
          "exact to 1e-6 against torch's LayerNorm / InstanceNorm; G sweep reported", "max error", gn_special_cases,
          figure="gn_groups"),
]
