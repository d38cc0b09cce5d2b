"""lr_tolerance: BN tolerates far higher learning rates."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bnexp.claims.common import Version, final_acc, from_estimate
from bnexp.claims.stats import decide, paired, t_interval
from bnexp.records import Record

STATEMENT = "BN tolerates far higher learning rates."
SOURCE = "Ioffe & Szegedy 2015; Bjorck et al. 2018"
PUBLISHED = ("BN-x5 and BN-x30 (5x, 30x lr) trained Inception; 5x sent plain Inception to 'machine infinity'. "
             "ResNet-110: lr 0.1 with BN, 0.0001 without.")
UNIT = "ratio"
ORDER = 10

# --- v1: the criterion as first written ----------------------------------------------------------

GOOD_V1 = 0.05  # "within a few points of the model's best": 5 points of test accuracy
THRESHOLD_V1 = 4.0  # BN's largest good lr / plain's


def endpoints_v1(rec: Record) -> dict:
    return {"final_acc": final_acc(rec)}


def verdict_v1(t: pd.DataFrame):
    def max_good_lr(g: pd.DataFrame) -> float:
        return float(g.loc[g["final_acc"] >= g["final_acc"].max() - GOOD_V1, "lr"].max())

    good = t.groupby(["choice_model", "seed"])[["final_acc", "lr"]].apply(max_good_lr)
    ratio = t_interval(paired(good["bn"], good["plain"], lambda a, b: a / b), log=True)
    detail = [f"largest lr within {GOOD_V1 * 100:.0f} points of the model's best: BN / plain = {ratio}"]
    if "gn" in good.index.get_level_values(0):
        detail.append(f"GN / plain = {t_interval(paired(good['gn'], good['plain'], lambda a, b: a / b), log=True)}")
    table = t.groupby(["choice_model", "lr"]).agg(acc=("final_acc", "mean"),
                                                  diverged=("status", lambda s: int((s == "diverged").sum())))
    for model, g in table.groupby(level=0):
        cells = ", ".join(f"{lr:g}: {row.acc:.3f}" + (f" ({int(row.diverged)} diverged)" if row.diverged else "")
                          for (_, lr), row in g.iterrows())
        detail.append(f"{model} mean test acc by lr: {cells}")
    return from_estimate(decide(ratio, THRESHOLD_V1, at_least=True), ratio, detail)


VERSIONS = {
    1: Version(f"largest lr whose accuracy is within {GOOD_V1 * 100:.0f} points of the model's best is "
               f">= {THRESHOLD_V1:g}x higher with BN than plain",
               "per-seed ratio of grid learning rates, paired by seed; 95% t-interval on the log ratio",
               endpoints_v1, verdict_v1, "lr_tolerance"),
}


def figure(t: pd.DataFrame, curves: pd.DataFrame, result) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    t = t.rename(columns={"choice_model": "model"})
    sns.lineplot(t, x="lr", y="final_acc", hue="model", marker="o", errorbar=("ci", 95), seed=0, ax=ax)
    div = t[t["status"] == "diverged"]
    if len(div):
        sns.scatterplot(div, x="lr", y="final_acc", hue="model", marker="X", s=120, legend=False, ax=ax,
                        edgecolor="black")
    ax.set(xscale="log", xlabel="learning rate (per step, batch 128)", ylabel="final test accuracy",
           title="Accuracy vs learning rate (X = diverged)")
    return fig
