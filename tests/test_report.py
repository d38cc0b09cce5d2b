"""The report is a function of the committed endpoints table: recomputing it from the committed
files gives the committed claims.json and REPORT.md exactly; the verdicts' arithmetic on small
hand-made tables."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bnexp import calibration, endpoints, report
from bnexp.claims import all_claims, by_id
from bnexp.method.contract import Context
from tests import tables
from tests.conftest import ROOT

COMMITTED = ROOT / "results" / "quick"


@pytest.mark.parametrize("profile", sorted(p.parent.name for p in COMMITTED.parent.glob("*/REPORT.md")))
def test_every_committed_report_regenerates_exactly_from_its_table(tmp_path, profile):
    committed = COMMITTED.parent / profile
    for other in COMMITTED.parent.glob("*/claims.json"):  # the cross-scale table reads the other profiles'
        if other.parent != committed:
            (tmp_path / other.parent.name).mkdir()
            shutil.copy(other, tmp_path / other.parent.name / "claims.json")
    tmp_path = tmp_path / profile
    tmp_path.mkdir()
    for name in (endpoints.RUNS, endpoints.CURVES, endpoints.EXACT, calibration.TUNED):
        shutil.copy(committed / name, tmp_path / name)
    report.write_report(tmp_path, profile)
    assert json.loads((tmp_path / "claims.json").read_text()) == json.loads((committed / "claims.json").read_text())
    assert (tmp_path / "claims.json").read_text() == (committed / "claims.json").read_text()
    assert (tmp_path / "REPORT.md").read_text() == (committed / "REPORT.md").read_text()
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == \
        sorted(p.name for p in (committed / "figures").glob("*.png"))


def test_a_profile_that_runs_some_experiments_reports_those_and_names_the_others(tmp_path):
    """long's `only` names four experiments: its report keeps their claims and the exact checks, says
    which claims it does not run, and its cross-scale table still shows those at the other profiles."""
    (tmp_path / "quick").mkdir()
    shutil.copy(COMMITTED / "claims.json", tmp_path / "quick" / "claims.json")
    out = tmp_path / "long"
    out.mkdir()
    for name in (endpoints.RUNS, endpoints.CURVES, endpoints.EXACT, calibration.TUNED):
        shutil.copy(COMMITTED / name, out / name)  # quick's rows stand in for long's: only the claims differ
    report.write_report(out, "long")
    ids = [c["id"] for c in json.loads((out / "claims.json").read_text())]
    ran = ["convergence", "small_batch", "dropout_redundancy", "landscape"]
    skipped = ["lr_tolerance", "init_insensitivity", "gradient_flow", "sigmoid"]
    assert ids == [c.id for c in all_claims() if c.id not in skipped]
    assert set(ran) < set(ids)
    text = (out / "REPORT.md").read_text()
    assert (f"Not run at this profile (`only` in `configs/profile/long.yaml`): {', '.join(skipped)};" in text)
    assert "| lr_tolerance | quick | v3 |" in text and "| small_batch | long | v3 |" in text
    assert "## lr_tolerance" not in text and "## small_batch" in text


def test_claims_json_names_every_claim_with_version_status_and_counts():
    claims = json.loads((COMMITTED / "claims.json").read_text())
    assert [c["id"] for c in claims] == [c.id for c in all_claims()]
    for c in claims:
        assert {"version", "status", "n_runs_used", "n_runs_excluded", "method", "history"} <= set(c)
        assert c["status"] in ("confirmatory", "exploratory")
        assert [h["version"] for h in c["history"]] == sorted(by_id()[c["id"]].versions)


def test_convergence_counts_a_run_that_never_reaches_the_target_as_slow():
    """v0 counted a run that diverged at step 21 as 2 x 21 steps (fast); v1 as 2 x the planned length."""
    t = tables.convergence_v1(tables.convergence_v1_runs())
    v0, v1 = (by_id()["convergence"].versions[n].verdict(t, Context()) for n in (0, 1))
    assert v1.derived["best_lr"] == {"bn": 0.02, "plain": 0.02}
    assert v1.effect == pytest.approx((20 * 21 * 22 / (90 * 91 * 92)) ** (1 / 3))
    assert v0.derived["best_lr"]["plain"] == 0.5  # the diverged lr looked fastest under v0


def test_small_batch_pairs_the_gn_and_bn_rises_by_seed():
    t = tables.small_batch_v1()  # shuffled: order must not matter
    res = by_id()["small_batch"].versions[1].verdict(t, Context())
    assert res.verdict == "reproduced", res.detail
    assert res.effect == pytest.approx((0.3 + 0.2 + 0.35) / 3)


# --- v2 verdicts on hand-made tables -----------------------------------------------------------

def test_lr_tolerance_v2_brackets_each_boundary_from_the_probes_and_pairs_the_ratio_by_seed():
    t = tables.lr_tolerance_v2()  # plain trains up to 0.05, 0.04, 0.06; BN up to 2, 1.5, 3
    v = by_id()["lr_tolerance"].versions[2]
    from bnexp.claims import lr_tolerance

    brackets = lr_tolerance.brackets_v2(t)
    assert (brackets.loc[("plain", 3), "low"], brackets.loc[("plain", 3), "high"]) == (0.0316, 0.0562)
    assert (brackets.loc[("bn", 5), "low"], brackets.loc[("bn", 5), "high"]) == (2.37, 3.16)
    res = v.verdict(t, Context())
    assert res.verdict == "reproduced" and res.ci_low >= 4, res.detail
    # every plain probe failing: its bracket starts at the assumed low end of 0.01
    t.loc[t["choice_model"] == "plain", "trains"] = False
    assert lr_tolerance.brackets_v2(t).loc[("plain", 4), "low"] == lr_tolerance.LOW_V2


def test_init_insensitivity_v2_decides_nothing_when_plain_never_trains():
    from bnexp.claims import init_insensitivity as ii

    table = tables.init_insensitivity_v2(0.3, ii.REFERENCE_V2)
    good = ii.verdict_v2(table, Context())
    assert good.verdict == "reproduced", good.detail  # BN keeps ~0.9 of its gain, plain 1/6
    assert good.effect == pytest.approx(ii.kept_v2(table)["kept"]["bn"].mean() - 1 / 6, rel=1e-2)
    bad = ii.verdict_v2(tables.init_insensitivity_v2(0.12, ii.REFERENCE_V2), Context())
    assert bad.verdict == "inconclusive" and any("did not train under careful init" in d for d in bad.detail)


def test_gradient_flow_v2_reads_the_gradient_size_across_scales_at_the_criterion_depth():
    from bnexp.claims import gradient_flow as gf

    res = gf.verdict_v2(tables.gradient_flow_v2(gf.DEPTH_V2), Context())
    assert res.verdict == "reproduced", res.detail
    want = [(1 + 0.2 * s) / (1 + 0.05 * s) * 4.0 ** (gf.DEPTH_V2 - 1) for s in (3, 4, 5)]  # plain's x2 / x0.5
    assert res.effect == pytest.approx(float(np.exp(np.log(want).mean())), rel=1e-9)


def test_small_batch_v2_needs_both_the_rise_and_gn_beating_bn_at_two_images():
    from bnexp.claims import small_batch as sb

    assert sb.verdict_v2(tables.small_batch_v2(0.62), Context()).verdict == "reproduced"
    res = sb.verdict_v2(tables.small_batch_v2(0.80), Context())  # BN degrades, but GN is worse still
    assert res.verdict == "not reproduced" and res.effect == pytest.approx(0.10), res.detail


def test_convergence_v2_counts_steps_to_a_fixed_target_and_censors_at_twice_the_plan():
    from bnexp.claims import convergence as cv

    res = cv.verdict_v2(tables.convergence_v2({3: (8, 56), 4: (16, 64), 5: (8, 48), 6: (8, None)}), Context())
    want = [8 / 56, 16 / 64, 8 / 48, 8 / (2 * 138)]  # seed 6's plain never reaches the target: 276 steps
    assert res.effect == pytest.approx(float(np.exp(np.log(want).mean())))
    assert any("BN at plain's lr" in d for d in res.detail) and "never reached: plain 1" in res.detail[-1]
    fast = tables.convergence_v2({3: (8, 56), 4: (8, 64), 5: (8, 48)})
    assert cv.verdict_v2(fast, Context()).verdict == "reproduced"


def test_dropout_redundancy_v2_is_undecided_unless_dropout_helps_the_plain_net():
    from bnexp.claims import dropout_redundancy as dr

    assert dr.verdict_v2(tables.dropout_redundancy_v2(0.04, 0.0), Context()).verdict == "reproduced"
    assert dr.verdict_v2(tables.dropout_redundancy_v2(0.014, 0.026), Context()).verdict == "not reproduced"
    res = dr.verdict_v2(tables.dropout_redundancy_v2(0.0, 0.0), Context())
    assert res.verdict == "inconclusive" and "did not clearly help" in res.detail[-1]


def test_sigmoid_v2_needs_the_accuracy_gain_on_the_cnn_and_less_drift_in_the_mlp():
    from bnexp.claims import sigmoid as sg

    assert sg.verdict_v2(tables.sigmoid_v2(0.26, 0.06), Context()).verdict == "reproduced"
    assert sg.verdict_v2(tables.sigmoid_v2(0.26, 20.0), Context()).verdict == "not reproduced"  # BN's inputs drift more
    assert sg.verdict_v2(tables.sigmoid_v2(0.10, 0.06), Context()).verdict == "not reproduced"


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
