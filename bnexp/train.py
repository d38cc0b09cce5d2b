"""Train one config and leave a complete run record: the step, the loop and its state.

The step (forward, loss, backward, update, metrics) is a function of tensors that returns
tensors, apart from the loop that feeds it, so several runs can later be packed into one
batched step without touching the loop. The loop reads values back to the host only at log
and eval points, which keeps a GPU free of per-step synchronisation. Everything the loop
changes is in `LoopState`, which a checkpoint saves so that a killed run continues exactly.
The command line (Hydra, locking, skipping, refusing) is bnexp/cli.py.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from bnexp import checkpoint, distributed, models, norms, optim, probes, provenance, records, tracking
from bnexp import init as weight_init
from bnexp.config import Config, ConfigError, check_keys, validate
from bnexp.data import Data
from bnexp.data import read as read_data

log = logging.getLogger("bnexp")


# --- the step ---------------------------------------------------------------------------------

@dataclass
class StepOut:
    loss: torch.Tensor  # () mean cross-entropy of the batch, before the update
    correct: torch.Tensor  # () images classified right, before the update
    grad_norm: torch.Tensor | None = None  # () global l2 norm of the gradient, when measured
    layer_grads: dict[str, torch.Tensor] | None = None  # l2 norm per weight layer, when measured
    preact: torch.Tensor | None = None  # (3,) percentiles of the probed unit's input, when measured
    preact_units: torch.Tensor | None = None  # (3, units) the same for every unit of the probed layer
    landscape: dict[str, torch.Tensor] | None = None  # loss-landscape probe, when asked


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               layers: dict[str, nn.Parameter], measure: bool, probe: tuple[nn.Module, int] | None = None,
               etas: list[float] | None = None) -> StepOut:
    """One optimiser step on (x, y). With `measure`: gradient norms, and the percentiles of
    `probe` = (activation, unit)'s input; with `etas`: the landscape probe at those step sizes."""
    with probes.capture_input(probe[0]) if measure and probe else contextlib.nullcontext({}) as box:
        logits = model(x)
    loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    out = StepOut(loss.detach(), (logits.detach().argmax(1) == y).sum())
    if measure:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        out.grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        out.layer_grads = {name: torch.linalg.vector_norm(w.grad) for name, w in layers.items() if w.grad is not None}
        if "x" in box:
            out.preact = probes.unit_percentiles(box["x"], probe[1])
            out.preact_units = probes.all_unit_percentiles(box["x"])
    if etas:
        out.landscape = probes.landscape(model, x, y, etas)
    opt.step()
    return out


@torch.no_grad()
def evaluate(model: nn.Module, batches) -> tuple[float, float]:
    """(mean loss, accuracy in [0, 1]) over the batches, in whatever mode the model is in."""
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = n = 0
    for x, y in batches:
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double().cpu()
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
    return float(loss_sum) / max(n, 1), correct / max(n, 1)


def eval_all(model: nn.Module, data: Data, cfg: Config) -> dict[str, float]:
    """Test (and validation) loss/accuracy with running statistics, optionally with batch statistics."""
    model.eval()
    out: dict[str, float] = {}
    parts = {"test": data.test} | ({"val": data.val} if len(data.val) else {})
    for name, part in parts.items():
        out[f"{name}/loss"], out[f"{name}/acc"] = evaluate(model, data.eval_batches(part, cfg.train.eval_batch_size))
    if cfg.train.eval_batch_stats:
        # Batches of the training size, so each statistic covers as many images as in training.
        with norms.batch_statistics(model):
            batches = data.eval_batches(data.test, cfg.train.batch_size, drop_last=True)
            out["test_batchstats/loss"], out["test_batchstats/acc"] = evaluate(model, batches)
    model.train()
    return out


# --- the loop ---------------------------------------------------------------------------------

