"""landscape: BN smooths the loss landscape; reducing internal covariate shift is not why it helps."""

from __future__ import annotations

import dataclasses
import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from scipy import stats

from bnexp.method import protocol as pr
from bnexp.method.contract import Claim, Context, Pilot, Question, Use, Version, from_estimate
from bnexp.method.readings import final_acc, rows
from bnexp.method.sequential import PLAN_V4
from bnexp.method.stats import combine, decide, paired, per_seed, t_interval
from bnexp.records import Record

# --- v1: the criterion as first written ----------------------------------------------------------

RATIO_V1 = 0.5  # BN's loss range and gradient change along the gradient, as a fraction of plain's
NOISY_GAP_V1 = 0.03  # noisy BN within this much test accuracy of BN


def endpoints_v1(rec: Record) -> dict:
    """Each probe's mean over every probed step of the run (step 0 included)."""
    m = rec.metric("landscape/")
    means = m.groupby("name")["value"].mean()
    return {"final_acc": final_acc(rec)} | {f"{n.split('/')[1]}_mean": float(v) for n, v in means.items()}


def verdict_v1(t: pd.DataFrame, ctx: Context):
    def seeds(model: str, column: str) -> pd.Series:
        return per_seed(t[t["choice_model"] == model], column)

    loss = t_interval(paired(seeds("bn", "loss_range_mean"), seeds("plain", "loss_range_mean"), lambda a, b: a / b),
                      log=True)
    grad = t_interval(paired(seeds("bn", "grad_change_mean"), seeds("plain", "grad_change_mean"),
                             lambda a, b: a / b), log=True)
    noisy = t_interval(paired(seeds("bn", "final_acc"), seeds("noisy_bn", "final_acc"), lambda a, b: a - b))
    v = combine(decide(loss, RATIO_V1, at_least=False), decide(grad, RATIO_V1, at_least=False),
                decide(noisy, NOISY_GAP_V1, at_least=False))
    detail = [f"loss range along the gradient, BN / plain: {loss} (criterion <= {RATIO_V1:g})",
              f"gradient change along the gradient, BN / plain: {grad} (criterion <= {RATIO_V1:g})",
              f"BN - noisy BN test accuracy: {noisy} (criterion <= {NOISY_GAP_V1:g})",
              "mean test acc: " + ", ".join(f"{k}: {v:.3f}"
                                            for k, v in t.groupby("choice_model")["final_acc"].mean().items())]
    beta = t.groupby("choice_model")["beta_mean"].mean()
    detail.append("mean effective beta-smoothness: " + ", ".join(f"{k}: {v:.3g}" for k, v in beta.items()))
    return from_estimate(v, loss, detail)


# --- v2: probes after initialisation; noisy BN on noise-free statistics -------------------------

RATIO_V2 = 0.5  # BN's loss range and gradient change along the gradient, as a fraction of plain's
NOISY_GAP_V2 = 0.03  # noisy BN (statistics re-estimated without noise) within this much accuracy of BN


def endpoints_v2(rec: Record) -> dict:
    """Each probe's mean over the probed steps after initialisation (step 0 left out: the loss
    surface at the initial weights is not the one training moves through)."""
    m = rec.metric("landscape/")
    means = m[m["step"] > 0].groupby("name")["value"].mean()
    recal = rec.summary.get("test_recal_acc")
    return ({"final_acc": final_acc(rec), "recal_acc": float(recal) if recal is not None else final_acc(rec)}
            | {f"{n.split('/')[1]}_after_init": float(v) for n, v in means.items()})


