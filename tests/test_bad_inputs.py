"""Tables that cannot lie: every file the verdicts read is checked against what made it, and every
bad input is one line and a non-zero exit, through the real commands. By input family: tuned.json,
runs.csv, ledger.yaml, summary.json, reproduce's arguments, the GPU check. (Two concurrent
reproduce runs over one folder: tests/test_reproduce.py.)"""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from bnexp import calibration, endpoints, records, table
from bnexp.claims import all_claims
from bnexp.evaluation import evaluate_profile
from bnexp.method import ledger
from bnexp.method.ledger.book import Recertification
from bnexp.run import committed
from bnexp.table import read_runs
from tests.conftest import ROOT, SHRINK

QUICK = ROOT / "results" / "quick"


def command(*args: str, cwd=ROOT, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env=os.environ | env)


def one_line(r: subprocess.CompletedProcess, *words: str) -> str:
    """A refusal: a non-zero exit, one line on stderr naming what is wrong, no traceback."""
    err = r.stderr.strip()
    assert r.returncode != 0, r.stdout[-500:]
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    for w in words:
        assert w in err, err
    return err


@pytest.fixture
def quick(tmp_path):
    """A copy of the committed quick profile's table, tuned.json and exact checks."""
    out = tmp_path / "quick"
    out.mkdir()
    for name in (endpoints.RUNS, endpoints.CURVES, endpoints.EXACT, calibration.TUNED):
        shutil.copy(QUICK / name, out / name)
    return out


def claim_status(results, claim: str) -> tuple[str, list[str]]:
    head = evaluate_profile(results, "quick").headlines()[claim]
    return head.status, head.reasons


# --- tuned.json -------------------------------------------------------------------------------

def test_1_a_hand_edited_tuned_json_cannot_keep_a_verdict_confirmatory(quick):
    """Defect 1: convergence's target edited 0.2745 -> 0.40 moved the effect from 0.549 to 0.390
    and stayed confirmatory. Now the answer is recomputed from the tuning rows and the verdicts
    that read it are exploratory, saying why."""
    committed = {c["id"]: c for c in json.loads((QUICK / "claims.json").read_text())}
    assert committed["convergence"]["status"] == "confirmatory"  # as the committed table and tuned.json give it
    tuned = json.loads((quick / calibration.TUNED).read_text())
    tuned["convergence/target"]["reference_val_acc"] = 0.40
    tuned["convergence/target"]["value"] = 0.32
    (quick / calibration.TUNED).write_text(json.dumps(tuned))
    status, reasons = claim_status(quick, "convergence")
    assert status == "exploratory"
    assert any("tuned.json's convergence/target differs from what its tuning rows give "
               "(reference_val_acc: file 0.4, rows 0.2745)" in r for r in reasons), reasons
    assert claim_status(quick, "small_batch")[0] == "confirmatory"  # another claim's answers are untouched


def test_1_an_edited_score_is_caught_too(quick):
    tuned = json.loads((quick / calibration.TUNED).read_text())
    arm = next(iter(tuned["small_batch/lr"]["scores"]))
    grid = next(iter(tuned["small_batch/lr"]["scores"][arm]))
    tuned["small_batch/lr"]["scores"][arm][grid] += 0.05
    (quick / calibration.TUNED).write_text(json.dumps(tuned))
    status, reasons = claim_status(quick, "small_batch")
    assert status == "exploratory" and any(f"scores.{arm}.{grid}" in r for r in reasons), reasons


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_5_a_corrupt_tuned_json_is_one_line_for_the_report_and_calibration(quick, text):
    (quick / calibration.TUNED).write_text(text)
    one_line(command("-m", "bnexp.report", str(quick)), "tuned.json", "report:")
    with pytest.raises(calibration.CalibrationError, match=r"tuned\.json"):
        calibration.value("quick", "small_batch/lr", "bn", results=quick.parent)
    assert not (quick / "REPORT.md").exists()  # nothing half-written