@dataclass
class LoopState:
    """Everything the loop changes: what a checkpoint saves so that a rerun continues exactly."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # the current epoch, from 0
    batch: int = 0  # batches of the current epoch done
    order: torch.Tensor | None = None  # the current epoch's image order (None: not drawn yet)
    status: str = "completed"  # completed | diverged | failed
    reason: str | None = None
    best_test_acc: float = 0.0
    last: dict[str, float] = field(default_factory=dict)  # the latest value of every metric
    calibrated: int = 0  # batches that set frozen BN's statistics
    preact_ref: torch.Tensor | None = None  # (3, units) the probed layer's input percentiles at step 0
    train_s: float = 0.0  # seconds of training (evaluation excluded), over every attempt
    eval_s: float = 0.0
    attempts: int = 1  # 1 + the times the run continued from a checkpoint
    # Means since the last log point, as device tensors so that no step waits for the host.
    loss_sum: torch.Tensor | None = None  # () sum of loss x images
    correct: torch.Tensor | None = None  # () images right
    seen: int = 0  # images
    loss_max: torch.Tensor | None = None  # () the largest batch loss so far (NaN propagates)


def resolve_device(name: str) -> torch.device:
    """The device a config names, refused on one line when this machine or torch build lacks it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        build = "" if torch.backends.cuda.is_built() else f" (torch {torch.__version__} is a CPU build)"
        if count == 0:
            raise ConfigError("device", f"{name} asked for, but no CUDA device is available{build}")
        if device.index is not None and device.index >= count:
            raise ConfigError("device", f"{name} asked for, but only {count} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", f"{name} asked for, but MPS is not available on this machine")
    return device


def build(cfg: Config, num_classes: int) -> nn.Module:
    model = models.build(cfg.model, num_classes, zero_init_residual=cfg.init.zero_init_residual)
    weight_init.apply(model, cfg.init, cfg.model.activation)
    return model


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


def run(dcfg: DictConfig, run_dir: Path, overrides: list[str] = (), choices: dict | None = None
        ) -> dict[str, Any]:
    """Validate, train and record one run; returns the summary. Nothing is written to
    `run_dir` until the config has passed every check and the data has loaded. A checkpoint in
    `run_dir` is continued from. With `train.devices` > 1 this process starts that many ranks
    (bnexp/distributed.py), unless torchrun already did and this is one of them."""
    started, t0 = datetime.now(UTC), time.perf_counter()
    check_keys(dcfg)
    cfg: Config = OmegaConf.to_object(dcfg)  # type: ignore[assignment]
    validate(cfg)
    world = distributed.World.from_env()
    if cfg.train.devices > 1 and world.size == 1:
        return _launch(dcfg, cfg, run_dir, overrides, choices)
    if world.size != cfg.train.devices:
        raise ConfigError("train.devices", f"{cfg.train.devices}, but {world.size} processes were started "
                                           f"(torchrun --nproc-per-node); pass train.devices={world.size}")
    flags = determinism(cfg.train.deterministic)
    torch.set_num_threads(provenance.threads(cfg))
    device = world.device(resolve_device(cfg.device).type) if world.size > 1 else resolve_device(cfg.device)
    started_group = world.start(device)
    try:
        return _run(dcfg, cfg, world, device, flags, run_dir, overrides, choices, started, t0)
    finally:
        if started_group:
            torch.distributed.destroy_process_group()


