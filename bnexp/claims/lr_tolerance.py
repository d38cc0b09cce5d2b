"""lr_tolerance: BN tolerates far higher learning rates."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from scipy.stats import binomtest

from bnexp.method import protocol as pr
from bnexp.method.contract import Claim, Context, Pilot, Version, from_estimate
from bnexp.method.readings import final_acc
from bnexp.method.sequential import PLAN_V4
from bnexp.method.stats import bracket_interval, decide, paired, t_interval
from bnexp.records import Record

# --- v1: the criterion as first written ----------------------------------------------------------

GOOD_V1 = 0.05  # "within a few points of the model's best": 5 points of test accuracy
THRESHOLD_V1 = 4.0  # BN's largest good lr / plain's


def endpoints_v1(rec: Record) -> dict:
    return {"final_acc": final_acc(rec)}


def verdict_v1(t: pd.DataFrame, ctx: Context):
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


# --- v2: the trainability boundary, found by bisection ----------------------------------------

LOW_V2, HIGH_V2 = 0.01, 100.0  # the bracket the bisection starts from (assumed, never run)
TRAINS_V2 = 0.20  # a run trains: completed, and test accuracy (recalibrated BN statistics) >= 2x chance
THRESHOLD_V2 = 4.0  # BN's boundary / plain's


def endpoints_v2(rec: Record) -> dict:
    recal = rec.summary.get("test_recal_acc")
    acc = float(recal) if recal is not None else final_acc(rec)
    return {"final_acc": final_acc(rec), "recal_acc": acc,
            "trains": bool(rec.summary["status"] == "completed" and acc >= TRAINS_V2)}


def brackets_v2(t: pd.DataFrame) -> pd.DataFrame:
    """Per (model, seed): the largest lr that trained (or the bracket's low end) and the
    smallest that did not (or its high end), over every probe of that model and seed."""
    def bracket(g: pd.DataFrame) -> pd.Series:
        ok, bad = g.loc[g["trains"].astype(bool), "lr"], g.loc[~g["trains"].astype(bool), "lr"]
        return pd.Series({"low": max(ok.max() if len(ok) else LOW_V2, LOW_V2),
                          "high": min(bad.min() if len(bad) else HIGH_V2, HIGH_V2), "probes": len(g)})

    return t.groupby(["choice_model", "seed"])[["lr", "trains"]].apply(bracket)


def verdict_v2(t: pd.DataFrame, ctx: Context):
    b = brackets_v2(t)
    lows = paired(b["low"]["bn"], b["high"]["plain"], lambda a, c: a / c)
    highs = paired(b["high"]["bn"], b["low"]["plain"], lambda a, c: a / c)
    ratio = bracket_interval(lows, highs, log=True)
    detail = [f"trainability boundary (largest lr with test accuracy >= {TRAINS_V2:g} after recalibrating BN "
              f"statistics), BN / plain = {ratio}"]
    for model, g in b.groupby(level=0):
        cells = ", ".join(f"s{seed}: [{row.low:.3g}, {row.high:.3g}]" for (_, seed), row in g.iterrows())
        detail.append(f"{model} boundary brackets: {cells}")
    if "gn" in b.index.get_level_values(0):
        gn = bracket_interval(paired(b["low"]["gn"], b["high"]["plain"], lambda a, c: a / c),
                              paired(b["high"]["gn"], b["low"]["plain"], lambda a, c: a / c), log=True)
        detail.append(f"GN / plain = {gn}")
    lag = t[(t["choice_model"] == "bn") & (t["status"] == "completed")]
    if len(lag):
        gap = (lag["recal_acc"] - lag["final_acc"]).groupby(lag["lr"] >= 1.0).mean()
        detail.append("BN accuracy gained by recalibrating its statistics: " + ", ".join(
            f"{'lr >= 1' if big else 'lr < 1'}: {v * 100:+.1f} points" for big, v in gap.items()))
    return from_estimate(decide(ratio, THRESHOLD_V2, at_least=True), ratio, detail,
                         {"brackets": {f"{m} s{s}": [r.low, r.high] for (m, s), r in b.iterrows()}})


# --- v3: brackets that cannot invert; BN probed below lr 1; the bar's neighbours ------------------

LOW_V3, HIGH_V3 = 0.001, 100.0  # the bisection's bracket (assumed, never run): its first probe is 0.32
TRAINS_V3 = 0.20  # a probe trains: completed, test accuracy (BN: recalibrated statistics) >= this
THRESHOLD_V3 = 4.0  # BN's boundary / plain's


def brackets_v3(t: pd.DataFrame, bar: float = TRAINS_V3, relative: bool = False) -> pd.DataFrame:
    """Per (model, seed): the trainability boundary's bracket over every probe, monotone by
    construction. low: the largest lr that trained below the smallest that failed; high: the
    smallest lr that failed above the largest that trained. Where probes are not monotone (an lr
    trains above one that failed), the bracket widens to hold every crossing and is flagged;
    low < high always. `relative`: a probe trains at `bar` x the best accuracy of its model and seed."""
    def bracket(g: pd.DataFrame) -> pd.Series:
        need = bar * g["recal_acc"].max() if relative else bar
        trains = (g["status"] == "completed") & (g["recal_acc"] >= need)
        ok, bad = g.loc[trains, "lr"], g.loc[~trains, "lr"]
        first_bad = bad.min() if len(bad) else HIGH_V3
        last_ok = ok.max() if len(ok) else LOW_V3
        low = max([x for x in ok if x < first_bad] + [LOW_V3])
        high = min([x for x in bad if x > last_ok] + [HIGH_V3])
        return pd.Series({"low": float(low), "high": float(high), "probes": len(g),
                          "monotone": bool(last_ok < first_bad)})

    return t.groupby(["choice_model", "seed"])[["lr", "status", "recal_acc"]].apply(bracket)


def _ratio(t: pd.DataFrame, bar: float, relative: bool) -> tuple[list[float], list[float]]:
    b = brackets_v3(t, bar, relative)
    return (paired(b["low"]["bn"], b["high"]["plain"], lambda a, c: a / c),
            paired(b["high"]["bn"], b["low"]["plain"], lambda a, c: a / c))


def _protocol_v3(bar: float, relative: bool) -> pr.Protocol:
    words = f"{bar:g} x the model's best accuracy" if relative else f"accuracy >= {bar:g}"
    part = pr.Part(f"trainability boundary ({words}), BN / plain", lambda r, c: _ratio(r, bar, relative),
                   THRESHOLD_V3, True, log=True)
    guard = pr.Guard("plain's best probe accuracy (mean over seeds): the bar is reachable",
                     lambda r, c: float(r[r["choice_model"] == "plain"].groupby("seed")["recal_acc"].max().mean()),
                     TRAINS_V3, True, (), "plain never reaches the bar at any lr, so it has no boundary to compare")
    return pr.Protocol((part,), guards=(guard,))


def protocol_v3() -> pr.Protocol:
    # The bar moves the statistic itself (where each probe counts as trained): each neighbour rebuilt.
    return pr.with_neighbours(_protocol_v3(TRAINS_V3, False),
                              ("bar 0.15", _protocol_v3(0.15, False)), ("bar 0.25", _protocol_v3(0.25, False)),
                              ("bar 0.5 x each model's best", _protocol_v3(0.5, True)),
                              ("bar 0.75 x each model's best", _protocol_v3(0.75, True)))


def verdict_v3(t: pd.DataFrame, ctx: Context):
    b = brackets_v3(t)
    detail = []
    for model, g in b.groupby(level=0):
        cells = ", ".join(f"s{seed}: [{row.low:.3g}, {row.high:.3g}]" + ("" if row.monotone else " (not monotone)")
                          for (_, seed), row in g.iterrows())
        detail.append(f"{model} boundary brackets: {cells}")
    flat = int((~b["monotone"].astype(bool)).sum())
    if flat:
        detail.append(f"{flat} bracket(s) where an lr trained above one that failed: widened to hold every crossing")
    best = t.groupby("choice_model")["recal_acc"].max()
    detail.append("best probe accuracy (recalibrated statistics): "
                  + ", ".join(f"{m}: {v:.3f}" for m, v in best.items()))
    return pr.verdict(protocol_v3(), t, ctx, detail,
                      {"brackets": {f"{m} s{s}": [r.low, r.high] for (m, s), r in b.iterrows()},
                       "reference_acc": float(best.get("bn", float("nan"))), "reference_arm": "BN (best probe)"})



# --- v4: a finer bisection, each probe judged by a binomial interval on the bar, 5 seeds first ----
# v3 was decided on 3 seeds whose brackets were identical (a 5-step bisection over 5 decades leaves
# brackets 1.43x wide), so its interval was the grid's width. v4 bisects 8 steps at quick (1.046x),
# so seeds can differ; a probe counts as trained or failed only where the 95% binomial
# (Clopper-Pearson) interval of its test accuracy is clear of the bar, and an undecided probe stays
# inside the bracket; the first look is at 5 seeds; the guard is judged by its interval and piloted
# on tuning seeds (configs/experiment/lr_tolerance/pilot.yaml).

TRAINS_V4 = 0.20  # the bar: test accuracy (BN's on recalibrated statistics), judged by its binomial interval
THRESHOLD_V4 = 4.0  # BN's boundary / plain's
TEST_IMAGES = 10_000  # CIFAR-10's test split: what test_size 0 evaluates


def endpoints_v4(rec: Record) -> dict:
    """v2's, and the images its accuracies are measured on (the binomial intervals' n)."""
    d = rec.config["dataset"]
    return endpoints_v2(rec) | {"test_n": int(d["test_size"] or TEST_IMAGES), "val_n": int(d["val_size"])}


def binomial_ends(acc: pd.Series, n: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The 95% Clopper-Pearson interval of each accuracy measured on n images (scipy's exact one)."""
    k = (acc.fillna(0.0) * n).round().astype(int)
    ends = [binomtest(int(x), int(m)).proportion_ci(0.95, "exact") for x, m in zip(k, n, strict=True)]
    return pd.Series([e.low for e in ends], index=acc.index), pd.Series([e.high for e in ends], index=acc.index)


