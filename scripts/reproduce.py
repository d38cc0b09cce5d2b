#!/usr/bin/env python3
"""Run every claim's sweep for a profile, then write the report: `make reproduce-figures`.

    python scripts/reproduce.py [--profile quick] [--only lr_tolerance,small_batch] [--jobs N] [--threads T]
                                [--launcher joblib|submitit_local|submitit_slurm] [hydra overrides...]

Each experiment (configs/experiment/<name>.yaml) is one Hydra multirun
(`bnexp-train -m experiment=<name> profile=<profile>`) on the joblib launcher, or through submitit
on local processes or a SLURM cluster (--launcher, and overrides such as
hydra.launcher.partition=gpu after the options). On this machine the sweeps of a stage (a
calibration wave, a round of looks) run side by side, sharing the --jobs slots, so that one sweep's
start and last job leave no core idle. Every job is known
before anything runs, so one progress bar covers them all (runs done of the total, skipped,
failed, ETA); the sweeps' own output goes to results/<profile>/logs/<name>.log. Runs whose
record is complete are skipped, and a killed run continues from its checkpoint, so an
interrupted call resumes where it stopped and a finished one returns at once. Ctrl-C or SIGTERM
stops the sweep under way, its workers included. Raw runs go to results/<profile>/runs/; then
the endpoints table (results/<profile>/runs.csv, bnexp/endpoints.py) is rebuilt from them and
the report, claims.json and figures are computed from that table (bnexp/report.py).
"""

from __future__ import annotations

import argparse
import json
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

import bnexp
from bnexp import calibration, endpoints, sweep
from bnexp.claims import all_claims
from bnexp.config import CONFIGS, experiments, profile_only
from bnexp.report import write_report
from bnexp.run import provenance


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
            f"hydra.sweep.dir={a.results}/{a.profile}/runs/{name}", *(["logger=wandb"] if a.wandb else []),
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
        """Its size (bnexp.sweep.work) over the runs still to do, a bisection's probes counted."""
        finished = sweep.done([j.dir for j in self.jobs])
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


