"""init_insensitivity: BN removes the need for careful initialisation."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bnexp.method import protocol as pr
from bnexp.method.contract import Claim, Context, Pilot, Question, Use, Version, from_estimate
from bnexp.method.readings import arm, final_acc
from bnexp.method.sequential import PLAN_V4, Plan
from bnexp.method.stats import INCONCLUSIVE, decide, paired, ratio_pseudo_values, t_interval
from bnexp.records import Record

# --- v1: the criterion as first written ----------------------------------------------------------

THRESHOLD_V1 = 1 / 3  # BN's accuracy spread / plain's
CHANCE_BAND_V1 = 0.11  # CIFAR-10 accuracy at or below this is reported as "at chance"


def endpoints_v1(rec: Record) -> dict:
    return {"final_acc": final_acc(rec)}


def verdict_v1(t: pd.DataFrame, ctx: Context):
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


# --- v2: how much of careful init's accuracy survives other inits ---------------------------------

REFERENCE_V2 = ("kaiming_normal", 1.0)  # careful init: He, unscaled
CHANCE_V2 = 0.1
THRESHOLD_V2 = 0.3  # BN keeps at least this much more (as a fraction of its reference gain) than plain
GUARD_V2 = 0.2  # plain must train under careful init (mean accuracy >= this), or nothing is decided


def endpoints_v2(rec: Record) -> dict:
    return {"final_acc": final_acc(rec), "arm": arm(rec)}


def kept_v2(t: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, seed): each cell's gain over chance as a fraction of the reference cell's (at most 1),
    averaged over the cells, reference included; and the reference accuracy."""
    def one(g: pd.DataFrame) -> pd.Series:
        ref = g[(g["init_scheme"] == REFERENCE_V2[0]) & ((g["init_scale"] - REFERENCE_V2[1]).abs() < 1e-9)]
        ref_acc = float(ref["final_acc"].iloc[0]) if len(ref) else float("nan")
        frac = ((g["final_acc"] - CHANCE_V2) / max(ref_acc - CHANCE_V2, 1e-6)).clip(lower=0.0, upper=1.0)
        return pd.Series({"kept": float(frac.mean()), "reference": ref_acc, "cells": len(g)})

    return t.groupby(["arm", "seed"])[["init_scheme", "init_scale", "final_acc"]].apply(one)


def verdict_v2(t: pd.DataFrame, ctx: Context):
    k = kept_v2(t)
    diff = t_interval(paired(k["kept"]["bn"], k["kept"]["plain"], lambda a, b: a - b))
    plain_ref = t_interval(k["reference"]["plain"])
    v = decide(diff, THRESHOLD_V2, at_least=True)
    detail = [f"share of the careful-init accuracy gain kept across inits, BN - plain: {diff} "
              f"(criterion >= {THRESHOLD_V2:g})",
              f"kept: BN {t_interval(k['kept']['bn'])}, plain {t_interval(k['kept']['plain'])}",
              f"accuracy under careful init ({REFERENCE_V2[0]} x{REFERENCE_V2[1]:g}): BN "
              f"{t_interval(k['reference']['bn'])}, plain {plain_ref} (guard: plain >= {GUARD_V2:g})"]
    if not plain_ref.mean >= GUARD_V2:
        detail.append("plain did not train under careful init, so what other inits cost it cannot be measured")
        v = INCONCLUSIVE
    table = t.groupby(["arm", "init_scheme", "init_scale"])["final_acc"].mean()
    for model, g in table.groupby(level=0):
        detail.append(f"{model} mean test acc: " + ", ".join(f"{s} x{c:g}: {a:.3f}" for (_, s, c), a in g.items()))
    return from_estimate(v, diff, detail)


# --- v3: moderate scales and other schemes; the reference cell out of the mean ------------------