def verdict_v2(t: pd.DataFrame, ctx: Context):
    def seeds(model: str, column: str) -> pd.Series:
        return per_seed(t[t["choice_model"] == model], column)

    def ratio(column: str):
        return t_interval(paired(seeds("bn", column), seeds("plain", column), lambda a, b: a / b), log=True)

    loss, grad = ratio("loss_range_after_init"), ratio("grad_change_after_init")
    noisy = t_interval(paired(seeds("bn", "recal_acc"), seeds("noisy_bn", "recal_acc"), lambda a, b: a - b))
    v = combine(decide(loss, RATIO_V2, at_least=False), decide(grad, RATIO_V2, at_least=False),
                decide(noisy, NOISY_GAP_V2, at_least=False))
    acc = t.groupby("choice_model")[["final_acc", "recal_acc"]].mean()
    detail = [f"loss range along the gradient after init, BN / plain: {loss} (criterion <= {RATIO_V2:g})",
              f"gradient change along the gradient after init, BN / plain: {grad} (criterion <= {RATIO_V2:g})",
              f"BN - noisy BN test accuracy, both on noise-free recalibrated statistics: {noisy} "
              f"(criterion <= {NOISY_GAP_V2:g})",
              f"effective beta-smoothness after init, BN / plain: {ratio('beta_after_init')}",
              "mean test acc (running statistics / recalibrated): " + ", ".join(
                  f"{k}: {r.final_acc:.3f} / {r.recal_acc:.3f}" for k, r in acc.iterrows()),
              f"one lr shared by every model: {t['lr'].iloc[0]:g}"]
    return from_estimate(v, loss, detail)


# --- v3: v2's criteria on a sequential plan; noisy BN's margin judged only with the power for it ---

RATIO_V3 = 0.5  # BN's loss range and gradient change along the gradient, as a fraction of plain's
NOISY_GAP_V3 = 0.03  # noisy BN (statistics re-estimated without noise) within this much accuracy of BN
POWER_V3 = 0.8  # guard: the plan's largest look gives at least this power for the margin...
MAX_SEEDS_V3 = 8  # ...that is, the seeds a power calculation on the tuning seeds asks for are at most these


def seeds_needed(ctx: Context, margin: float = NOISY_GAP_V3) -> float:
    """Seeds for a one-sided test of 'BN - noisy BN < margin' at level 0.025 with POWER_V3 when the
    two train equally well, from the spread of BN's validation accuracy over the tuning seeds at
    the tuned lr (a per-seed difference of two such runs has sqrt(2) times that spread). Noisy BN's
    own validation accuracy cannot stand in: it is read on noisy statistics."""
    tune = ctx.tuning
    lr = ctx.tuned.get("landscape/lr", {}).get("values", {}).get("bn")
    if tune is None or lr is None or tune.empty:
        return math.inf
    at = tune[(tune["experiment"] == "landscape/tune") & ((tune["lr"] - lr).abs() < 1e-12)]
    acc = per_seed(at[at["choice_model"] == "bn"], "val_acc")
    if len(acc) < 2:
        return math.inf
    sd = math.sqrt(2) * float(acc.std(ddof=1))
    z = stats.norm.isf(0.025) + stats.norm.isf(1 - POWER_V3)
    return float(max(math.ceil((z * sd / margin) ** 2), 2))


def _protocol_v3(gap: float) -> pr.Protocol:
    def seeds(r: pd.DataFrame, model: str, column: str) -> pd.Series:
        return per_seed(r[r["choice_model"] == model], column)

    def over_plain(column: str):
        return lambda r, c: paired(seeds(r, "bn", column), seeds(r, "plain", column), lambda a, b: a / b)

    loss = pr.Part("loss range along the gradient after init, BN / plain", over_plain("loss_range_after_init"),
                   RATIO_V3, False, log=True)
    grad = pr.Part("gradient change along the gradient after init, BN / plain", over_plain("grad_change_after_init"),
                   RATIO_V3, False, log=True)
    noisy = pr.Part("BN - noisy BN test accuracy (recalibrated without noise)",
                    lambda r, c: paired(seeds(r, "bn", "recal_acc"), seeds(r, "noisy_bn", "recal_acc"),
                                        lambda a, b: a - b),
                    gap, False)
    guard = pr.Guard(f"seeds a power calculation on the tuning seeds asks for ({POWER_V3:g} power, margin {gap:g})",
                     lambda r, c: seeds_needed(c, gap), MAX_SEEDS_V3, False, (noisy.name,),
                     "the plan's seeds cannot resolve noisy BN's margin at this noise level")
    return pr.Protocol((loss, grad, noisy), guards=(guard,))


def protocol_v3() -> pr.Protocol:
    base = _protocol_v3(NOISY_GAP_V3)
    loss, grad, _ = base.parts

    def ratios(bar: float) -> pr.Protocol:
        return pr.with_threshold(pr.with_threshold(base, loss, bar), grad, bar)

    # Noisy BN's margin also sets the power guard's margin: that neighbour is the protocol rebuilt.
    return pr.with_neighbours(base, ("ratios <= 0.33", ratios(0.33)), ("ratios <= 0.67", ratios(0.67)),
                              ("noisy BN within 0.02", _protocol_v3(0.02)),
                              ("noisy BN within 0.05", _protocol_v3(0.05)))


