"""bn_gradient_explosion: without residual connections, BN makes gradients explode with depth at
initialisation (Yang et al. 2019). It was gradient_flow v3's "not reproduced": the per-layer spread
v3 read is this claim's effect, not the weight-scale mechanism gradient_flow now decides."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from bnexp.method import protocol as pr
from bnexp.method.contract import Claim, Context, Version
from bnexp.method.readings import final_acc
from bnexp.method.sequential import PLAN_V4
from bnexp.method.stats import paired, per_seed, t_interval
from bnexp.records import Record

# --- v1 ------------------------------------------------------------------------------------------

GROWTH_V1 = 1.05  # BN's per-layer gradient growth toward the input, relative to plain's: at least this
SPREAD_V1 = 10.0  # BN's max / min per-layer gradient norm over the conv layers: at least this


def _conv_norms(rec: Record) -> np.ndarray:
    """Per-layer weight-gradient norms at step 0, input to output, the classifier left out: the
    layers of the stack itself (the classifier's gradient has no layer below it to grow from)."""
    g = rec.metric("grad_norm/")
    return g[g["step"] == 0]["value"].to_numpy(float)[:-1]


def growth(norms: np.ndarray) -> float:
    """The geometric growth per layer toward the input: exp(-slope) of the least-squares line of the
    log norms on the layer index (numpy's polyfit: one line of algebra, nothing to hand-write)."""
    if len(norms) < 3 or not np.all(norms > 0):
        return math.nan
    return float(np.exp(-np.polyfit(np.arange(len(norms)), np.log(norms), 1)[0]))


def endpoints_v1(rec: Record) -> dict:
    n = _conv_norms(rec)
    ok = len(n) >= 2 and np.all(n > 0)
    return {"final_acc": final_acc(rec), "growth_init": growth(n),
            "spread_conv_init": float(n.max() / n.min()) if ok else math.nan}


def _deepest(t: pd.DataFrame, model: str, column: str) -> pd.Series:
    d = t[(t["depth"] == t["depth"].max()) & (t["choice_model"] == model)]
    return per_seed(d, column)


def protocol_v1() -> pr.Protocol:
    # Relative to plain's (the same net and the same init weights without BN, paired by seed): the
    # layers' widths and resolutions change a weight gradient's norm along the stack in both nets
    # alike, and the ratio of the two growth factors is the growth of log(BN / plain) layer by layer.
    relative = pr.Part("BN's per-layer gradient growth toward the input over plain's, deepest net",
                       lambda r, c: paired(_deepest(r, "bn", "growth_init"), _deepest(r, "plain", "growth_init"),
                                           lambda a, b: a / b), GROWTH_V1, True, log=True)
    spread = pr.Part("BN's max / min per-layer gradient norm over the conv layers, deepest net",
                     lambda r, c: list(_deepest(r, "bn", "spread_conv_init")), SPREAD_V1, True, log=True)
    base = pr.Protocol((relative, spread), PLAN_V4)
    return pr.with_neighbours(base, ("growth >= 1.02", pr.with_threshold(base, relative, 1.02)),
                              ("growth >= 1.1", pr.with_threshold(base, relative, 1.1)),
                              ("spread >= 3", pr.with_threshold(base, spread, 3.0)),
                              ("spread >= 30", pr.with_threshold(base, spread, 30.0)))


def verdict_v1(t: pd.DataFrame, ctx: Context):
    detail = []
    for depth in sorted(set(t["depth"])):
        d = t[t["depth"] == depth]
        own = {m: per_seed(d[d["choice_model"] == m], "growth_init") for m in ("bn", "plain")}
        rel = t_interval(paired(own["bn"], own["plain"], lambda a, b: a / b), log=True)
        spread = t_interval(per_seed(d[d["choice_model"] == "bn"], "spread_conv_init"), log=True)
        detail.append(f"depth {depth}: growth per layer toward the input, BN {t_interval(own['bn'], log=True)}, "
                      f"plain {t_interval(own['plain'], log=True)}, BN / plain {rel}; BN's spread over the conv "
                      f"layers {spread}, that is {rel.mean ** depth:.3g}x over {depth} layers at BN / plain's rate")
    return pr.verdict(protocol_v1(), t, ctx, detail)


VERSIONS = {
    1: Version(f"in the profile's conv net without residual connections, at He init, in the deepest net of the "
               f"sweep: BN's per-layer weight-gradient norm at step 0 grows toward the input by >= {GROWTH_V1:g}x "
               f"per layer more than plain's (the same net and init without BN), and BN's max / min over the conv "
               f"layers is >= {SPREAD_V1:g}; both must hold; the rate at every depth of the sweep is reported",
               "per-seed growth factors (exp of minus the least-squares slope of the log norms on the layer index, "
               "the classifier left out), BN over plain paired by seed; repeated 95% t-intervals on their logs "
               f"(sequential plan: looks at {', '.join(map(str, PLAN_V4.looks))} seeds, Pocock-type spending)",
               endpoints_v1, verdict_v1, "bn_gradient_explosion", protocol=protocol_v1),
}


def curves(rec: Record) -> pd.DataFrame:
    """Per-layer gradient norms at init, named `layer/<depth index>`."""
    g = rec.metric("grad_norm/")
    init = g[g["step"] == 0].reset_index(drop=True)
    return pd.DataFrame({"name": [f"layer/{i:03d}" for i in range(len(init))], "step": 0, "value": init["value"]})


def figure(t: pd.DataFrame, curves: pd.DataFrame, result) -> plt.Figure:
    """Per-layer gradient norm at init against the layer, BN and plain, one panel per depth."""
    c = curves.merge(t[["key", "choice_model", "depth"]], on="key").rename(columns={"choice_model": "model"})
    c = c.assign(layer=c["name"].str.split("/").str[1].astype(int))
    depths = sorted(c["depth"].unique())
    fig, axes = plt.subplots(1, max(len(depths), 1), figsize=(4.5 * max(len(depths), 1), 4.2), squeeze=False)
    for ax, depth in zip(axes[0], depths, strict=False):
        sns.lineplot(c[c["depth"] == depth], x="layer", y="value", hue="model", hue_order=["bn", "plain"],
                     marker="o", errorbar=("ci", 95), seed=0, ax=ax)
        ax.set(yscale="log", xlabel="layer (input -> classifier)", ylabel="gradient norm at init",
               title=f"depth {depth}")
    fig.tight_layout()
    return fig


CLAIM = Claim(
    "bn_gradient_explosion",
    statement="Without residual connections, BN makes gradients explode with depth at initialisation.",
    source="Yang et al. 2019, A Mean Field Theory of Batch Normalization (arXiv:1902.08129)",
    published="Wide fully connected BN nets at init: gradient signals grow exponentially in depth, and neither "
              "the init variance nor the nonlinearity removes it; BN itself causes it.",
    unit="ratio",
    order=61,
    versions=VERSIONS,
    notes=("Measured at step 0 only, on one batch of the profile's training images; the runs take one optimiser "
           "step and evaluate, which nothing here reads. Yang et al.'s theory is for wide fully connected nets; "
           "here the conv net's BN statistics are over the batch and the pixels.",),
    figure=figure,
    curves=curves,
)
