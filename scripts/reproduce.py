#!/usr/bin/env python3
"""Run every claim's sweep for a profile, then write the report: `make reproduce-figures`.

    python scripts/reproduce.py [--profile quick] [--only lr_tolerance,small_batch] [--jobs N] [--threads T]

Each experiment (configs/experiment/<name>.yaml) is one Hydra multirun
(`bnexp-train -m experiment=<name> profile=<profile>`) on the joblib launcher. Runs whose record
is complete are skipped, so an interrupted call resumes where it stopped and a finished one
returns at once. Raw runs go to results/<profile>/runs/; then the endpoints table
(results/<profile>/runs.csv, bnexp/endpoints.py) is rebuilt from them and the report, claims.json
and figures are computed from that table (bnexp/report.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bnexp import endpoints
from bnexp.claims import all_claims
from bnexp.config import experiments
from bnexp.report import write_report


def ordered_experiments() -> list[str]:
    """Every experiment config, those the claims read first, in the claims' order."""
    read = [v.experiment for c in all_claims() for v in c.versions.values() if v.experiment]
    existing = experiments()
    return list(dict.fromkeys([e for e in read if e in existing] + existing))


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
    failed = []
    for name in chosen:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "bnexp.train", "-m", f"experiment={name}", f"profile={a.profile}",
               "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}", f"threads={a.threads}",
               f"device={a.device}", f"hydra.sweep.dir={a.results}/{a.profile}/runs/{name}"]
        print(f"== {name}: {' '.join(cmd[3:])}", flush=True)
        if subprocess.run(cmd).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    endpoints.write(f"{a.results}/{a.profile}")
    report = write_report(f"{a.results}/{a.profile}", a.profile)
    print(f"wrote {report}")
    if failed:
        sys.exit(f"reproduce: the sweeps of {', '.join(failed)} did not finish; rerun to resume")


if __name__ == "__main__":
    main()