def verdict_v3(t: pd.DataFrame, ctx: Context):
    acc = t.groupby("choice_model")[["final_acc", "recal_acc"]].mean()
    detail = [f"one lr shared by every model: {t['lr'].iloc[0]:g}",
              f"seeds the tuning seeds' power calculation asks for: {seeds_needed(ctx):g}",
              "mean test acc (running statistics / recalibrated): " + ", ".join(
                  f"{k}: {r.final_acc:.3f} / {r.recal_acc:.3f}" for k, r in acc.iterrows())]
    ref = float(acc["recal_acc"].get("bn", float("nan")))
    return pr.verdict(protocol_v3(), t, ctx, detail, {"reference_acc": ref, "reference_arm": "BN"})


# --- v4: the lr scored on nets whose statistics stand for them; a per-run median over the probes --

# v3's shared lr was scored on every model's validation accuracy, noisy BN's included, which is read
# on its noisy running statistics (near chance whatever it learnt): at long that rule picked lr 0.1,
# where plain reaches 0.157, and the landscape was compared with a net that had not trained. v4
# shares the lr of plain and BN (landscape/lr_v4), noisy BN training at it; each run's probe is its
# median over the probed steps after initialisation, not the mean (quick v3's per-seed loss-range
# ratios ran from 0.13 to 3.96, a few probes in a spike deciding a run); and the comparison is judged
# only where plain clearly trains at the shared lr (an interval guard, piloted on the tuning seeds).

RATIO_V4 = 0.5  # BN's median loss range and gradient change along the gradient, as a fraction of plain's
NOISY_GAP_V4 = 0.03  # noisy BN (statistics re-estimated without noise) within this much accuracy of BN
TRAINS_V4 = 0.2  # guard: the lower end of plain's test accuracy at the shared lr (chance is 0.1)


def endpoints_v4(rec: Record) -> dict:
    """Each probe's median over the probed steps after initialisation, and the accuracies."""
    m = rec.metric("landscape/")
    medians = m[m["step"] > 0].groupby("name")["value"].median()
    recal = rec.summary.get("test_recal_acc")
    return ({"final_acc": final_acc(rec), "recal_acc": float(recal) if recal is not None else final_acc(rec)}
            | {f"{n.split('/')[1]}_median": float(v) for n, v in medians.items()})


def _seeds(r: pd.DataFrame, model: str, column: str) -> pd.Series:
    return per_seed(r[r["choice_model"] == model], column)


def _protocol_v4(ratio: float = RATIO_V4, gap: float = NOISY_GAP_V4, trains: float = TRAINS_V4) -> pr.Protocol:
    def over_plain(column: str):
        return lambda r, c: paired(_seeds(r, "bn", column), _seeds(r, "plain", column), lambda a, b: a / b)

    loss = pr.Part("median loss range along the gradient after init, BN / plain", over_plain("loss_range_median"),
                   ratio, False, log=True)
    grad = pr.Part("median gradient change along the gradient after init, BN / plain",
                   over_plain("grad_change_median"), ratio, False, log=True)
    noisy = pr.Part("BN - noisy BN test accuracy (recalibrated without noise)",
                    lambda r, c: paired(_seeds(r, "bn", "recal_acc"), _seeds(r, "noisy_bn", "recal_acc"),
                                        lambda a, b: a - b),
                    gap, False)
    guard = pr.interval_guard(
        "plain's test accuracy at the shared lr (lower end of its 95% interval)",
        lambda r, c: list(_seeds(r, "plain", "final_acc")), trains, True, (loss.name, grad.name),
        "plain does not clearly train at the shared lr, so its loss landscape is not that of a net being trained")
    return pr.Protocol((loss, grad, noisy), PLAN_V4, guards=(guard,))


def protocol_v4() -> pr.Protocol:
    return pr.with_neighbours(_protocol_v4(), ("ratios <= 0.33", _protocol_v4(ratio=0.33)),
                              ("ratios <= 0.67", _protocol_v4(ratio=0.67)),
                              ("noisy BN within 0.02", _protocol_v4(gap=0.02)),
                              ("noisy BN within 0.05", _protocol_v4(gap=0.05)),
                              ("plain trains at >= 0.15", _protocol_v4(trains=0.15)),
                              ("plain trains at >= 0.25", _protocol_v4(trains=0.25)))