REFERENCE_V3 = ("kaiming_normal", 1.0)  # careful init: He, unscaled
CHANCE_V3 = 0.1
BN_KEEPS_V3 = 0.9  # BN keeps at least this share of its careful-init gain over chance, over the other inits
PLAIN_LOSES_V3 = 0.2  # guard: the other inits cost plain at least this share of its gain (else nothing to remove)
PLAIN_TRAINS_V3 = 0.2  # guard: plain's careful-init accuracy at least this


def kept_v3(t: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, seed): the mean over the non-reference cells of each cell's gain over chance as a
    share of the reference cell's (at most 1), and the reference accuracy."""
    def one(g: pd.DataFrame) -> pd.Series:
        is_ref = (g["init_scheme"] == REFERENCE_V3[0]) & ((g["init_scale"] - REFERENCE_V3[1]).abs() < 1e-9)
        ref_acc = float(g.loc[is_ref, "final_acc"].iloc[0]) if is_ref.any() else float("nan")
        share = ((g.loc[~is_ref, "final_acc"] - CHANCE_V3) / max(ref_acc - CHANCE_V3, 1e-6)).clip(0.0, 1.0)
        return pd.Series({"kept": float(share.mean()), "reference": ref_acc})

    return t.groupby(["arm", "seed"])[["init_scheme", "init_scale", "final_acc"]].apply(one)


def protocol_v3() -> pr.Protocol:
    bn = pr.Part("share of BN's careful-init gain kept across the other inits",
                 lambda r, c: list(kept_v3(r)["kept"]["bn"]), BN_KEEPS_V3, True)
    more = pr.Part("kept share, BN - plain", lambda r, c: paired(kept_v3(r)["kept"]["bn"], kept_v3(r)["kept"]["plain"],
                                                               lambda a, b: a - b), 0.0, True)
    loses = pr.Guard("share of plain's careful-init gain lost across the other inits (mean over seeds)",
                     lambda r, c: float(1 - kept_v3(r)["kept"]["plain"].mean()), PLAIN_LOSES_V3, True, (),
                     "these inits barely hurt plain, so there is no need of careful init for BN to remove")
    trains = pr.Guard("plain's accuracy under careful init (mean over seeds)",
                      lambda r, c: float(kept_v3(r)["reference"]["plain"].mean()), PLAIN_TRAINS_V3, True, (),
                      "plain does not train even under careful init")
    base = pr.Protocol((bn, more), guards=(loses, trains))
    return pr.with_neighbours(base, ("BN keeps >= 0.85", pr.with_threshold(base, bn, 0.85)),
                              ("BN keeps >= 0.95", pr.with_threshold(base, bn, 0.95)),
                              ("plain loses >= 0.1", pr.with_guard(base, loses, 0.1)),
                              ("plain loses >= 0.3", pr.with_guard(base, loses, 0.3)))


def verdict_v3(t: pd.DataFrame, ctx: Context):
    table = t.groupby(["arm", "init_scheme", "init_scale"])["final_acc"].mean()
    detail = [f"{m} mean test acc: " + ", ".join(f"{s} x{c:g}: {a:.3f}" for (_, s, c), a in g.items())
              for m, g in table.groupby(level=0)]
    ref = float(kept_v3(t)["reference"]["bn"].mean()) if "bn" in set(t["arm"]) else float("nan")
    return pr.verdict(protocol_v3(), t, ctx, detail, {"reference_acc": ref, "reference_arm": "BN, He x1"})


# --- v4: the share unclipped, against the reference arm's mean over seeds; BN - plain registered ---
# v3 clipped each cell's share at 1 against one reference run per seed: a noisy reference run made
# BN's other cells "keep" more than all of it, and the clip took that back (0.11 of BN's share at
# quick; unclipped 1.006), which left v3 at 0.895 against 0.9. v4 divides every seed's cells by the
# mean over seeds of the reference cell's gain (its noise averaged out, nothing clipped), requires
# BN - plain >= 0.3 (v2's registered margin), judges its guards by their intervals, piloted on
# tuning seeds (configs/experiment/init_insensitivity/pilot.yaml), and looks at 5, 8, 12 seeds.

