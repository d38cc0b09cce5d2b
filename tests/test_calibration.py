"""Calibration: each profile's constants are chosen from its tuning rows by a fixed rule, on
tuning seeds and validation images only, recomputably; verdict runs made with other values
are not confirmatory."""

import json
import subprocess

import pandas as pd
import pytest

from bnexp import calibration
from bnexp.method.contract import Question, Use

LR = Question("toy/lr", "lr", ("plain", "bn"))
SHARED = Question("toy/shared", "lr", ("plain", "bn"), rule="shared")
TARGET = Question("toy/target", "", ("plain",), rule="target", fraction=0.8, reference="toy/lr")
HEAD = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def tuning_table(scores: dict, seeds=(9000, 9001), experiment: str = "toy/tune", **extra) -> pd.DataFrame:
    """Rows of a tuning sweep: scores[arm][lr] is the validation accuracy (None: diverged), the
    same on every seed plus a small per-seed offset that averages out."""
    rows = []
    for arm, by_lr in scores.items():
        for lr, acc in by_lr.items():
            for k, seed in enumerate(seeds):
                wobble = 0.01 * (k - (len(seeds) - 1) / 2)
                rows.append({"experiment": experiment, "key": f"{arm}-{lr}-{seed}", "seed": seed,
                             "status": "diverged" if acc is None else "completed",
                             "val_acc": None if acc is None else acc + wobble, "lr": lr,
                             "choice_arm": f"toy/{arm}", "git_commit": HEAD, "git_dirty": False, **extra})
    return pd.DataFrame(rows)


def test_each_arm_gets_its_own_best_value_ties_to_the_smaller_and_a_diverged_run_scores_chance():
    t = tuning_table({"plain": {0.01: 0.30, 0.03: 0.35, 0.1: None}, "bn": {0.01: 0.40, 0.03: 0.45, 0.1: 0.45}})
    answer = calibration.choose(t, LR, {})
    assert answer["values"] == {"plain": 0.03, "bn": 0.03}  # BN ties at 0.03 and 0.1: the smaller
    assert answer["scores"]["plain"]["0.1"] == pytest.approx(0.1)  # diverged: chance
    assert answer["seeds"] == [9000, 9001] and len(answer["runs"]) == 12
    target = calibration.choose(t, TARGET, {"toy/lr": answer})
    assert target["value"] == pytest.approx(0.8 * 0.35) and target["reference_val_acc"] == pytest.approx(0.35)


def test_an_arm_at_chance_everywhere_is_flat_not_at_an_edge():
    """The plain sigmoid CNN learns nothing at any lr: its choice (the smallest) is flagged `flat`, and
    no widening could find a better value, so it is not an edge choice; BN's top-edge choice is."""
    t = tuning_table({"plain": {0.01: 0.1, 0.1: 0.1, 1.0: 0.1}, "bn": {0.01: 0.2, 0.1: 0.3, 1.0: 0.4}})
    t = t.assign(val_acc=t["val_acc"].where(t["choice_arm"] != "toy/plain", 0.1))  # exactly chance, every seed
    answer = calibration.choose(t, LR, {})
    assert answer["values"] == {"plain": 0.01, "bn": 1.0}
    assert answer["flat"] == ["plain"] and answer["at_grid_edge"] == ["bn"]
    assert calibration.widening(answer) == [10.0]  # widened past BN's edge only
    assert "flat" not in calibration.choose(tuning_table({"plain": {0.01: 0.3, 0.1: 0.35}, "bn": {0.01: 0.4,
                                                                                               0.1: 0.45}}), LR, {})


def test_a_shared_value_is_the_one_whose_worst_arm_scores_best():
    t = tuning_table({"plain": {0.01: 0.30, 0.03: 0.35, 0.1: 0.12}, "bn": {0.01: 0.33, 0.03: 0.40, 0.1: 0.50}})
    assert calibration.choose(t, SHARED, {})["values"] == {"plain": 0.03, "bn": 0.03}


@pytest.mark.parametrize(("table", "words"), [
    (tuning_table({"plain": {0.01: 0.3}, "bn": {0.01: 0.4}}, seeds=(9000, 5)), "outside the ledger's tuning seeds"),
    (tuning_table({"plain": {0.01: 0.3}, "bn": {0.01: 0.4}}).assign(val_acc=None, status="completed"),
     "without a validation split"),
    (tuning_table({"plain": {0.01: 0.3, 0.03: 0.3}, "bn": {0.01: 0.4}}), "the grid is not complete"),
    (tuning_table({"plain": {0.01: 0.3}, "bn": {0.01: 0.4}}, experiment="other/tune"), "no usable runs of experiment"),
])
def test_a_choice_is_refused_on_verdict_seeds_test_images_or_an_uneven_budget(table, words):
    with pytest.raises(calibration.CalibrationError, match=words):
        calibration.choose(table, LR, {})


def test_a_verdict_run_made_with_another_value_than_the_tuned_one_is_not_confirmatory():
    answers = {"toy/lr": {"rule": "best", "knob": "lr", "values": {"plain": 0.03, "bn": 0.1}}}
    uses = (Use("toy/lr", "choice_arm", "toy/plain", "plain"), Use("toy/lr", "choice_arm", "toy/bn", "bn"),
            Use("toy/lr", "choice_arm", "toy/bn_shared", "plain"))
    rows = pd.DataFrame({"choice_arm": ["toy/plain", "toy/bn", "toy/bn_shared"] * 2,
                         "lr": [0.03, 0.1, 0.03, 0.03, 0.1, 0.03]})
    from bnexp.method.ledger.rules import conformity

    questions = {"toy/lr": LR}
    assert conformity(uses, rows, answers, questions) == []
    rows.loc[5, "lr"] = 0.1  # one BN-at-plain's-lr run made with BN's own lr
    assert conformity(uses, rows, answers, questions) == ["1 of 2 runs of toy/bn_shared were made with lr other "
                                                          "than the tuned 0.03"]
    assert conformity(uses, rows, {}, questions) == ["its constants were never calibrated at this profile "
                                                     "(no tuned.json)"]