def probe_outcomes(g: pd.DataFrame, bar: float) -> tuple[pd.Series, pd.Series]:
    """(trained, failed) per probe: trained when it completed and the lower end of the 95% binomial
    interval of its accuracy over its `test_n` images is >= bar; failed when it diverged or the
    upper end is below the bar; neither: undecided."""
    low, high = binomial_ends(g["recal_acc"], g["test_n"])
    completed = g["status"] == "completed"
    return completed & (low >= bar), ~completed | (high < bar)


def brackets_v4(t: pd.DataFrame, bar: float = TRAINS_V4, relative: bool = False) -> pd.DataFrame:
    """Per (model, seed): the boundary's bracket. low: the largest lr that trained below every lr that
    did not; high: the smallest lr that failed above every lr that did not fail; so undecided probes
    and crossings (an lr that trained above one that failed) lie inside it, and low < high always.
    `relative`: the bar is `bar` x the best accuracy of that model and seed."""
    def bracket(g: pd.DataFrame) -> pd.Series:
        need = bar * g["recal_acc"].max() if relative else bar
        ok, bad = probe_outcomes(g, need)
        first_not_ok = g.loc[~ok, "lr"].min() if (~ok).any() else HIGH_V3
        last_not_bad = g.loc[~bad, "lr"].max() if (~bad).any() else LOW_V3
        low = max([x for x in g.loc[ok, "lr"] if x < first_not_ok] + [LOW_V3])
        high = min([x for x in g.loc[bad, "lr"] if x > last_not_bad] + [HIGH_V3])
        return pd.Series({"low": float(low), "high": float(high), "probes": len(g),
                          "undecided": int((~ok & ~bad).sum())})

    return t.groupby(["choice_model", "seed"])[["lr", "status", "recal_acc", "test_n"]].apply(bracket)


