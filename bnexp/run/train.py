"""The step, evaluation and the training loop: what one rank does with a built model.

The step (forward, loss, backward, update, metrics) is a function of tensors that returns
tensors, apart from the loop that feeds it, so several runs can later be packed into one
batched step without touching the loop. The loop reads values back to the host only at log
and eval points, which keeps a GPU free of per-step synchronisation. Everything the loop
changes is in `LoopState`, which a checkpoint saves so that a killed run continues exactly;
everything it trains with is one `Trainee`. Building a run around the loop (device, ranks,
checkpoint, record, wandb, failure) is bnexp/run/lifecycle.py.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bnexp import init as weight_init
from bnexp import models, norms, probes
from bnexp.config import Config
from bnexp.data import Data
from bnexp.run.tracking import Sink
from bnexp.run.world import World, all_max, all_sum, inner

log = logging.getLogger("bnexp")


# --- the step ---------------------------------------------------------------------------------

@dataclass
class Measure:
    """What a step measures besides its loss: gradient norms of `layers` (None: none), the
    input percentiles of `probe` = (activation, unit), the loss landscape at step sizes `etas`."""

    layers: dict[str, nn.Parameter] | None = None
    probe: tuple[nn.Module, int] | None = None
    etas: list[float] | None = None


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
               measure: Measure | None = None, low: torch.dtype | None = None) -> StepOut:
    """One optimiser step on (x, y), measuring what `measure` asks for; with `low` (bfloat16) the
    forward and the loss run under autocast to it, the backward and the update in fp32 weights."""
    m = measure or Measure()
    grads_too = m.layers is not None
    with probes.capture_input(m.probe[0]) if grads_too and m.probe else contextlib.nullcontext({}) as box, \
            _autocast(x, low):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    out = StepOut(loss.detach(), (logits.detach().argmax(1) == y).sum())
    if grads_too:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        out.grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        out.layer_grads = {name: torch.linalg.vector_norm(w.grad) for name, w in m.layers.items() if w.grad is not None}
        if "x" in box:
            out.preact = probes.unit_percentiles(box["x"], m.probe[1])
            out.preact_units = probes.all_unit_percentiles(box["x"])
    if m.etas:
        out.landscape = probes.landscape(model, x, y, m.etas)
    opt.step()
    return out


def _autocast(x: torch.Tensor, low: torch.dtype | None):
    return torch.autocast(x.device.type, dtype=low) if low is not None else contextlib.nullcontext()


def low_precision(cfg: Config) -> torch.dtype | None:
    """The dtype autocast runs the forward in (train.precision=bf16), or None (fp32, tf32)."""
    return torch.bfloat16 if cfg.train.precision.value == "bf16" else None


def as_configured(model: nn.Module, cfg: Config) -> tuple[nn.Module, torch.dtype | None]:
    """A one-process net as `train.precision` and `train.compile` make it run (norms kept in fp32
    under bf16, the module compiled), and autocast's dtype: what timings outside a run measure."""
    low = low_precision(cfg)
    if low is not None:
        norms.fp32_inputs(model)
    return (torch.compile(model, mode=cfg.train.compile_mode) if cfg.train.compile else model), low


@torch.no_grad()
def evaluate(model: nn.Module, batches, low: torch.dtype | None = None) -> tuple[float, float]:
    """(mean loss, accuracy in [0, 1]) over the batches, in whatever mode the model is in."""
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = n = 0
    for x, y in batches:
        with _autocast(x, low):
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
    low = low_precision(cfg)
    for name, part in parts.items():
        batches = data.eval_batches(part, cfg.train.eval_batch_size)
        out[f"{name}/loss"], out[f"{name}/acc"] = evaluate(model, batches, low)
    if cfg.train.eval_batch_stats:
        # Batches of the training size, so each statistic covers as many images as in training.
        with norms.batch_statistics(model):
            batches = data.eval_batches(data.test, cfg.train.batch_size, drop_last=True)
            out["test_batchstats/loss"], out["test_batchstats/acc"] = evaluate(model, batches, low)
    model.train()
    return out


def build(cfg: Config, num_classes: int) -> nn.Module:
    model = models.build(cfg.model, num_classes, zero_init_residual=cfg.init.zero_init_residual)
    weight_init.apply(model, cfg.init, cfg.model.activation)
    return model


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


