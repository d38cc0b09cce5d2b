"""A sweep as a list of jobs, known before any of them runs: their configs (checked up front),
where each will write its record, and at the end a tally of what each left on disk.

Used by the command line's sweep callback (bnexp/cli.py) and by scripts/reproduce.py for its
overall progress. The expansion is Hydra's basic sweeper's own (its `split_arguments`).
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from bnexp import data, models, records
from bnexp.config import Config, ConfigError, ModelConfig, check_keys, num_classes, one_line_error
from bnexp.run import committed
from bnexp.run.train import total_steps
from bnexp.run.world import check_devices, check_speed, resolve_device
from bnexp.validation import validate


@dataclass
class Job:
    overrides: list[str]
    config: DictConfig  # the job's composed config, hydra node included
    dir: Path  # where its record goes
    swept: tuple[str, ...] = ()  # the keys that vary across the sweep

    @property
    def label(self) -> str:
        """The job by the values that tell it apart (`optim.lr=-1`)."""
        own = [o for o in self.overrides if o.split("=", 1)[0] in self.swept]
        return " ".join(own or self.overrides)


def without_hydra(config: DictConfig) -> DictConfig:
    """The job's own config, as Hydra hands it to the task: the `hydra` node removed."""
    body = copy.deepcopy(config)
    with read_write(body), open_dict(body):
        body.pop("hydra", None)
    return body


def is_bisection(master: DictConfig) -> bool:
    return str(master.hydra.sweeper.get("_target_", "")).endswith("BisectionSweeper")


