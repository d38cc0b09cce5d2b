"""small_batch: BN degrades at small batch sizes; GN does not."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bnexp.method import protocol as pr
from bnexp.method.contract import Claim, Context, Pilot, Question, Use, Version, from_estimate
from bnexp.method.readings import arm, final_acc, images_per_statistic, rows
from bnexp.method.sequential import PLAN_V4
from bnexp.method.stats import combine, decide, paired, per_seed, t_interval
from bnexp.records import Record

# --- v1: the criterion as first written ----------------------------------------------------------

RISE_V1 = 0.05  # BN's test error rises at least this much from the largest to the smallest batch
GN_DIVISOR_V1 = 3  # GN's rise is at most BN's divided by this


def endpoints_v1(rec: Record) -> dict:
    return {"final_acc": final_acc(rec), "arm": arm(rec), "per_stat": images_per_statistic(rec)}


def batchstats_gap(t: pd.DataFrame) -> list[str]:
    """Accuracy with batch statistics minus running statistics, for the BN arms (eval_semantics too)."""
    bs = t.dropna(subset=["test_batchstats_acc"])
    bs = bs[bs["arm"].isin(["bn", "ghost_bn"])]
    if bs.empty:
        return []
    gaps = (bs["test_batchstats_acc"] - bs["final_acc"]).groupby([bs["arm"], bs["per_stat"]]).mean()
    return ["eval with batch statistics minus running statistics (accuracy): "
            + ", ".join(f"{a} {b}: {g:+.3f}" for (a, b), g in gaps.items())]


def verdict_v1(t: pd.DataFrame, ctx: Context):
    t = t.assign(err=1 - t["final_acc"], per_stat=t["per_stat"].astype(int))
    lo, hi = t["per_stat"].min(), t["per_stat"].max()

    def err(a: str, b: int) -> pd.Series:
        return per_seed(t[(t["arm"] == a) & (t["per_stat"] == b)], "err")

    def rise(a: str) -> pd.Series:
        return (err(a, lo) - err(a, hi)).dropna()  # aligned on the seed

    bn_rise = t_interval(rise("bn"))
    gn_vs = t_interval(paired(rise("gn"), rise("bn"), lambda g, b: g - b / GN_DIVISOR_V1))
    gap = t_interval(paired(err("bn", lo), err("gn", lo), lambda a, b: a - b))
    v = combine(decide(bn_rise, RISE_V1, at_least=True), decide(gn_vs, 0.0, at_least=False),
                decide(gap, 0.0, at_least=True))
    detail = [f"BN test error rise from {hi} to {lo} images per statistic: {bn_rise} (criterion >= {RISE_V1:g})",
              f"GN rise - BN rise / {GN_DIVISOR_V1}: {gn_vs} (criterion <= 0)",
              f"BN error - GN error at {lo}: {gap} (criterion > 0)"]
    for a in ("frozen_bn", "ghost_bn"):
        if a in set(t["arm"]):
            detail.append(f"{a} rise: {t_interval(rise(a))}")
    table = t.groupby(["arm", "per_stat"])["err"].mean()
    for a, g in table.groupby(level=0):
        detail.append(f"{a} mean test error by images per statistic: "
                      + ", ".join(f"{b}: {e:.3f}" for (_, b), e in g.items()))
    detail += batchstats_gap(t)
    return from_estimate(v, bn_rise, detail)


# --- v2: the statistics apart from the optimiser ------------------------------------------------

RISE_V2 = 0.05  # BN's test error rises at least this much from 128 to 2 images per statistic
SMALL_V2, LARGE_V2 = "ghost2", "bn"  # the cells compared: 2 and 128 images per statistic, batch 128
PER_DEVICE_V2 = {"bn": 128, "ghost16": 16, "ghost4": 4, "ghost2": 2, "renorm4": 4, "renorm2": 2,
                 "gn": 128, "paper_bn2": 2, "paper_gn2": 2}


def endpoints_v2(rec: Record) -> dict:
    recal = rec.summary.get("test_recal_acc")
    return {"final_acc": final_acc(rec), "arm": arm(rec),
            "recal_acc": float(recal) if recal is not None else final_acc(rec)}


def verdict_v2(t: pd.DataFrame, ctx: Context):
    t = t.assign(err=1 - t["final_acc"])

    def err(cell: str) -> pd.Series:
        return per_seed(t[t["arm"] == cell], "err")

    rise = t_interval(paired(err(SMALL_V2), err(LARGE_V2), lambda a, b: a - b))
    gap = t_interval(paired(err(SMALL_V2), err("gn"), lambda a, b: a - b))
    v = combine(decide(rise, RISE_V2, at_least=True), decide(gap, 0.0, at_least=True))
    detail = [f"BN test error at 2 minus 128 images per statistic (optimiser batch 128 for both): {rise} "
              f"(criterion >= {RISE_V2:g})",
              f"BN error at 2 images per statistic minus GN error (both batch 128): {gap} (criterion > 0)"]
    for remedy, base in (("renorm2", "ghost2"), ("renorm4", "ghost4")):
        if remedy in set(t["arm"]) and base in set(t["arm"]):
            detail.append(f"Batch Renorm minus BN error at {PER_DEVICE_V2[base]} images per statistic: "
                          f"{t_interval(paired(err(remedy), err(base), lambda a, b: a - b))}")
    if {"paper_bn2", "paper_gn2"} <= set(t["arm"]):
        detail.append("Wu & He's protocol at 2 images per device (batch 16, 8 devices, lr 0.1*N/32, same epochs), "
                      f"descriptive: BN error {err('paper_bn2').mean():.3f}, GN error {err('paper_gn2').mean():.3f}, "
                      f"BN - GN = {t_interval(paired(err('paper_bn2'), err('paper_gn2'), lambda a, b: a - b))}")
    means = t.groupby("arm")[["err", "recal_acc", "test_batchstats_acc"]].mean()
    detail.append("mean test error by cell: " + ", ".join(f"{a}: {r.err:.3f}" for a, r in means.iterrows()))
    detail.append("test error with statistics recalibrated on the final weights (per-device, as in training): "
                  + ", ".join(f"{a}: {1 - r.recal_acc:.3f}" for a, r in means.iterrows()))
    return from_estimate(v, rise, detail)


# --- v3: the GN half judged only where GN is on par with BN at the large batch -----------------

RISE_V3 = 0.05  # BN's test error rises at least this much from 128 to 2 images per statistic
GN_PAR_V3 = 0.03  # guard: GN's test error at 128 images per statistic at most this much above BN's


def _err(t: pd.DataFrame, cell: str) -> pd.Series:
    return 1 - per_seed(t[t["arm"] == cell], "final_acc")


def protocol_v3() -> pr.Protocol:
    rise = pr.Part("BN error at 2 minus at 128 images per statistic",
                   lambda r, c: paired(_err(r, "ghost2"), _err(r, "bn"), lambda a, b: a - b), RISE_V3, True)
    gn = pr.Part("BN error at 2 images per statistic minus GN error",
                 lambda r, c: paired(_err(r, "ghost2"), _err(r, "gn"), lambda a, b: a - b), 0.0, True)
    par = pr.Guard("GN's test error minus BN's at 128 images per statistic (mean over seeds)",
                   lambda r, c: float(pd.Series(paired(_err(r, "gn"), _err(r, "bn"), lambda a, b: a - b)).mean()),
                   GN_PAR_V3, False, (gn.name,),
                   "GN trails BN already at the large batch in this regime (Wu & He: 0.5 points), so whether it "
                   "beats BN at 2 images per statistic says nothing about batch size")
    base = pr.Protocol((rise, gn), guards=(par,))
    return pr.with_neighbours(base, ("rise >= 0.03", pr.with_threshold(base, rise, 0.03)),
                              ("rise >= 0.07", pr.with_threshold(base, rise, 0.07)),
                              ("GN on par within 0.02", pr.with_guard(base, par, 0.02)),
                              ("GN on par within 0.05", pr.with_guard(base, par, 0.05)))


def verdict_v3(t: pd.DataFrame, ctx: Context):
    means = t.assign(err=1 - t["final_acc"]).groupby("arm")[["err", "recal_acc"]].mean()
    detail = ["mean test error by cell: " + ", ".join(f"{a}: {r.err:.3f}" for a, r in means.iterrows()),
              "test error with statistics recalibrated on the final weights: "
              + ", ".join(f"{a}: {1 - r.recal_acc:.3f}" for a, r in means.iterrows())]
    ref = 1 - means["err"].get("bn", float("nan"))
    return pr.verdict(protocol_v3(), t, ctx, detail, {"reference_acc": ref, "reference_arm": "BN at 128"})


# --- v4: a regime where GN can keep up with BN, and GN's own batch independence tested ------------

RISE_V4 = 0.05  # BN's test error rises at least this much from 128 to 2 images per statistic
GN_PAR_V4 = 0.03  # guard: the upper end of GN+WS's test error minus BN's at 128 images per statistic
FLAT_V4 = 0.02  # GN+WS at the real small batch within +-this of GN+WS at 128 (two one-sided tests: TOST)
SMALL_V4 = "v4_gnws_small"  # GN+WS trained at the profile's small batch (v4_small_batch), lr scaled linearly


def _protocol_v4(rise_at: float = RISE_V4, par: float = GN_PAR_V4, flat: float = FLAT_V4) -> pr.Protocol:
    rise = pr.Part("BN error at 2 minus at 128 images per statistic",
                   lambda r, c: paired(_err(r, "v4_ghost2"), _err(r, "v4_bn"), lambda a, b: a - b), rise_at, True)
    beats = pr.Part("BN error at 2 images per statistic minus GN+WS error",
                    lambda r, c: paired(_err(r, "v4_ghost2"), _err(r, "v4_gnws"), lambda a, b: a - b), 0.0, True)

    def small(r: pd.DataFrame, c: Context) -> list[float]:
        return paired(_err(r, SMALL_V4), _err(r, "v4_gnws"), lambda a, b: a - b)

    # Equivalence as two one-sided parts (TOST is exactly this intersection-union test).
    upper = pr.Part("GN+WS error at the small batch minus at 128 (upper side)", small, flat, False)
    lower = pr.Part("GN+WS error at the small batch minus at 128 (lower side)", small, -flat, True)
    par_guard = pr.interval_guard(
        "GN+WS's test error minus BN's at 128 images per statistic (upper end of its 95% interval)",
        lambda r, c: paired(_err(r, "v4_gnws"), _err(r, "v4_bn"), lambda a, b: a - b), par, False,
        (beats.name, upper.name, lower.name),
        "GN+WS trails BN already at the large batch in this regime (Wu & He: 0.5 points), so neither its "
        "win at 2 images per statistic nor its flatness across batch sizes says anything about batch size")
    return pr.Protocol((rise, beats, upper, lower), PLAN_V4, guards=(par_guard,))


def protocol_v4() -> pr.Protocol:
    base = _protocol_v4()
    par = base.guards[0]
    # The equivalence margin moves both one-sided parts: rebuilt from the builder. The guard is open
    # (as from landscape v5 on): a look where only its interval still reaches past 3 points, its mean
    # under them, leaves the GN parts undecided and the plan going.
    return pr.with_open_guards(pr.with_neighbours(
        base, ("rise >= 0.03", pr.with_threshold(base, base.parts[0], 0.03)),
        ("rise >= 0.07", pr.with_threshold(base, base.parts[0], 0.07)),
        ("GN+WS on par within 0.02", pr.with_guard(base, par, 0.02)),
        ("GN+WS on par within 0.05", pr.with_guard(base, par, 0.05)),
        ("GN flat within 0.01", _protocol_v4(flat=0.01)),
        ("GN flat within 0.03", _protocol_v4(flat=0.03))))


def verdict_v4(t: pd.DataFrame, ctx: Context):
    means = t.assign(err=1 - t["final_acc"]).groupby("arm")[["err", "recal_acc"]].mean()
    detail = ["mean test error by cell: " + ", ".join(f"{a}: {r.err:.3f}" for a, r in means.iterrows()),
              "test error with statistics recalibrated on the final weights: "
              + ", ".join(f"{a}: {1 - r.recal_acc:.3f}" for a, r in means.iterrows())]
    ref = 1 - means["err"].get("v4_bn", float("nan"))
    return pr.verdict(protocol_v4(), t, ctx, detail, {"reference_acc": ref, "reference_arm": "BN at 128"})


def pilot_rows_v4(tuning: pd.DataFrame, tuned: dict) -> pd.DataFrame:
    """The pilot: BN and GN+WS at 128 images per statistic from the calibration sweep, at their tuned
    lrs, on the tuning seeds, their validation accuracy standing for the test accuracy the verdict reads."""
    answer = tuned["small_batch/lr_v4"]["values"]
    runs = tuning[tuning["experiment"] == "small_batch/tune_v4"]
    cells = []
    for cell in ("v4_bn", "v4_gnws"):
        own = rows(runs[runs["choice_arm"] == f"small_batch/{cell}"], lr=float(answer[cell]))
        cells.append(own.assign(arm=cell, final_acc=own["val_acc"].astype(float)))
    return pd.concat(cells, ignore_index=True)


TUNING = (  # tuned at every profile (bnexp/calibration.py); versions from v3 on read the answers
    Question("small_batch/lr", "lr", ("bn", "gn")),  # per 256 images, at 128 images per statistic
    # v4's regime (a CIFAR ResNet, GN with weight standardisation): configs/experiment/small_batch/tune_v4.yaml
    Question("small_batch/lr_v4", "lr", ("v4_bn", "v4_gnws"), sweep="tune_v4"),
)


VERSIONS = {
    1: Version(f"BN error rises >= {RISE_V1 * 100:g} points from the largest to the smallest batch; GN's rise "
               f"<= 1/{GN_DIVISOR_V1} of BN's; GN beats BN at the smallest batch",
               "per-seed differences of test error, paired by seed; 95% t-intervals",
               endpoints_v1, verdict_v1, "small_batch"),
    2: Version(f"at one optimiser batch (128) and lr, BN's test error with statistics over 2 images per device "
               f"(ghost BN) exceeds that with statistics over all 128 by >= {RISE_V2 * 100:g} points, and GN "
               "(same batch and lr) has a lower error than BN at 2 images per device",
               "per-seed differences of test error (running statistics, as deployed), paired by seed; 95% "
               "t-intervals; both criteria must hold",
               endpoints_v2, verdict_v2, "small_batch"),
    3: Version(f"at one optimiser batch (128): BN's test error with statistics over 2 images per device exceeds that "
               f"over all 128 by >= {RISE_V3 * 100:g} points (each arm at its lr tuned at this profile), and GN has a "
               f"lower error than BN at 2 images per device, judged only if GN's error at 128 is within "
               f"{GN_PAR_V3 * 100:g} points of BN's (else that part is untestable at this scale); both parts must hold",
               "per-seed differences of test error, paired by seed; repeated 95% t-intervals of a registered "
               "sequential plan (looks at 3, 5, 8 seeds, O'Brien-Fleming-type spending)",
               endpoints_v2, verdict_v3, "small_batch",
               uses=(Use("small_batch/lr", "arm", "bn", "bn"), Use("small_batch/lr", "arm", "ghost2", "bn"),
                     Use("small_batch/lr", "arm", "gn", "gn")),
               protocol=protocol_v3),
    4: Version(f"in a CIFAR ResNet with GN plus weight standardisation (GN+WS) as the GN arm, at one optimiser batch "
               f"(128): BN's test error with statistics over 2 images per device exceeds that over all 128 by >= "
               f"{RISE_V4 * 100:g} points (BN's lr tuned at this profile); GN+WS (its own tuned lr) has a lower error "
               f"than BN at 2 images per device; and GN+WS trained at a real small batch (lr scaled linearly, the same "
               f"epochs) is within +-{FLAT_V4 * 100:g} points of GN+WS at 128 (an equivalence test). The GN parts are "
               f"judged only if the upper end of GN+WS's error minus BN's at 128 is within {GN_PAR_V4 * 100:g} points "
               "(else untestable at this scale), the guard open: a look where it fails only by an interval still "
               "reaching past its bar, its mean within it, stays undecided and the plan goes on; every part must hold",
               "per-seed differences of test error, paired by seed; repeated 95% t-intervals of a registered "
               f"sequential plan (looks at {', '.join(map(str, PLAN_V4.looks))} seeds, Pocock-type spending); "
               "equivalence as two one-sided parts (TOST); the guard judged by its 95% t-interval, piloted on the "
               "tuning seeds before registration",
               endpoints_v2, verdict_v4, "small_batch",
               uses=(Use("small_batch/lr_v4", "arm", "v4_bn", "v4_bn"),
                     Use("small_batch/lr_v4", "arm", "v4_ghost2", "v4_bn"),
                     Use("small_batch/lr_v4", "arm", "v4_gnws", "v4_gnws"),
                     Use("small_batch/lr_v4", "arm", SMALL_V4, "v4_gnws")),
               protocol=protocol_v4, pilot=Pilot(pilot_rows_v4)),
}


# Written to be piloted before registration (bnexp/method/pilot.py): a draft moves into VERSIONS once
# `python -m bnexp.method.ledger pilot small_batch <n> --profile <p>` passes, with its sweep
# (configs/experiment/small_batch/v<n>_draft.yaml) as configs/experiment/small_batch.yaml.
DRAFTS: dict[int, Version] = {}


def figure(t: pd.DataFrame, curves: pd.DataFrame, result) -> plt.Figure:
    if t["arm"].astype(str).str.startswith("v4_").any():
        return _figure_v4(t, result)
    if "per_stat" not in t or t["per_stat"].isna().any() or "ghost2" in set(t["arm"]):
        return _figure_v2(t)
    t = t.assign(err=100 * (1 - t["final_acc"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(t, x="per_stat", y="err", hue="arm", marker="o", errorbar=("ci", 95), seed=0, ax=ax)
    ax.set_xscale("log", base=2)
    ticks = sorted(t["per_stat"].unique())
    ax.set_xticks(ticks, [str(int(b)) for b in ticks])
    ax.invert_xaxis()  # as in Wu & He's Figure 1: batch shrinking to the right
    ax.set(xlabel="images per BN statistic (batch size; ghost BN: virtual batch in 128)",
           ylabel="test error (%)", title="Test error vs batch size")
    return fig


def _figure_v4(t: pd.DataFrame, result) -> plt.Figure:
    """v4: test error by cell, BN at 128 and 2 images per statistic, GN+WS at 128 and at the small
    batch; the verdict and the thresholds it reads drawn on it."""
    order = [c for c in ("v4_bn", "v4_ghost2", "v4_gnws", SMALL_V4) if c in set(t["arm"])]
    names = {"v4_bn": "BN, 128 per statistic", "v4_ghost2": "BN, 2 per statistic", "v4_gnws": "GN+WS, batch 128",
             SMALL_V4: "GN+WS, small batch"}
    t = t[t["arm"].isin(order)].assign(err=100 * (1 - t["final_acc"]))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.pointplot(t, x="arm", y="err", order=order, errorbar=("ci", 95), seed=0, linestyles="none", ax=ax)
    ax.set_xticks(range(len(order)), [names[c] for c in order])
    if "v4_bn" in order:
        bn = t[t["arm"] == "v4_bn"]["err"].mean()
        ax.axhline(bn + 100 * RISE_V4, color="tab:red", ls="--", lw=1, label=f"BN at 128 + {RISE_V4 * 100:g} points")
        ax.axhline(bn + 100 * GN_PAR_V4, color="tab:grey", ls=":", lw=1,
                   label=f"BN at 128 + {GN_PAR_V4 * 100:g} (guard)")
    ax.set(xlabel="", ylabel="test error (%)", title=f"small_batch v4: {result.verdict}")
    ax.legend(fontsize=8)
    return fig


def _figure_v2(t: pd.DataFrame) -> plt.Figure:
    """Test error by images per device: BN (ghost), Batch Renorm, GN, and the paper's protocol."""
    t = t.assign(err=100 * (1 - t["final_acc"]), per_device=t["arm"].map(PER_DEVICE_V2),
                 family=t["arm"].map(lambda a: "paper protocol " + a[6:8] if a.startswith("paper") else
                                     "GN" if a == "gn" else "Batch Renorm" if a.startswith("renorm") else "BN"))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.lineplot(t, x="per_device", y="err", hue="family", marker="o", errorbar=("ci", 95), seed=0, ax=ax)
    gn = t[t["arm"] == "gn"]["err"]
    if len(gn):
        ax.axhline(gn.mean(), color="grey", ls="--", lw=1, label="GN (batch 128)")
    ax.set_xscale("log", base=2)
    drawn = sorted(int(b) for b in t["per_device"].dropna().unique())  # ticks for the cells drawn only
    ax.set_xticks(drawn, [str(b) for b in drawn])
    ax.invert_xaxis()
    ax.set(xlabel="images per BN statistic (per device); optimiser batch 128 unless 'paper protocol'",
           ylabel="test error (%)", title="Test error vs images per device")
    ax.legend(fontsize=8)
    return fig


CLAIM = Claim(
    "small_batch",
    statement="BN degrades at small batch sizes; GN does not.",
    source="Wu & He 2018",
    published="ResNet-50 ImageNet val error at 32/16/8/4/2 images per GPU: BN 23.6/23.7/24.8/27.3/34.7 "
              "(+11.1 points), GN 24.1/24.2/24.0/24.2/24.1.",
    unit="test error (fraction: 0.01 = 1 point)",
    order=40,
    versions=VERSIONS,
    drafts=DRAFTS,
    tuning=TUNING,
    notes=(
        "Images per device are emulated on one process by ghost BN: in training it computes what per-device BN "
        "computes under DistributedDataParallel with that many images per device (forward, gradients and "
        "parameters agree to float precision: tests/test_distributed.py), but the two keep different running "
        "statistics. Ghost BN updates them with the average of its virtual batches' statistics; DDP keeps rank 0's, "
        "from its own images only, and broadcasts them to every device before each training step. The test errors "
        "here use ghost BN's running statistics (the average over virtual batches); the recalibrated errors "
        "re-estimate them on the final weights, per virtual batch as in training.",
    ),
    figure=figure,
)