BN_KEEPS_V4 = 0.9  # BN keeps at least this share of its careful-init gain over chance, over the other inits
MORE_V4 = 0.3  # BN's kept share minus plain's: at least this (v2's margin)
PLAIN_LOSES_V4 = 0.2  # guard: the other inits cost plain at least this share of its gain (lower end)
PLAIN_TRAINS_V4 = 0.2  # guard: plain's careful-init accuracy (lower end) at least this


def kept_v4(t: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, seed): the mean over the non-reference cells of each cell's gain over chance, as a
    share of the arm's reference-cell gain averaged over seeds (unclipped); and the reference accuracy."""
    is_ref = (t["init_scheme"] == REFERENCE_V3[0]) & ((t["init_scale"] - REFERENCE_V3[1]).abs() < 1e-9)
    ref = t[is_ref].groupby(["arm", "seed"])["final_acc"].first()
    gain = (ref.groupby(level="arm").mean() - CHANCE_V3).clip(lower=1e-6)  # per arm, over its seeds
    other = t[~is_ref].assign(share=lambda d: (d["final_acc"] - CHANCE_V3) / d["arm"].map(gain))
    out = other.groupby(["arm", "seed"])["share"].mean().rename("kept").to_frame()
    return out.join(ref.rename("reference"), how="outer")


def kept_ratio(t: pd.DataFrame, arm_: str) -> list[float]:
    """An arm's kept share as the ratio of its means over seeds, the other cells' gain over the reference
    cell's, as per-seed pseudo-values (stats.ratio_pseudo_values) whose t-interval carries the reference
    mean's own uncertainty, which v4-v6's shares (each seed over that mean, taken as known) leave out
    (the ledger's deviation on v4-v6). Read by no registered version."""
    return list(kept_ratio_by_seed(t, arm_))


def kept_ratio_by_seed(t: pd.DataFrame, arm_: str) -> pd.Series:
    """kept_ratio's pseudo-values, indexed by seed: over the seeds where the arm has its reference cell
    and at least one other cell."""
    r = t[t["arm"] == arm_]
    is_ref = (r["init_scheme"] == REFERENCE_V3[0]) & ((r["init_scale"] - REFERENCE_V3[1]).abs() < 1e-9)
    ref = r[is_ref].groupby("seed")["final_acc"].first() - CHANCE_V3
    other = r[~is_ref].groupby("seed")["final_acc"].mean() - CHANCE_V3
    both = pd.concat([other.rename("other"), ref.rename("ref")], axis=1).dropna().sort_index()
    return pd.Series(ratio_pseudo_values(both["other"], both["ref"]), index=both.index, dtype=float)


def _kept(r: pd.DataFrame, arm_: str) -> pd.Series:
    k = kept_v4(r)
    return k.xs(arm_, level="arm")["kept"].dropna() if arm_ in k.index.get_level_values("arm") else pd.Series()


def _protocol_v4(bn_keeps: float = BN_KEEPS_V4, more: float = MORE_V4, loses: float = PLAIN_LOSES_V4) -> pr.Protocol:
    bn = pr.Part("share of BN's careful-init gain kept across the other inits (unclipped)",
                 lambda r, c: list(_kept(r, "bn")), bn_keeps, True)
    diff = pr.Part("kept share, BN - plain", lambda r, c: paired(_kept(r, "bn"), _kept(r, "plain"), lambda a, b: a - b),
                   more, True)
    lost = pr.interval_guard("share of plain's careful-init gain lost across the other inits (lower end of its 95% "
                             "interval)", lambda r, c: list(1 - _kept(r, "plain")), loses, True, (),
                             "these inits barely hurt plain, so there is no need of careful init for BN to remove")
    trains = pr.interval_guard(
        "plain's accuracy under careful init (lower end of its 95% interval)",
        lambda r, c: list(kept_v4(r).xs("plain", level="arm")["reference"].dropna())
        if "plain" in set(r["arm"]) else [], PLAIN_TRAINS_V4, True, (), "plain does not train even under careful init")
    return pr.Protocol((bn, diff), PLAN_V4, guards=(lost, trains))


