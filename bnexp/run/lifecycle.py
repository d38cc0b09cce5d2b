"""One run's lifecycle, around the loop of bnexp/run/train.py: device and world, the ranks of a
multi-device run, the checkpoint (keyed by the run key) and its restore, provenance, the wandb
run, the summary, and the record that every ending leaves.

- Nothing is written to the run directory until the config has passed every check and the data
  has loaded. A checkpoint in the run directory is continued from.
- Every ending leaves a complete record: completed or diverged (a result), or failed with the
  reason (an exception, a rank that died, SIGTERM or Ctrl-C), which a rerun tries again from
  the last checkpoint. Failed records are written by `records.write_failure` alone.
- With `train.devices` > 1 this process starts that many ranks (bnexp/run/ranks.py), unless
  torchrun already did and this is one of them; rank 0 writes the record.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from bnexp import models, norms, optim, probes, records
from bnexp.config import Config, ConfigError
from bnexp.data import Data
from bnexp.data import read as read_data
from bnexp.run import checkpoint, provenance, ranks, tracking
from bnexp.run.job import Job
from bnexp.run.train import LoopState, Trainee, build, calibrate, loop, low_precision, recalibrated, total_steps
from bnexp.run.world import World, check_devices, check_speed, share_device, wrap

log = logging.getLogger("bnexp")


@dataclass
class Attempt:
    """This attempt at a run: what it runs, where, since when; what its summary repeats."""

    job: Job
    world: World = field(default_factory=World)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    key: str = ""  # the run key (records.run_key): the config and the computation
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    t0: float = field(default_factory=time.perf_counter)
    extra: dict[str, Any] = field(default_factory=dict)  # fields of the summary only some runs have


def run(dcfg: DictConfig, run_dir: Path, overrides=(), choices: dict | None = None) -> dict[str, Any]:
    """Validate, train and record one run of the composed config `dcfg`; its summary."""
    attempt = Attempt(Job.of(dcfg, run_dir, overrides, choices))
    models.check(attempt.job.cfg)
    return _run(attempt)


def _run(a: Attempt) -> dict[str, Any]:
    cfg = a.job.cfg
    a.world = World.from_env()
    if cfg.train.devices > 1 and a.world.size == 1:
        return _launch(a)
    if a.world.size != cfg.train.devices:
        raise ConfigError("train.devices", f"{cfg.train.devices}, but {a.world.size} processes were started "
                                           f"(torchrun --nproc-per-node); pass train.devices={a.world.size}")
    a.device = a.world.device(cfg.device)
    check_speed(cfg, a.device)
    flags = determinism(cfg.train.deterministic)
    speed = speed_settings(cfg, a.device)
    torch.set_num_threads(provenance.threads(cfg))
    started_group, ended = a.world.start(a.device), False
    try:
        a.extra = _shape(cfg, a.world) | {"determinism": flags, "speed": speed}
        summary = _train(a)
        ended = True
        return summary
    finally:
        a.world.stop(started_group, together=ended)


def _train(a: Attempt) -> dict[str, Any]:
    job, world = a.job, a.world
    t = _trainee(job.cfg, world, a.device)
    if world.main:
        check_disk(job.dir, record_bytes(job.cfg, t.model, t.total))
    a.key = records.run_key(job.config, provenance.computation(job.cfg))
    state = _restore(a, t)
    if world.main:
        records.write_config(job.dir, job.config, job.overrides)
        t.sink.run, warning = tracking.start(job, a.key, t.sink.metrics)
        if job.cfg.logger.wandb:
            a.extra["wandb"] = {"mode": job.cfg.logger.mode, "id": a.key if t.sink.run else None, "warning": warning}
    ckpt = job.dir / records.CHECKPOINT

    def save() -> None:
        if world.main:
            checkpoint.save(ckpt, a.key, state, t)

    try:
        calibrate(t, state)
        loop(t, state, save)
        if job.cfg.train.recalibrate and state.status == "completed":
            recalibrated(t, state)
    except (Exception, KeyboardInterrupt) as e:
        _failed(a, t, state, e)
        raise
    except BaseException:  # SystemExit: nothing to record, the wandb run ends failed
        tracking.finish(t.sink.run, None, failed=True)
        raise
    if not world.main:
        return {"status": state.status, "rank": world.rank}
    t.sink.flush()
    summary = _summary(a, t, state)
    records.write_summary(job.dir, summary)
    if job.cfg.train.keep_checkpoint:
        save()  # the trained model, for whoever wants to start from it
    else:
        ckpt.unlink(missing_ok=True)
    tracking.finish(t.sink.run, summary.to_json(), failed=False)
    return summary.to_json()


def _trainee(cfg: Config, world: World, device: torch.device) -> Trainee:
    """The data, the model (seeded), its optimiser and schedule, and the metric sink."""
    data = Data(cfg.dataset, device, channels_last=cfg.train.channels_last)
    torch.manual_seed(cfg.seed)  # weights and dropout
    gen = torch.Generator().manual_seed(cfg.seed)  # data order and augmentation, on the CPU: the same on every rank
    model = build(cfg, data.classes).to(device)
    if world.size > 1:  # dropout and noise of each rank's own images: a stream per rank
        torch.manual_seed((cfg.seed << 16) + world.rank)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.train.probe_layer:  # a name only the built model can check
        try:
            probes.activation(model, cfg.train.probe_layer)
        except KeyError as e:
            raise ConfigError("train.probe_layer", e.args[0]) from None
    opt = optim.optimizer(model, cfg.optim, optim.peak_lr(cfg.optim, cfg.train.batch_size))
    sched = optim.scheduler(opt, cfg.schedule, total_steps(cfg, len(data.train)))
    if low_precision(cfg) is not None:
        norms.fp32_inputs(model)  # norms and their statistics in fp32, as autocast's lists keep them
    net = wrap(model, world, device, cfg.model.sync_bn)
    fast = torch.compile(net, mode=cfg.train.compile_mode) if cfg.train.compile else None
    return Trainee(cfg, net, opt, sched, data, gen, tracking.Sink(records.MetricLog(None)), world, fast)


def _restore(a: Attempt, t: Trainee) -> LoopState:
    """A fresh loop state, or the one the run directory's checkpoint saved (its computation only)."""
    run_dir, world = a.job.dir, a.world
    t.sink.metrics = records.MetricLog(run_dir if world.main else None)  # rank 0 alone writes the record
    ckpt = run_dir / records.CHECKPOINT
    if not ckpt.is_file():
        return LoopState()
    if checkpoint.key(ckpt) != a.key:
        raise ConfigError("hydra.run.dir", f"{run_dir} holds a checkpoint of another config or machine; "
                                           "choose another hydra.run.dir or delete it")
    state = checkpoint.restore(ckpt, LoopState, t)
    state.attempts += 1
    if world.size > 1:  # the checkpoint holds rank 0's stream; the others restart theirs from the step
        torch.manual_seed((a.job.cfg.seed << 16) + world.rank + (state.step << 32))
    log.info("%s: continuing from the checkpoint at step %d", run_dir, state.step)
    return state


