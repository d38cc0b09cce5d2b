"""gn_special_cases: LN and IN are GN with G=1 and G=C; the G sweep is reported beside it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bnexp import exact
from bnexp.method.contract import Claim, Context, Version, exact_result
from bnexp.method.readings import final_acc
from bnexp.records import Record

TOLERANCE_V1 = 1e-6
CONTROL = "group_norm_g3_is_neither"  # GN with 3 groups must differ from both


def endpoints_v1(rec: Record) -> dict:
    return {"final_acc": final_acc(rec)}


def verdict_v1(t: pd.DataFrame, ctx: Context):
    res = exact_result({k: v for k, v in ctx.measured.items() if k != CONTROL}, TOLERANCE_V1,
                       f"control: GN with 3 groups differs from both by {ctx.measured[CONTROL]:.2f}")
    if len(t):
        acc = t.groupby("groups")["final_acc"].mean()
        res.detail.append("G sweep (experiment gn_groups), mean test acc by groups (G=1 is LN): "
                          + ", ".join(f"G={k}: {v:.3f}" for k, v in acc.items()))
    return res


VERSIONS = {1: Version(f"exact to {TOLERANCE_V1:g} against torch's LayerNorm / InstanceNorm; G sweep reported",
                       "exact check (float32); G sweep as means over seeds", endpoints_v1, verdict_v1, "gn_groups",
                       measure=exact.gn_special_cases)}


def figure(t: pd.DataFrame, curves: pd.DataFrame, result) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.pointplot(t, x="groups", y="final_acc", errorbar=("ci", 95), seed=0, ax=ax)
    ax.set(xlabel="GroupNorm groups G (1 = LayerNorm)", ylabel="final test accuracy", title="GN accuracy vs groups")
    return fig


CLAIM = Claim(
    "gn_special_cases",
    statement="LN and IN are GN with G=1 and G=C.",
    source="Wu & He 2018",
    published="At 32 images/GPU: BN 23.6, GN 24.1, LN 25.3, IN 28.4 (val error).",
    unit="max error",
    order=140,
    versions=VERSIONS,
    figure=figure,
)