def _ratio_v4(t: pd.DataFrame, bar: float, relative: bool) -> tuple[list[float], list[float]]:
    b = brackets_v4(t, bar, relative)
    return (paired(b["low"]["bn"], b["high"]["plain"], lambda a, c: a / c),
            paired(b["high"]["bn"], b["low"]["plain"], lambda a, c: a / c))


def _plain_best(r: pd.DataFrame, c: Context) -> list[float]:
    """Per seed: the lower end of the binomial interval of plain's best probe accuracy (clearly trained
    where it is >= the bar, as a probe is judged)."""
    plain = r[r["choice_model"] == "plain"]
    best = plain.loc[plain.groupby("seed")["recal_acc"].idxmax()]
    return list(binomial_ends(best["recal_acc"], best["test_n"])[0])


def _protocol_v4(bar: float, relative: bool) -> pr.Protocol:
    words = f"{bar:g} x the model's best accuracy" if relative else f"accuracy >= {bar:g}"
    part = pr.Part(f"trainability boundary ({words}, by its binomial interval), BN / plain",
                   lambda r, c: _ratio_v4(r, bar, relative), THRESHOLD_V4, True, log=True)
    guard = pr.interval_guard("plain's best probe accuracy, the lower end of its binomial interval (lower end of the "
                              "95% interval over seeds): the bar is reachable", _plain_best, TRAINS_V4, True, (),
                              "plain does not reach the bar at any lr, so it has no boundary to compare")
    return pr.Protocol((part,), PLAN_V4, guards=(guard,))