def verdict_v4(t: pd.DataFrame, ctx: Context):
    return _verdict_v4(protocol_v4(), t, ctx)


def _verdict_v4(protocol: pr.Protocol, t: pd.DataFrame, ctx: Context):
    acc = t.groupby("choice_model")[["final_acc", "recal_acc"]].mean()
    means = {c: t.groupby("choice_model")[f"{c}_median"].mean() for c in ("loss_range", "grad_change", "beta")
             if f"{c}_median" in t}
    detail = [f"one lr shared by plain and BN, noisy BN at it: {t['lr'].iloc[0]:g}",
              "mean test acc (running statistics / recalibrated): " + ", ".join(
                  f"{k}: {r.final_acc:.3f} / {r.recal_acc:.3f}" for k, r in acc.iterrows())]
    detail += [f"mean over seeds of each run's median {c.replace('_', ' ')}: "
               + ", ".join(f"{k}: {v:.3g}" for k, v in m.items()) for c, m in means.items()]
    ref = float(acc["recal_acc"].get("bn", float("nan")))
    return pr.verdict(protocol, t, ctx, detail, {"reference_acc": ref, "reference_arm": "BN"})


def pilot_rows_v4(tuning: pd.DataFrame, tuned: dict) -> pd.DataFrame:
    """The pilot: plain and BN from the calibration sweep at the lr they share, on the tuning seeds,
    their validation accuracy standing for the test accuracy the guard reads."""
    lr = float(tuned["landscape/lr_v4"]["values"]["plain"])
    runs = rows(tuning[tuning["experiment"] == "landscape/tune"], lr=lr)
    runs = runs[runs["choice_model"].isin(["plain", "bn"])]
    return runs.assign(final_acc=runs["val_acc"].astype(float))


# --- v5: v4, with a guard still open leaving the plan going ---------------------------------------

# v4's first look at quick read untestable: plain's test accuracy at the shared lr averaged 0.239 over
# seeds 19-23, above the 0.2 bar, but the lower end of its interval was 0.186, and v4's plan stops at an
# untestable look although more seeds could close that interval above the bar. v5 is v4 on fresh seeds
# with open interval guards (protocol.Protocol.open_guards): such a look stays undecided and the plan
# goes on; the guard makes the landscape parts untestable only when it fails clearly, or at the last look.


def protocol_v5() -> pr.Protocol:
    return pr.with_open_guards(protocol_v4())


def verdict_v5(t: pd.DataFrame, ctx: Context):
    return _verdict_v4(protocol_v5(), t, ctx)


TUNING = (  # tuned at every profile (bnexp/calibration.py); versions from v3 on read the answers
    Question("landscape/lr", "lr", ("plain", "bn", "noisy_bn"), rule="shared", arm_column="choice_model"),
    # v4: shared by the nets whose running statistics stand for what they learnt (the same sweep's runs)
    Question("landscape/lr_v4", "lr", ("plain", "bn"), rule="shared", arm_column="choice_model"),
)