def protocol_v4() -> pr.Protocol:
    base = _protocol_v4()
    return pr.with_neighbours(base, ("BN keeps >= 0.85", _protocol_v4(bn_keeps=0.85)),
                              ("BN keeps >= 0.95", _protocol_v4(bn_keeps=0.95)),
                              ("BN - plain >= 0.2", _protocol_v4(more=0.2)),
                              ("plain loses >= 0.1", _protocol_v4(loses=0.1)))


def verdict_v4(t: pd.DataFrame, ctx: Context):
    return _verdict_v4(protocol_v4(), t, ctx)


def _verdict_v4(protocol: pr.Protocol, t: pd.DataFrame, ctx: Context):
    table = t.groupby(["arm", "init_scheme", "init_scale"])["final_acc"].mean()
    detail = [f"{m} mean test acc: " + ", ".join(f"{s} x{c:g}: {a:.3f}" for (_, s, c), a in g.items())
              for m, g in table.groupby(level=0)]
    if {"bn", "plain"} <= set(t["arm"]):
        detail.append(f"v3's clipped share beside it: BN {t_interval(kept_v3(t)['kept']['bn'])}, plain "
                      f"{t_interval(kept_v3(t)['kept']['plain'])}")
    k = kept_v4(t)
    ref = float(k.xs("bn", level="arm")["reference"].mean()) if "bn" in set(t["arm"]) else float("nan")
    return pr.verdict(protocol, t, ctx, detail, {"reference_acc": ref, "reference_arm": "BN, He x1"})


def pilot_rows_v4(tuning: pd.DataFrame, tuned: dict) -> pd.DataFrame:
    """The pilot: plain over the verdict's inits at its tuned lr on the tuning seeds
    (configs/experiment/init_insensitivity/pilot.yaml), validation accuracy for test accuracy."""
    runs = tuning[tuning["experiment"] == "init_insensitivity/pilot"]
    return runs.assign(final_acc=runs["val_acc"].astype(float))


# --- v5: v4, with a guard still open leaving the plan going ---------------------------------------

# v4's first look at quick read untestable: plain's careful-init test accuracy averaged 0.236 over its 5
# seeds, above the 0.2 bar, but the lower end of its interval was 0.182 (its pilot had projected 0.229),
# and v4's plan stops at an untestable look although more seeds could close that interval above the
# bar. v5 is v4 on fresh seeds with open interval guards (protocol.Protocol.open_guards).


def protocol_v5() -> pr.Protocol:
    return pr.with_open_guards(protocol_v4())


def verdict_v5(t: pd.DataFrame, ctx: Context):
    return _verdict_v4(protocol_v5(), t, ctx)


# --- v6: v5 on a plan sized by v5's spread --------------------------------------------------------
# v5 ended inconclusive at quick after its last look (12 seeds): BN kept 0.874 [0.828, 0.919] of its
# careful-init gain against >= 0.9, BN - plain decided (0.562 [0.505, 0.619]), both guards holding. Its
# per-seed kept shares had an sd of 0.059, with which 12 seeds decide only an effect 0.05 from the bar.
# v6 keeps v5's criterion, arms, constants, open guards and pilot, and looks at 30, 45 and 60 fresh seeds
# (Pocock-type): simulated with v5's estimate and sd (4,000 draws), the plan decides 58% of the time at
# its first look and 88% by its last, after 40 seeds on average.

PLAN_V6 = Plan(looks=(30, 45, 60), spending="pocock")


def protocol_v6() -> pr.Protocol:
    return pr.with_plan(protocol_v5(), PLAN_V6)


def verdict_v6(t: pd.DataFrame, ctx: Context):
    return _verdict_v4(protocol_v6(), t, ctx)


