"""One seaborn figure per experimental claim, drawn from the runs table (bnexp.analysis).

Every function takes the runs of one experiment and returns a matplotlib Figure; bands and
error bars are 95% intervals over seeds (seaborn's bootstrap of the mean).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bnexp.analysis import arm_of, images_per_statistic, layer_spread, load_metrics

sns.set_theme(style="whitegrid", context="notebook")
ERR = ("ci", 95)



def lr_tolerance(r: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(r, x="lr", y="final_acc", hue="model", marker="o", errorbar=ERR, seed=0, ax=ax)
    div = r[r["status"] == "diverged"]
    if len(div):
        sns.scatterplot(div, x="lr", y="final_acc", hue="model", marker="X", s=120, legend=False, ax=ax,
                        edgecolor="black")
    ax.set(xscale="log", xlabel="learning rate (per step, batch 128)", ylabel="final test accuracy",
           title="Accuracy vs learning rate (X = diverged)")
    return fig


def convergence(r: pd.DataFrame) -> plt.Figure:
    m = load_metrics(r, "test/acc")
    m = m[m["name"] == "test/acc"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(m, x="step", y="value", hue="model", style="lr", errorbar=ERR, seed=0, ax=ax)
    target = 0.9 * r[r["choice_model"] == "plain"].groupby("lr")["best_test_acc"].mean().max()
    ax.axhline(target, color="gray", ls="--", lw=1, label=f"target {target:.3f}")
    ax.set(xlabel="training step", ylabel="test accuracy", title="Test accuracy vs steps (constant lr)")
    ax.legend(fontsize=8)
    return fig


def init_insensitivity(r: pd.DataFrame) -> plt.Figure:
    models = sorted(r["choice_model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        table = r[r["choice_model"] == model].pivot_table(index="init_scheme", columns="init_scale",
                                                            values="final_acc", aggfunc="mean")
        sns.heatmap(table, annot=True, fmt=".2f", vmin=0.1, vmax=max(0.2, r["final_acc"].max()), cmap="viridis",
                    ax=ax, cbar=False)
        ax.set(title=f"{model}: mean test accuracy", xlabel="init scale (x weights)", ylabel="init scheme")
    fig.tight_layout()
    return fig


def small_batch(r: pd.DataFrame) -> plt.Figure:
    r = r.assign(arm=arm_of(r), err=100 * (1 - r["final_acc"]))
    r = r.assign(per_stat=images_per_statistic(r))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(r, x="per_stat", y="err", hue="arm", marker="o", errorbar=ERR, seed=0, ax=ax)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(r["per_stat"].unique()), [str(b) for b in sorted(r["per_stat"].unique())])
    ax.invert_xaxis()  # as in Wu & He's Figure 1: batch shrinking to the right
    ax.set(xlabel="images per BN statistic (batch size; ghost BN: virtual batch in 128)",
           ylabel="test error (%)", title="Test error vs batch size")
    return fig


def dropout_redundancy(r: pd.DataFrame) -> plt.Figure:
    r = r.assign(gap=r["train_acc"] - r["final_acc"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sns.barplot(r, x="dropout", y="final_acc", hue="model", errorbar=ERR, seed=0, ax=axes[0])
    axes[0].set(xlabel="dropout p", ylabel="final test accuracy", title="Test accuracy")
    sns.barplot(r, x="dropout", y="gap", hue="model", errorbar=ERR, seed=0, ax=axes[1])
    axes[1].set(xlabel="dropout p", ylabel="train acc (train mode, dropout on) - test acc",
                title="Train-test gap")
    fig.tight_layout()
    return fig


def gradient_flow(r: pd.DataFrame) -> plt.Figure:
    m = load_metrics(r, "grad_norm/")
    m = m.assign(layer=m.groupby(["run_dir", "step"]).cumcount())  # depth order, as logged
    init = m[m["step"] == 0]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    sns.lineplot(init, x="layer", y="value", hue="model", style="init_scale", marker="o", errorbar=ERR, seed=0,
                 ax=axes[0])
    axes[0].set(yscale="log", xlabel="layer (input -> classifier)", ylabel="gradient norm",
                title="Per-layer gradient norm at initialisation")
    spread = layer_spread(m).rename("spread")
    spread = spread.reset_index().merge(r[["run_dir", "model", "init_scale"]], on="run_dir")
    sns.lineplot(spread, x="step", y="spread", hue="model", style="init_scale", errorbar=ERR, seed=0, ax=axes[1])
    axes[1].set(yscale="log", xlabel="training step", ylabel="max / min over layers",
                title="Spread of per-layer gradient norms over training")
    fig.tight_layout()
    return fig


def sigmoid(r: pd.DataFrame) -> plt.Figure:
    r = r.assign(arm=arm_of(r))
    best = r.groupby(["arm", "norm", "lr"])["final_acc"].mean().reset_index()
    best = best.loc[best.groupby(["arm", "norm"])["final_acc"].idxmax()]
    chosen = r.merge(best[["arm", "norm", "lr"]], on=["arm", "norm", "lr"])
    pre = load_metrics(chosen, "preact/")
    pre = pre.assign(arm=arm_of(pre))
    arms = sorted(pre["arm"].unique())
    fig, axes = plt.subplots(len(arms), 3, figsize=(15, 3.6 * len(arms)), squeeze=False)
    for row, arm in zip(axes, arms, strict=True):
        for ax, norm in zip(row[:2], ("none", "batch"), strict=True):
            g = pre[(pre["arm"] == arm) & (pre["norm"] == norm)]
            sns.lineplot(g, x="step", y="value", hue="name", errorbar=ERR, seed=0, ax=ax)
            ax.set(title=f"{arm}, {'BN' if norm == 'batch' else 'no norm'}: last sigmoid input",
                   xlabel="training step", ylabel="percentile value")
        sns.barplot(chosen[chosen["arm"] == arm], x="norm", y="final_acc", order=["none", "batch"],
                    errorbar=ERR, seed=0, ax=row[2])
        row[2].set(title=f"{arm}: test accuracy at best lr", ylabel="final test accuracy")
    fig.tight_layout()
    return fig


def landscape(r: pd.DataFrame) -> plt.Figure:
    m = load_metrics(r, "landscape/")
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for ax, name in zip(axes[:3], ("landscape/loss_range", "landscape/grad_change", "landscape/beta"), strict=True):
        sns.lineplot(m[m["name"] == name], x="step", y="value", hue="model", errorbar=ERR, seed=0, ax=ax)
        ax.set(yscale="log", xlabel="training step", ylabel=name.split("/")[1], title=name.split("/")[1])
    sns.barplot(r, x="model", y="final_acc", errorbar=ERR, seed=0, ax=axes[3])
    axes[3].set(title="test accuracy", ylabel="final test accuracy", xlabel="model")
    fig.tight_layout()
    return fig


def gn_groups(r: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.pointplot(r, x="groups", y="final_acc", errorbar=ERR, seed=0, ax=ax)
    ax.set(xlabel="GroupNorm groups G (1 = LayerNorm)", ylabel="final test accuracy", title="GN accuracy vs groups")
    return fig


FIGURES = {"lr_tolerance": lr_tolerance, "convergence": convergence, "init_insensitivity": init_insensitivity,
           "small_batch": small_batch, "dropout_redundancy": dropout_redundancy, "gradient_flow": gradient_flow,
           "sigmoid": sigmoid, "landscape": landscape, "gn_groups": gn_groups}