@dataclass
class Trainee:
    """Everything the loop trains with, built once per run (bnexp/run/lifecycle.py)."""

    cfg: Config
    net: nn.Module  # what trains: the model, wrapped in DDP on several ranks
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    data: Data
    gen: torch.Generator  # data order and augmentation, on the CPU: the same on every rank
    sink: Sink  # where metrics go: the record's metric log and the wandb run
    world: World = field(default_factory=World)
    fast: nn.Module | None = None  # `net` compiled (train.compile): the steps that probe nothing run it

    @property
    def model(self) -> nn.Module:
        """The model itself (what DDP wraps): what checkpoints, probes and evaluation use."""
        return inner(self.net)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data.train) // self.cfg.train.batch_size

    @property
    def total(self) -> int:
        return total_steps(self.cfg, len(self.data.train))


def total_steps(cfg: Config, train_images: int) -> int:
    """Optimiser steps of the whole run: whole batches of every epoch, capped by `max_steps`."""
    total = train_images // cfg.train.batch_size * cfg.train.epochs
    return min(total, cfg.train.max_steps) if cfg.train.max_steps else total


def calibrate(t: Trainee, state: LoopState) -> None:
    """Frozen BN's statistics from whole training batches before step 0 (the same on every rank)."""
    if state.step == 0 and state.order is None:
        batches = (x for x, _ in _cycle(t, t.cfg.model.calibration_batches, (0, 1)))
        state.calibrated = norms.calibrate(t.model, batches)


def loop(t: Trainee, state: LoopState, save: Callable[[], None]) -> None:
    """Train to the end or to divergence, continuing from `state`; `save` checkpoints. On several
    ranks each trains on its slice of every global batch, rank 0 evaluates, and the train metrics
    are means over every rank's images."""
    c, world, total = t.cfg.train, t.world, t.total
    model = t.model
    layers = models.weight_layers(model)
    bar = tqdm(total=total, initial=state.step, disable=not (world.main and c.progress and sys.stderr.isatty()),
               unit="step", leave=False)
    probe = (probes.activation(model, c.probe_layer), c.probe_unit) if c.probe_layer else None
    if state.loss_sum is None:
        zero = torch.zeros((), device=t.data.device)
        state.loss_sum, state.correct, state.loss_max = zero.clone(), zero.clone(), zero.clone()
    epochs = math.ceil(total / t.steps_per_epoch)
    t_start, eval_before, last_save = time.perf_counter(), state.eval_s, time.monotonic()
    model.train()
    done = state.step == total
    while not done:
        if state.order is None:
            state.order, state.batch = t.data.epoch_order(t.gen), 0
        for x, y in t.data.train_batches(c.batch_size, t.gen, state.order, state.batch, world.shard):
            step = state.step
            measuring = step % c.log_every == 0
            lr_now = t.opt.param_groups[0]["lr"]
            probing = c.landscape_every and step % c.landscape_every == 0
            etas = [k * lr_now for k in c.landscape_steps] if probing else None
            m = Measure(layers if measuring else None, probe, etas)
            # Hooks (the probe) and the landscape's functional calls run on the eager net.
            net = t.fast if t.fast is not None and not (measuring and probe) and not probing else t.net
            out = train_step(net, t.opt, x, y, m, low_precision(t.cfg))
            t.sched.step()
            state.loss_sum += out.loss * len(y)
            state.correct += out.correct
            state.seen += len(y)
            state.loss_max = torch.maximum(state.loss_max, out.loss)  # NaN propagates; checked at log points
            state.step, state.batch = step + 1, state.batch + 1
            if out.landscape is not None:
                t.sink.add(step, step / t.steps_per_epoch, {k: float(v) for k, v in out.landscape.items()})
            if (measuring or state.step == total) and _log_point(t, state, out, (lr_now, layers), bar):
                break  # diverged
            if c.eval_every_steps and state.step % c.eval_every_steps == 0 and state.step < total and world.main:
                _evaluate(t, state)
            bar.update(1)
            if state.step == total:
                break
            if c.checkpoint_minutes and time.monotonic() - last_save >= 60 * c.checkpoint_minutes:
                _checkpoint(state, t_start, eval_before, save)
                last_save = time.monotonic()
        done = state.step == total or state.status == "diverged"
        if world.main and (done or (state.epoch + 1) % c.eval_every == 0):
            values = _evaluate(t, state)
            log.info("epoch %d/%d step %d: train/loss %.4f test/acc %.4f", state.epoch + 1, epochs,
                     state.step, state.last.get("train/loss", float("nan")), values["test/acc"])
            t.sink.flush()  # the metrics so far, readable while the run goes on
        if not done:
            state.epoch, state.order, state.batch = state.epoch + 1, None, 0
            _checkpoint(state, t_start, eval_before, save)
            last_save = time.monotonic()
    state.train_s += time.perf_counter() - t_start - (state.eval_s - eval_before)
    bar.close()