def test_the_resolver_reads_the_profile_s_choice_or_refuses_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "tuned.json").write_text(json.dumps(
        {"toy/lr": {"rule": "best", "values": {"plain": 0.03}}, "toy/target": {"rule": "target", "value": 0.28}}))
    assert calibration.value("toy", "toy/lr", "plain", results=tmp_path) == 0.03
    assert calibration.value("toy", "toy/target", results=tmp_path) == 0.28
    with pytest.raises(calibration.CalibrationError, match="no tuned value for toy/p; calibrate first"):
        calibration.value("toy", "toy/p", "plain", results=tmp_path)
    with pytest.raises(calibration.CalibrationError, match="no tuned value"):
        calibration.value("other", "toy/lr", "plain", results=tmp_path)


def test_the_committed_quick_choices_recompute_from_the_committed_table():
    """results/quick/tuned.json is what the committed table's tuning rows give, and those rows are
    tuning seeds scored on a validation split."""
    from bnexp import endpoints
    from bnexp.method import ledger
    from tests.conftest import ROOT

    results = ROOT / "results" / "quick"
    table = endpoints.read(results)[0]
    assert calibration.tuned(table, "quick") == json.loads((results / calibration.TUNED).read_text())
    tune = table[table["experiment"].str.contains("/tune")]
    low, high = ledger.load().tuning_seeds
    assert len(tune) and tune["seed"].between(low, high).all()
    assert tune.loc[tune["status"] != "diverged", "val_acc"].notna().all()


def test_a_profile_that_leaves_claims_out_recomputes_its_committed_choices_from_its_table(tmp_path):
    """long is for some experiments only (gn_groups is left out): `python -m bnexp.calibration
    results/long` asks the questions of its claims alone and gives the committed tuned.json again."""
    import shutil

    from bnexp.config import profile_only
    from tests.conftest import ROOT

    committed = ROOT / "results" / "long"
    assert "gn_groups" not in profile_only("long") and "init_insensitivity" in profile_only("long")
    (tmp_path / "long").mkdir()
    for name in ("runs.csv", "exact.csv", calibration.TUNED):
        shutil.copy(committed / name, tmp_path / "long" / name)
    calibration.write(tmp_path / "long")
    written = json.loads((tmp_path / "long" / calibration.TUNED).read_text())
    assert written == json.loads((committed / calibration.TUNED).read_text())
    (tmp_path / "long" / calibration.TUNED).unlink()
    calibration.write(tmp_path / "long")  # from nothing: every question of long's claims, no other
    assert set(json.loads((tmp_path / "long" / calibration.TUNED).read_text())) == {
        q.id for q in calibration.questions() if q.claim in profile_only("long")}


def test_only_the_runs_of_the_profiles_current_regime_are_chosen_from():
    """convergence's tuning sweep at quick trains 6 epochs: runs of an earlier budget (4 epochs), kept in
    the table beside the new ones with the same arms, grid and seeds, are counted, not averaged in."""
    q = next(q for q in calibration.questions() if q.id == "convergence/lr")
    now = tuning_table({"plain": {0.01: 0.30, 0.03: 0.35}, "bn": {0.01: 0.40, 0.03: 0.45}}, experiment=q.experiment,
                       epochs_planned=6)
    before = tuning_table({"plain": {0.01: 0.50, 0.03: 0.20}, "bn": {0.01: 0.60, 0.03: 0.20}},
                          experiment=q.experiment, epochs_planned=4)
    before["key"] = "old-" + before["key"]
    both = pd.concat([now, before], ignore_index=True)
    answer = calibration.choose(both, q, {}, "quick")
    assert answer["values"] == {"plain": 0.03, "bn": 0.03} and answer["left_out"] == {"earlier regime": 8}
    assert len(answer["runs"]) == 8 and not any(k.startswith("old-") for k in answer["runs"])
    # read without its profile, the two regimes would be averaged into another choice
    assert calibration.choose(both, q, {})["values"] == {"plain": 0.01, "bn": 0.01}
    # tuned.json written from the older rows is flagged by the audit at the profile
    stale = calibration.choose(before, q, {})
    assert "convergence/lr" in calibration.audit(both, {"convergence/lr": stale}, "quick")


def test_a_dropout_rate_is_widened_toward_1_never_to_it():
    """At smoke, v4's rate grid 0.25, 0.5 with a choice at 0.5 once widened to 1.0, a rate no net can
    train at (refused, so the calibration stage failed); a rate's upper step is taken on 1 - p."""
    answer = {"rule": "best", "knob": "head_dropout", "values": {"none": 0.5}, "at_grid_edge": ["none"],
              "scores": {"none": {"0.25": 0.3, "0.5": 0.35}}}
    assert calibration.widening(answer) == [pytest.approx(2 / 3, rel=1e-5)]
    assert calibration.widening(answer | {"knob": "lr"}) == [1.0]
