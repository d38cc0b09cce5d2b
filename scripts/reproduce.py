#!/usr/bin/env python3
"""Run every claim's sweep for a profile, then write the report: `make reproduce-figures`.

    python scripts/reproduce.py [--profile quick] [--only lr_tolerance,small_batch] [--jobs N] [--threads T]

Each experiment (configs/experiment/<name>.yaml) is one Hydra multirun
(`bnexp-train -m experiment=<name> profile=<profile>`) on the joblib launcher. Every job is known
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
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from hydra import compose, initialize_config_dir
from tqdm import tqdm

import bnexp.cli  # noqa: F401  (registers the run-key resolver that the sweep configs name)
from bnexp import endpoints, sweep
from bnexp.claims import all_claims
from bnexp.config import CONFIGS, experiments
from bnexp.report import write_report


def ordered_experiments() -> list[str]:
    """Every experiment config, those the claims read first, in the claims' order."""
    read = [v.experiment for c in all_claims() for v in c.versions.values() if v.experiment]
    existing = experiments()
    return list(dict.fromkeys([e for e in read if e in existing] + existing))


def sweep_args(name: str, a: argparse.Namespace, jobs: int) -> list[str]:
    return [f"experiment={name}", f"profile={a.profile}", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}",
            f"threads={a.threads}", f"device={a.device}", f"hydra.sweep.dir={a.results}/{a.profile}/runs/{name}"]


def plan(names: list[str], a: argparse.Namespace, jobs: int) -> dict[str, list[Path]]:
    """Every job's record folder, per experiment, before anything runs."""
    out = {}
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for name in names:
            master = compose("config", sweep_args(name, a, jobs), return_hydra_config=True)
            out[name] = [j.dir for j in sweep.expand(master)]
    return out


class Progress:
    """One bar over every job of every sweep, fed by what the jobs leave on disk."""

    def __init__(self, dirs: dict[str, list[Path]]):
        self.all = [d for ds in dirs.values() for d in ds]
        self.before = sweep.done(self.all)
        self.bar = tqdm(total=len(self.all), initial=len(self.before), unit="run", dynamic_ncols=True,
                        disable=not sys.stderr.isatty(), smoothing=0.1)

    def update(self, name: str) -> None:
        t = sweep.tally(self.all, self.before)
        finished = t.total - t.counts["no record"]
        self.bar.set_description(name)
        self.bar.set_postfix(skipped=t.counts["skipped"], failed=t.counts["failed"], refresh=False)
        self.bar.update(finished - self.bar.n)


def run_sweep(cmd: list[str], log: Path, progress: Progress, name: str) -> int:
    """The sweep in a session of its own (so that stopping it stops its workers), output to `log`."""
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while proc.poll() is None:
                progress.update(name)
                time.sleep(2)
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
    progress.update(name)
    return proc.returncode


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    p.add_argument("--only", default="", help="comma-separated experiments (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per job")
    p.add_argument("--jobs", type=int, default=0, help="parallel jobs (default: cores / threads)")
    p.add_argument("--device", default="auto")
    p.add_argument("--results", default="results")
    a = p.parse_args()
    jobs = a.jobs or max(1, (os.cpu_count() or 1) // a.threads)
    only = [e for e in a.only.split(",") if e]
    unknown = sorted(set(only) - set(experiments()))
    if unknown:
        p.error(f"--only: no experiment {', '.join(unknown)} (configs/experiment/ has {', '.join(experiments())})")
    chosen = [e for e in ordered_experiments() if not only or e in only]
    signal.signal(signal.SIGTERM, _interrupt)
    root = Path(a.results) / a.profile
    (root / "logs").mkdir(parents=True, exist_ok=True)
    dirs = plan(chosen, a, jobs)
    progress = Progress(dirs)
    print(f"reproduce {a.profile}: {len(progress.all)} runs in {len(chosen)} sweeps, {len(progress.before)} already "
          f"complete; {jobs} jobs x {a.threads} threads; logs in {root / 'logs'}", file=sys.stderr, flush=True)
    failed, totals, t0 = [], Counter(), time.perf_counter()
    try:
        for name in chosen:
            t1 = time.perf_counter()
            cmd = [sys.executable, "-m", "bnexp.cli", "-m", *sweep_args(name, a, jobs)]
            code = run_sweep(cmd, root / "logs" / f"{name}.log", progress, name)
            result = sweep.tally(dirs[name], progress.before)
            totals += result.counts
            if code != 0:
                failed.append(name)
            tqdm.write(f"{name}: {result} ({time.perf_counter() - t1:.0f} s)"
                       + (f"; exit {code}, see {root / 'logs' / name}.log" if code else ""), file=sys.stderr)
    except KeyboardInterrupt:
        progress.bar.close()
        sys.exit("reproduce: interrupted; rerun the same command to continue")
    progress.bar.close()
    print(f"reproduce {a.profile}: {sweep.Tally(len(progress.all), totals)} in {(time.perf_counter() - t0) / 60:.1f} "
          "min", file=sys.stderr)
    endpoints.write(root)
    print(f"wrote {write_report(root, a.profile)}")
    if failed:
        sys.exit(f"reproduce: the sweeps of {', '.join(failed)} had failures; their logs say why, and a rerun "
                 "tries the failed runs again")


if __name__ == "__main__":
    main()
