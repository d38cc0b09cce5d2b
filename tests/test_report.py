"""The report is a function of the committed endpoints table: recomputing it from the committed
files gives the committed claims.json and REPORT.md exactly; the verdicts' arithmetic on small
hand-made tables."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bnexp import endpoints, report
from bnexp.claims import all_claims, by_id
from tests.conftest import ROOT

COMMITTED = ROOT / "results" / "quick"


def test_the_committed_quick_report_regenerates_exactly_from_its_table(tmp_path):
    for name in (endpoints.RUNS, endpoints.CURVES, endpoints.EXACT):
        shutil.copy(COMMITTED / name, tmp_path / name)
    report.write_report(tmp_path, "quick")
    assert json.loads((tmp_path / "claims.json").read_text()) == json.loads((COMMITTED / "claims.json").read_text())
    assert (tmp_path / "claims.json").read_text() == (COMMITTED / "claims.json").read_text()
    assert (tmp_path / "REPORT.md").read_text() == (COMMITTED / "REPORT.md").read_text()
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == \
        sorted(p.name for p in (COMMITTED / "figures").glob("*.png"))


def test_claims_json_names_every_claim_with_version_status_and_counts():
    claims = json.loads((COMMITTED / "claims.json").read_text())
    assert [c["id"] for c in claims] == [c.id for c in all_claims()]
    for c in claims:
        assert {"version", "status", "n_runs_used", "n_runs_excluded", "method", "history"} <= set(c)
        assert c["status"] in ("confirmatory", "exploratory")
        assert [h["version"] for h in c["history"]] == sorted(by_id()[c["id"]].versions)


def _convergence_table(curves: dict) -> pd.DataFrame:
    rows = []
    for (model, lr, seed), (steps, curve) in curves.items():
        rows.append({"choice_model": model, "lr": lr, "seed": seed, "steps": steps, "status": "completed",
                     "best_test_acc": max(v for _, v in curve), "acc_curve": json.dumps(curve)})
    return pd.DataFrame(rows)


def test_convergence_counts_a_run_that_never_reaches_the_target_as_slow():
    """v0 counted a run that diverged at step 21 as 2 x 21 steps (fast); v1 as 2 x the planned length."""
    runs = {("plain", 0.5, s): (21, [[10, 0.1], [21, 0.1]]) for s in range(3)}
    runs |= {("plain", 0.02, s): (124, [[10, 0.1], [90 + s, 0.3]]) for s in range(3)}
    runs |= {("bn", 0.02, s): (124, [[10, 0.1], [20 + s, 0.3]]) for s in range(3)}
    t = _convergence_table(runs)
    v0, v1 = (by_id()["convergence"].versions[n].verdict(t) for n in (0, 1))
    assert v1.derived["best_lr"] == {"bn": 0.02, "plain": 0.02}
    assert v1.effect == pytest.approx((20 * 21 * 22 / (90 * 91 * 92)) ** (1 / 3))
    assert v0.derived["best_lr"]["plain"] == 0.5  # the diverged lr looked fastest under v0


def test_small_batch_pairs_the_gn_and_bn_rises_by_seed():
    rows = []
    for seed, (bn_lo, bn_hi, gn_lo, gn_hi) in {0: (0.9, 0.6, 0.7, 0.7), 1: (0.8, 0.6, 0.7, 0.7),
                                                 2: (0.95, 0.6, 0.72, 0.7)}.items():
        for a, b, err in (("bn", 2, bn_lo), ("bn", 128, bn_hi), ("gn", 2, gn_lo), ("gn", 128, gn_hi)):
            rows.append({"seed": seed, "arm": a, "per_stat": b, "final_acc": 1 - err, "test_batchstats_acc": None})
    t = pd.DataFrame(rows).sample(frac=1, random_state=0)  # order must not matter
    res = by_id()["small_batch"].versions[1].verdict(t)
    assert res.verdict == "reproduced", res.detail
    assert res.effect == pytest.approx((0.3 + 0.2 + 0.35) / 3)


# --- v2 verdicts on hand-made tables -----------------------------------------------------------

def test_lr_tolerance_v2_brackets_each_boundary_from_the_probes_and_pairs_the_ratio_by_seed():
    rows = []
    for seed, (plain_ok, bn_ok) in {3: (0.05, 2.0), 4: (0.04, 1.5), 5: (0.06, 3.0)}.items():
        for model, ok in (("plain", plain_ok), ("bn", bn_ok)):
            for lr in (1.0, 0.1, 0.0316, 0.0562, 0.075, 10.0, 3.16, 1.78, 2.37):
                passed = lr <= ok
                rows.append({"seed": seed, "choice_model": model, "lr": lr, "trains": passed,
                             "status": "completed", "final_acc": 0.3 if passed else 0.1,
                             "recal_acc": 0.3 if passed else 0.1})
    t = pd.DataFrame(rows).sample(frac=1, random_state=1)
    v = by_id()["lr_tolerance"].versions[2]
    from bnexp.claims import lr_tolerance

    brackets = lr_tolerance.brackets_v2(t)
    assert (brackets.loc[("plain", 3), "low"], brackets.loc[("plain", 3), "high"]) == (0.0316, 0.0562)
    assert (brackets.loc[("bn", 5), "low"], brackets.loc[("bn", 5), "high"]) == (2.37, 3.16)
    res = v.verdict(t)
    assert res.verdict == "reproduced" and res.ci_low >= 4, res.detail
    # every plain probe failing: its bracket starts at the assumed low end of 0.01
    t.loc[t["choice_model"] == "plain", "trains"] = False
    assert lr_tolerance.brackets_v2(t).loc[("plain", 4), "low"] == lr_tolerance.LOW_V2


def test_init_insensitivity_v2_decides_nothing_when_plain_never_trains():
    from bnexp.claims import init_insensitivity as ii

    def table(plain_ref: float) -> pd.DataFrame:
        rows = []
        for seed in (3, 4, 5):
            for scheme in ("kaiming_normal", "default"):
                for scale in (0.1, 1.0, 10.0):
                    careful = (scheme, scale) == ii.REFERENCE_V2
                    rows.append({"seed": seed, "arm": "bn", "init_scheme": scheme, "init_scale": scale,
                                 "final_acc": 0.40 - 0.01 * seed * (not careful)})
                    rows.append({"seed": seed, "arm": "plain", "init_scheme": scheme, "init_scale": scale,
                                 "final_acc": plain_ref + 0.002 * seed if careful else 0.1})
        return pd.DataFrame(rows)

    good = ii.verdict_v2(table(0.3))
    assert good.verdict == "reproduced", good.detail  # BN keeps ~0.9 of its gain, plain 1/6
    assert good.effect == pytest.approx(ii.kept_v2(table(0.3))["kept"]["bn"].mean() - 1 / 6, rel=1e-2)
    bad = ii.verdict_v2(table(0.12))
    assert bad.verdict == "inconclusive" and any("did not train under careful init" in d for d in bad.detail)


def test_gradient_flow_v2_reads_the_gradient_size_across_scales_at_the_criterion_depth():
    from bnexp.claims import gradient_flow as gf

    rows = []
    for seed in (3, 4, 5):
        for depth in (6, gf.DEPTH_V2):
            for scale in (0.5, 1.0, 2.0):
                rows.append({"seed": seed, "choice_model": "bn", "depth": depth, "init_scale": scale,
                             "grad_init": (1.0 + 0.1 * seed * scale) / scale, "grad_train_median": 1.0})
                rows.append({"seed": seed, "choice_model": "plain", "depth": depth, "init_scale": scale,
                             "grad_init": (1.0 + 0.1 * seed * scale) * scale ** (depth - 1),
                             "grad_train_median": 1.0})
    res = gf.verdict_v2(pd.DataFrame(rows))
    assert res.verdict == "reproduced", res.detail
    want = [(1 + 0.2 * s) / (1 + 0.05 * s) * 4.0 ** (gf.DEPTH_V2 - 1) for s in (3, 4, 5)]  # plain's x2 / x0.5
    assert res.effect == pytest.approx(float(np.exp(np.log(want).mean())), rel=1e-9)


def test_small_batch_v2_needs_both_the_rise_and_gn_beating_bn_at_two_images():
    from bnexp.claims import small_batch as sb

    def table(gn_err: float) -> pd.DataFrame:
        rows = []
        for seed, bump in ((3, 0.0), (4, 0.01), (5, -0.01)):
            for cell, err in (("bn", 0.60), ("ghost2", 0.70 + bump), ("gn", gn_err + bump / 2)):
                rows.append({"seed": seed, "arm": cell, "final_acc": 1 - err, "recal_acc": 1 - err,
                             "test_batchstats_acc": None})
        return pd.DataFrame(rows).sample(frac=1, random_state=2)

    assert sb.verdict_v2(table(0.62)).verdict == "reproduced"
    res = sb.verdict_v2(table(0.80))  # BN degrades, but GN is worse still
    assert res.verdict == "not reproduced" and res.effect == pytest.approx(0.10), res.detail


def test_convergence_v2_counts_steps_to_a_fixed_target_and_censors_at_twice_the_plan():
    from bnexp.claims import convergence as cv

    def table(reached: dict) -> pd.DataFrame:
        rows = []
        for seed, (bn_at, plain_at) in reached.items():
            for cell, at in (("bn", bn_at), ("plain", plain_at), ("bn_shared", 32)):
                curve = [[s, 0.3 if at is not None and s >= at else 0.15] for s in range(8, 139, 8)]
                rows.append({"seed": seed, "arm": cell, "lr": {"bn": 0.1}.get(cell, 0.03), "steps": 138,
                             "acc_curve": json.dumps(curve), "final_acc": curve[-1][1]})
        return pd.DataFrame(rows)

    res = cv.verdict_v2(table({3: (8, 56), 4: (16, 64), 5: (8, 48), 6: (8, None)}))
    want = [8 / 56, 16 / 64, 8 / 48, 8 / (2 * 138)]  # seed 6's plain never reaches the target: 276 steps
    assert res.effect == pytest.approx(float(np.exp(np.log(want).mean())))
    assert any("BN at plain's lr" in d for d in res.detail) and "never reached: plain 1" in res.detail[-1]
    assert cv.verdict_v2(table({3: (8, 56), 4: (8, 64), 5: (8, 48)})).verdict == "reproduced"


def test_dropout_redundancy_v2_is_undecided_unless_dropout_helps_the_plain_net():
    from bnexp.claims import dropout_redundancy as dr

    def table(plain_gain: float, bn_gain: float) -> pd.DataFrame:
        rows = []
        for seed, wobble in ((3, 0.0), (4, 0.004), (5, -0.004)):
            for cell, acc in (("plain_p0", 0.38), ("plain_pbest", 0.38 + plain_gain + wobble),
                              ("bn_p0", 0.39), ("bn_pbest", 0.39 + bn_gain - wobble)):
                rows.append({"seed": seed, "arm": cell, "final_acc": acc, "train_acc": 1.0,
                             "dropout": 0.0 if cell.endswith("p0") else 0.2})
        return pd.DataFrame(rows)

    assert dr.verdict_v2(table(0.04, 0.0)).verdict == "reproduced"
    assert dr.verdict_v2(table(0.014, 0.026)).verdict == "not reproduced"
    res = dr.verdict_v2(table(0.0, 0.0))
    assert res.verdict == "inconclusive" and "did not clearly help" in res.detail[-1]


def test_sigmoid_v2_needs_the_accuracy_gain_on_the_cnn_and_less_drift_in_the_mlp():
    from bnexp.claims import sigmoid as sg

    def table(cnn_gap: float, drift_bn: float) -> pd.DataFrame:
        rows = []
        for seed, w in ((3, 1.0), (4, 1.1), (5, 0.9)):
            rows += [{"seed": seed, "arm": "cnn", "norm": "none", "lr": 0.05, "final_acc": 0.1, "drift_all": 2.5 * w},
                     {"seed": seed, "arm": "cnn", "norm": "batch", "lr": 0.05, "final_acc": 0.1 + cnn_gap + w / 100,
                      "drift_all": 0.04},
                     {"seed": seed, "arm": "fc", "norm": "none", "lr": 0.05, "final_acc": 0.37, "drift_all": 5.8 * w},
                     {"seed": seed, "arm": "fc", "norm": "batch", "lr": 0.05, "final_acc": 0.41,
                      "drift_all": drift_bn}]
        return pd.DataFrame(rows)

    assert sg.verdict_v2(table(0.26, 0.06)).verdict == "reproduced"
    assert sg.verdict_v2(table(0.26, 20.0)).verdict == "not reproduced"  # BN's inputs drift more
    assert sg.verdict_v2(table(0.10, 0.06)).verdict == "not reproduced"


def test_landscape_v2_leaves_out_the_probe_at_initialisation(tmp_path):
    from bnexp.claims import landscape as ls

    class Rec:
        def __init__(self):
            self.summary = {"test_acc": 0.3, "test_recal_acc": 0.35, "status": "completed"}
            self.config = {"dataset": {"name": "cifar10", "coarse_labels": False}}

        def metric(self, prefix):
            return pd.DataFrame({"name": ["landscape/loss_range"] * 3, "step": [0, 10, 20], "value": [5.0, 0.1, 0.3]})

    e = ls.endpoints_v2(Rec())
    assert e["loss_range_after_init"] == pytest.approx(0.2) and e["recal_acc"] == 0.35