def _failed(a: Attempt, t: Trainee, state: LoopState, e: BaseException) -> None:
    """Record the failure that is about to end this rank (an exception, SIGTERM, Ctrl-C). Any rank
    records its own exception (the others are stopped with it; the first to fail wins); an
    interrupt is recorded by rank 0. A record that cannot be written (OSError) is not retried."""
    world = a.world
    where = f"rank {world.rank} of {world.size}: " if world.size > 1 else ""
    interrupted = isinstance(e, KeyboardInterrupt)
    state.status = "failed"
    state.reason = f"interrupted by {_signal(e)}" if interrupted else f"{where}{type(e).__name__}: {e}"
    summary = _summary(a, t, state)
    writes = world.main if interrupted else world.size == 1 or not records.is_complete(a.job.dir)
    if writes and not isinstance(e, OSError) and not (interrupted and records.is_complete(a.job.dir)):
        t.sink.flush()
        records.write_failure(a.job.dir, a.job.config, a.job.overrides, summary)
    tracking.finish(t.sink.run, summary.to_json(), failed=True)


def _signal(e: BaseException) -> str:
    return e.signal if isinstance(e, ranks.Interrupted) else "SIGINT"


def _shape(cfg: Config, world: World) -> dict[str, Any]:
    """What the summary says of how the run was spread over devices."""
    out: dict[str, Any] = {"batch_size": cfg.train.batch_size, "batch_per_device": cfg.train.batch_size // world.size,
                           "devices": world.size, "sync_bn": cfg.model.sync_bn}
    if world.size > 1:
        out["distributed"] = {"backend": torch.distributed.get_backend(), "world_size": world.size,
                              "launcher": "torchrun" if os.environ.get("BNEXP_LAUNCHED") != "1" else "train.devices",
                              "bn_statistics": "synchronised" if cfg.model.sync_bn else "per device"}
    return out


