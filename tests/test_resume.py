"""Resume: complete runs skipped, incomplete ones redone, runs in the committed table never
trained again, old rows found by the values the table holds."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from omegaconf import OmegaConf

from bnexp import endpoints, records
from tests.conftest import ROOT, SHRINK, make_config


def sweep(tmp_path, real_data, *args):
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    cmd = [sys.executable, "-m", "bnexp.cli", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}",
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


@pytest.mark.slow  # two sweeps, about a minute: make test-slow (CI runs it)
def test_a_run_in_the_committed_table_is_not_trained_again_on_a_fresh_machine(tmp_path, real_data):
    """A profile finished in parts: only results/<profile>/runs.csv travels. A job whose run key is
    in it (a result of clean code at a known commit) is skipped; one from a dirty tree is trained."""
    results = tmp_path / "results" / "quick"
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    cmd = [sys.executable, "-m", "bnexp.cli", "-m", f"hydra.sweep.dir={results / 'runs' / 'toy'}",
           "hydra.sweep.subdir=${bnexp_run_key:}", "model=plain,bn", *SHRINK, "train.max_steps=2"]

    def sweep_toy() -> subprocess.CompletedProcess:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-2000:]
        return r

    sweep_toy()
    endpoints.write(results)
    table = pd.read_csv(results / endpoints.RUNS)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    table["git_commit"], table["git_dirty"] = head, [False, True]  # as if committed: one clean row, one dirty
    table.to_csv(results / endpoints.RUNS, index=False)
    shutil.rmtree(results / "runs")  # a fresh machine: the raw runs stayed behind
    r = sweep_toy()
    assert "2 jobs: 1 completed, 0 failed, 1 skipped" in r.stderr.splitlines()[-1], r.stderr[-2000:]
    assert (r.stderr + r.stdout).count("in the committed endpoints table") == 1
    kept = table.iloc[0]
    left = json.loads((results / "runs" / "toy" / kept["key"] / "in_table.json").read_text())
    assert left["run_key"] == kept["run_key"]
    assert not (results / "runs" / "toy" / kept["key"] / records.SUMMARY).exists()  # not trained
    assert records.is_complete(results / "runs" / "toy" / table.iloc[1]["key"])
    endpoints.write(results)
    again = pd.read_csv(results / endpoints.RUNS)
    assert len(again) == 2 and again.set_index("key").loc[kept["key"], "train_s"] == kept["train_s"]

    # A machine with another CPU computes other run keys (and job folders) for the same configs:
    # the clean row is found by its config key, and the table keeps the row it had.
    other = table.copy()
    other.loc[0, ["key", "run_key"]] = "0123456789ab"
    other.to_csv(results / endpoints.RUNS, index=False)
    shutil.rmtree(results / "runs")
    r = sweep_toy()
    assert "2 jobs: 1 completed, 0 failed, 1 skipped" in r.stderr.splitlines()[-1], r.stderr[-2000:]
    assert "run 0123456789ab on another machine" in r.stderr + r.stdout
    endpoints.write(results)
    again = pd.read_csv(results / endpoints.RUNS)
    assert len(again) == 2 and "0123456789ab" in set(again["key"]) and kept["key"] not in set(again["key"])


def test_a_row_written_before_config_keys_is_found_by_the_values_the_table_holds(tmp_path):
    """Rows of a table written before it had config keys, from a machine with another CPU: a job
    finds its own by its config values when exactly one row has them, never another job's, and
    the endpoints table then gives the row the job's config key."""
    from bnexp.run import committed

    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    results = tmp_path / "results" / "long"
    jobs = {lr: make_config("model=bn", f"optim.lr={lr}", "seed=3") for lr in (0.1, 0.3)}
    choices = {"model": "bn", "optim": "sgd"}
    rows = []
    for n, cfg in enumerate(jobs.values()):
        container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # as config.yaml writes it
        rows.append({"experiment": "toy", "key": f"old{n}", "run_key": f"old{n}", "status": "completed",
                     "git_commit": head, "git_dirty": False, "data_source": "official",
                     **committed.identity(container, choices)})
    results.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(results / "runs.csv", index=False)
    container = OmegaConf.to_container(jobs[0.3], resolve=True)
    identity = committed.identity(container, choices) | {"data_source": "official"}
    job = results / "runs" / "toy" / "new0"
    found = committed.find(job, "new0", "cafe00000003", identity)
    assert found["key"] == "old1" and found["config_key"] == "cafe00000003"
    # Another data source, another seed or another group choice: not this job's row.
    assert committed.find(job, "new0", "cafe", identity | {"data_source": "official, JPEG copy"}) is None
    assert committed.find(job, "new0", "cafe", identity | {"seed": 4}) is None
    assert committed.find(job, "new0", "cafe", identity | {"choice_optim": "adam"}) is None
    # An arm's name is not compared: two arms setting the same values are one run.
    assert committed.identity(container, choices | {"arm": "bn_shared"}) == committed.identity(container, choices)
    # Two rows with the values the job has (a swept value the table does not hold): neither.
    pd.DataFrame([rows[1], rows[1] | {"key": "old2", "run_key": "old2"}]).to_csv(results / "runs.csv", index=False)
    assert committed.find(job, "new0", "cafe", identity) is None
    # The mark left for the job gives the row its config key when the table is next written.
    pd.DataFrame(rows).to_csv(results / "runs.csv", index=False)
    committed.mark(job, found)
    endpoints.write(results)
    table = pd.read_csv(results / "runs.csv").set_index("key")
    assert table.loc["old1", "config_key"] == "cafe00000003" and pd.isna(table.loc["old0", "config_key"])
    # ... by which a later job finds it, whatever its other values say.
    assert committed.find(job, "new0", "cafe00000003", None)["key"] == "old1"


