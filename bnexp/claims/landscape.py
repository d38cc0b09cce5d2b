"""landscape: BN smooths the loss landscape; reducing internal covariate shift is not why it helps."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bnexp.claims.common import Version, final_acc, from_estimate
from bnexp.claims.stats import combine, decide, paired, per_seed, t_interval
from bnexp.records import Record

STATEMENT = "BN smooths the loss landscape; reducing internal covariate shift is not why it helps."
SOURCE = "Santurkar et al. 2018"
PUBLISHED = ("VGG/CIFAR-10: loss range, gradient predictiveness and effective beta-smoothness all much better with "
             "BN; noisy BN trains about as well as BN.")
UNIT = "ratio"
ORDER = 80

# --- v1: the criterion as first written ----------------------------------------------------------

RATIO_V1 = 0.5  # BN's loss range and gradient change along the gradient, as a fraction of plain's
NOISY_GAP_V1 = 0.03  # noisy BN within this much test accuracy of BN


def endpoints_v1(rec: Record) -> dict:
    """Each probe's mean over every probed step of the run (step 0 included)."""
    m = rec.metric("landscape/")
    means = m.groupby("name")["value"].mean()
    return {"final_acc": final_acc(rec)} | {f"{n.split('/')[1]}_mean": float(v) for n, v in means.items()}


def verdict_v1(t: pd.DataFrame):
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


VERSIONS = {
    1: Version(f"loss range and gradient change along the gradient <= {RATIO_V1:g}x with BN; noisy BN within "
               f"{NOISY_GAP_V1 * 100:g} points of BN",
               "per-seed ratios and differences, paired by seed; 95% t-intervals (log for ratios)",
               endpoints_v1, verdict_v1, "landscape"),
}


def curves(rec: Record) -> pd.DataFrame:
    return rec.metric("landscape/")[["name", "step", "value"]]


def figure(t: pd.DataFrame, curves: pd.DataFrame, result) -> plt.Figure:
    m = curves.merge(t[["key", "choice_model"]], on="key").rename(columns={"choice_model": "model"})
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for ax, name in zip(axes[:3], ("landscape/loss_range", "landscape/grad_change", "landscape/beta"), strict=True):
        sns.lineplot(m[m["name"] == name], x="step", y="value", hue="model", errorbar=("ci", 95), seed=0, ax=ax)
        ax.set(yscale="log", xlabel="training step", ylabel=name.split("/")[1], title=name.split("/")[1])
    sns.barplot(t.rename(columns={"choice_model": "model"}), x="model", y="final_acc", errorbar=("ci", 95), seed=0,
                ax=axes[3])
    axes[3].set(title="test accuracy", ylabel="final test accuracy", xlabel="model")
    fig.tight_layout()
    return fig
