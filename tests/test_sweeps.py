"""Sweeps: run directories keyed by what a run computes, complete runs skipped, incomplete ones
redone, concurrent sweeps kept apart; and the whole smoke profile end to end."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from bnexp import calibration, endpoints, records
from bnexp.claims import all_claims
from bnexp.config import calibrations, experiments
from bnexp.run import provenance
from tests.conftest import ROOT, SHRINK, make_config


def test_run_key_covers_what_changes_the_numbers_outside_the_config(tmp_path, real_data):
    """CPU threads, the device, torch and the data files' origin change the numbers: they are in the
    key (threads=0 means every core this process may use, so it equals that count spelled out)."""
    from bnexp.resolvers import run_key

    root = f"dataset.root={real_data}"
    one, two = run_key(make_config(root, "threads=1")), run_key(make_config(root, "threads=2"))
    assert one != two
    cores = provenance.cores()
    assert run_key(make_config(root, "threads=0")) == run_key(make_config(root, f"threads={cores}"))
    copy = tmp_path / "cifar-10-batches-py"
    copy.mkdir()
    for f in (real_data / "cifar-10-batches-py").iterdir():
        (copy / f.name).symlink_to(f)
    (copy / "SOURCE").unlink(missing_ok=True)
    (copy / "SOURCE").write_text("official files from www.cs.toronto.edu\n")
    assert run_key(make_config(f"dataset.root={tmp_path}", "threads=1")) != one
    # Not in the key: where the data lives when it is the same data, and labels.
    assert run_key(make_config(root, "threads=1", "name=x")) == one


def test_cores_is_this_process_affinity_and_falls_back_where_the_os_has_none(monkeypatch):
    """threads=0, reproduce's --jobs and cost.py count the cores this process may use (a taskset or
    SLURM allocation gives fewer than the machine); macOS has no sched_getaffinity: every core."""
    if hasattr(os, "sched_getaffinity"):
        assert provenance.cores() == len(os.sched_getaffinity(0))
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
        assert provenance.cores() == 1
        monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert provenance.cores() == 3
    assert provenance.threads(make_config("threads=0")) == 3


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


def test_claim_refuses_a_held_lock_and_takes_over_one_whose_holder_died(tmp_path):
    run = tmp_path / "run"
    assert records.claim(run)
    assert not records.claim(run)  # this very process holds it
    records.release(run)
    assert not (run / records.LOCK).exists()
    (run / records.LOCK).write_text("")  # an empty file left behind is not a held lock
    assert records.claim(run)
    records.release(run)
    # A holder killed with SIGKILL: the kernel drops its lock, the next claim succeeds.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from bnexp import records; assert records.claim(Path(sys.argv[1])); "
                               "print('held', flush=True); time.sleep(60)", str(run)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    assert not records.claim(run)
    holder.kill()
    holder.wait()
    assert records.claim(run)
    records.release(run)


def _race(run: str, rounds: int, barrier, wins) -> None:
    from pathlib import Path

    for k in range(rounds):
        barrier.wait()
        if records.claim(Path(run) / str(k)):
            wins.put(k)
            barrier.wait()  # hold it until both have tried
            records.release(Path(run) / str(k))
        else:
            barrier.wait()


def test_two_processes_never_both_hold_a_run(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier, wins = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), 1000, barrier, wins)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    won = [wins.get(timeout=5) for _ in range(wins.qsize())] if wins.qsize() else []
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(won) == list(range(1000))  # every round exactly one winner


TINY = ["dataset.subset=256", "dataset.test_size=200", "train.batch_size=32", "threads=1"]


def start_sweep(tmp_path, real_data, *args, **kw):
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    return subprocess.Popen([sys.executable, "-m", "bnexp.cli", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                             "hydra.sweep.subdir=${bnexp_run_key:}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, **kw)


def test_a_job_that_fails_before_training_is_recorded_and_fails_the_sweep(tmp_path, real_data):
    p = start_sweep(tmp_path, real_data, "train.probe_layer=last,nope", *TINY, "train.max_steps=2")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1, err
    assert "2 jobs: 1 completed, 1 failed" in err.splitlines()[-1]
    runs = {records.read_summary(d)["status"]: d for d in records.find_runs(tmp_path / "sweep")}
    assert set(runs) == {"completed", "failed"}
    assert records.read_summary(runs["failed"])["reason"].startswith("train.probe_layer:")
    assert records.read_config(runs["failed"]).train.probe_layer == "nope"  # the report can place it
    # A rerun skips the completed job, tries the failed one again, and says so.
    p = start_sweep(tmp_path, real_data, "train.probe_layer=last,nope", *TINY, "train.max_steps=2")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1 and "2 jobs: 0 completed, 1 failed, 1 skipped" in err.splitlines()[-1]


def _limit_file_size():
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


def test_a_write_that_fails_leaves_no_partial_file_and_fails_the_sweep(tmp_path, real_data):
    """The kernel refuses any file over 256 KiB: the first checkpoint (about 1 MiB) cannot be written."""
    p = start_sweep(tmp_path, real_data, "seed=0,1", "model=bn", *TINY, "train.epochs=2",
                    preexec_fn=_limit_file_size)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1 and "2 jobs: 0 completed, 2 failed" in err.splitlines()[-1], err[-2000:]
    for d in records.find_runs(tmp_path / "sweep"):
        reason = records.read_summary(d)["reason"]
        assert "checkpoint.pt: could not be written (File too large); nothing partial was left" in reason
    assert not [f for f in (tmp_path / "sweep").rglob("*") if f.name.endswith(".tmp")]


def test_killing_a_joblib_sweep_stops_its_workers(tmp_path, real_data):
    p = start_sweep(tmp_path, real_data, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1",
                    "model=bn", "dataset.subset=2048", "dataset.test_size=200", "threads=1", "train.epochs=50")
    deadline, locks = time.monotonic() + 180, []
    while time.monotonic() < deadline and len(locks) < 2:
        locks = [f for f in (tmp_path / "sweep").glob("*/.lock") if f.read_text().strip()]
        time.sleep(0.2)
    assert len(locks) == 2, p.stderr.read() if p.poll() is not None else "no two jobs started"
    workers = [int(f.read_text().split()[1]) for f in locks]
    p.terminate()  # SIGTERM, as a scheduler or `kill` sends it
    p.wait(timeout=60)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its sweep"
    for f in locks:  # a rerun started now can take every run again
        assert records.claim(f.parent)
        records.release(f.parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has died; only its entry is left
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False


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
    tune = table[table["experiment"].str.contains("/tune")]
    before, after = r.stderr.split("calibration smoke:")
    planned = [re.search(r"reproduce smoke: (\d+) runs in (\d+) sweeps, 0 already complete", line)
               for line in before.splitlines()]
    planned = [m for m in planned if m]  # one line per wave: sweeps that train with an earlier answer wait for it
    assert sum(int(m[1]) for m in planned) == len(tune) and sum(int(m[2]) for m in planned) == len(calibrations())
    assert after.lstrip().startswith(f"{len({c.split('/')[0] for c in calibrations()})} claims tuned")
    assert set(tune["seed"]) == {9000} and tune.loc[tune["status"] != "diverged", "val_acc"].notna().all()
    assert json.loads((out / "tuned.json").read_text()) == calibration.tuned(endpoints.read(out)[0])
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


BISECT = ["hydra/sweeper=bisection", "hydra.sweeper.key=optim.lr", "hydra.sweeper.low=0.01", "hydra.sweeper.high=1000",
          "hydra.sweeper.steps=3", "hydra.sweeper.metric=train_loss", "hydra.sweeper.at_most=1e3"]


def test_a_bisection_sweep_brackets_each_point_and_resumes_by_retracing_its_path(tmp_path, real_data):
    """`hydra/sweeper=bisection` from the command line: one bisection per grid point, probes at
    geometric midpoints, each moving its bracket by the probe's outcome; a rerun skips every probe."""
    args = ["model=plain,bn", *TINY, "train.max_steps=3", *BISECT]
    p = start_sweep(tmp_path, real_data, *args)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "6 jobs: " in err.splitlines()[-1]
    state = json.loads((tmp_path / "sweep" / "bisection.json").read_text())
    assert len(state["probes"]) == 6 and len(state["brackets"]) == 2
    for b in state["brackets"]:
        lo, hi = 0.01, 1000.0
        for probe in [q for q in state["probes"] if q["point"] == b["point"]]:
            assert abs(probe["value"] - (lo * hi) ** 0.5) <= 1e-5 * probe["value"]  # the geometric midpoint
            summary = records.read_summary(Path(probe["dir"]))
            assert summary["status"] in ("completed", "diverged")
            assert records.read_config(Path(probe["dir"])).optim.lr == probe["value"]
            assert probe["passed"] == (summary["status"] == "completed" and summary["train_loss"] <= 1e3)
            lo, hi = (probe["value"], hi) if probe["passed"] else (lo, probe["value"])
        assert (b["low"], b["high"]) == (lo, hi)
    first = state
    p = start_sweep(tmp_path, real_data, *args)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0 and "6 jobs: 0 completed, 0 failed, 6 skipped" in err.splitlines()[-1], err
    assert json.loads((tmp_path / "sweep" / "bisection.json").read_text())["brackets"] == first["brackets"]