def _bnexp(cwd, real_data, *args):
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    return subprocess.run([sys.executable, "-m", "bnexp.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd)


@pytest.mark.slow  # five commands, nine tiny runs, about 40 s: make test-slow
def test_a_single_run_and_an_adhoc_sweep_resume_where_the_same_command_left_them(tmp_path, real_data):
    """No experiment, no folder given: a single run lives under its run key and an ad-hoc sweep under
    a hash of its command line, so that the same command (overrides in any order) finds them."""
    res = tmp_path / "res"
    one = ["model=bn", *SHRINK, "train.max_steps=2", f"results={res}"]
    first = _bnexp(tmp_path, real_data, *one)
    assert first.returncode == 0, first.stderr
    (run,) = (res / "runs" / "single").iterdir()
    assert records.read_summary(run)["run_key"] == run.name and f"record in {run}" in first.stderr
    again = _bnexp(tmp_path, real_data, *reversed(one))
    assert "complete record found; skipped" in again.stderr + again.stdout
    assert f"skipped; record in {run}" in again.stderr
    assert len(list((res / "runs" / "single").iterdir())) == 1

    grid = ["-m", "model=plain,bn", *SHRINK, "train.max_steps=2", f"results={res}"]
    assert _bnexp(tmp_path, real_data, *grid).returncode == 0
    (folder,) = (res / "runs" / "multirun").iterdir()
    assert folder.name.startswith("sweep-") and len(list(records.find_runs(folder))) == 2
    rerun = _bnexp(tmp_path, real_data, "-m", *reversed(grid[1:]))
    assert "2 jobs: 0 completed, 0 failed, 2 skipped" in rerun.stderr, rerun.stderr
    assert list((res / "runs" / "multirun").iterdir()) == [folder]
    named = _bnexp(tmp_path, real_data, *grid, "name=mine")
    assert named.returncode == 0 and (res / "runs" / "multirun" / "mine").is_dir()


def test_a_refused_adhoc_sweep_leaves_no_folder(tmp_path, real_data):
    r = _bnexp(tmp_path, real_data, "-m", "model=gn", "model.width=4", "model.depth=3", *SHRINK, "results=res")
    assert r.returncode == 2 and "groups do not divide" in r.stderr
    assert not (tmp_path / "res").exists()