def _run(dcfg: DictConfig, cfg: Config, world: distributed.World, device: torch.device, flags: dict[str, Any],
         run_dir: Path, overrides, choices, started: datetime, t0: float) -> dict[str, Any]:
    data = Data(cfg.dataset, device, channels_last=cfg.train.channels_last)
    torch.manual_seed(cfg.seed)  # weights and dropout
    gen = torch.Generator().manual_seed(cfg.seed)  # data order and augmentation, on the CPU: the same on every rank
    model = build(cfg, data.classes).to(device)
    if world.size > 1:  # dropout and noise of each rank's own images: a stream per rank
        torch.manual_seed((cfg.seed << 16) + world.rank)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = distributed.wrap(model, world, device, cfg.model.sync_bn)  # what trains; `model` is what it wraps
    model = distributed.inner(net)
    layers = models.weight_layers(model)
    steps_per_epoch = len(data.train) // cfg.train.batch_size
    total = steps_per_epoch * cfg.train.epochs
    total = min(total, cfg.train.max_steps) if cfg.train.max_steps else total
    lr = optim.peak_lr(cfg.optim, cfg.train.batch_size)
    opt = optim.optimizer(model, cfg.optim, lr)
    sched = optim.scheduler(opt, cfg.schedule, total)

    if cfg.train.probe_layer:  # a name only the built model can check
        try:
            probes.activation(model, cfg.train.probe_layer)
        except KeyError as e:
            raise ConfigError("train.probe_layer", e.args[0]) from None
    if world.main:
        check_disk(run_dir, record_bytes(cfg, model, total))
    environment = provenance.computation(cfg)
    key = records.run_key(dcfg, environment)
    ckpt = run_dir / records.CHECKPOINT
    metrics = records.MetricLog(run_dir if world.main else None)  # rank 0 alone writes the record
    state = LoopState()
    if ckpt.is_file():
        if checkpoint.key(ckpt) != key:
            raise ConfigError("hydra.run.dir", f"{run_dir} holds a checkpoint of another config or machine; "
                                               "choose another hydra.run.dir or delete it")
        state = checkpoint.restore(ckpt, LoopState, model, opt, sched, gen, metrics)
        state.attempts += 1
        if world.size > 1:  # the checkpoint holds rank 0's stream; the others restart theirs from the step
            torch.manual_seed((cfg.seed << 16) + world.rank + (state.step << 32))
        log.info("%s: continuing from the checkpoint at step %d", run_dir, state.step)
    sink, warning = None, None
    if world.main:
        records.write_config(run_dir, dcfg, list(overrides))
        sink, warning = tracking.start(cfg, dcfg, run_dir, key, _own(choices), list(overrides), _rows(metrics))
    extra = {"choices": _own(choices), "run_key": key, "computation": environment,
             "batch_size": cfg.train.batch_size, "batch_per_device": cfg.train.batch_size // world.size,
             "devices": world.size, "sync_bn": cfg.model.sync_bn, "determinism": flags}
    if world.size > 1:
        extra["distributed"] = {"backend": torch.distributed.get_backend(), "world_size": world.size,
                                "launcher": "torchrun" if os.environ.get("BNEXP_LAUNCHED") != "1" else "train.devices",
                                "bn_statistics": "synchronised" if cfg.model.sync_bn else "per device"}
    if cfg.logger.wandb:
        extra["wandb"] = {"mode": cfg.logger.mode, "id": key if sink else None, "warning": warning}

    def save() -> None:
        if world.main:
            checkpoint.save(ckpt, key, state, model, opt, sched, gen, metrics)

    try:
        if state.step == 0 and state.order is None:
            batches = (x for x, _ in _cycle(data, cfg, gen, cfg.model.calibration_batches))
            state.calibrated = norms.calibrate(model, batches)  # whole batches: the same on every rank
        _loop(cfg, net, opt, sched, data, gen, layers, metrics, sink, state, total, steps_per_epoch, save, world)
        if cfg.train.recalibrate and state.status == "completed":
            _recalibrated(cfg, model, data, gen, metrics, sink, state, steps_per_epoch, world)
    except Exception as e:  # an interrupt (Ctrl-C) leaves the record incomplete instead
        where = f"rank {world.rank} of {world.size}: " if world.size > 1 else ""
        state.status, state.reason = "failed", f"{where}{type(e).__name__}: {e}"
        summary = _summary(cfg, state, started, t0, overrides, data, device, model) | extra
        # Any rank records its own failure (the others are stopped with it), the first to fail wins.
        if not isinstance(e, OSError) and (world.size == 1 or not records.is_complete(run_dir)):
            metrics.flush()
            if not world.main and not (run_dir / records.METRICS).is_file():  # rank 0 has not written any yet
                records.write_config(run_dir, dcfg, list(overrides))
                records.MetricLog(run_dir).flush()
            records.write_summary(run_dir, summary)
        tracking.finish(sink, summary, failed=True)
        raise
    except BaseException:  # Ctrl-C, SIGTERM: the record stays incomplete, the wandb run ends failed
        tracking.finish(sink, None, failed=True)
        raise
    if not world.main:
        return {"status": state.status, "rank": world.rank}
    metrics.flush()
    summary = _summary(cfg, state, started, t0, overrides, data, device, model) | extra
    records.write_summary(run_dir, summary)
    if cfg.train.keep_checkpoint:
        save()  # the trained model, for whoever wants to start from it
    else:
        ckpt.unlink(missing_ok=True)
    tracking.finish(sink, summary, failed=False)
    return summary