def test_a_bisection_without_a_pass_rule_or_with_an_empty_bracket_is_refused(tmp_path, real_data):
    for bad, message in ((["hydra.sweeper.high=0.001"], "need low < high"),
                         (["hydra.sweeper.at_most=null"], "set at_least or at_most")):
        r = start_sweep(tmp_path, real_data, "model=plain", *TINY, *BISECT, *bad)
        _, err = r.communicate(timeout=120)
        assert r.returncode == 2 and message in err and not (tmp_path / "sweep" / "bisection.json").exists(), err


def _headlines(next_seeds: dict[str, int | None]):
    """A stand-in evaluation whose claims' plans ask for these seeds next."""
    from types import SimpleNamespace

    from bnexp.method.contract import Result

    return SimpleNamespace(headlines=lambda: {c: SimpleNamespace(result=Result("inconclusive", derived={
        "next_seeds": n, "looks": []})) for c, n in next_seeds.items()})


def test_sweeps_of_a_stage_share_the_jobs_side_by_side_largest_first(monkeypatch, tmp_path):
    """`make reproduce-figures` on this machine: the sweeps of a stage run side by side, the
    largest first, never more jobs at once than asked; a lone sweep, or the last, gets every free
    slot it can use; another launcher runs them one after another with all the jobs each. The
    sweeps themselves are stood in for (processes that end after a given number of polls)."""
    import argparse
    from types import SimpleNamespace

    from bnexp.pipeline import schedule as mod

    sizes = {"a": (5.0, 40), "b": (9.0, 40), "c": (1.0, 1), "d": (3.0, 40)}  # work, width

    class Proc:
        def __init__(self, name):
            self.name, self.polls, self.returncode, self.pid = name, 0, None, 0

        def poll(self):
            self.polls += 1
            if self.polls > 3 * sizes[self.name][0]:
                self.returncode = 0
            return self.returncode

    def plan(sweeps, a, jobs):
        return {n: SimpleNamespace(work=lambda n=n: sizes[n][0], width=lambda n=n: sizes[n][1], extra=extra,
                                   dirs=lambda: [], total=0) for n, extra in sweeps}

    started, live = [], {}

    def start(cmd, log):
        name = next(c.split("=", 1)[1] for c in cmd if c.startswith("experiment="))
        n_jobs = int(next(c.split("=", 1)[1] for c in cmd if c.startswith("hydra.launcher.n_jobs=")) or 0)
        running = sum(j for p, j in live.values() if p.returncode is None)
        started.append((name, n_jobs, running))
        live[name] = (Proc(name), n_jobs)
        return live[name][0]

    monkeypatch.setattr(mod, "plan", plan)
    monkeypatch.setattr(mod, "start_sweep", start)
    monkeypatch.setattr(mod.time, "sleep", lambda s: None)
    a = argparse.Namespace(profile="quick", launcher="joblib", threads=1, device="cpu", results=str(tmp_path),
                           wandb=False, overrides=[])
    (tmp_path / "logs").mkdir()
    failed, _ = mod.run_stage([(n, ()) for n in "abcd"], a, 2, tmp_path)
    assert not failed
    assert [s[0] for s in started] == ["b", "a", "d", "c"]  # largest first
    assert all(n_jobs + running <= 2 for _, n_jobs, running in started), started
    assert started[0][1] == 1 and started[1][2] == 1  # two sweeps side by side, a job each

    started.clear(), live.clear()
    mod.run_stage([("b", ())], a, 2, tmp_path)
    assert started == [("b", 2, 0)]  # alone: both jobs
    started.clear(), live.clear()
    mod.run_stage([("c", ())], a, 2, tmp_path)
    assert started == [("c", 1, 0)]  # a sweep of one job cannot use two

    started.clear(), live.clear()
    monkeypatch.setattr(mod, "sweep_args", lambda name, a, jobs, extra=(): [f"experiment={name}",
                                                                             f"hydra.launcher.n_jobs={jobs}"])
    a.launcher = "submitit_local"
    mod.run_stage([(n, ()) for n in "abcd"], a, 2, tmp_path)
    assert [(s[0], s[2]) for s in started] == [("a", 0), ("b", 0), ("c", 0), ("d", 0)]  # in order, one at a time


