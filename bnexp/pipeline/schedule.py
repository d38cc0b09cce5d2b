"""The scheduler of a profile's sweeps: each sweep expanded before anything runs, the sweeps of a
stage side by side on this machine's job slots (or one after another on another launcher), one
progress bar over every job, the sweeps' output in results/<profile>/logs/."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tqdm import tqdm

from bnexp import sweep
from bnexp.claims import all_claims
from bnexp.config import CONFIGS, experiments
from bnexp.run import committed


def ordered_experiments() -> list[str]:
    """Every experiment config, those the claims read first, in the claims' order."""
    read = [v.experiment for c in all_claims() for v in c.versions.values() if v.experiment]
    existing = experiments()
    return list(dict.fromkeys([e for e in read if e in existing] + existing))


LAUNCHERS = ("joblib", "submitit_local", "submitit_slurm")  # configs/hydra/launcher/ and the joblib plugin


def jobs_per_device(a: argparse.Namespace, jobs: int) -> int:
    """Local jobs sharing each visible GPU (1 without one, or on another launcher)."""
    import torch

    gpus = torch.cuda.device_count() if a.device != "cpu" and torch.cuda.is_available() else 0
    return -(-jobs // gpus) if gpus and a.launcher == "joblib" else 1


def sweep_args(name: str, a: argparse.Namespace, jobs: int, extra: tuple[str, ...] = ()) -> list[str]:
    """The command line of one sweep: `jobs` parallel jobs, `extra` overrides after the user's."""
    launcher = [f"hydra/launcher={a.launcher}", *([f"hydra.launcher.n_jobs={jobs}"] if a.launcher == "joblib" else [])]
    share = jobs_per_device(a, jobs)
    return [f"experiment={name}", f"profile={a.profile}", *launcher, f"threads={a.threads}", f"device={a.device}",
            *([f"train.jobs_per_device={share}"] if share > 1 else []),
            f"results={a.results}", *(["logger=wandb"] if a.wandb else []),
            *a.overrides, *extra]


@dataclass
class Plan:
    """One experiment's sweep, expanded before anything runs."""

    master: DictConfig
    jobs: list[sweep.Job]
    total: int  # runs it will launch (a bisection's probes included)
    extra: tuple[str, ...] = ()  # overrides of this sweep alone (a look's seeds)

    def dirs(self) -> list[Path]:
        """The record folders of its runs launched so far (a grid sweep: all of them)."""
        return sweep.launched(self.master, self.jobs)

    def width(self) -> int:
        """The most jobs it can run at once: a bisection probes one round of grid points at a time."""
        return max(1, len(self.jobs) // 2 if sweep.is_bisection(self.master) else len(self.jobs))

    def work(self) -> float:
        """Its size (bnexp.sweep.work) over the runs still to do, a bisection's probes counted: a run
        complete on disk, or in the committed table under its run key (to be skipped), is done."""
        dirs = [j.dir for j in self.jobs]
        finished = sweep.done(dirs) | {d for d in dirs if committed.find(d, d.name) is not None}
        todo = [j for j in self.jobs if j.dir not in finished]
        return sum(sweep.work(j) for j in todo) * (self.total / max(len(self.jobs), 1))


Sweep = tuple[str, tuple[str, ...]]  # (experiment, the overrides of this sweep alone)


def plan(sweeps: list[Sweep], a: argparse.Namespace, jobs: int) -> dict[str, Plan]:
    """Every sweep's jobs, per experiment, before anything runs."""
    out = {}
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for name, extra in sweeps:
            master = compose("config", sweep_args(name, a, jobs, extra), return_hydra_config=True)
            expanded = sweep.expand(master)
            out[name] = Plan(master, expanded, sweep.planned(master, expanded), extra)
    return out


class Progress:
    """One bar over every job of every sweep, fed by what the jobs leave on disk."""

    def __init__(self, plans: dict[str, Plan]):
        self.plans = plans
        self.total = sum(p.total for p in plans.values())
        self.before = sweep.done([d for p in plans.values() for d in p.dirs()])
        self.bar = tqdm(total=self.total, initial=len(self.before), unit="run", dynamic_ncols=True,
                        disable=not sys.stderr.isatty(), smoothing=0.1)

    def tally(self, name: str | None = None) -> sweep.Tally:
        chosen = [self.plans[name]] if name else self.plans.values()
        return sweep.tally([d for p in chosen for d in p.dirs()], self.before)

    def update(self, names: list[str]) -> None:
        t = self.tally()
        finished = t.total - t.counts["no record"]
        self.bar.set_description(", ".join(names))
        self.bar.set_postfix(skipped=t.counts["skipped"], failed=t.counts["failed"], refresh=False)
        self.bar.update(finished - self.bar.n)


def start_sweep(cmd: list[str], log: Path) -> subprocess.Popen:
    """The sweep in a session of its own (so that stopping it stops its workers), output to `log`."""
    with log.open("a") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_stage(sweeps: list[Sweep], a: argparse.Namespace, jobs: int, root: Path) -> tuple[list[str], Counter]:
    """Plan every sweep, then run them under one progress bar; (the sweeps that had failures, the
    tally of every job). On this machine (joblib) the `jobs` slots are shared out among sweeps
    running side by side, the largest first (bnexp.sweep.work), each slot going to the next sweep
    as soon as it frees: a sweep's start (composing and checking its jobs) and its last run no
    longer leave a core idle, and a sweep on one slot runs its jobs in its own process (joblib
    runs one job at a time in place), with no worker processes to start, each importing torch and
    reading the data again. Each sweep takes an equal share of the free slots (at least one, at
    most what it can use), so a lone sweep gets them all. What a run computes does not depend on
    the sharing: its threads, seed and data are its config's. Another launcher runs the sweeps one
    after another."""
    plans = plan(sweeps, a, jobs)
    progress = Progress(plans)
    where = f"{jobs} jobs" if a.launcher == "joblib" else f"{a.launcher}, each job"
    print(f"reproduce {a.profile}: {progress.total} runs in {len(plans)} sweeps, {len(progress.before)} already "
          f"complete; {where} x {a.threads} threads; logs in {root / 'logs'}", file=sys.stderr, flush=True)
    side_by_side = a.launcher == "joblib"
    work = {n: plans[n].work() for n in plans}
    waiting = sorted(plans, key=lambda n: -work[n]) if side_by_side else list(plans)
    running: dict[str, tuple[subprocess.Popen, int, float, Path]] = {}  # name -> (process, slots, start, log)
    failed, totals, free = [], Counter(), jobs
    try:
        while waiting or running:
            while waiting and (free or not running or work[waiting[0]] == 0) and (side_by_side or not running):
                name = waiting.pop(0)
                # A sweep with nothing to train (every run complete, or in the committed table) only
                # checks and tallies: it takes no slot from those that train.
                idle = side_by_side and work[name] == 0
                busy = 1 + sum(1 for n in waiting if work[n] > 0)
                share = 1 if idle else max(1, min(free // busy, plans[name].width())) if side_by_side else jobs
                cmd = [sys.executable, "-m", "bnexp.cli", "-m", *sweep_args(name, a, share, plans[name].extra)]
                log = root / "logs" / f"{name.replace('/', '_')}.log"
                running[name] = (start_sweep(cmd, log), 0 if idle else share, time.perf_counter(), log)
                free -= 0 if idle else share
            progress.update(list(running))
            time.sleep(2)
            for name, (proc, share, t1, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                free += share
                result = progress.tally(name)
                totals += result.counts
                if proc.returncode != 0:
                    failed.append(name)
                tail = f"; exit {proc.returncode}, see {log}" if proc.returncode else ""
                tqdm.write(f"{name}: {result} ({time.perf_counter() - t1:.0f} s, {share} of {jobs} jobs){tail}",
                           file=sys.stderr)
    except KeyboardInterrupt:
        for proc, *_ in running.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc, *_ in running.values():
            proc.wait()
        raise
    progress.update([])
    progress.bar.close()
    return failed, totals