def determinism(on: bool) -> dict[str, Any]:
    """Deterministic kernels when `on` (train.deterministic); the flags in force, for the summary."""
    if on:
        # cuBLAS reads this when it creates its handle: set before the first CUDA matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Set either way: a sweep worker that ran a deterministic job before must not pass it on.
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False  # torch's default; bnexp never turns it on
    return {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def _launch(dcfg: DictConfig, cfg: Config, run_dir: Path, overrides, choices) -> dict[str, Any]:
    """Start `train.devices` ranks for this run and wait; rank 0's summary. Whatever can be
    refused is refused here first, once, before any process starts."""
    device = resolve_device(cfg.device)
    if device.type not in ("cpu", "cuda"):
        raise ConfigError("device", f"{device.type}: multi-device runs train on CUDA GPUs or CPU processes")
    if device.type == "cuda" and torch.cuda.device_count() < cfg.train.devices:
        raise ConfigError("train.devices", f"{cfg.train.devices} asked for, but only {torch.cuda.device_count()} "
                                           "CUDA device(s) exist")
    read_data(cfg.dataset)  # a missing or broken data file: one line, before anything starts
    container = OmegaConf.to_container(dcfg, resolve=True)
    try:
        return distributed.launch(container, run_dir, list(overrides), choices, cfg.train.devices)
    except distributed.RankFailed as e:
        if not records.is_complete(run_dir):  # a rank died without a word (killed, out of memory)
            run_dir.mkdir(parents=True, exist_ok=True)
            records.write_config(run_dir, dcfg, list(overrides))
            records.MetricLog(run_dir).flush()
            records.write_summary(run_dir, {
                "status": "failed", "reason": str(e), "steps": 0, "seed": cfg.seed, "overrides": list(overrides),
                "choices": _own(choices), "devices": cfg.train.devices,
                "run_key": records.run_key(dcfg, provenance.computation(cfg)), **provenance.describe(cfg, device)})
        raise


def _rows(metrics: records.MetricLog) -> list[dict[str, Any]]:
    """The metric rows a continued run restored from its checkpoint, one per step, for wandb."""
    by_step: dict[int, dict[str, float]] = {}
    for step, name, value in zip(metrics.rows["step"], metrics.rows["name"], metrics.rows["value"], strict=True):
        by_step.setdefault(int(step), {})[name] = value
    return [{"step": k, "values": v} for k, v in sorted(by_step.items())]


def _own(choices: dict | None) -> dict[str, str]:
    """The config-group choices of bnexp's own groups (model=bn, init=...), not Hydra's."""
    return {k: v for k, v in (choices or {}).items() if not k.startswith("hydra/")}


def _cycle(data: Data, cfg: Config, gen: torch.Generator, n: int, shard: tuple[int, int] = (0, 1)):
    """n training batches (frozen-BN calibration), drawn from a copy of the data generator so
    that calibration does not change the training order; `shard`: this rank's slices."""
    g = torch.Generator().set_state(gen.get_state())
    yielded = 0
    while yielded < n:
        for batch in data.train_batches(cfg.train.batch_size, g, shard=shard):
            yield batch
            yielded += 1
            if yielded == n:
                return


def _loop(cfg, net, opt, sched, data, gen, layers, metrics, sink, state: LoopState, total, steps_per_epoch,
          save, world: distributed.World) -> None:
    """Train `net` (DDP on several ranks: each rank its slice of every global batch); rank 0
    evaluates, the train metrics are means over every rank's images."""
    t = cfg.train
    model = distributed.inner(net)
    bar = tqdm(total=total, initial=state.step, disable=not (world.main and t.progress and sys.stderr.isatty()),
               unit="step", leave=False)
    probe = (probes.activation(model, t.probe_layer), t.probe_unit) if t.probe_layer else None
    if state.loss_sum is None:
        zero = torch.zeros((), device=data.device)
        state.loss_sum, state.correct, state.loss_max = zero.clone(), zero.clone(), zero.clone()
    epochs = math.ceil(total / steps_per_epoch)
    t_start, eval_before, last_save = time.perf_counter(), state.eval_s, time.monotonic()
    model.train()
    done = state.step == total
    while not done:
        if state.order is None:
            state.order, state.batch = data.epoch_order(gen), 0
        for x, y in data.train_batches(t.batch_size, gen, state.order, state.batch, (world.rank, world.size)):
            step = state.step
            measure = step % t.log_every == 0
            lr_now = opt.param_groups[0]["lr"]
            probing = t.landscape_every and step % t.landscape_every == 0
            out = train_step(net, opt, x, y, layers, measure, probe,
                             [k * lr_now for k in t.landscape_steps] if probing else None)
            sched.step()
            state.loss_sum += out.loss * len(y)
            state.correct += out.correct
            state.seen += len(y)
            state.loss_max = torch.maximum(state.loss_max, out.loss)  # NaN propagates; checked at log points
            state.step, state.batch = step + 1, state.batch + 1
            if out.landscape is not None:
                _record(metrics, sink, step, step / steps_per_epoch, {k: float(v) for k, v in out.landscape.items()})
            if measure or state.step == total:
                loss_sum, correct, seen = distributed.all_sum(state.loss_sum, state.correct,
                                                              torch.tensor(float(state.seen)))
                state.loss_max = distributed.all_max(state.loss_max)  # every rank stops at the same step
                values = _train_values(out, layers, lr_now, float(loss_sum) / float(seen), float(correct) / float(seen))
                if out.preact_units is not None:
                    if state.preact_ref is None:
                        state.preact_ref = out.preact_units
                    values["preact/drift"] = float(probes.drift(out.preact_units, state.preact_ref))
                _record(metrics, sink, step, step / steps_per_epoch, values)
                state.last |= values
                bar.set_postfix(loss=f"{values['train/loss']:.3f}", acc=f"{values['train/acc']:.3f}")
                state.loss_sum.zero_(), state.correct.zero_()
                state.seen = 0
                worst = float(state.loss_max)
                if not math.isfinite(worst) or worst > t.diverge_loss:
                    state.status = "diverged"
                    state.reason = f"train loss {worst:.4g} at step {step} (bound {t.diverge_loss:g})"
                    break
            if t.eval_every_steps and state.step % t.eval_every_steps == 0 and state.step < total and world.main:
                _evaluate(cfg, model, data, metrics, sink, state, steps_per_epoch)
            bar.update(1)
            if state.step == total:
                break
            if t.checkpoint_minutes and time.monotonic() - last_save >= 60 * t.checkpoint_minutes:
                _checkpoint(state, t_start, eval_before, save)
                last_save = time.monotonic()
        done = state.step == total or state.status == "diverged"
        if world.main and (done or (state.epoch + 1) % t.eval_every == 0):
            values = _evaluate(cfg, model, data, metrics, sink, state, steps_per_epoch)
            log.info("epoch %d/%d step %d: train/loss %.4f test/acc %.4f", state.epoch + 1, epochs,
                     state.step, state.last.get("train/loss", float("nan")), values["test/acc"])
            metrics.flush()  # the metrics so far, readable while the run goes on
        if not done:
            state.epoch, state.order, state.batch = state.epoch + 1, None, 0
            _checkpoint(state, t_start, eval_before, save)
            last_save = time.monotonic()
    state.train_s += time.perf_counter() - t_start - (state.eval_s - eval_before)
    bar.close()


def _recalibrated(cfg, model, data, gen, metrics, sink, state: LoopState, steps_per_epoch,
                  world: distributed.World) -> None:
    """Test accuracy with BN statistics re-estimated from the final weights (on a copy of the
    model; a model without BN statistics gets its own test accuracy). On several ranks each
    re-estimates from its slices, as in training (synchronised BN over all of them), and rank
    0's statistics are evaluated."""
    t0 = time.perf_counter()
    copy_ = copy.deepcopy(model)
    shard = (world.rank, world.size)
    used = norms.recalibrate(copy_, (x for x, _ in _cycle(data, cfg, gen, cfg.train.recalibrate, shard)))
    if not world.main:
        return
    if used:
        copy_.eval()
        values = dict(zip(("test_recal/loss", "test_recal/acc"),
                          evaluate(copy_, data.eval_batches(data.test, cfg.train.eval_batch_size)), strict=True))
    else:
        values = {"test_recal/loss": state.last["test/loss"], "test_recal/acc": state.last["test/acc"]}
    state.last |= values
    _record(metrics, sink, state.step, state.step / steps_per_epoch, values)
    state.eval_s += time.perf_counter() - t0


def _checkpoint(state: LoopState, t_start: float, eval_before: float, save) -> None:
    """Save with the training time up to now, keeping the running count unchanged."""
    spent = time.perf_counter() - t_start - (state.eval_s - eval_before)
    state.train_s += spent
    save()
    state.train_s -= spent


def _train_values(out: StepOut, layers: dict[str, nn.Parameter], lr: float, loss: float, acc: float
                  ) -> dict[str, float]:
    """The metrics of a log point: means since the last one, and what the step measured."""
    values = {"train/loss": loss, "train/acc": acc, "lr": lr}
    if out.grad_norm is not None:
        values["grad_norm"] = float(out.grad_norm)
        values |= {f"grad_norm/{k}": float(v) for k, v in out.layer_grads.items()}
        values |= {f"weight_norm/{k}": float(w.detach().norm()) for k, w in layers.items()}
    if out.preact is not None:
        values |= {f"preact/p{round(100 * q)}": float(v) for q, v in zip(probes.PERCENTILES, out.preact, strict=True)}
    return values


def _evaluate(cfg, model, data, metrics, sink, state: LoopState, steps_per_epoch) -> dict[str, float]:
    """Evaluate, record and remember; the time spent is kept out of the training time."""
    t0 = time.perf_counter()
    values = eval_all(model, data, cfg)
    state.best_test_acc = max(state.best_test_acc, values["test/acc"])
    state.last |= values
    _record(metrics, sink, state.step, state.step / steps_per_epoch, values)
    state.eval_s += time.perf_counter() - t0
    return values


def _record(metrics: records.MetricLog, sink, step: int, epoch: float, values: dict[str, float]) -> None:
    metrics.add(step, epoch, values)
    if sink:
        sink.log(values, step=step)


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _summary(cfg: Config, state: LoopState, started: datetime, t0: float, overrides, data: Data,
             device: torch.device, model: nn.Module) -> dict[str, Any]:
    last = state.last
    images = state.step * cfg.train.batch_size
    return {
        "status": state.status,
        "reason": state.reason,
        "name": cfg.name,
        "test_acc": _finite(last.get("test/acc")),
        "test_loss": _finite(last.get("test/loss")),
        "best_test_acc": state.best_test_acc,
        "val_acc": _finite(last.get("val/acc")),
        "test_batchstats_acc": _finite(last.get("test_batchstats/acc")),
        "test_recal_acc": _finite(last.get("test_recal/acc")),
        "train_loss": _finite(last.get("train/loss")),
        "train_acc": _finite(last.get("train/acc")),
        "steps": state.step,
        "epochs": state.step * cfg.train.batch_size / len(data.train),
        "images": images,
        "train_images": len(data.train),
        "images_per_s": images / state.train_s if state.train_s else None,
        "train_s": state.train_s,
        "wall_s": time.perf_counter() - t0,
        "attempts": state.attempts,
        "seed": cfg.seed,
        "overrides": list(overrides),
        "parameters": sum(p.numel() for p in model.parameters()),
        "frozen_bn_calibration_batches": state.calibrated,
        **provenance.describe(cfg, device),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


if __name__ == "__main__":
    # `python -m bnexp.train` (and `torchrun ... -m bnexp.train`) is the command line of bnexp/cli.py.
    from bnexp.cli import cli

    cli()