# --- v7 (draft): v6's criterion, every share a ratio of means with its own uncertainty ---------------
# The ledger's deviation on v4-v6: their shares divide each seed by the reference cell's gain averaged over
# the same seeds and take that mean as known. It is a mean of one run per seed (BN's He x1 test accuracy sd
# 0.034-0.042 at quick), so their intervals are too narrow: carried through, v6's 0.956 [0.909, 1.003]
# reads [0.880, 1.032]. v7 keeps v4's criterion, constants, neighbours and open guards (v5), and reads
# each share as the ratio of the means over seeds (the other cells' gain over the reference cell's), its
# interval the delta method's, paired by seed (stats.ratio_pseudo_values): BN's share, BN's minus plain's
# (on the seeds both arms have), and what the other inits cost plain. At quick, pooled over v5's and v6's
# 42 seeds, the share's pseudo-values have an sd of 0.17 around 0.931: about 320 seeds for 90% power
# there. Its pilot (plain's guards, and BN's share for the plan) runs both arms on the tuning seeds
# (configs/experiment/init_insensitivity/pilot.yaml and pilot_bn.yaml) at the profile meant to decide it.
# At long (10,000 images, 8 epochs; both nets at lr 0.03), BN keeps 0.95 on the 2 tuning seeds, whose sd
# (0.005) is too few seeds to trust: BN's run-to-run sd there, pooled over its 9 cells, is 0.028 on a
# gain of 0.465, for a share's sd of about 0.06. Simulated at 0.95 and sd 0.055 (4,000 draws), looks at
# 5, 8, 12 seeds decide 71% of the time by the last; at 8, 12, 20 (Pocock-type) 45% at the first and
# 94% by the last (at 0.93: 54%), never the wrong way: v7 looks at 8, 12, 20 seeds.
PLAN_V7 = Plan(looks=(8, 12, 20), spending="pocock")


def _shares_v7(r: pd.DataFrame) -> pd.DataFrame:
    """Per seed both arms have: BN's and plain's kept-share pseudo-values (ratio of means), computed over
    those common seeds."""
    seeds = None
    for a in ("bn", "plain"):
        have = set(kept_ratio_by_seed(r, a).index)
        seeds = have if seeds is None else seeds & have
    common = r[r["seed"].isin(seeds or set())]
    return pd.concat({a: kept_ratio_by_seed(common, a) for a in ("bn", "plain")}, axis=1)


def _protocol_v7(bn_keeps: float = BN_KEEPS_V4, more: float = MORE_V4, loses: float = PLAIN_LOSES_V4) -> pr.Protocol:
    bn = pr.Part("BN's kept share of its careful-init gain across the other inits (ratio of means over seeds)",
                 lambda r, c: list(kept_ratio_by_seed(r, "bn")), bn_keeps, True)
    diff = pr.Part("kept share (ratio of means), BN - plain",
                   lambda r, c: list(_shares_v7(r).pipe(lambda s: s["bn"] - s["plain"]).dropna()), more, True)
    lost = pr.interval_guard("share of plain's careful-init gain lost across the other inits, ratio of means (lower "
                             "end of its 95% interval)", lambda r, c: list(1 - kept_ratio_by_seed(r, "plain")),
                             loses, True, (), "these inits barely hurt plain, so there is no need of careful init for "
                             "BN to remove")
    trains = pr.interval_guard(
        "plain's accuracy under careful init (lower end of its 95% interval)",
        lambda r, c: list(kept_v4(r).xs("plain", level="arm")["reference"].dropna())
        if "plain" in set(r["arm"]) else [], PLAIN_TRAINS_V4, True, (), "plain does not train even under careful init")
    return pr.with_open_guards(pr.Protocol((bn, diff), PLAN_V7, guards=(lost, trains)))


def protocol_v7() -> pr.Protocol:
    return pr.with_neighbours(_protocol_v7(), ("BN keeps >= 0.85", _protocol_v7(bn_keeps=0.85)),
                              ("BN keeps >= 0.95", _protocol_v7(bn_keeps=0.95)),
                              ("BN - plain >= 0.2", _protocol_v7(more=0.2)),
                              ("plain loses >= 0.1", _protocol_v7(loses=0.1)))


