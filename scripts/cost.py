#!/usr/bin/env python3
"""What a profile costs on this machine: every sweep's runs and steps, timed from a few real steps.

    python scripts/cost.py --profile full [--only small_batch] [--steps 5] [--jobs 4] [--device cuda]
                           [--json cost.json] [overrides...]
    python scripts/cost.py --profile full --sweeps small_batch/tune_v4,small_batch \
                           --json results/cost/full.json

`--only` takes claims (every sweep of each: calibration, pilot, verdict and draft sweeps), `--sweeps`
sweeps by name (a claim's verdict sweep has the claim's name). The JSON written under
`results/cost/<profile>.json` is committed: the report of a profile where a claim cannot show reads
it to say what the next scale would cost (bnexp/scales.py), and it records the commit, the device
and each claim's budget hash it was timed at, so that a profile changed since is reported as costed
for an earlier budget.

For each experiment the sweep is expanded as `make reproduce-figures` would (a bisection counts
its probes); each distinct model of the sweep trains `--steps` optimiser steps on real data after
two warm-up steps, and an evaluation pass is timed the same way. The estimate is then, per run,
steps x seconds per step + evaluations x seconds per evaluation, summed over the sweep's runs and
divided by the parallel jobs. It is an estimate from measured throughput, not a timing of the
sweep: data loading, checkpoints and jobs contending for one device are left out. The
calibration sweeps (`<claim>/tune`) are costed first, like any other; a profile not yet
calibrated is expanded with stand-in constants (the middle of each grid, which changes what a
run computes but not what it costs). `--json` writes the same table for programs (make gpu-check).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bnexp import calibration, optim, sweep
from bnexp.config import CONFIGS, Config, calibrations, drafts, experiments, pilots
from bnexp.data import Data
from bnexp.files import write_atomic
from bnexp.profile import budget_hash
from bnexp.run import provenance
from bnexp.run.train import as_configured, build, evaluate, train_step
from bnexp.run.world import resolve_device

EVAL_TIMED = 2000  # images an evaluation is timed on


def time_model(cfg: Config, data: Data, device: torch.device, n: int) -> tuple[float, float]:
    """(seconds per optimiser step, seconds per evaluation pass) of `cfg`'s model here."""
    torch.manual_seed(0)
    model = build(cfg, data.classes).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = optim.optimizer(model, cfg.optim, optim.peak_lr(cfg.optim, cfg.train.batch_size))
    net, low = as_configured(model, cfg)  # the speed settings in force (precision, compile)
    gen = torch.Generator().manual_seed(0)
    batches = (b for _ in iter(int, 1) for b in data.train_batches(cfg.train.batch_size, gen))  # epochs on end
    model.train()
    for i, (x, y) in enumerate(batches):
        if i == 2:  # two warm-up steps (allocation, kernel selection)
            _sync(device)
            t0 = time.perf_counter()
        if i == 2 + n:
            break
        train_step(net, opt, x, y, low=low)
    _sync(device)
    step_s = (time.perf_counter() - t0) / n
    model.eval()
    # An evaluation pass over test and validation images, timed on at most EVAL_TIMED of them and
    # scaled by the image count (a pass is the same batches repeated).
    batches = list(itertools.islice(data.eval_batches(data.test, cfg.train.eval_batch_size),
                                    max(1, EVAL_TIMED // cfg.train.eval_batch_size)))
    t0 = time.perf_counter()
    evaluate(net, iter(batches), low)
    _sync(device)
    timed = sum(len(y) for _, y in batches)
    return step_s, (time.perf_counter() - t0) * (len(data.test) + len(data.val)) / timed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="full")
    p.add_argument("--only", default="", help="claims: every sweep of each (calibration, pilot, verdict, draft)")
    p.add_argument("--sweeps", default="", help="sweeps by name, e.g. small_batch/tune_v4,dropout_redundancy (the "
                                                 "verdict sweep alone: a claim's name is also its verdict sweep's)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per distinct model")
    p.add_argument("--jobs", type=int, default=1, help="parallel jobs the sweeps would run")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per job (default: the cores this process may use / --jobs, as "
                        "`make reproduce-figures` runs them)")
    p.add_argument("--json", help="also write the table here, as JSON")
    p.add_argument("--results", default="results", help="the results folder whose <profile>/tuned.json the sweeps read")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. train.precision=bf16 "
                                                 "train.compile=true (the settings to cost)")
    p.add_argument("--gpu-images-per-s", type=float, default=0.0,
                   help="a stated GPU training throughput (images/s, evaluation counted at a third of a training "
                        "image): adds each sweep's GPU-hours at that rate, beside the estimate for this machine")
    a = p.parse_args()
    # Timed with the threads each job gets when --jobs share this machine's cores (a step on all
    # of them alone runs about twice as fast as one of two jobs side by side on a 2-core CPU).
    threads = a.threads or max(1, provenance.cores() // max(a.jobs, 1))
    only, chosen = [x for x in a.only.split(",") if x], [x for x in a.sweeps.split(",") if x]
    every = calibrations() + pilots() + experiments() + drafts()
    unknown = [x for x in only if not any(e.split("/")[0] == x for e in every)]
    unknown += [x for x in chosen if x not in every]
    if unknown:
        sys.exit(f"cost: no claim or sweep {', '.join(unknown)} (sweeps: {', '.join(every)})")
    names = [e for e in every if (not only and not chosen) or e in chosen or e.split("/")[0] in only]
    device = resolve_device(a.device)
    results = Path(a.results)
    if not (results / a.profile / calibration.TUNED).is_file():  # stand-ins, for planning only
        results = Path(tempfile.mkdtemp(prefix="bnexp-cost-"))
        (results / a.profile).mkdir()
        (results / a.profile / calibration.TUNED).write_text(json.dumps(calibration.planning(a.profile)))
    total_h, total_gpu_h, datasets, table = 0.0, 0.0, {}, {}
    gpu = f" {'gpu-h':>7}" if a.gpu_images_per_s else ""
    print(f"{'experiment':24} {'runs':>5} {'steps/run':>9} {'s/step':>8} {'s/eval':>7} {'minutes':>8}{gpu}  "
          f"(jobs {a.jobs}, {device}" + (f"; GPU at a stated {a.gpu_images_per_s:g} images/s)" if gpu else ")"))
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for name in names:
            master = compose("config", [f"experiment={name}", f"profile={a.profile}", f"device={a.device}",
                                        f"threads={threads}", "hydra/launcher=basic", f"results={results}",
                                        *a.overrides],
                             return_hydra_config=True)
            jobs = sweep.expand(master)
            runs = sweep.planned(master, jobs)
            timed: dict[str, tuple[float, float]] = {}
            seconds, steps_seen, images, trained, evaluated = 0.0, [], 0.0, 0.0, 0.0
            for job in jobs[:: 2 if sweep.is_bisection(master) else 1]:
                cfg: Config = OmegaConf.to_object(sweep.without_hydra(job.config))  # type: ignore[assignment]
                torch.set_num_threads(provenance.threads(cfg))
                model_key = OmegaConf.to_yaml(OmegaConf.structured(cfg.model)) + str(cfg.train.batch_size)
                which = (str(OmegaConf.structured(cfg.dataset)), cfg.train.channels_last)
                if which not in datasets:  # one copy of each distinct data set (45,000 images at full)
                    datasets[which] = Data(cfg.dataset, device, channels_last=cfg.train.channels_last)
                data = datasets[which]
                if model_key not in timed:
                    timed[model_key] = time_model(cfg, data, device, a.steps)
                step_s, eval_s = timed[model_key]
                steps, evals = sweep.run_size(cfg, len(data.train))
                per = steps * step_s + evals * eval_s
                share = runs / len(jobs[:: 2 if sweep.is_bisection(master) else 1])
                seconds += per * share
                trained += share * steps * cfg.train.batch_size
                evaluated += share * evals * (len(data.test) + len(data.val))
                images += share * (steps * cfg.train.batch_size + evals * (len(data.test) + len(data.val)) / 3)
                steps_seen.append(steps)
            hours = seconds / 3600 / a.jobs
            total_h += hours
            mean_step = sum(s for s, _ in timed.values()) / len(timed)
            mean_eval = sum(e for _, e in timed.values()) / len(timed)
            gpu_h = images / a.gpu_images_per_s / 3600 if a.gpu_images_per_s else 0.0
            total_gpu_h += gpu_h
            claim = name.split("/")[0]
            table[name] = {"claim": claim, "budget": budget_hash(CONFIGS, a.profile, claim),
                           "runs": runs, "steps_per_run": round(sum(steps_seen) / len(steps_seen)),
                           "train_images": round(trained), "eval_images": round(evaluated),
                           "s_per_step": mean_step, "s_per_eval": mean_eval, "hours": hours,
                           **({"gpu_hours_at_stated_rate": gpu_h} if gpu else {})}
            print(f"{name:24} {runs:5d} {round(sum(steps_seen) / len(steps_seen)):9d} {mean_step:8.3f} "
                  f"{mean_eval:7.2f} {60 * hours:8.3g}" + (f" {gpu_h:7.3g}" if gpu else ""), flush=True)
    print(f"{'total':24} {'':5} {'':9} {'':8} {'':7} {60 * total_h:8.3g}" + (f" {total_gpu_h:7.3g}" if gpu else "")
          + f"  ({total_h:.3g} h here)")
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"profile": a.profile, "cpu": provenance.cpu(),
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "threads": threads, "jobs": a.jobs, "steps": a.steps, "settings": a.overrides,
                **{k: v for k, v in provenance.process().items() if k.startswith("git_")},
                "date": time.strftime("%Y-%m-%d")}
        write_atomic(out, json.dumps({**meta, "sweeps": table, "total_hours": total_h}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