def expand(master: DictConfig) -> list[Job]:
    """Every job of the sweep `master` describes (hydra.sweeper.params x the command line). For
    a bisection, whose probes depend on earlier outcomes, the jobs at every grid point's bracket
    ends: the extremes of what it can launch, checked up front like any other sweep's jobs."""
    loader = GlobalHydra.instance().config_loader()
    if is_bisection(master):
        return _bisection_ends(master, loader)
    params = [f"{k}={v}" for k, v in (master.hydra.sweeper.params or {}).items()]
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(params + list(master.hydra.overrides.task))
    swept = tuple(o.get_key_element() for o in parsed if o.is_sweep_override())
    jobs = []
    for num, overrides in enumerate(BasicSweeper.split_arguments(parsed, None)[0]):
        cfg = loader.load_sweep_config(master, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.num = num
            cfg.hydra.job.id = f"job_{num}"
        jobs.append(Job(list(overrides), cfg, Path(master.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir), swept))
    return jobs


def _bisection_ends(master: DictConfig, loader) -> list[Job]:
    from hydra_plugins.bnexp_bisection import bisection_sweeper as bisection

    conf = master.hydra.sweeper
    problem = bisection.check(conf)
    if problem:
        raise ConfigError(problem.split(":")[0], problem.split(": ", 1)[1])
    points = bisection.grid(conf.params, list(master.hydra.overrides.task), loader)
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(
        [f"{k}={v}" for k, v in (conf.params or {}).items()] + list(master.hydra.overrides.task))
    swept = (*(o.get_key_element() for o in parsed if o.is_sweep_override()), conf.key)
    jobs = []
    for overrides in bisection.ends(conf, points):
        cfg = loader.load_sweep_config(master, list(overrides))
        jobs.append(Job(list(overrides), cfg, Path(master.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir), swept))
    return jobs


def planned(master: DictConfig, jobs: list[Job] | None = None) -> int:
    """How many runs the sweep will launch (`jobs`: what `expand` gave, if at hand)."""
    jobs = jobs if jobs is not None else expand(master)
    return len(jobs) // 2 * int(master.hydra.sweeper.steps) if is_bisection(master) else len(jobs)


def launched(master: DictConfig, jobs: list[Job] | None = None) -> list[Path]:
    """The record folders of the runs the sweep has launched so far (a grid: all of them)."""
    if not is_bisection(master):
        return [j.dir for j in (jobs if jobs is not None else expand(master))]
    from hydra_plugins.bnexp_bisection.bisection_sweeper import STATE

    try:
        state = json.loads((Path(master.hydra.sweep.dir) / STATE).read_text())
    except (OSError, ValueError):
        return []
    return [Path(p["dir"]) for p in state["probes"]]


def run_size(cfg: Config, train_images: int | None = None) -> tuple[int, int]:
    """(optimiser steps, evaluations) of one run of `cfg` on `train_images` (default: what its
    dataset config leaves for training)."""
    t, d = cfg.train, cfg.dataset
    images = train_images if train_images is not None else (d.subset or d.train_size - d.val_size)
    steps = total_steps(cfg, images)
    epochs = math.ceil(steps / max(images // t.batch_size, 1))
    evals = math.ceil(epochs / t.eval_every) + (steps // t.eval_every_steps if t.eval_every_steps else 0)
    return steps, evals


STEP_FLOPS = 2e8  # a training step's fixed cost (Python, optimiser, metrics), in FLOPs of a 2-core CPU


def work(job: Job) -> float:
    """A rough size of a job, in FLOPs, for ordering sweeps largest first: training steps at three
    forward passes per image plus a fixed cost per step, and evaluations at one and a half forward
    passes per image (as measured on a 2-core CPU). The forward pass is counted by torch's
    FlopCounterMode on one image, once per model."""
    cfg: Config = job.config  # type: ignore[assignment]  # read in place: copying it per job was 7x slower
    steps, evals = run_size(cfg)
    per_eval = (cfg.dataset.test_size or 10000) + cfg.dataset.val_size
    f = _forward_flops(OmegaConf.to_yaml(cfg.model, resolve=True), num_classes(cfg.dataset))
    return steps * (3 * cfg.train.batch_size * f + STEP_FLOPS) + evals * per_eval * 1.5 * f


@cache
def _forward_flops(model_yaml: str, classes: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = models.build(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig),
                                                               OmegaConf.create(model_yaml))), classes).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    return float(counter.get_total_flops())


def _check_data(cfg) -> None:
    """The files can be read and the split can be drawn (each distinct data set once)."""
    _, train_y, _, _, classes = data.read(cfg)
    data.split(train_y, cfg, classes)


def check(jobs: list[Job]) -> str | None:
    """The first problem of any job, as one line naming the job and the key; None if all can run:
    config values, and what only this machine knows (the device, the data files)."""
    seen_data, seen_device = set(), set()
    for job in jobs:
        try:
            body = without_hydra(job.config)
            check_keys(body)
            cfg: Config = OmegaConf.to_object(body)  # type: ignore[assignment]
            validate(cfg)
            models.check(cfg)
            check_speed(cfg, resolve_device(cfg.device))
            if (cfg.device, cfg.train.devices) not in seen_device:
                resolve_device(cfg.device)
                if cfg.train.devices > 1:
                    check_devices(cfg)
                seen_device.add((cfg.device, cfg.train.devices))
            data_key = (cfg.dataset.root, cfg.dataset.name, cfg.dataset.coarse_labels)
            if data_key not in seen_data:
                _check_data(cfg.dataset)
                seen_data.add(data_key)
        except ConfigError as e:
            return f"job {job.label}: {e}"
        except Exception as e:
            message = one_line_error(e) or str(e)
            return f"job {job.label}: {message}"
    return None


@dataclass
class Tally:
    total: int
    counts: Counter  # completed / diverged / failed / skipped / no record / unreadable, retrained

    @property
    def failed(self) -> int:
        return self.counts["failed"] + self.counts["no record"]

    def __str__(self) -> str:
        order = ("completed", "diverged", "failed", "skipped", "no record", UNREADABLE)
        return f"{self.total} jobs: " + ", ".join(f"{self.counts[k]} {k}" for k in order if self.counts[k] or
                                                   k in ("completed", "failed"))


def done(dirs: list[Path]) -> set[Path]:
    return {d for d in dirs if records.is_done(d) or committed.marked(d) is not None}


UNREADABLE = "of them retrained for an unreadable record"


def tally(dirs: list[Path], done_before: set[Path], unreadable: set[Path] = frozenset()) -> Tally:
    """What every job left: its summary's status, `skipped` if it was complete before the sweep
    began, `no record` if it left no summary (killed, or it could not write); beside these, how
    many were trained again because their record was unreadable when the sweep began."""
    counts: Counter = Counter({UNREADABLE: len(set(dirs) & set(unreadable))}) if unreadable else Counter()
    for d in dirs:
        if d in done_before or (committed.marked(d) is not None and not records.is_complete(d)):
            counts["skipped"] += 1
        elif records.is_complete(d):
            counts[records.read_summary(d)["status"]] += 1
        else:
            counts["no record"] += 1
    return Tally(len(dirs), counts)