def protocol_v4() -> pr.Protocol:
    return pr.with_neighbours(_protocol_v4(TRAINS_V4, False),
                              ("bar 0.15", _protocol_v4(0.15, False)), ("bar 0.25", _protocol_v4(0.25, False)),
                              ("bar 0.5 x each model's best", _protocol_v4(0.5, True)),
                              ("bar 0.75 x each model's best", _protocol_v4(0.75, True)))


def verdict_v4(t: pd.DataFrame, ctx: Context):
    b = brackets_v4(t)
    detail = []
    for model, g in b.groupby(level=0):
        cells = ", ".join(f"s{seed}: [{row.low:.3g}, {row.high:.3g}]" + (f" ({int(row.undecided)} undecided)"
                                                                         if row.undecided else "")
                          for (_, seed), row in g.iterrows())
        detail.append(f"{model} boundary brackets: {cells}")
    low, _ = _ratio_v4(t, TRAINS_V4, False)
    clear = sum(x >= THRESHOLD_V4 for x in low)
    detail.append(f"seeds whose whole bracket of BN / plain is >= {THRESHOLD_V4:g}: {clear} of {len(low)}")
    best = t.groupby("choice_model")["recal_acc"].max()
    detail.append("best probe accuracy (recalibrated statistics): "
                  + ", ".join(f"{m}: {v:.3f}" for m, v in best.items()))
    return pr.verdict(protocol_v4(), t, ctx, detail,
                      {"brackets": {f"{m} s{s}": [r.low, r.high] for (m, s), r in b.iterrows()},
                       "reference_acc": float(best.get("bn", float("nan"))), "reference_arm": "BN (best probe)"})


def pilot_rows_v4(tuning: pd.DataFrame, tuned: dict) -> pd.DataFrame:
    """The pilot: plain's bisection on the tuning seeds (configs/experiment/lr_tolerance/pilot.yaml),
    its validation accuracy (on val_n images) standing for the test accuracy the verdict reads."""
    runs = tuning[tuning["experiment"] == "lr_tolerance/pilot"]
    return runs.assign(recal_acc=runs["val_acc"].astype(float), test_n=runs["val_n"])


