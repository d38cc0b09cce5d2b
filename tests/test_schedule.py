"""The pipeline's scheduler: sweeps of a stage share the jobs, a sequential plan launches only the
seeds a look adds, a job's work is counted, cores are this process's."""

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bnexp.run import provenance
from tests.conftest import ROOT, make_config


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


def test_a_sweep_with_nothing_to_train_takes_no_slot_from_one_that_trains(monkeypatch, tmp_path):
    """A calibration wave with a sweep whose runs are all in the committed table (skipped in
    seconds) beside one that trains: the one that trains gets every job, the other only checks."""
    import argparse
    from types import SimpleNamespace

    from bnexp.pipeline import schedule as mod

    sizes = {"committed": 0.0, "fresh": 6.0}
    started = []

    class Proc:
        def __init__(self, name):
            self.name, self.polls, self.returncode, self.pid = name, 0, None, 0

        def poll(self):
            self.polls += 1
            self.returncode = 0 if self.polls > 3 * sizes[self.name] else None
            return self.returncode

    def start(cmd, log):
        name = next(c.split("=", 1)[1] for c in cmd if c.startswith("experiment="))
        started.append((name, int(next(c.split("=", 1)[1] for c in cmd if c.startswith("hydra.launcher.n_jobs=")))))
        return Proc(name)

    monkeypatch.setattr(mod, "plan", lambda sweeps, a, jobs: {
        n: SimpleNamespace(work=lambda n=n: sizes[n], width=lambda: 40, extra=(), dirs=lambda: [], total=0)
        for n, _ in sweeps})
    monkeypatch.setattr(mod, "start_sweep", start)
    monkeypatch.setattr(mod.time, "sleep", lambda s: None)
    a = argparse.Namespace(profile="long", launcher="joblib", threads=1, device="cpu", results=str(tmp_path),
                           wandb=False, overrides=[])
    (tmp_path / "logs").mkdir()
    mod.run_stage([("committed", ()), ("fresh", ())], a, 2, tmp_path)
    assert started == [("fresh", 2), ("committed", 1)]


def test_a_run_in_the_committed_table_counts_as_done_in_a_sweeps_work(tmp_path):
    from types import SimpleNamespace

    from bnexp.pipeline.schedule import Plan
    from bnexp.table import read_runs

    committed = read_runs(ROOT / "results/long/runs.csv")
    row = committed[committed["experiment"] == "small_batch/tune"].iloc[0]
    folder = tmp_path / "long" / "runs" / "small_batch" / "tune"
    (tmp_path / "long").mkdir()
    (tmp_path / "long" / "runs.csv").write_text((ROOT / "results/long/runs.csv").read_text())
    jobs = [SimpleNamespace(dir=folder / row["key"], config=None)]
    assert Plan(SimpleNamespace(), jobs, 1).work() == 0  # its run key is in the table: nothing to train


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

    # convergence (v5: looks at 20, 30, 40) stays borderline at every look; landscape (v5: 5, 8, 12)
    # decides at its first
    def evaluated(root, profile):
        return _headlines({"convergence": [30, 40, None][looks["convergence"] - 1], "landscape": None})

    monkeypatch.setattr(mod, "run_stage", stage)
    monkeypatch.setattr(mod, "evaluate_profile", evaluated)
    monkeypatch.setattr(mod, "write_report", lambda root, profile, evaluation: None)
    monkeypatch.setattr(mod.endpoints, "write", lambda root: None)
    a = argparse.Namespace(profile="quick", overrides=["train.epochs=1"])
    mod.verdict_stage(["convergence", "landscape"], a, 2, tmp_path)
    assert launched == [[("convergence", ("profile.seeds=verdict:1-20",)),
                         ("landscape", ("profile.seeds=verdict:1-5",))],
                        [("convergence", ("profile.seeds=verdict:21-30",))],
                        [("convergence", ("profile.seeds=verdict:31-40",))]]
    assert a.overrides == ["train.epochs=1"]

    # --only the claim whose first look (20) is larger than quick's count of seeds (5): still its looks
    launched.clear()
    looks.update(convergence=0)
    mod.verdict_stage(["convergence"], a, 2, tmp_path)
    assert launched[0] == [("convergence", ("profile.seeds=verdict:1-20",))] and len(launched) == 3

    # An experiment without a plan (gn_groups) runs once, beside the first looks.
    launched.clear()
    looks.update(convergence=0, landscape=0, gn_groups=0)
    mod.verdict_stage(["convergence", "gn_groups"], a, 2, tmp_path)
    assert launched[0] == [("convergence", ("profile.seeds=verdict:1-20",)), ("gn_groups", ())]
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
    assert launched == [[("landscape", ("profile.seeds=verdict:1-5",))],
                        [("landscape", ("profile.seeds=verdict:6-8",))]]
    assert mod.next_look((3, 5, 8), 0, 5) == 1 and mod.next_look((3, 5, 8), 2, 8) is None
    assert mod.next_look((3, 5, 8), 1, None) is None


def test_a_version_not_piloted_at_the_profile_has_no_verdict_runs_there(monkeypatch, tmp_path, capsys):
    """From v4 on, a claim decides only where its newest version was piloted: convergence v5 was piloted
    at quick only, so reproduce at long runs landscape (v5, piloted at quick and long) and not
    convergence, saying how to pilot it; at quick both run. init_insensitivity v7, piloted at long only,
    is not run at quick."""
    import argparse
    from collections import Counter

    from bnexp.pipeline import looks as mod

    claims = ["landscape", "init_insensitivity", "convergence"]
    assert set(mod.unpiloted(claims, "long")) == {"convergence"}
    assert set(mod.unpiloted(claims, "quick")) == {"init_insensitivity"}
    launched = []

    def stage(sweeps, a, jobs, root):
        launched.extend(n for n, _ in sweeps)
        return [], Counter()

    monkeypatch.setattr(mod, "run_stage", stage)
    monkeypatch.setattr(mod, "evaluate_profile", lambda root, profile: _headlines({"landscape": None}))
    monkeypatch.setattr(mod, "write_report", lambda root, profile, evaluation: None)
    monkeypatch.setattr(mod.endpoints, "write", lambda root: None)
    mod.verdict_stage(["landscape", "convergence"], argparse.Namespace(profile="long", overrides=[]), 2,
                      tmp_path)
    assert launched == ["landscape"]
    said = capsys.readouterr().err
    assert "convergence v5 is registered (piloted at quick) but not piloted at long" in said
    assert "add-pilot convergence 5 --profile long" in said


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
