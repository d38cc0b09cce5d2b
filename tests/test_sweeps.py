"""Sweeps: run directories keyed by what a run computes, complete runs skipped, incomplete ones
redone, concurrent sweeps kept apart; and the whole smoke profile end to end."""

import json
import os
import subprocess
import sys

import pandas as pd
from omegaconf import OmegaConf

from bnexp import records
from bnexp.claims import all_claims
from tests.conftest import ROOT, SHRINK, make_config


def test_run_key_depends_on_what_is_computed_only():
    base = records.run_key(make_config("model=bn"))
    assert base == records.run_key(make_config("model=bn"))
    assert base != records.run_key(make_config("model=gn"))
    assert base != records.run_key(make_config("model=bn", "seed=1"))
    # Where the data lives, threads, labels and the profile table do not change the key.
    assert base == records.run_key(make_config("model=bn", "dataset.root=/elsewhere", "threads=1", "name=x",
                                               "profile=smoke"))
    saved = OmegaConf.create(OmegaConf.to_yaml(make_config("model=bn"), resolve=True))
    assert records.run_key(saved) == base  # a stored record has the key of its config


def test_claim_refuses_a_live_lock_and_takes_over_a_stale_one(tmp_path):
    assert records.claim(tmp_path / "run")
    assert not records.claim(tmp_path / "run")  # this very process holds it
    records.release(tmp_path / "run")
    (tmp_path / "run" / records.LOCK).write_text(f"{os.uname().nodename} 999999999")  # no such process
    assert records.claim(tmp_path / "run")


def sweep(tmp_path, real_data, *args):
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    cmd = [sys.executable, "-m", "bnexp.train", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           "hydra.sweep.subdir=${bnexp_run_key:}", "model=plain,bn", *SHRINK, "train.max_steps=2", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r


def test_rerun_skips_complete_runs_and_redoes_incomplete_ones(tmp_path, real_data):
    sweep(tmp_path, real_data)
    runs = sorted(records.find_runs(tmp_path / "sweep"))
    assert len(runs) == 2
    finished = {d: records.read_summary(d)["finished"] for d in runs}
    (runs[0] / records.SUMMARY).unlink()  # as if interrupted before the end
    r = sweep(tmp_path, real_data)
    assert r.stderr.count("complete record found; skipped") + r.stdout.count("complete record found; skipped") == 1
    assert records.read_summary(runs[1])["finished"] == finished[runs[1]]  # untouched
    assert records.is_complete(runs[0])
    assert records.read_summary(runs[0])["run_key"] == runs[0].name


def test_smoke_profile_end_to_end_reports_every_claim(tmp_path, real_data):
    """`make reproduce-figures PROFILE=smoke`: every sweep, then the report (about 2 minutes)."""
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    r = subprocess.run([sys.executable, "scripts/reproduce.py", "--profile", "smoke", "--results", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "smoke"
    report = (out / "REPORT.md").read_text()
    claims = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in claims] == [c.id for c in all_claims()]
    for c in claims:
        assert f"## {c['id']}" in report
        assert c["verdict"] in ("reproduced", "not reproduced", "inconclusive")
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
    # Idempotent: a second call trains nothing.
    again = subprocess.run([sys.executable, "scripts/reproduce.py", "--profile", "smoke", "--results", str(tmp_path),
                            "--only", "landscape"], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert again.returncode == 0 and "epoch 1/1" not in again.stdout + again.stderr