def _interrupt(signum, frame) -> None:
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
    waiting = sorted(plans, key=lambda n: -plans[n].work()) if side_by_side else list(plans)
    running: dict[str, tuple[subprocess.Popen, int, float, Path]] = {}  # name -> (process, slots, start, log)
    failed, totals, free = [], Counter(), jobs
    try:
        while waiting or running:
            while waiting and (free or not running) and (side_by_side or not running):
                name = waiting.pop(0)
                share = max(1, min(free // (len(waiting) + 1), plans[name].width())) if side_by_side else jobs
                cmd = [sys.executable, "-m", "bnexp.cli", "-m", *sweep_args(name, a, share, plans[name].extra)]
                log = root / "logs" / f"{name.replace('/', '_')}.log"
                running[name] = (start_sweep(cmd, log), share, time.perf_counter(), log)
                free -= share
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


def sequential_plans(names: list[str]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """experiment -> (claim, looks) for the experiments whose claim's newest version has a plan."""
    import inspect

    from bnexp.claims.protocol import Protocol

    out = {}
    for c in all_claims():
        v = c.versions[c.latest]
        make = getattr(c.module, f"protocol_v{c.latest}", None)
        if v.experiment in names and make is not None and "neighbours" in inspect.signature(make).parameters:
            plan = make(neighbours=False)
            if isinstance(plan, Protocol):
                out[v.experiment] = (c.id, plan.plan.looks)
    return out


def next_look(looks: tuple[int, ...], ran: int, ask: int | None) -> int | None:
    """The index of the look to run after look `ran`, when the verdict asks for `ask` seeds: the
    next look, or a later one when a table finished in parts already holds the looks between;
    None when the plan has stopped. A look that still misses runs after its own sweep (a run
    crashed) asks for itself again: it is not run twice in one call."""
    if ask in looks and looks.index(ask) > ran:
        return looks.index(ask)
    return None


def verdict_stage(names: list[str], a: argparse.Namespace, jobs: int, root: Path) -> tuple[list[str], Counter]:
    """The verdict sweeps. An experiment whose claim registers a sequential plan runs its first
    look's seeds; after each look the verdicts are recomputed from the table, and only the claims
    whose plan asks for more seeds run the next look's. The others run once, on the profile's seeds,
    beside the first looks."""
    plans = sequential_plans(names)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        spec = str(compose("config", [f"profile={a.profile}"]).profile.seeds)
    kind, _, count = spec.partition(":")
    if kind != "verdict" or (count and int(count) < min((p[1][0] for p in plans.values()), default=1)):
        return run_stage([(n, ()) for n in names], a, jobs, root)  # fewer seeds than a look (smoke): one pass
    failed, totals = [], Counter()
    once = [(n, ()) for n in names if n not in plans]
    at = {n: 0 for n in names if n in plans}  # experiment -> the index of the look it runs next
    while at or once:
        # a look launches only the seeds it adds: the earlier looks' are in the table (an
        # interrupted call reruns the looks in order, so each look's missing runs are made there)
        looks = [(name, (f"profile.seeds=verdict:{(plans[name][1][k - 1] if k else 0) + 1}-{plans[name][1][k]}",))
                 for name, k in at.items()]
        f, more = run_stage(once + looks, a, jobs, root)
        failed, totals, once = failed + f, totals + more, []
        endpoints.write(root)
        write_report(root, a.profile)
        after = {c["id"]: c for c in json.loads((root / "claims.json").read_text())}
        nxt = {}
        for name, k in at.items():
            claim, looks_at = plans[name]
            seq = after.get(claim, {}).get("sequential") or {}
            ask, taken = seq.get("next_seeds"), [lk["n"] for lk in seq.get("looks", [])]
            then = next_look(looks_at, k, ask)
            if then is not None:
                nxt[name] = then
            shown = f"look at {taken[-1]} seeds" if taken else f"no look complete at {looks_at[k]} seeds"
            tqdm.write(f"{claim}: {shown}: {after.get(claim, {}).get('verdict')}"
                       + (f"; the plan continues to {ask} seeds" if name in nxt else ""), file=sys.stderr)
        at = nxt
    return failed, totals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    profiles = sorted(f.stem for f in (CONFIGS / "profile").glob("*.yaml"))
    p.add_argument("--profile", default="quick", choices=profiles)
    p.add_argument("--only", default="", help="comma-separated experiments (default: all)")
    p.add_argument("--stage", default="all", choices=("calibrate", "all"),
                   help="calibrate: the calibration sweeps and tuned.json only; all: calibration, then the verdicts")
    p.add_argument("--threads", type=int, default=1, help="torch threads per job")
    p.add_argument("--jobs", type=int, default=0, help="parallel jobs (default: cores / threads)")
    p.add_argument("--device", default="auto")
    p.add_argument("--results", default="results")
    p.add_argument("--launcher", default="joblib", choices=LAUNCHERS,
                   help="where the jobs run: joblib (this machine, --jobs at once), submitit_local (a process "
                        "each), submitit_slurm (a SLURM array; configs/hydra/launcher/submitit_slurm.yaml)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every sweep, e.g. hydra.launcher.partition=gpu")
    p.add_argument("--wandb", action="store_true",
                   help="mirror every run to wandb (offline unless WANDB_MODE says otherwise) and log a report run")
    a = p.parse_args()
    here = Path(__file__).resolve().parents[1]
    if Path(bnexp.__file__).resolve().parents[1] != here:
        # An environment installed from another checkout (an editable install elsewhere) would
        # train and report that checkout's code while this one's git commit is recorded.
        p.error(f"bnexp is imported from {Path(bnexp.__file__).resolve().parent}, not from this checkout "
                f"({here}): run with PYTHONPATH={here} or install this checkout")
    jobs = a.jobs or max(1, provenance.cores() // a.threads)
    only = [e for e in a.only.split(",") if e] or profile_only(a.profile)
    unknown = sorted(set(only) - set(experiments()))
    if unknown:
        p.error(f"--only: no experiment {', '.join(unknown)} (configs/experiment/ has {', '.join(experiments())})")
    chosen = [e for e in ordered_experiments() if not only or e in only]
    tuned_claims = list(dict.fromkeys(q.claim for q in calibration.questions() if q.claim in chosen))
    waves = calibration.waves(tuned_claims)  # a sweep that trains with another question's answer runs after it
    os.environ["BNEXP_RESULTS"] = a.results  # where the sweeps' ${bnexp_tuned:...} read tuned.json
    signal.signal(signal.SIGTERM, _interrupt)
    root = Path(a.results) / a.profile
    (root / "logs").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        # Stage 1, calibration: the tuning sweeps (tuning seeds, validation split), then the choices,
        # wave by wave.
        totals, path = Counter(), root / calibration.TUNED
        for wave in waves:
            tuning = list(dict.fromkeys(q.experiment for q in wave if q.rule != "target"))
            failed, done = run_stage([(n, ()) for n in tuning], a, jobs, root)
            totals += done
            endpoints.write(root)
            if failed:
                sys.exit(f"reproduce: the calibration sweeps of {', '.join(failed)} had failures; their logs say "
                         "why, and a rerun tries the failed runs again")
            path = calibration.write(root, only=[q.id for q in wave])
        print(f"calibration {a.profile}: {len(tuned_claims)} claims tuned in {(time.perf_counter() - t0) / 60:.1f} "
              f"min; wrote {path}", file=sys.stderr, flush=True)
        if a.stage == "calibrate":
            return
        # Stage 2, the verdict sweeps, their constants read from tuned.json: look by look where a
        # claim's newest version registers a sequential plan.
        failed, more = verdict_stage(chosen, a, jobs, root)
        totals += more
    except KeyboardInterrupt:
        sys.exit("reproduce: interrupted; rerun the same command to continue")
    except calibration.CalibrationError as e:
        sys.exit(f"reproduce: {e}")
    minutes = (time.perf_counter() - t0) / 60
    print(f"reproduce {a.profile}: {sweep.Tally(sum(totals.values()), totals)} in {minutes:.1f} min", file=sys.stderr)
    endpoints.write(root)
    print(f"wrote {write_report(root, a.profile)}")
    if a.wandb:
        from bnexp.run.tracking import report_run

        folder = report_run(root, a.profile, mode=os.environ.get("WANDB_MODE", "offline"))
        print(f"wandb report run: {folder or 'not started (see the warning above)'}")
    if failed:
        sys.exit(f"reproduce: the sweeps of {', '.join(failed)} had failures; their logs say why, and a rerun "
                 "tries the failed runs again")


if __name__ == "__main__":
    main()
