"""Sweeps: run directories keyed by what a run computes, complete runs skipped, incomplete ones
redone, concurrent sweeps kept apart; and the whole smoke profile end to end."""

import json
import os
import subprocess
import sys

from omegaconf import OmegaConf

from bnexp import records
from bnexp.claims import CLAIMS
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
    assert [c["id"] for c in claims] == [c.id for c in CLAIMS]
    for c in claims:
        assert f"## {c['id']}" in report
        assert c["verdict"] in ("reproduced", "not reproduced", "inconclusive")
        assert {"effect", "ci_low", "ci_high", "n_seeds"} <= set(c)
    exact = {c["id"]: c["verdict"] for c in claims if c["experiment"] is None}
    assert set(exact.values()) == {"reproduced"}, exact
    assert len(list((out / "figures").glob("*.png"))) == 9
    # Idempotent: a second call trains nothing.
    again = subprocess.run([sys.executable, "scripts/reproduce.py", "--profile", "smoke", "--results", str(tmp_path),
                            "--only", "landscape"], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert again.returncode == 0 and "epoch 1/1" not in again.stdout + again.stderr


def test_convergence_counts_a_diverged_run_as_slow_not_fast(monkeypatch):
    """A run that diverged at step 21 never reached the target: it must not look fastest."""
    import pandas as pd

    from bnexp import claims

    rows, metrics = [], {}
    for model, lr, seed, steps, reach in [("plain", 0.5, s, 21, None) for s in range(3)] + \
            [("plain", 0.02, s, 124, 90) for s in range(3)] + [("bn", 0.02, s, 124, 20) for s in range(3)]:
        run_dir = f"{model}-{lr}-{seed}"
        rows.append({"experiment": "convergence", "run_dir": run_dir, "choice_model": model, "lr": lr, "seed": seed,
                     "steps": steps, "best_test_acc": 0.25 if reach else 0.10})
        metrics[run_dir] = pd.DataFrame({"step": [10, reach or steps], "epoch": [0.0, 1.0], "name": "test/acc",
                                         "value": [0.1, 0.3 if reach else 0.1]})
    runs = pd.DataFrame(rows)
    # Metrics from memory instead of run records: this checks the claim's arithmetic only.
    monkeypatch.setattr(claims, "load_metrics", lambda r, prefix="": pd.concat(
        [metrics[d].assign(run_dir=d) for d in r["run_dir"]]).merge(r, on="run_dir"))
    res = claims.convergence(runs)
    assert "plain 0.02" in res.detail[1] and abs(res.effect - 20 / 90) < 1e-9
