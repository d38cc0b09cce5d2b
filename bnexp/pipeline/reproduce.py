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

Stages: calibration (the tuning sweeps, wave by wave, then tuned.json: bnexp/calibration.py),
then the verdict sweeps look by look (bnexp/pipeline/looks.py), each stage's sweeps scheduled by
bnexp/pipeline/schedule.py.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import bnexp
from bnexp import calibration, endpoints, sweep
from bnexp.config import CONFIGS, ConfigError, experiments, pilots, profile_only
from bnexp.files import InputError, WriteError, unwritable
from bnexp.pipeline.looks import verdict_stage
from bnexp.pipeline.schedule import LAUNCHERS, interrupt, ordered_experiments, run_stage
from bnexp.report import write_report
from bnexp.run import provenance
from bnexp.run.world import resolve_device


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A bad option is one line (not the whole usage, which --help prints) and exit status 2."""
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def main(argv: list[str] | None = None, checkout: Path | None = None) -> None:
    """The command line; `checkout`: the checkout whose script called it, which must be the bnexp imported."""
    p = _Parser(description=__doc__.splitlines()[0])
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
    p.add_argument("--allow-dirty", action="store_true",
                   help="train although the checkout has uncommitted changes (its runs never count for a verdict "
                        "or a choice: exploratory)")
    p.add_argument("--wandb", action="store_true",
                   help="mirror every run to wandb (offline unless WANDB_MODE says otherwise) and log a report run")
    a = p.parse_args(argv)
    if checkout is not None and Path(bnexp.__file__).resolve().parents[1] != checkout:
        # An environment installed from another checkout (an editable install elsewhere) would
        # train and report that checkout's code while this one's git commit is recorded.
        p.error(f"bnexp is imported from {Path(bnexp.__file__).resolve().parent}, not from this checkout "
                f"({checkout}): run with PYTHONPATH={checkout} or install this checkout")
    logs = Path(a.results) / a.profile / "logs"  # the innermost folder the results check makes
    made = [d for d in (logs, *logs.parents) if not d.exists()]
    _validate(p, a)
    jobs = a.jobs or max(1, provenance.cores() // a.threads)
    only = [e for e in a.only.split(",") if e] or profile_only(a.profile)
    unknown = sorted(set(only) - set(experiments()))
    if unknown:
        p.error(f"--only: no experiment {', '.join(unknown)} (configs/experiment/ has {', '.join(experiments())})")
    chosen = [e for e in ordered_experiments() if not only or e in only]
    tuned_claims = list(dict.fromkeys(q.claim for q in calibration.questions() if q.claim in chosen))
    waves = calibration.waves(tuned_claims)  # a sweep that trains with another question's answer runs after it
    piloting = [s for s in pilots() if s.split("/")[0] in chosen]  # guards piloted where nothing is tuned
    if a.stage == "calibrate" and not waves and not piloting:
        print(f"reproduce: nothing to calibrate: no claim of {', '.join(chosen)} asks a tuning question or has a "
              "pilot sweep; tuned.json is left as it is", file=sys.stderr)
        return
    dirty = provenance.changes()
    if dirty and not a.allow_dirty:
        # Refused before anything trains: such runs are left out of every verdict and choice, and
        # would sit there complete until the code is committed. Nothing is left behind.
        for d in made:  # the folders the results check made, innermost first, if still empty
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        p.exit(2, f"reproduce: the checkout has {len(dirty)} uncommitted change(s) ({', '.join(dirty[:3])}"
                  f"{', ...' if len(dirty) > 3 else ''}): runs made now never count for a verdict or a choice. "
                  "Commit first, or pass --allow-dirty to train them anyway (exploratory)\n")
    signal.signal(signal.SIGTERM, interrupt)
    root = Path(a.results) / a.profile
    (root / "logs").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        # Stage 1, calibration: the tuning sweeps (tuning seeds, validation split), then the choices,
        # wave by wave.
        totals, path = Counter(), root / calibration.TUNED
        refused = calibration.edge_refused()  # the grids an edge choice sends back for widening
        for wave in waves:
            tuning = list(dict.fromkeys(q.experiment for q in wave if q.rule != "target"))
            failed, done = run_stage([(n, ()) for n in tuning], a, jobs, root)
            totals += done
            endpoints.write(root)
            _stop_if_failed("calibration", failed)
            path = calibration.write(root, only=[q.id for q in wave])
            for _ in range(calibration.MAX_WIDENINGS):  # a choice at a grid edge: the grid one step wider
                wider = calibration.widened_sweeps(root, a.profile, [q.id for q in wave if q.id in refused])
                if not wider:
                    break
                print("calibration: a choice at the edge of its grid; widening "
                      + ", ".join(f"{name} ({extra[0]})" for name, extra in wider), file=sys.stderr, flush=True)
                failed, done = run_stage(wider, a, jobs, root)
                totals += done
                endpoints.write(root)
                _stop_if_failed("widened calibration", failed)
                path = calibration.write(root, only=[q.id for q in wave])
        if piloting:  # the pilot sweeps: tuning seeds, nothing chosen from them (`ledger pilot` reads them)
            failed, done = run_stage([(n, ()) for n in piloting], a, jobs, root)
            totals += done
            endpoints.write(root)
            _stop_if_failed("pilot", failed)
        pilots_run = f", {len(piloting)} pilot sweeps run" if piloting else ""
        print(f"calibration {a.profile}: {len(tuned_claims)} claims tuned{pilots_run} in "
              f"{(time.perf_counter() - t0) / 60:.1f} min; wrote {path}", file=sys.stderr, flush=True)
        if a.stage == "calibrate":
            return
        # Stage 2, the verdict sweeps, their constants read from tuned.json: look by look where a
        # claim's newest version registers a sequential plan.
        failed, more = verdict_stage(chosen, a, jobs, root)
        totals += more
    except KeyboardInterrupt:
        sys.exit("reproduce: interrupted; rerun the same command to continue")
    except (InputError, WriteError) as e:  # a table, tuned.json or ledger that is not what made it; a full disk
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


def _stop_if_failed(stage: str, failed: list[str]) -> None:
    if failed:
        sys.exit(f"reproduce: the {stage} sweeps of {', '.join(failed)} had failures; their logs say why, and a "
                 "rerun tries the failed runs again")


def _validate(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Every option checked before anything runs: one line and exit status 2 (argparse's own)."""
    if a.threads < 1:
        p.error(f"--threads: at least 1 torch thread per job, got {a.threads}")
    if a.jobs < 0:
        p.error(f"--jobs: at least 1 (or 0: cores / threads), got {a.jobs}")
    if a.launcher != "submitit_slurm":  # a cluster's devices are the cluster's to check
        try:
            resolve_device(a.device)
        except (ConfigError, RuntimeError) as e:
            p.error(f"--device {a.device}: {str(e).removeprefix('device: ')}")
    root = Path(a.results) / a.profile
    e = unwritable(root / "logs")
    if e is not None:
        p.error(f"--results: {root} cannot take the runs and the report ({e.strerror or e})")


if __name__ == "__main__":
    main()