VERSIONS = {
    1: Version(f"largest lr whose accuracy is within {GOOD_V1 * 100:.0f} points of the model's best is "
               f">= {THRESHOLD_V1:g}x higher with BN than plain",
               "per-seed ratio of grid learning rates, paired by seed; 95% t-interval on the log ratio",
               endpoints_v1, verdict_v1, "lr_tolerance"),
    2: Version(f"trainability boundary (largest constant lr, no warm-up, at which a run completes with test "
               f"accuracy >= {TRAINS_V2:g}, BN's with statistics recalibrated on the final weights) is >= "
               f"{THRESHOLD_V2:g}x higher with BN than plain; boundaries bisected in log lr from "
               f"[{LOW_V2:g}, {HIGH_V2:g}]",
               "per-seed bracket of the BN/plain boundary ratio, paired by seed; the interval runs from the lower "
               "end of the low ratios' 95% log t-interval to the upper end of the high ratios'",
               endpoints_v2, verdict_v2, "lr_tolerance"),
    3: Version(f"trainability boundary (largest constant lr, no warm-up, at which a run completes with test accuracy "
               f">= {TRAINS_V3:g}, BN's on recalibrated statistics) is >= {THRESHOLD_V3:g}x higher with BN than plain; "
               f"bisected in log lr from [{LOW_V3:g}, {HIGH_V3:g}] (so every model is probed below lr 1); brackets "
               "monotone by construction; untestable unless plain reaches the bar at some lr",
               "per-seed bracket of the BN/plain boundary ratio, paired by seed; from the lower end of the low "
               "ratios' repeated log t-interval to the upper end of the high ratios' (sequential plan: looks at 3, "
               "5, 8 seeds, O'Brien-Fleming-type spending)",
               endpoints_v2, verdict_v3, "lr_tolerance",
               protocol=protocol_v3),
    4: Version(f"trainability boundary (largest constant lr, no warm-up, at which a run completes with test accuracy "
               f">= {TRAINS_V4:g}, BN's on recalibrated statistics) is >= {THRESHOLD_V4:g}x higher with BN than plain; "
               f"bisected in log lr from [{LOW_V3:g}, {HIGH_V3:g}] in the profile's steps (8 at quick: brackets "
               "1.046x wide); a probe trains, or fails, only where the 95% binomial interval of its test accuracy "
               "is clear of the bar (an undecided probe stays inside the bracket); untestable unless plain's best "
               "probe clearly trains (the lower end over seeds of its binomial interval's lower end reaches the bar)",
               "per-seed bracket of the BN/plain boundary ratio, paired by seed; from the lower end of the low "
               "ratios' repeated log t-interval to the upper end of the high ratios' (sequential plan: looks at "
               f"{', '.join(map(str, PLAN_V4.looks))} seeds, Pocock-type spending); the guard by its 95% "
               "t-interval, piloted on tuning seeds before registration",
               endpoints_v4, verdict_v4, "lr_tolerance", protocol=protocol_v4, pilot=Pilot(pilot_rows_v4)),
}


def figure(t: pd.DataFrame, curves: pd.DataFrame, result) -> plt.Figure:
    if "recal_acc" in t and t["recal_acc"].notna().all():
        return _figure_v2(t)
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


def _figure_v2(t: pd.DataFrame) -> plt.Figure:
    """Every bisection probe: accuracy against lr, BN also with recalibrated statistics."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    t = t.rename(columns={"choice_model": "model"})
    palette = {"plain": "C0", "bn": "C1", "gn": "C2"}  # fixed, so recalibrated BN (C3) never shares a colour
    sns.scatterplot(t, x="lr", y="final_acc", hue="model", style="status", s=50, ax=ax,
                    palette={m: palette.get(m, "C4") for m in t["model"].unique()})
    bn = t[t["model"] == "bn"].sort_values("lr")
    if len(bn):
        ax.scatter(bn["lr"], bn["recal_acc"], marker="^", facecolors="none", edgecolors="C3", s=60,
                   label="bn, recalibrated statistics")
    ax.axhline(TRAINS_V2, color="grey", ls="--", lw=1, label="trains")
    ax.set(xscale="log", xlabel="learning rate (constant, no warm-up)", ylabel="final test accuracy",
           title="Bisection probes: accuracy vs learning rate")
    ax.legend(fontsize=8, loc="upper left")
    return fig


CLAIM = Claim(
    "lr_tolerance",
    statement="BN tolerates far higher learning rates.",
    source="Ioffe & Szegedy 2015; Bjorck et al. 2018",
    published="BN-x5 and BN-x30 (5x, 30x lr) trained Inception; 5x sent plain Inception to 'machine infinity'. "
              "ResNet-110: lr 0.1 with BN, 0.0001 without.",
    unit="ratio",
    order=10,
    versions=VERSIONS,
    figure=figure,
)