def verdict_v7(t: pd.DataFrame, ctx: Context):
    return _verdict_v4(protocol_v7(), t, ctx)


def pilot_rows_v7(tuning: pd.DataFrame, tuned: dict) -> pd.DataFrame:
    """The pilot: both nets over the verdict's inits at their tuned lrs on the tuning seeds (plain:
    configs/experiment/init_insensitivity/pilot.yaml, BN: pilot_bn.yaml), validation accuracy for test
    accuracy: plain's rows pilot the guards, BN's show the share's spread a plan is sized by."""
    runs = tuning[tuning["experiment"].isin(["init_insensitivity/pilot", "init_insensitivity/pilot_bn"])]
    return runs.assign(final_acc=runs["val_acc"].astype(float))


TUNING = (  # tuned at every profile (bnexp/calibration.py); versions from v3 on read the answers
    Question("init_insensitivity/lr", "lr", ("plain", "bn")),  # each net's lr under careful init
)


VERSIONS = {
    1: Version(f"accuracy spread over init schemes x scales with BN <= {THRESHOLD_V1:.3g} of plain's",
               "per-seed ratio of spreads, paired by seed; 95% t-interval on the log ratio",
               endpoints_v1, verdict_v1, "init_insensitivity"),
    2: Version(f"each model at its own tuned lr, averaged over init schemes x scales, BN keeps >= "
               f"{THRESHOLD_V2:g} more of its careful-init ({REFERENCE_V2[0]} x{REFERENCE_V2[1]:g}) accuracy gain "
               f"over chance than plain does; undecided unless plain reaches >= {GUARD_V2:g} under careful init",
               "per-seed difference of the kept share, paired by seed; 95% t-interval",
               endpoints_v2, verdict_v2, "init_insensitivity"),
    3: Version(f"each net at its own tuned lr, over moderate init scales (x0.5, x2) and other schemes, the "
               f"careful-init ({REFERENCE_V3[0]} x{REFERENCE_V3[1]:g}) cell left out of the mean: BN keeps >= "
               f"{BN_KEEPS_V3:g} of its careful-init gain over chance, and more than plain keeps; untestable unless "
               f"those inits cost plain >= {PLAIN_LOSES_V3:g} of its gain and plain reaches >= {PLAIN_TRAINS_V3:g} "
               f"under careful init",
               "per-seed kept shares (BN) and differences (BN - plain, paired by seed); repeated 95% t-intervals "
               "(sequential plan: looks at 3, 5, 8 seeds, O'Brien-Fleming-type spending); both must hold",
               endpoints_v2, verdict_v3, "init_insensitivity",
               uses=(Use("init_insensitivity/lr", "arm", "plain", "plain"),
                     Use("init_insensitivity/lr", "arm", "bn", "bn")),
               protocol=protocol_v3),
    4: Version(f"each net at its own tuned lr, over moderate init scales (x0.5, x2) and other schemes, the "
               f"careful-init ({REFERENCE_V3[0]} x{REFERENCE_V3[1]:g}) cell left out of the mean: BN keeps >= "
               f"{BN_KEEPS_V4:g} of its careful-init gain over chance (each seed's cells over the reference cell's "
               f"gain averaged over seeds, unclipped), and BN's kept share exceeds plain's by >= {MORE_V4:g}; "
               f"untestable unless the lower ends of the 95% intervals of what those inits cost plain (>= "
               f"{PLAIN_LOSES_V4:g} of its gain) and of plain's careful-init accuracy (>= {PLAIN_TRAINS_V4:g}) hold",
               "per-seed kept shares (BN) and differences (BN - plain, paired by seed); repeated 95% t-intervals "
               f"(sequential plan: looks at {', '.join(map(str, PLAN_V4.looks))} seeds, Pocock-type spending); both "
               "must hold; guards by their 95% t-intervals, piloted on tuning seeds before registration",
               endpoints_v2, verdict_v4, "init_insensitivity",
               uses=(Use("init_insensitivity/lr", "arm", "plain", "plain"),
                     Use("init_insensitivity/lr", "arm", "bn", "bn")),
               protocol=protocol_v4, pilot=Pilot(pilot_rows_v4)),
}
# v5: v4's method, sweep, constants and pilot; its own criterion, verdict and protocol (open guards).
VERSIONS[5] = dataclasses.replace(
    VERSIONS[4],
    criterion=f"v4's criterion (BN keeps >= {BN_KEEPS_V4:g} of its careful-init gain, unclipped, and >= {MORE_V4:g} "
              f"more than plain; guarded by what the other inits cost plain (>= {PLAIN_LOSES_V4:g}) and plain's "
              f"careful-init accuracy (>= {PLAIN_TRAINS_V4:g}), each by its interval's lower end), with the guards "
              "open: a look where a guard fails only by an interval still reaching below its bar, its mean above "
              "it, stays undecided and the plan goes on; untestable only when a guard fails clearly or at the "
              "last look",
    verdict=verdict_v5, protocol=protocol_v5)
