"""gradient_flow: BN keeps gradients from vanishing or exploding."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bnexp.method import protocol as pr
from bnexp.method.contract import Claim, Context, Version, from_estimate
from bnexp.method.readings import final_acc
from bnexp.method.sequential import PLAN_V4
from bnexp.method.stats import combine, decide, paired, per_seed, t_interval
from bnexp.records import Record

# --- v1: the criterion as first written ----------------------------------------------------------

BN_MAX_V1 = 10.0  # BN's max/min per-layer gradient norm at init stays at most this, at every scale
PLAIN_MIN_V1 = 100.0  # plain's exceeds this at its worst scale


def _spread(values: pd.Series) -> float:
    """max / min of per-layer gradient norms at one step."""
    return float(values.max() / max(values.min(), 1e-30))


def endpoints_v1(rec: Record) -> dict:
    g = rec.metric("grad_norm/")
    at_init = g[g["step"] == 0]["value"]
    return {"final_acc": final_acc(rec), "spread_init": _spread(at_init), "grad_median_init": float(at_init.median()),
            "spread_max": float(g.groupby("step")["value"].agg(_spread).max())}


def verdict_v1(t: pd.DataFrame, ctx: Context):
    worst = t.groupby(["choice_model", "seed"])["spread_init"].max()
    bn, plain = t_interval(worst["bn"], log=True), t_interval(worst["plain"], log=True)
    v = combine(decide(bn, BN_MAX_V1, at_least=False), decide(plain, PLAIN_MIN_V1, at_least=True))
    detail = [f"worst (over init scales) max/min per-layer gradient norm at init: BN {bn} (criterion <= "
              f"{BN_MAX_V1:g}), plain {plain} (criterion >= {PLAIN_MIN_V1:g})"]
    by = t.groupby(["choice_model", "init_scale"])
    detail.append("mean spread by init scale: " + ", ".join(
        f"{mo} x{s:g}: {v:.3g}" for (mo, s), v in by["spread_init"].mean().items()))
    # Reported beside the criterion: the size of the gradients (not their spread over layers),
    # and the spread over the whole run.
    detail.append("median per-layer gradient norm at init: " + ", ".join(
        f"{mo} x{s:g}: {v:.2g}" for (mo, s), v in by["grad_median_init"].median().items()))
    detail.append("largest spread at any logged step: " + ", ".join(
        f"{mo} x{s:g}: {v:.3g}" for (mo, s), v in by["spread_max"].mean().items()))
    return from_estimate(v, bn, detail)


# --- v2: the size of the gradient across init scales -------------------------------------------

BN_MAX_V2 = 10.0  # BN's gradient norm at init changes by at most this factor across the init scales
PLAIN_MIN_V2 = 100.0  # plain's changes by at least this factor
DEPTH_V2 = 15  # the depth the criterion reads (other depths are reported)


def endpoints_v2(rec: Record) -> dict:
    g = rec.metric("grad_norm")
    at_init = g[g["step"] == 0]["value"]
    return {"final_acc": final_acc(rec), "grad_init": float(at_init.iloc[0]) if len(at_init) else float("nan"),
            "grad_train_median": float(g[g["step"] > 0]["value"].median()) if (g["step"] > 0).any() else float("nan")}


def verdict_v2(t: pd.DataFrame, ctx: Context):
    def span(rows: pd.DataFrame) -> pd.Series:
        """Per (model, seed): largest / smallest gradient norm at init over the init scales."""
        g = rows.groupby(["choice_model", "seed"])["grad_init"]
        return g.max() / g.min().clip(lower=1e-300)

    s = span(t[t["depth"] == DEPTH_V2])
    bn, plain = t_interval(s["bn"], log=True), t_interval(s["plain"], log=True)
    v = combine(decide(bn, BN_MAX_V2, at_least=False), decide(plain, PLAIN_MIN_V2, at_least=True))
    scales = ", ".join(f"{x:g}" for x in sorted(t["init_scale"].unique()))
    detail = [f"depth {DEPTH_V2}: gradient norm at init, largest / smallest over init scales {scales}: BN {bn} "
              f"(criterion <= {BN_MAX_V2:g}), plain {plain} (criterion >= {PLAIN_MIN_V2:g})"]
    for depth in sorted(set(t["depth"]) - {DEPTH_V2}):
        d = span(t[t["depth"] == depth])
        detail.append(f"depth {depth}: the same ratio, BN {t_interval(d['bn'], log=True)}, "
                      f"plain {t_interval(d['plain'], log=True)}")
    by = t.groupby(["depth", "choice_model", "init_scale"])
    detail.append("median gradient norm at init: " + ", ".join(
        f"d{d} {m} x{x:g}: {v:.2g}" for (d, m, x), v in by["grad_init"].median().items()))
    detail.append("median gradient norm over the training steps: " + ", ".join(
        f"d{d} {m} x{x:g}: {v:.2g}" for (d, m, x), v in by["grad_train_median"].median().items()))
    return from_estimate(v, plain, detail)


# --- v3: per-layer spread at He init vs depth, primary; the scale response secondary -------------

BN_MAX_V3 = 10.0  # BN's max/min per-layer (weight) gradient norm at He init x1, deepest net: at most this
PLAIN_OVER_BN_V3 = 2.0  # plain's spread / BN's there: at least this


def endpoints_v3(rec: Record) -> dict:
    return endpoints_v1(rec) | endpoints_v2(rec)


def _spreads(t: pd.DataFrame, model: str) -> pd.Series:
    deep = t[(t["depth"] == t["depth"].max()) & ((t["init_scale"] - 1.0).abs() < 1e-9)]
    return per_seed(deep[deep["choice_model"] == model], "spread_init")


def protocol_v3() -> pr.Protocol:
    bn = pr.Part("BN's per-layer gradient spread at He init, deepest net", lambda r, c: list(_spreads(r, "bn")),
                 BN_MAX_V3, False, log=True)
    plain = pr.Part("plain's spread / BN's there", lambda r, c: paired(_spreads(r, "plain"), _spreads(r, "bn"),
                                                                     lambda a, b: a / b), PLAIN_OVER_BN_V3, True,
                    log=True)
    base = pr.Protocol((bn, plain))
    return pr.with_neighbours(base, ("BN spread <= 5", pr.with_threshold(base, bn, 5.0)),
                              ("BN spread <= 20", pr.with_threshold(base, bn, 20.0)),
                              ("plain / BN >= 1.5", pr.with_threshold(base, plain, 1.5)),
                              ("plain / BN >= 3", pr.with_threshold(base, plain, 3.0)))


def verdict_v3(t: pd.DataFrame, ctx: Context):
    one = t[(t["init_scale"] - 1.0).abs() < 1e-9]
    by_depth = one.groupby(["choice_model", "depth"])["spread_init"].median()
    detail = ["median per-layer spread at He init x1 by depth: " + ", ".join(
        f"{m} d{d}: {v:.3g}" for (m, d), v in by_depth.items())]
    deep = t[t["depth"] == t["depth"].max()]
    g = deep.groupby(["choice_model", "seed"])["grad_init"]
    span = g.max() / g.min().clip(lower=1e-300)
    detail.append("secondary, the scale response (largest / smallest gradient norm at init over the init scales "
                  f"{', '.join(f'{x:g}' for x in sorted(t['init_scale'].unique()))}, deepest net; near-algebraic for "
                  "plain): " + ", ".join(f"{m} {t_interval(span[m], log=True)}" for m in span.index.levels[0]
                                         if m in span.index.get_level_values(0)))
    return pr.verdict(protocol_v3(), t, ctx, detail)



# --- v4: the weight-scale mechanism alone (v2's criterion) on protocol v4 ------------------------
# v3 read the per-layer spread, which tests another claim: BN's own gradient explosion with depth
# in nets without residuals (Yang et al. 2019), now the claim bn_gradient_explosion; Bjorck et al.'s
# ResNet claim is resnet_gradients. What is left here is the mechanism CLAIMS.md names: a BN net's
# gradient at init does not depend on the weights' scale (BN's output is invariant to it and its
# gradient scales by 1/a), while a plain net's follows the scale to the power of its depth.

BN_MAX_V4 = 10.0  # BN's gradient norm at init changes by at most this factor across the init scales
PLAIN_MIN_V4 = 100.0  # plain's by at least this factor
DEPTH_V4 = 15  # the depth the parts read (the sweep's other depths are reported)


def _scale_response(t: pd.DataFrame, model: str) -> pd.Series:
    """Per seed: the largest over the smallest gradient norm at init across the init scales, at DEPTH_V4."""
    own = t[(t["depth"] == DEPTH_V4) & (t["choice_model"] == model)]
    g = own.groupby("seed")["grad_init"]
    return (g.max() / g.min().clip(lower=1e-300))[g.count() >= 2]


def protocol_v4() -> pr.Protocol:
    bn = pr.Part(f"BN's gradient norm at init, largest / smallest over the init scales, depth {DEPTH_V4}",
                 lambda r, c: list(_scale_response(r, "bn")), BN_MAX_V4, False, log=True)
    plain = pr.Part(f"plain's gradient norm at init, largest / smallest over the init scales, depth {DEPTH_V4}",
                    lambda r, c: list(_scale_response(r, "plain")), PLAIN_MIN_V4, True, log=True)
    base = pr.Protocol((bn, plain), PLAN_V4)
    return pr.with_neighbours(base, ("BN <= 3x", pr.with_threshold(base, bn, 3.0)),
                              ("BN <= 30x", pr.with_threshold(base, bn, 30.0)),
                              ("plain >= 30x", pr.with_threshold(base, plain, 30.0)),
                              ("plain >= 300x", pr.with_threshold(base, plain, 300.0)))


def verdict_v4(t: pd.DataFrame, ctx: Context):
    detail = []
    for depth in sorted(set(t["depth"]) - {DEPTH_V4}):
        d = t[t["depth"] == depth]
        g = d.groupby(["choice_model", "seed"])["grad_init"]
        span = g.max() / g.min().clip(lower=1e-300)
        detail.append(f"depth {depth} (reported): the same factor, " + ", ".join(
            f"{m} {t_interval(span[m], log=True)}" for m in sorted(set(d["choice_model"]))))
    by = t.groupby(["depth", "choice_model", "init_scale"])["grad_init"].median()
    detail.append("median gradient norm at init: " + ", ".join(
        f"d{d} {m} x{x:g}: {v:.2g}" for (d, m, x), v in by.items()))
    return pr.verdict(protocol_v4(), t, ctx, detail)


VERSIONS = {
    1: Version(f"max/min per-layer gradient norm at init stays <= {BN_MAX_V1:g}x with BN at every init scale while "
               f"plain's exceeds {PLAIN_MIN_V1:g}x at its worst scale",
               "per-seed worst spread over scales; 95% t-intervals on the log spread",
               endpoints_v1, verdict_v1, "gradient_flow"),
    2: Version(f"at depth {DEPTH_V2}, the gradient norm at initialisation changes by <= {BN_MAX_V2:g}x across the "
               f"init scales with BN and by >= {PLAIN_MIN_V2:g}x without; the headline effect is plain's factor",
               "per-seed largest/smallest gradient norm over the init scales; 95% t-intervals on its log",
               endpoints_v2, verdict_v2, "gradient_flow"),
    3: Version(f"at He init (x1), in the deepest net of the sweep, the max/min per-layer gradient norm (conv and "
               f"linear weights, biases and norm parameters excluded) at step 0 is <= {BN_MAX_V3:g} with BN and "
               f"plain's is >= {PLAIN_OVER_BN_V3:g}x BN's; the init-scale response is reported, not decided",
               "per-seed spreads (BN) and ratios (plain / BN, paired by seed); repeated 95% t-intervals on their "
               "logs (sequential plan: looks at 3, 5, 8 seeds, O'Brien-Fleming-type spending); both must hold",
               endpoints_v3, verdict_v3, "gradient_flow",
               protocol=protocol_v3),
    4: Version(f"at depth {DEPTH_V4}, the gradient norm at initialisation (every weight x the init scale, He init) "
               f"changes by <= {BN_MAX_V4:g}x across the init scales with BN and by >= {PLAIN_MIN_V4:g}x without: "
               "BN's gradient does not follow the weights' scale, plain's follows it to the power of the depth; "
               "both parts must hold. The depth-wise spread v3 read is the claim bn_gradient_explosion, Bjorck et "
               "al.'s ResNet claim is resnet_gradients",
               "per-seed largest / smallest gradient norm over the init scales; repeated 95% t-intervals on its log "
               f"(sequential plan: looks at {', '.join(map(str, PLAN_V4.looks))} seeds, Pocock-type spending)",
               endpoints_v2, verdict_v4, "gradient_flow", protocol=protocol_v4),
}


def curves(rec: Record) -> pd.DataFrame:
    """Per-layer gradient norms at init (name `layer/<depth index>`) and their spread over training."""
    g = rec.metric("grad_norm/")
    init = g[g["step"] == 0].reset_index(drop=True)
    layers = pd.DataFrame({"name": [f"layer/{i:03d}" for i in range(len(init))], "step": 0, "value": init["value"]})
    spread = g.groupby("step")["value"].agg(_spread).reset_index().assign(name="spread")
    return pd.concat([layers, spread[["name", "step", "value"]]], ignore_index=True)


def figure(t: pd.DataFrame, curves: pd.DataFrame, result) -> plt.Figure:
    if "grad_init" in t and t["grad_init"].notna().all():
        return _figure_v2(t, curves)
    c = curves.merge(t[["key", "choice_model", "init_scale"]], on="key").rename(columns={"choice_model": "model"})
    init = c[c["name"].str.startswith("layer/")]
    init = init.assign(layer=init["name"].str.split("/").str[1].astype(int))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    sns.lineplot(init, x="layer", y="value", hue="model", style="init_scale", marker="o", errorbar=("ci", 95),
                 seed=0, ax=axes[0])
    axes[0].set(yscale="log", xlabel="layer (input -> classifier)", ylabel="gradient norm",
                title="Per-layer gradient norm at initialisation")
    sns.lineplot(c[c["name"] == "spread"], x="step", y="value", hue="model", style="init_scale", errorbar=("se", 2),
                 ax=axes[1])
    axes[1].set(yscale="log", xlabel="training step", ylabel="max / min over layers",
                title="Spread of per-layer gradient norms over training")
    fig.tight_layout()
    return fig


def _figure_v2(t: pd.DataFrame, curves: pd.DataFrame) -> plt.Figure:
    """Left: the gradient norm at init against the init scale, per depth. Right: per layer, deepest net."""
    t = t.rename(columns={"choice_model": "model"})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    order = sorted(t["model"].unique())  # the same colour for a model in both panels
    sns.lineplot(t, x="init_scale", y="grad_init", hue="model", hue_order=order, style="depth", marker="o",
                 errorbar=("ci", 95), seed=0, ax=axes[0])
    axes[0].set(xscale="log", yscale="log", xlabel="init scale (every weight x s)", ylabel="gradient norm at init",
                title="Gradient size at initialisation vs init scale")
    deep = t[t["depth"] == t["depth"].max()]
    c = curves.merge(deep[["key", "model", "init_scale"]], on="key")
    init = c[c["name"].str.startswith("layer/")]
    init = init.assign(layer=init["name"].str.split("/").str[1].astype(int))
    sns.lineplot(init, x="layer", y="value", hue="model", hue_order=order, style="init_scale", marker="o",
                 errorbar=("ci", 95), seed=0, ax=axes[1])
    axes[1].set(yscale="log", xlabel="layer (input -> classifier)", ylabel="gradient norm",
                title=f"Per-layer gradient norm at init, depth {int(t['depth'].max())}")
    fig.tight_layout()
    return fig


CLAIM = Claim(
    "gradient_flow",
    statement="BN keeps gradients from vanishing or exploding.",
    source="Ioffe & Szegedy 2015 (sec. 3.3); the BN notes. v1-v3 also read Bjorck et al. 2018, now resnet_gradients",
    published="With BN, back-propagation through a layer is unaffected by the scale of its parameters: "
              "BN((aW)u) = BN(Wu), and larger weights lead to smaller gradients.",
    unit="ratio",
    order=60,
    versions=VERSIONS,
    figure=figure,
    curves=curves,
)
