"""scripts/reproduce.py end to end: it refuses another checkout's code, and the smoke profile
reports every claim."""

import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from bnexp import calibration, endpoints, records
from bnexp.claims import all_claims
from bnexp.config import calibrations, experiments, pilots
from tests.conftest import ROOT


def test_reproduce_refuses_to_run_another_checkouts_code(tmp_path):
    """A copy of the script in another checkout, whose environment imports this checkout's bnexp,
    is refused on one line before anything runs."""
    other = tmp_path / "checkout"
    (other / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "reproduce.py", other / "scripts" / "reproduce.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(other / "scripts" / "reproduce.py"), "--profile", "smoke",
                        "--results", str(tmp_path / "results")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and f"not from this checkout ({other})" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "results").exists()


@pytest.mark.slow  # about 5 minutes on 2 cores: make test-slow (CI runs it)
def test_smoke_profile_end_to_end_reports_every_claim(tmp_path, real_data):
    """`make reproduce-figures PROFILE=smoke WANDB=1`: every sweep, then the report, every run mirrored
    to an offline wandb run and one report run, all readable by wandb's own reader."""
    env = os.environ | {"BNEXP_DATA": str(real_data), "WANDB_MODE": "offline"}
    r = subprocess.run([sys.executable, "scripts/reproduce.py", "--profile", "smoke", "--results", str(tmp_path),
                        "--wandb"], capture_output=True, text=True, env=env, timeout=1200, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "smoke"
    report = (out / "REPORT.md").read_text()
    claims = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in claims] == [c.id for c in all_claims()]
    for c in claims:
        assert f"## {c['id']}" in report
        assert c["verdict"] in ("reproduced", "not reproduced", "inconclusive", "untestable at this scale")
        assert {"effect", "ci_low", "ci_high", "n_seeds"} <= set(c)
    exact = {c.id for c in all_claims() if c.exact}
    assert {c["id"]: c["verdict"] for c in claims if c["id"] in exact} == dict.fromkeys(exact, "reproduced")
    # The report is computed from the table the sweep left: one row per run, all of them there.
    table = pd.read_csv(out / "runs.csv")
    assert len(table) == len(list(records.find_runs(out / "runs")))
    assert "not registered" not in report
    used = {c["id"]: c["n_runs_used"] + c["n_runs_excluded"] for c in claims}
    assert used["lr_tolerance"] == (table["experiment"] == "lr_tolerance").sum()
    drawn = sorted(p.stem for p in (out / "figures").glob("*.png"))
    if not table["git_dirty"].any():  # runs of a tree with uncommitted changes are left out, undrawn
        assert drawn == sorted(c.id for c in all_claims() if c.figure), drawn
    else:
        assert "dirty left out" in report
    # Calibration first (tuning seeds, validation split), its choices recomputable from the table;
    # then the verdict sweeps.
    tune = table[table["experiment"].str.contains("/tune|/pilot")]  # pilot sweeps run in the same stage
    before, after = r.stderr.split("calibration smoke:")
    # One stage line per wave (sweeps that train with an earlier answer wait for it), then one per
    # widening of a grid whose choice sat at an edge (its earlier runs already complete), then one for
    # the pilot sweeps.
    stages = [re.search(r"reproduce smoke: (\d+) runs in (\d+) sweeps, (\d+) already complete", line)
              for line in before.splitlines()]
    stages = [m for m in stages if m]
    assert sum(int(m[1]) - int(m[3]) for m in stages) == len(tune)
    assert sum(int(m[2]) for m in stages if m[3] == "0") == len(calibrations()) + len(pilots())
    assert after.lstrip().startswith(f"{len({c.split('/')[0] for c in calibrations()})} claims tuned")
    assert set(tune["seed"]) == {9000} and tune.loc[tune["status"] != "diverged", "val_acc"].notna().all()
    assert json.loads((out / "tuned.json").read_text()) == calibration.tuned(endpoints.read(out)[0], "smoke")
    assert f"runs in {len(experiments())} sweeps, 0 already complete" in after
    # the overall tally (wandb's report-run output may follow it on stderr)
    assert any(line.startswith("reproduce smoke: ") and " jobs: " in line for line in r.stderr.splitlines()), \
        r.stderr[-2000:]
    assert (out / "logs" / "landscape.log").read_text().count("epoch 1/1") == 3  # the jobs' output, kept
    # Idempotent: a second call trains nothing.
    again = subprocess.run([sys.executable, "scripts/reproduce.py", "--profile", "smoke", "--results", str(tmp_path),
                            "--only", "landscape"], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert again.returncode == 0 and "landscape: 3 jobs: 0 completed, 0 failed, 3 skipped" in again.stderr
    # wandb: one finished offline run per run folder, named and grouped by its sweep; one report run.
    from tests.test_tracking import one, read_back

    for run_dir in records.find_runs(out / "runs"):
        rows = read_back(run_dir)
        summary = records.read_summary(run_dir)
        run = one(rows, "run")
        assert run["run_id"] == summary["run_key"] and run["run_group"] == f"smoke/{records.Record(run_dir).experiment}"
        assert one(rows, "exit")["exit_code"] == 0
    report_run = one(read_back(out), "run")
    assert report_run["job_type"] == "report" and "wandb report run: " in r.stdout


@pytest.mark.slow  # two smoke profiles side by side, about 6 minutes on 2 cores: make test-slow (CI runs it)
def test_two_reproduce_runs_over_one_folder_share_the_runs_and_both_succeed(tmp_path, real_data):
    """Two `make reproduce-figures PROFILE=smoke` over one results folder at once: a run the other
    process trains is waited for, not counted as lost, so both exit 0; nothing is trained twice,
    and the table they leave is the one the records give."""
    env = os.environ | {"BNEXP_DATA": str(real_data), "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "scripts/reproduce.py", "--profile", "smoke", "--results", str(tmp_path), "--jobs", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for _ in range(2)]
    outs = [p.communicate(timeout=1500) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
    out = tmp_path / "smoke"
    runs = list(records.find_runs(out / "runs"))
    assert runs and all(records.read_summary(d)["attempts"] == 1 for d in runs)  # each trained once, by one of them
    table = (out / "runs.csv").read_text()
    assert len(pd.read_csv(out / "runs.csv")) == len(runs)
    r = subprocess.run([sys.executable, "-m", "bnexp.endpoints", str(out)], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0 and (out / "runs.csv").read_text() == table
    assert [c["id"] for c in json.loads((out / "claims.json").read_text())] == [c.id for c in all_claims()]