# v6: v5's criterion, sweep, constants and pilot; its own method, verdict and protocol (the larger plan).
VERSIONS[6] = dataclasses.replace(
    VERSIONS[5],
    method="v4's per-seed kept shares (BN) and differences (BN - plain, paired by seed), repeated 95% "
           "t-intervals, on fresh seeds by a plan sized from v5's spread (sequential plan: looks at "
           f"{', '.join(map(str, PLAN_V6.looks))} seeds, Pocock-type spending); both must hold; guards by their 95% "
           "t-intervals, open as in v5, piloted on tuning seeds before registration",
    verdict=verdict_v6, protocol=protocol_v6)


# v7: registered after its pilot at long passed (its calibration there: BN and plain both at lr 0.03).
VERSIONS[7] = dataclasses.replace(
        VERSIONS[6],
        criterion=f"v4's criterion, every share a ratio of means over seeds: BN keeps >= {BN_KEEPS_V4:g} of its "
                  f"careful-init ({REFERENCE_V3[0]} x{REFERENCE_V3[1]:g}) gain over chance across the other inits "
                  f"(their mean gain over the reference cell's, each averaged over seeds), and >= {MORE_V4:g} more "
                  f"than plain keeps; untestable unless the lower ends of the 95% intervals of what those inits cost "
                  f"plain (>= {PLAIN_LOSES_V4:g} of its gain, a ratio of means too) and of plain's careful-init "
                  f"accuracy (>= {PLAIN_TRAINS_V4:g}) hold, the guards open as in v5",
        method="ratio-of-means shares as per-seed delta-method pseudo-values (stats.ratio_pseudo_values), BN - "
               "plain paired by seed; repeated 95% t-intervals (sequential plan: looks at "
               f"{', '.join(map(str, PLAN_V7.looks))} seeds, Pocock-type spending, sized from BN's run-to-run spread "
               "in the pilot); both must hold; guards by their 95% t-intervals, open, piloted on tuning seeds (both "
               "nets) before registration",
        verdict=verdict_v7, protocol=protocol_v7, pilot=Pilot(pilot_rows_v7))
# Written to be piloted before registration (bnexp/method/pilot.py): a draft moves into VERSIONS once
# `python -m bnexp.method.ledger pilot init_insensitivity <n> --profile <p>` passes.
DRAFTS: dict[int, Version] = {}


def figure(t: pd.DataFrame, curves: pd.DataFrame, result) -> plt.Figure:
    if "arm" in t and t["arm"].notna().all():
        t = t.assign(choice_model=t["arm"])
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


CLAIM = Claim(
    "init_insensitivity",
    statement="BN removes the need for careful initialisation.",
    source="Ioffe & Szegedy 2015; the BN notes",
    published="Qualitative: BN 'reduces the dependence of gradients on the scale of the parameters or of their "
              "initial values'.",
    unit="ratio (v1); share of gain, BN - plain (v2)",
    order=30,
    versions=VERSIONS,
    drafts=DRAFTS,
    tuning=TUNING,
    figure=figure,
)