def test_a_sequential_plan_launches_each_look_with_only_the_seeds_it_adds(monkeypatch, tmp_path):
    """`make reproduce-figures`' verdict stage: every claim's first look, then the next look only for
    the claims whose verdict asks for it, each look launching just its new seeds (the earlier
    looks' runs are in the table). The sweeps and the report are stood in for: what is checked
    is which sweeps the plan launches, on which seeds."""
    import argparse
    from collections import Counter

    from bnexp.pipeline import looks as mod

    launched, looks = [], {"convergence": 0, "landscape": 0}

    def stage(sweeps, a, jobs, root):
        launched.append(sorted(sweeps))
        for n, _ in sweeps:
            looks[n] += 1
        return [], Counter()

    def evaluated(root, profile):  # convergence stays borderline at every look; landscape decides at its first
        return _headlines({"convergence": [5, 8, None][looks["convergence"] - 1], "landscape": None})

    monkeypatch.setattr(mod, "run_stage", stage)
    monkeypatch.setattr(mod, "evaluate_profile", evaluated)
    monkeypatch.setattr(mod, "write_report", lambda root, profile, evaluation: None)
    monkeypatch.setattr(mod.endpoints, "write", lambda root: None)
    a = argparse.Namespace(profile="quick", overrides=["train.epochs=1"])
    mod.verdict_stage(["convergence", "landscape"], a, 2, tmp_path)
    first = ("profile.seeds=verdict:1-3",)
    assert launched == [[("convergence", first), ("landscape", first)],
                        [("convergence", ("profile.seeds=verdict:4-5",))],
                        [("convergence", ("profile.seeds=verdict:6-8",))]]
    assert a.overrides == ["train.epochs=1"]

    # An experiment without a plan (gn_groups) runs once, beside the first looks.
    launched.clear()
    looks.update(convergence=0, landscape=0, gn_groups=0)
    mod.verdict_stage(["convergence", "gn_groups"], a, 2, tmp_path)
    assert launched[0] == [("convergence", ("profile.seeds=verdict:1-3",)), ("gn_groups", ())]
    assert all(("gn_groups", ()) not in later for later in launched[1:])

    # A table finished in parts already holds landscape's first two looks, and its third in part:
    # after the first look's sweep (all skipped) the verdict asks for 8 seeds, so the plan goes
    # straight to the third look's seeds; a look that still misses a run then is not run again.
    launched.clear()
    looks.update(convergence=0, landscape=0)

    def resumed(root, profile):
        return _headlines({"landscape": {1: 8, 2: 8}[looks["landscape"]]})

    monkeypatch.setattr(mod, "evaluate_profile", resumed)
    mod.verdict_stage(["landscape"], a, 2, tmp_path)
    assert launched == [[("landscape", ("profile.seeds=verdict:1-3",))],
                        [("landscape", ("profile.seeds=verdict:6-8",))]]
    assert mod.next_look((3, 5, 8), 0, 5) == 1 and mod.next_look((3, 5, 8), 2, 8) is None
    assert mod.next_look((3, 5, 8), 1, None) is None


def test_a_jobs_work_counts_its_steps_its_model_and_its_evaluations():
    """What `make reproduce-figures` orders a stage's sweeps by: training FLOPs (three forward
    passes per image) plus a fixed cost per step, plus evaluations; the forward pass counted by
    torch on the real model."""
    from bnexp.sweep import STEP_FLOPS, Job, run_size, work

    def job(*overrides):
        return Job([], make_config("model=bn", "dataset.subset=1280", "train.epochs=2", *overrides), Path("."))

    base = work(job())
    assert run_size(OmegaConf.to_object(make_config("model=bn", "dataset.subset=1280", "train.epochs=2",
                                                    "train.eval_every_steps=5")))[1] == 2 + 4
    assert work(job("model.depth=30")) > 3 * work(job("model.depth=6"))  # deeper: more FLOPs per image
    assert work(job("train.epochs=4")) == pytest.approx(2 * base, rel=1e-9)  # twice the steps and evaluations
    assert work(job("train.eval_every_steps=5")) > base
    steps, _ = run_size(OmegaConf.to_object(make_config("model=bn", "dataset.subset=1280", "train.epochs=2")))
    assert steps == 2 * 1280 // 128 and base > steps * STEP_FLOPS