VERSIONS = {
    1: Version(f"loss range and gradient change along the gradient <= {RATIO_V1:g}x with BN; noisy BN within "
               f"{NOISY_GAP_V1 * 100:g} points of BN",
               "per-seed ratios and differences, paired by seed; 95% t-intervals (log for ratios)",
               endpoints_v1, verdict_v1, "landscape"),
    2: Version(f"over the probes after initialisation, at one lr at which both nets train: loss range and gradient "
               f"change along the gradient <= {RATIO_V2:g}x with BN; noisy BN (one noise draw per probe, evaluated "
               f"on statistics re-estimated without noise) within {NOISY_GAP_V2 * 100:g} points of BN",
               "per-seed ratios and differences, paired by seed; 95% t-intervals (log for ratios); all three must hold",
               endpoints_v2, verdict_v2, "landscape"),
    3: Version(f"v2's criteria (loss range and gradient change along the gradient <= {RATIO_V3:g}x with BN; noisy BN "
               f"within {NOISY_GAP_V3 * 100:g} points of BN) at the lr shared by all three, tuned at this profile; the "
               f"noisy-BN part judged only if a power calculation on the tuning seeds ({POWER_V3:g} power) asks for "
               f"<= {MAX_SEEDS_V3} seeds (else untestable at this scale); all three must hold",
               "per-seed ratios and differences, paired by seed; repeated 95% t-intervals (log for ratios; "
               "sequential plan: looks at 3, 5, 8 seeds, O'Brien-Fleming-type spending)",
               endpoints_v2, verdict_v3, "landscape",
               uses=tuple(Use("landscape/lr", "choice_model", m, m) for m in ("plain", "bn", "noisy_bn")),
               protocol=protocol_v3),
    4: Version(f"at the lr shared by plain and BN (tuned at this profile on their validation accuracy; noisy BN trains "
               f"at it), each run's median over the probes after initialisation: loss range and gradient change "
               f"along the gradient <= {RATIO_V4:g}x with BN; noisy BN (statistics re-estimated without noise) within "
               f"{NOISY_GAP_V4 * 100:g} points of BN; the landscape parts judged only if the lower end of plain's "
               f"test accuracy is >= {TRAINS_V4:g} (else untestable at this scale); all three must hold",
               "per-seed ratios of per-run medians and differences, paired by seed; repeated 95% t-intervals (log "
               f"for ratios; sequential plan: looks at {', '.join(map(str, PLAN_V4.looks))} seeds, Pocock-type "
               "spending); the guard judged by its 95% t-interval, piloted on the tuning seeds",
               endpoints_v4, verdict_v4, "landscape",
               uses=tuple(Use("landscape/lr_v4", "choice_model", m, "bn") for m in ("plain", "bn", "noisy_bn")),
               protocol=protocol_v4, pilot=Pilot(pilot_rows_v4)),
}
# v5: v4's method, sweep, constants and pilot; its own criterion, verdict and protocol (open guards).
VERSIONS[5] = dataclasses.replace(
    VERSIONS[4],
    criterion=f"v4's criterion (at the lr shared by plain and BN, each run's median probe after initialisation: loss "
              f"range and gradient change along the gradient <= {RATIO_V4:g}x with BN; noisy BN within "
              f"{NOISY_GAP_V4 * 100:g} points of BN; the landscape parts judged only if the lower end of plain's test "
              f"accuracy is >= {TRAINS_V4:g}), with the guard open: a look where it fails only by an interval still "
              "reaching below the bar, its mean above it, stays undecided and the plan goes on; untestable only when "
              "it fails clearly or at the last look",
    verdict=verdict_v5, protocol=protocol_v5)




def curves(rec: Record) -> pd.DataFrame:
    return rec.metric("landscape/")[["name", "step", "value"]]


def figure(t: pd.DataFrame, curves: pd.DataFrame, result) -> plt.Figure:
    m = curves.merge(t[["key", "choice_model"]], on="key").rename(columns={"choice_model": "model"})
    accuracy = "test accuracy"
    if "recal_acc" in t and t["recal_acc"].notna().all():  # v2: probes after init, noise-free statistics
        m = m[m["step"] > 0]
        t = t.assign(final_acc=t["recal_acc"])
        accuracy = "test accuracy, statistics recalibrated without noise"
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for ax, name in zip(axes[:3], ("landscape/loss_range", "landscape/grad_change", "landscape/beta"), strict=True):
        sns.lineplot(m[m["name"] == name], x="step", y="value", hue="model", errorbar=("se", 2), ax=ax)
        ax.set(yscale="log", xlabel="training step", ylabel=name.split("/")[1], title=name.split("/")[1])
    sns.barplot(t.rename(columns={"choice_model": "model"}), x="model", y="final_acc", errorbar=("ci", 95), seed=0,
                ax=axes[3])
    axes[3].set(title=accuracy, ylabel="final test accuracy", xlabel="model")
    fig.tight_layout()
    return fig


CLAIM = Claim(
    "landscape",
    statement="BN smooths the loss landscape; reducing internal covariate shift is not why it helps.",
    source="Santurkar et al. 2018",
    published="VGG/CIFAR-10: loss range, gradient predictiveness and effective beta-smoothness all much better with "
              "BN; noisy BN trains about as well as BN.",
    unit="ratio",
    order=80,
    versions=VERSIONS,
    tuning=TUNING,
    figure=figure,
    curves=curves,
)