def test_2_a_dirty_tuning_row_is_left_out_of_calibration_and_counted(quick):
    """Defect 2: one dirty row with val_acc 0.9 moved BN's lr from 0.3 to 1.0."""
    t = read_runs(quick / endpoints.RUNS)
    before = calibration.read(quick)["small_batch/lr"]
    tune = t[(t["experiment"] == "small_batch/tune") & (t["choice_arm"].astype(str).str.endswith("/bn"))]
    lrs = sorted(tune["lr"].unique())
    forged = tune[tune["lr"] == lrs[-1]].iloc[[0]].assign(key="forged0000", run_key="forged0000", val_acc=0.9,
                                                          git_dirty=True)
    foreign = forged.assign(key="forged0001", run_key="forged0001", git_dirty=False, git_commit="0" * 40)
    pd.concat([t, forged, foreign]).to_csv(quick / endpoints.RUNS, index=False)
    r = command("-m", "bnexp.calibration", str(quick))
    assert r.returncode == 0, r.stderr
    after = calibration.read(quick)["small_batch/lr"]
    assert after["values"] == before["values"] and after["scores"] == before["scores"]
    assert after["left_out"] == {"dirty": 1, "unknown commit": 1}


# --- runs.csv ---------------------------------------------------------------------------------

def test_3_a_run_key_twice_with_different_values_is_refused_by_report_calibration_and_skip(quick):
    """Defect 3: a duplicated key with another final_acc silently changed a verdict."""
    t = read_runs(quick / endpoints.RUNS)
    row = t[t["experiment"] == "sigmoid"].iloc[[0]]
    pd.concat([t, row.assign(test_acc=0.99)]).to_csv(quick / endpoints.RUNS, index=False)
    key = row["key"].iloc[0]
    one_line(command("-m", "bnexp.report", str(quick)), f"run {key} of experiment sigmoid", "different values")
    one_line(command("-m", "bnexp.calibration", str(quick)), f"run {key}")
    with pytest.raises(table.TableError, match=f"run {key}"):  # the committed-table skip of a sweep job
        committed.find(quick / "runs" / "sigmoid" / key, row["run_key"].iloc[0])
    # an exact repeat (a row appended twice) is the same run: read once
    pd.concat([t, row]).to_csv(quick / endpoints.RUNS, index=False)
    assert len(read_runs(quick / endpoints.RUNS)) == len(t)