def _summary(a: Attempt, t: Trainee, state: LoopState) -> records.Summary:
    cfg, last = a.job.cfg, state.last
    shape = {k: a.extra[k] for k in ("batch_size", "batch_per_device", "devices", "sync_bn", "determinism")}
    return records.Summary(
        status=state.status, reason=state.reason, run_key=a.key, seed=cfg.seed, overrides=list(a.job.overrides),
        choices=dict(a.job.choices), name=cfg.name, steps=state.step,
        epochs=state.step * cfg.train.batch_size / len(t.data.train), images=state.step * cfg.train.batch_size,
        train_images=len(t.data.train), test_acc=_finite(last.get("test/acc")),
        test_loss=_finite(last.get("test/loss")), best_test_acc=state.best_test_acc,
        val_acc=_finite(last.get("val/acc")),
        test_batchstats_acc=_finite(last.get("test_batchstats/acc")),
        test_recal_acc=_finite(last.get("test_recal/acc")), train_acc=_finite(last.get("train/acc")),
        train_loss=_finite(last.get("train/loss")),
        images_per_s=state.step * cfg.train.batch_size / state.train_s if state.train_s else None,
        train_s=state.train_s, wall_s=time.perf_counter() - a.t0, attempts=state.attempts,
        parameters=sum(p.numel() for p in t.model.parameters()), frozen_bn_calibration_batches=state.calibrated,
        computation=provenance.computation(cfg), started=a.started.isoformat(timespec="seconds"),
        finished=datetime.now(UTC).isoformat(timespec="seconds"), **shape,
        where=provenance.describe(cfg, a.device), extra={k: v for k, v in a.extra.items() if k not in shape})


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


# --- several devices ------------------------------------------------------------------------------

def _launch(a: Attempt) -> dict[str, Any]:
    """Start `train.devices` ranks for this run and wait; rank 0's summary. Whatever can be
    refused is refused here first, once, before any process starts; a rank that dies without a
    word, or a signal that stops them all, still leaves a failed record."""
    cfg = a.job.cfg
    a.device = check_devices(cfg)
    read_data(cfg.dataset)  # a missing or broken data file: one line, before anything starts
    try:
        return ranks.launch(_rank, (Job(a.job.container, a.job.dir, a.job.overrides, a.job.choices),),
                            cfg.train.devices)
    except ranks.RankFailed as e:
        _record_unrecorded(a, str(e), e.rank if e.silent else None)
        raise
    except ranks.Interrupted as e:
        _record_unrecorded(a, f"interrupted by {e.signal}")
        raise


def _rank(job: Job) -> dict[str, Any]:
    """One rank of a run started by `_launch`, in a process of its own."""
    os.environ["BNEXP_LAUNCHED"] = "1"  # recorded: started by train.devices, not by torchrun
    return _run(Attempt(job))


