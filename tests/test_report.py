"""The report is a function of the committed endpoints table: recomputing it from the committed
files gives the committed claims.json and REPORT.md exactly; the verdicts' arithmetic on small
hand-made tables."""

import json
import shutil

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
