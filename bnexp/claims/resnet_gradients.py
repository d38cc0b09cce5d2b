"""resnet_gradients: without BN, a deep ResNet's gradients at initialisation are far larger
(Bjorck et al. 2018, ResNet-110 on CIFAR-10). Measured at the paper's depth: initialisation costs
one batch, so the paper's net is affordable at every profile."""

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

LARGER_V1 = 100.0  # plain's gradient norm at init over BN's, deepest ResNet: at least this
GROWS_V1 = 10.0  # that ratio in the deepest ResNet over the shallowest: at least this


def endpoints_v1(rec: Record) -> dict:
    g = rec.metric("grad_norm")
    at_init = g[g["step"] == 0]["value"]
    layers = rec.metric("grad_norm/")
    per_layer = layers[layers["step"] == 0]["value"].to_numpy(float)
    loss = rec.metric("train/loss")
    return {"final_acc": final_acc(rec), "grad_init": float(at_init.iloc[0]) if len(at_init) else math.nan,
            "spread_init": float(per_layer.max() / per_layer.min()) if len(per_layer) and per_layer.min() > 0
            else math.nan,
            "loss_init": float(loss[loss["step"] == 0]["value"].iloc[0]) if (loss["step"] == 0).any() else math.nan}


def _by_seed(t: pd.DataFrame, depth: int) -> pd.Series:
    """plain / BN gradient norm at init per seed (the same init weights), at one depth."""
    d = t[t["depth"] == depth]
    plain = per_seed(d[d["choice_model"] == "plain"], "grad_init")
    return (plain / per_seed(d[d["choice_model"] == "bn"], "grad_init")).dropna()


def _ratio(t: pd.DataFrame, depth: int) -> list[float]:
    return list(_by_seed(t, depth))


def _growth(t: pd.DataFrame) -> list[float]:
    """The ratio at the deepest ResNet over the shallowest's, per seed (none with one depth)."""
    deep, shallow = int(t["depth"].max()), int(t["depth"].min())
    return [] if deep == shallow else paired(_by_seed(t, deep), _by_seed(t, shallow), lambda a, b: a / b)


def protocol_v1() -> pr.Protocol:
    larger = pr.Part("plain's gradient norm at init over BN's, deepest ResNet",
                     lambda r, c: _ratio(r, int(r["depth"].max())), LARGER_V1, True, log=True)
    grows = pr.Part("that ratio in the deepest ResNet over the shallowest's", lambda r, c: _growth(r),
                    GROWS_V1, True, log=True)
    base = pr.Protocol((larger, grows), PLAN_V4)
    return pr.with_neighbours(base, ("plain >= 10x BN", pr.with_threshold(base, larger, 10.0)),
                              ("plain >= 1000x BN", pr.with_threshold(base, larger, 1000.0)),
                              ("grows >= 3x", pr.with_threshold(base, grows, 3.0)),
                              ("grows >= 100x", pr.with_threshold(base, grows, 100.0)))


def verdict_v1(t: pd.DataFrame, ctx: Context):
    detail = []
    for depth in sorted(set(t["depth"])):
        d = t[t["depth"] == depth]
        cells = {m: d[d["choice_model"] == m] for m in ("bn", "plain")}
        detail.append(f"ResNet-{depth}: gradient norm at init, BN {t_interval(cells['bn']['grad_init'], log=True)}, "
                      f"plain {t_interval(cells['plain']['grad_init'], log=True)}, plain / BN "
                      f"{t_interval(_ratio(t, depth), log=True)}; loss at init, BN "
                      f"{cells['bn']['loss_init'].median():.3g}, plain {cells['plain']['loss_init'].median():.3g} "
                      f"(median); max / min per-layer gradient norm, BN {cells['bn']['spread_init'].median():.3g}, "
                      f"plain {cells['plain']['spread_init'].median():.3g} (median)")
    return pr.verdict(protocol_v1(), t, ctx, detail)


VERSIONS = {
    1: Version(f"in CIFAR ResNets of the sweep's depths (the deepest the paper's 110) at He init, residual "
               f"branches not zeroed: the whole net's gradient norm at step 0 is >= {LARGER_V1:g}x larger without "
               f"BN than with it in the deepest ResNet, and that ratio grows >= {GROWS_V1:g}x from the shallowest "
               "ResNet to the deepest; both must hold",
               "per-seed ratios plain / BN (the same init weights, paired by seed); repeated 95% t-intervals on "
               f"their logs (sequential plan: looks at {', '.join(map(str, PLAN_V4.looks))} seeds, Pocock-type "
               "spending)",
               endpoints_v1, verdict_v1, "resnet_gradients", protocol=protocol_v1),
}


def curves(rec: Record) -> pd.DataFrame:
    """Per-layer gradient norms at init, named `layer/<depth index>`."""
    g = rec.metric("grad_norm/")
    init = g[g["step"] == 0].reset_index(drop=True)
    return pd.DataFrame({"name": [f"layer/{i:03d}" for i in range(len(init))], "step": 0, "value": init["value"]})


def figure(t: pd.DataFrame, curves: pd.DataFrame, result) -> plt.Figure:
    """Left: the whole net's gradient norm at init against the depth. Right: per layer, deepest ResNet."""
    t = t.rename(columns={"choice_model": "model"})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    sns.pointplot(t, x="depth", y="grad_init", hue="model", hue_order=["bn", "plain"], errorbar=("ci", 95),
                  seed=0, log_scale=True, ax=axes[0])
    axes[0].set(xlabel="ResNet depth", ylabel="gradient norm at init", title="Gradient size at initialisation")
    deep = t[t["depth"] == t["depth"].max()]
    c = curves.merge(deep[["key", "model"]], on="key")
    c = c.assign(layer=c["name"].str.split("/").str[1].astype(int))
    sns.lineplot(c, x="layer", y="value", hue="model", hue_order=["bn", "plain"], errorbar=("ci", 95), seed=0,
                 ax=axes[1])
    axes[1].set(yscale="log", xlabel="layer (input -> classifier)", ylabel="gradient norm at init",
                title=f"Per-layer gradient norm at init, ResNet-{int(np.max(t['depth']))}")
    fig.tight_layout()
    return fig


CLAIM = Claim(
    "resnet_gradients",
    statement="Without BN, a deep ResNet's gradients at initialisation are far larger.",
    source="Bjorck et al. 2018, Understanding Batch Normalization (arXiv:1806.02375)",
    published="ResNet-110 on CIFAR-10: without BN, gradients at initialisation are far larger and heavy-tailed; "
              "'normal' lr 0.1 with BN, 0.0001 without.",
    unit="ratio",
    order=62,
    versions=VERSIONS,
    notes=("Measured at step 0 only. Without BN a ResNet-110's loss at init is far past the divergence bound, so "
           "its runs end `diverged` after the step-0 measurement, which is all this claim reads. The heavy tails "
           "Bjorck et al. show are of the gradient's entries; here only per-layer norms are logged, and their "
           "spread is reported.",),
    figure=figure,
    curves=curves,
)