def _record_unrecorded(a: Attempt, reason: str, silent_rank: int | None = None) -> None:
    """The failed record of a multi-device run whose ranks ended without writing one. When rank
    `silent_rank` died without a word, a record another rank wrote of the broken connection that
    followed is rewritten to name the dead rank first (the rest of that record is kept)."""
    if records.is_complete(a.job.dir):
        if silent_rank is not None:
            written = records.read_summary(a.job.dir)
            if written["status"] == "failed" and not (written["reason"] or "").startswith(f"rank {silent_rank} "):
                records.amend_reason(a.job.dir, f"{reason} (then {written['reason']})")
        return
    cfg = a.job.cfg
    key = records.run_key(a.job.config, provenance.computation(cfg))
    # The ranks trained until the signal: their last checkpoint says how far (the rerun continues from it).
    done = checkpoint.progress(a.job.dir / records.CHECKPOINT)
    summary = records.Summary("failed", reason, key, cfg.seed, list(a.job.overrides), dict(a.job.choices),
                              name=cfg.name, devices=cfg.train.devices, where=provenance.describe(cfg, a.device),
                              **done)
    records.write_failure(a.job.dir, a.job.config, a.job.overrides, summary)


# --- what a run needs of this machine -----------------------------------------------------------

def determinism(on: bool) -> dict[str, Any]:
    """Deterministic kernels when `on` (train.deterministic); the flags in force, for the summary."""
    if on:
        # cuBLAS reads this when it creates its handle: set before the first CUDA matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Set either way: a sweep worker that ran a deterministic job before must not pass it on.
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False  # speed_settings turns it on for non-deterministic CUDA runs
    return {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def speed_settings(cfg: Config, device: torch.device) -> dict[str, Any]:
    """Set what `train.precision` and `train.cudnn_benchmark` ask of this device (after
    `determinism`); the settings in force, for the summary. Set either way, so that a sweep
    worker does not pass one job's settings on to the next."""
    cuda = device.type == "cuda"
    tf32 = cfg.train.precision.value == "tf32"
    native_bf16 = device.type != "cpu" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if cfg.train.precision.value == "bf16" and not native_bf16:
        # Measured on a Xeon with AVX512-BF16/AMX: bf16 1.4x the images/s of fp32. Without those
        # instructions torch emulates bfloat16 and runs slower than fp32: allowed, but said.
        log.warning("train.precision=bf16: this CPU has no native bfloat16 (AVX512-BF16/AMX); it will run slower "
                    "than fp32")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cuda and cfg.train.cudnn_benchmark and not cfg.train.deterministic
    share = cfg.train.jobs_per_device
    fraction = share_device(device, share)
    return {"precision": cfg.train.precision.value, "tf32": tf32 and cuda,
            "compile": cfg.train.compile_mode if cfg.train.compile else None,
            "cudnn_benchmark": torch.backends.cudnn.benchmark, "jobs_per_device": share,
            "memory_fraction": fraction}


def record_bytes(cfg: Config, model: nn.Module, total: int) -> int:
    """A generous estimate of what the record and its checkpoint take on disk."""
    params = sum(p.numel() for p in model.parameters())
    checkpoint_bytes = 4 * params * (3 if cfg.optim.name.value == "sgd" else 4)  # weights, grads' state
    layers = len(models.weight_layers(model))
    rows = (total // cfg.train.log_every + 2) * (2 * layers + 8) + (total // max(cfg.train.landscape_every, 1)
                                                                    if cfg.train.landscape_every else 0) * 3
    return 2 * checkpoint_bytes + 64 * rows + (1 << 20)


def check_disk(run_dir: Path, need: int) -> None:
    """Refuse before training when the results folder cannot take the record."""
    folder = next((p for p in (run_dir, *run_dir.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(folder).free
    if free < need:
        raise records.RecordError(f"{folder}: {free / 2**20:.1f} MiB free, a run here needs about "
                                  f"{need / 2**20:.1f} MiB; free some space or choose another results folder")