def test_4_a_runs_csv_cut_mid_row_is_refused_naming_the_line(quick):
    text = (quick / endpoints.RUNS).read_text()
    lines = text.splitlines()
    (quick / endpoints.RUNS).write_text("\n".join(lines[:40]) + "\n" + lines[40][: len(lines[40]) // 3])
    one_line(command("-m", "bnexp.report", str(quick)), "runs.csv: line 41 has", "fields")


def test_5_a_non_numeric_result_and_a_missing_column_are_one_line(quick):
    t = read_runs(quick / endpoints.RUNS)
    t.astype({"test_acc": object}).assign(test_acc=t["test_acc"].where(t.index != 7, "0.3x")).to_csv(
        quick / endpoints.RUNS, index=False)
    one_line(command("-m", "bnexp.report", str(quick)), "line 9: column test_acc holds '0.3x', not a number")
    t.drop(columns="git_dirty").to_csv(quick / endpoints.RUNS, index=False)
    one_line(command("-m", "bnexp.report", str(quick)), "no column 'git_dirty'")


def test_5_endpoints_on_a_folder_without_runs_is_one_line(tmp_path):
    one_line(command("-m", "bnexp.endpoints", str(tmp_path)), "has no runs/ folder")
    assert not (tmp_path / endpoints.RUNS).exists()


# --- ledger.yaml ------------------------------------------------------------------------------

def test_5_a_broken_ledger_is_one_line_for_check_and_report(tmp_path, monkeypatch):
    broken = tmp_path / "ledger.yaml"
    broken.write_text(ledger.LEDGER.read_text().replace("versions:", "versions: [", 1))
    with pytest.raises(ledger.LedgerError, match="not readable as the ledger at line"):
        ledger.load(broken)
    monkeypatch.setattr("bnexp.method.ledger.book.LEDGER", broken)
    monkeypatch.setattr(sys, "argv", ["ledger", "check"])
    from bnexp.method.ledger.__main__ import main

    with pytest.raises(SystemExit, match=r"ledger: .*ledger\.yaml: not readable as the ledger"):
        main()
    with pytest.raises(ledger.LedgerError, match="not readable as the ledger"):  # the report's main: one line
        evaluate_profile(QUICK, "quick")


def test_5_and_7_register_refuses_an_unknown_claim_and_a_seed_count_below_one():
    before = ledger.LEDGER.read_text()
    one_line(command("-m", "bnexp.method.ledger", "register", "nosuch", "1", "--reason", "x"), "no claim 'nosuch'")
    one_line(command("-m", "bnexp.method.ledger", "register", "small_batch", "3", "--seeds", "0", "--reason", "x"),
             "--seeds must be at least 1")
    with pytest.raises(SystemExit, match="--seeds must be at least 1, got -3"):
        ledger.register("small_batch", 3, -3, "x")
    assert ledger.LEDGER.read_text() == before


def test_7_check_refuses_an_empty_seed_range():
    book = ledger.load()
    e = next(e for e in book.entries if e.verdict_seeds)
    e.verdict_seeds = (e.verdict_seeds[0], e.verdict_seeds[0] - 1)  # what --seeds 0 used to write
    assert any("are not a range of at least one seed" in p for p in ledger.check(all_claims(), book))


def test_8_a_recertification_that_does_not_chain_back_to_the_registered_hash_fails_check():
    book = ledger.load()
    assert ledger.check(all_claims(), book) == []
    e = next(e for e in book.entries if e.recertified)
    first = next(r for r in book.recertifications if (r.claim, r.version) == (e.claim, e.version))
    e.hash = "0" * 12  # the registered hash changed by hand, the re-certification left as it was
    problems = ledger.check(all_claims(), book)
    assert any(f"replaces {first.replaces}, but the hash before it is {'0' * 12}" in p for p in problems), problems
    book = ledger.load()
    book.recertifications.append(Recertification(e.claim, e.version, "f" * 12, "e" * 12, "HEAD", "hidden", 1, ""))
    assert any("does not lead back to the registered hash" in p for p in ledger.check(all_claims(), book))


# --- summary.json -----------------------------------------------------------------------------

@pytest.mark.slow  # a real sweep or several runs, 10-30 s here: make test-slow (CI runs it)
def test_9_a_summary_cut_short_counts_as_no_record_and_is_trained_again(tmp_path, real_data):
    env = {"BNEXP_DATA": str(real_data)}
    args = ["-m", "bnexp.cli", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweep.subdir=${bnexp_run_key:}",
            "model=plain,bn", *SHRINK, "train.max_steps=2"]
    assert command(*args, **env).returncode == 0
    runs = sorted(records.find_runs(tmp_path / "sweep"))
    summary = runs[0] / records.SUMMARY
    summary.write_text(summary.read_text()[:40])
    assert records.unreadable(runs[0]) and not records.is_complete(runs[0]) and not records.is_done(runs[0])
    r = command(*args, **env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "summary.json is unreadable (cut short or edited): no record, trained again" in r.stdout + r.stderr
    assert "1 completed" in r.stderr and "1 skipped" in r.stderr and "1 of them retrained for an unreadable record" \
        in r.stderr
    assert records.read_summary(runs[0])["status"] == "completed"


# --- reproduce's arguments and the GPU check ----------------------------------------------------

@pytest.mark.parametrize(("args", "words"), [
    (["--threads", "0"], "--threads: at least 1"), (["--threads", "-1"], "--threads: at least 1"),
    (["--jobs", "-2"], "--jobs: at least 1"),
    (["--device", "cuda"], "--device cuda: cuda asked for, but no CUDA device is available"),
    (["--device", "nonsense"], "--device nonsense:"),
])
def test_6_reproduce_validates_its_arguments_first(tmp_path, args, words):
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device")
    r = command("scripts/reproduce.py", "--profile", "smoke", "--results", str(tmp_path), *args)
    one_line(r, words)
    assert r.returncode == 2 and not (tmp_path / "smoke" / endpoints.RUNS).exists()


def test_6_a_results_folder_that_cannot_be_written_is_one_line(tmp_path):
    """A --results that cannot take a folder (here a file stands where it would be; a read-only
    folder is the same refusal for a user who is not root)."""
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    r = command("scripts/reproduce.py", "--profile", "smoke", "--results", str(blocked))
    assert r.returncode == 2
    one_line(r, f"--results: {blocked / 'smoke'} cannot take the runs and the report")


def test_6_calibrate_with_nothing_to_tune_says_so_and_writes_nothing(tmp_path):
    r = command("scripts/reproduce.py", "--profile", "smoke", "--results", str(tmp_path), "--only", "gn_groups",
                "--stage", "calibrate")
    assert r.returncode == 0 and "nothing to calibrate" in r.stderr and "wrote" not in r.stderr + r.stdout
    assert not (tmp_path / "smoke" / calibration.TUNED).exists()


def test_11_gpu_check_without_cuda_refuses_the_full_size_check_on_the_cpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    one_line(command("scripts/gpu_check.py", "--out", str(tmp_path)), "no CUDA device here", "DEVICE=cpu")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("step", ["report", "endpoints", "calibration"])
def test_12_a_steps_help_is_help_and_a_folder_that_is_not_a_results_folder_is_refused(tmp_path, step):
    r = subprocess.run([sys.executable, "-m", f"bnexp.{step}", "--help"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith(f"usage: python -m bnexp.{step}") and not any(tmp_path.iterdir())
    one_line(command("-m", f"bnexp.{step}", str(tmp_path / "nowhere")), f"{step}:", "results folder")
    assert not (tmp_path / "nowhere").exists()


def test_13_a_verdict_sweep_on_a_dirty_checkout_is_refused_before_anything_trains(tmp_path):
    """Runs made on uncommitted code never count for a verdict or a choice, so reproduce refuses to
    make them (unless told --allow-dirty): in a clone with one untracked file in bnexp/."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--local", str(ROOT), str(clone)], check=True, timeout=120)
    (clone / "bnexp" / "scratch.py").write_text("x = 1\n")
    env = os.environ | {"PYTHONPATH": str(clone)}
    r = subprocess.run([sys.executable, "scripts/reproduce.py", "--profile", "smoke", "--results", str(tmp_path / "r"),
                        "--only", "lr_tolerance"], capture_output=True, text=True, cwd=clone, env=env, timeout=300)
    one_line(r, "the checkout has 1 uncommitted change(s) (?? bnexp/scratch.py)", "--allow-dirty")
    assert r.returncode == 2 and not (tmp_path / "r").exists()


def test_13_a_claims_run_made_on_a_dirty_tree_is_trained_again_once_the_tree_is_clean(tmp_path, monkeypatch):
    from bnexp import cli
    from bnexp.run import provenance
    from tests.conftest import make_config

    cfg = make_config("model=bn")
    run_dir = tmp_path / "runs" / "small_batch" / cli.run_key(cfg)
    run_dir.mkdir(parents=True)
    summary = {"status": "completed", "run_key": cli.run_key(cfg), "git_dirty": True}
    (run_dir / records.SUMMARY).write_text(json.dumps(summary))
    monkeypatch.setattr(records, "is_done", lambda d: (d / records.SUMMARY).is_file())
    monkeypatch.setattr(provenance, "changes", lambda: [" M bnexp/claims/small_batch.py"])
    assert cli._decide(run_dir, cfg, {"experiment": "small_batch"}) == "skipped"  # still dirty: kept
    assert cli._decide(run_dir, cfg, {}) == "skipped"  # an ad-hoc run: kept whatever the tree
    monkeypatch.setattr(provenance, "changes", lambda: [])
    assert cli._decide(run_dir, cfg, {"experiment": "small_batch"}) is None  # clean now: this process trains it
    assert not (run_dir / records.SUMMARY).exists()
    records.release(run_dir)