def _log_point(t: Trainee, state: LoopState, out: StepOut, at: tuple[float, dict[str, nn.Parameter]], bar) -> bool:
    """Record the means since the last log point and what the step measured (`at`: the lr and
    the weight layers); True if the run diverged (decided on every rank's worst loss, so that all
    ranks stop at the same step)."""
    lr, layers = at
    loss_sum, correct, seen = all_sum(state.loss_sum, state.correct, torch.tensor(float(state.seen)))
    state.loss_max = all_max(state.loss_max)
    values = {"train/loss": float(loss_sum) / float(seen), "train/acc": float(correct) / float(seen), "lr": lr}
    if out.grad_norm is not None:
        values["grad_norm"] = float(out.grad_norm)
        values |= {f"grad_norm/{k}": float(v) for k, v in out.layer_grads.items()}
        values |= {f"weight_norm/{k}": float(w.detach().norm()) for k, w in layers.items()}
    if out.preact is not None:
        values |= {f"preact/p{round(100 * q)}": float(v) for q, v in zip(probes.PERCENTILES, out.preact, strict=True)}
    if out.preact_units is not None:
        if state.preact_ref is None:
            state.preact_ref = out.preact_units
        values["preact/drift"] = float(probes.drift(out.preact_units, state.preact_ref))
    step = state.step - 1
    t.sink.add(step, step / t.steps_per_epoch, values)
    state.last |= values
    bar.set_postfix(loss=f"{values['train/loss']:.3f}", acc=f"{values['train/acc']:.3f}")
    state.loss_sum.zero_(), state.correct.zero_()
    state.seen = 0
    worst = float(state.loss_max)
    if math.isfinite(worst) and worst <= t.cfg.train.diverge_loss:
        return False
    state.status = "diverged"
    state.reason = f"train loss {worst:.4g} at step {step} (bound {t.cfg.train.diverge_loss:g})"
    return True


def recalibrated(t: Trainee, state: LoopState) -> None:
    """Test accuracy with BN statistics re-estimated from the final weights (on a copy of the
    model; a model without BN statistics gets its own test accuracy). On several ranks each
    re-estimates from its slices, as in training (synchronised BN over all of them), and rank
    0's statistics are evaluated."""
    t0 = time.perf_counter()
    copy_ = copy.deepcopy(t.model)
    used = norms.recalibrate(copy_, (x for x, _ in _cycle(t, t.cfg.train.recalibrate, t.world.shard)))
    if not t.world.main:
        return
    if used:
        copy_.eval()
        batches = t.data.eval_batches(t.data.test, t.cfg.train.eval_batch_size)
        values = dict(zip(("test_recal/loss", "test_recal/acc"), evaluate(copy_, batches, low_precision(t.cfg)),
                          strict=True))
    else:
        values = {"test_recal/loss": state.last["test/loss"], "test_recal/acc": state.last["test/acc"]}
    state.last |= values
    t.sink.add(state.step, state.step / t.steps_per_epoch, values)
    state.eval_s += time.perf_counter() - t0


def _cycle(t: Trainee, n: int, shard: tuple[int, int]):
    """n training batches (frozen-BN calibration, recalibration), drawn from a copy of the data
    generator so that they do not change the training order; `shard`: this rank's slices."""
    g = torch.Generator().set_state(t.gen.get_state())
    yielded = 0
    while yielded < n:
        for batch in t.data.train_batches(t.cfg.train.batch_size, g, shard=shard):
            yield batch
            yielded += 1
            if yielded == n:
                return


def _checkpoint(state: LoopState, t_start: float, eval_before: float, save: Callable[[], None]) -> None:
    """Save with the training time up to now, keeping the running count unchanged."""
    spent = time.perf_counter() - t_start - (state.eval_s - eval_before)
    state.train_s += spent
    save()
    state.train_s -= spent


def _evaluate(t: Trainee, state: LoopState) -> dict[str, float]:
    """Evaluate, record and remember; the time spent is kept out of the training time."""
    t0 = time.perf_counter()
    values = eval_all(t.model, t.data, t.cfg)
    state.best_test_acc = max(state.best_test_acc, values["test/acc"])
    state.last |= values
    t.sink.add(state.step, state.step / t.steps_per_epoch, values)
    state.eval_s += time.perf_counter() - t0
    return values
