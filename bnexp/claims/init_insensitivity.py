"""init_insensitivity: BN removes the need for careful initialisation."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bnexp.claims.common import Version, final_acc, from_estimate
from bnexp.claims.stats import decide, paired, t_interval
from bnexp.records import Record

STATEMENT = "BN removes the need for careful initialisation."
SOURCE = "Ioffe & Szegedy 2015; the BN notes"
PUBLISHED = ("Qualitative: BN 'reduces the dependence of gradients on the scale of the parameters or of their "
             "initial values'.")
UNIT = "ratio"
ORDER = 30

# --- v1: the criterion as first written ----------------------------------------------------------

THRESHOLD_V1 = 1 / 3  # BN's accuracy spread / plain's
CHANCE_BAND_V1 = 0.11  # CIFAR-10 accuracy at or below this is reported as "at chance"


def endpoints_v1(rec: Record) -> dict:
    return {"final_acc": final_acc(rec)}


def verdict_v1(t: pd.DataFrame):
    spread = t.groupby(["choice_model", "seed"])["final_acc"].agg(lambda a: a.max() - a.min())
    ratio = t_interval(paired(spread["bn"], spread["plain"], lambda a, b: a / max(b, 1e-6)), log=True)
    detail = [f"accuracy spread (max - min over init scheme x scale) BN / plain = {ratio}",
              f"spread BN {t_interval(spread['bn'])}, plain {t_interval(spread['plain'])}"]
    table = t.groupby(["choice_model", "init_scheme", "init_scale"])["final_acc"].mean()
    for model, g in table.groupby(level=0):
        detail.append(f"{model} mean test acc: " + ", ".join(f"{s} x{k:g}: {v:.3f}" for (_, s, k), v in g.items()))
        # A net that stays at chance everywhere has no spread: say so, so the ratio is read right.
        at_chance = int((g <= CHANCE_BAND_V1).sum())
        if at_chance:
            detail.append(f"{model}: {at_chance} of {len(g)} cells within 1 point of chance (a floor on the spread)")
    return from_estimate(decide(ratio, THRESHOLD_V1, at_least=False), ratio, detail)


VERSIONS = {
    1: Version(f"accuracy spread over init schemes x scales with BN <= {THRESHOLD_V1:.3g} of plain's",
               "per-seed ratio of spreads, paired by seed; 95% t-interval on the log ratio",
               endpoints_v1, verdict_v1, "init_insensitivity"),
}


def figure(t: pd.DataFrame, curves: pd.DataFrame, result) -> plt.Figure:
    models = sorted(t["choice_model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        table = t[t["choice_model"] == model].pivot_table(index="init_scheme", columns="init_scale",
                                                            values="final_acc", aggfunc="mean")
        sns.heatmap(table, annot=True, fmt=".2f", vmin=0.1, vmax=max(0.2, t["final_acc"].max()), cmap="viridis",
                    ax=ax, cbar=False)
        ax.set(title=f"{model}: mean test accuracy", xlabel="init scale (x weights)", ylabel="init scheme")
    fig.tight_layout()
    return fig
