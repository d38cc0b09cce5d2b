"""Train one config and leave a complete run record: `bnexp-train [hydra overrides]`.

The step (forward, loss, backward, update, metrics) is a function of tensors that returns
tensors, apart from the loop that feeds it, so several runs can later be packed into one
batched step without touching the loop. The loop reads values back to the host only at log
and eval points, which keeps a GPU free of per-step synchronisation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn
from tqdm import tqdm

from bnexp import init as weight_init
from bnexp import models, norms, optim, probes, records
from bnexp.config import CONFIGS, Config, ConfigError, one_line_error, register, validate
from bnexp.data import FOLDERS, Data, DataError

log = logging.getLogger("bnexp")
register()
# `hydra.sweep.subdir: ${bnexp_run_key:}` names each sweep job's directory by what it computes.
OmegaConf.register_new_resolver("bnexp_run_key", lambda *, _root_: records.run_key(_root_), replace=True)


# --- the step ---------------------------------------------------------------------------------

@dataclass
class StepOut:
    loss: torch.Tensor  # () mean cross-entropy of the batch, before the update
    correct: torch.Tensor  # () images classified right, before the update
    grad_norm: torch.Tensor | None = None  # () global l2 norm of the gradient, when measured
    layer_grads: dict[str, torch.Tensor] | None = None  # l2 norm per weight layer, when measured
    preact: torch.Tensor | None = None  # (3,) percentiles of the probed unit's input, when measured
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

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build(cfg: Config, num_classes: int) -> nn.Module:
    model = models.build(cfg.model, num_classes, zero_init_residual=cfg.init.zero_init_residual)
    weight_init.apply(model, cfg.init, cfg.model.activation)
    return model


def run(dcfg: DictConfig, run_dir: Path, overrides: list[str] = (), choices: dict | None = None
        ) -> dict[str, Any]:
    """Validate, train and record one run; returns the summary. Nothing is written to
    `run_dir` until the config has passed every check and the data has loaded."""
    started, t0 = datetime.now(UTC), time.perf_counter()
    cfg: Config = OmegaConf.to_object(dcfg)  # type: ignore[assignment]
    validate(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    data = Data(cfg.dataset, device, channels_last=cfg.train.channels_last)
    torch.manual_seed(cfg.seed)  # weights and dropout
    gen = torch.Generator().manual_seed(cfg.seed)  # data order and augmentation, on the CPU
    model = build(cfg, data.classes).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
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
    records.write_config(run_dir, dcfg, list(overrides))
    metrics = records.MetricLog(run_dir)
    sink = wandb_sink(cfg, dcfg, run_dir)
    state = dict(step=0, status="completed", reason=None, best_test_acc=0.0, train_s=0.0, last={}, calibrated=0)
    extra = {"choices": _own(choices), "run_key": records.run_key(dcfg)}
    try:
        batches = (x for x, _ in _cycle(data, cfg, gen, cfg.model.calibration_batches))
        state["calibrated"] = norms.calibrate(model, batches)
        _loop(cfg, model, opt, sched, data, gen, layers, metrics, sink, state, total, steps_per_epoch)
    except Exception as e:  # an interrupt (Ctrl-C) leaves the record incomplete instead
        state["status"], state["reason"] = "failed", f"{type(e).__name__}: {e}"
        metrics.flush()
        records.write_summary(run_dir, _summary(cfg, state, started, t0, overrides, data, device, model) | extra)
        raise
    metrics.flush()
    summary = _summary(cfg, state, started, t0, overrides, data, device, model) | extra
    records.write_summary(run_dir, summary)
    if sink:
        sink.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
        sink.finish()
    return summary


def _own(choices: dict | None) -> dict[str, str]:
    """The config-group choices of bnexp's own groups (model=bn, init=...), not Hydra's."""
    return {k: v for k, v in (choices or {}).items() if not k.startswith("hydra/")}


def _cycle(data: Data, cfg: Config, gen: torch.Generator, n: int):
    """n training batches (frozen-BN calibration), drawn from a copy of the data generator so
    that calibration does not change the training order."""
    g = torch.Generator().set_state(gen.get_state())
    yielded = 0
    while yielded < n:
        for batch in data.train_batches(cfg.train.batch_size, g):
            yield batch
            yielded += 1
            if yielded == n:
                return


def _loop(cfg, model, opt, sched, data, gen, layers, metrics, sink, state, total, steps_per_epoch):
    t = cfg.train
    bar = tqdm(total=total, disable=not (t.progress and sys.stderr.isatty()), unit="step", leave=False)
    probe = (probes.activation(model, t.probe_layer), t.probe_unit) if t.probe_layer else None
    zero = torch.zeros((), device=data.device)
    loss_sum, correct, seen, loss_max = zero.clone(), zero.clone(), 0, zero.clone()
    epochs = math.ceil(total / steps_per_epoch)
    t_start, state["eval_s"] = time.perf_counter(), 0.0
    model.train()
    for epoch in range(epochs):
        for x, y in data.train_batches(t.batch_size, gen):
            step = state["step"]
            measure = step % t.log_every == 0
            lr_now = opt.param_groups[0]["lr"]
            probing = t.landscape_every and step % t.landscape_every == 0
            out = train_step(model, opt, x, y, layers, measure, probe,
                             [k * lr_now for k in t.landscape_steps] if probing else None)
            sched.step()
            loss_sum += out.loss * len(y)
            correct += out.correct
            seen += len(y)
            loss_max = torch.maximum(loss_max, out.loss)  # NaN propagates; checked at log points
            state["step"] = step + 1
            if out.landscape is not None:
                _record(metrics, sink, step, step / steps_per_epoch, {k: float(v) for k, v in out.landscape.items()})
            if measure or state["step"] == total:
                values = _train_values(out, layers, lr_now, float(loss_sum) / seen, float(correct) / seen)
                _record(metrics, sink, step, step / steps_per_epoch, values)
                state["last"] |= values
                bar.set_postfix(loss=f"{values['train/loss']:.3f}", acc=f"{values['train/acc']:.3f}")
                loss_sum.zero_(), correct.zero_()
                seen = 0
                worst = float(loss_max)
                if not math.isfinite(worst) or worst > t.diverge_loss:
                    state["status"] = "diverged"
                    state["reason"] = f"train loss {worst:.4g} at step {step} (bound {t.diverge_loss:g})"
                    break
            if t.eval_every_steps and state["step"] % t.eval_every_steps == 0 and state["step"] < total:
                _evaluate(cfg, model, data, metrics, sink, state, steps_per_epoch)
            bar.update(1)
            if state["step"] == total:
                break
        done = state["step"] == total or state["status"] == "diverged"
        if done or (epoch + 1) % t.eval_every == 0:
            values = _evaluate(cfg, model, data, metrics, sink, state, steps_per_epoch)
            log.info("epoch %d/%d step %d: train/loss %.4f test/acc %.4f", epoch + 1, epochs,
                     state["step"], state["last"].get("train/loss", float("nan")), values["test/acc"])
            metrics.flush()  # an interrupted run keeps its metrics up to here
        if done:
            break
    state["train_s"] = time.perf_counter() - t_start - state["eval_s"]
    bar.close()


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


def _evaluate(cfg, model, data, metrics, sink, state, steps_per_epoch) -> dict[str, float]:
    """Evaluate, record and remember; the time spent is kept out of the training time."""
    t0 = time.perf_counter()
    values = eval_all(model, data, cfg)
    state["best_test_acc"] = max(state["best_test_acc"], values["test/acc"])
    state["last"] |= values
    _record(metrics, sink, state["step"], state["step"] / steps_per_epoch, values)
    state["eval_s"] += time.perf_counter() - t0
    return values


def _record(metrics: records.MetricLog, sink, step: int, epoch: float, values: dict[str, float]) -> None:
    metrics.add(step, epoch, values)
    if sink:
        sink.log(values, step=step)


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _summary(cfg: Config, state: dict, started: datetime, t0: float, overrides, data: Data,
             device: torch.device, model: nn.Module) -> dict[str, Any]:
    last = state["last"]
    images = state["step"] * cfg.train.batch_size
    return {
        "status": state["status"],
        "reason": state["reason"],
        "name": cfg.name,
        "test_acc": _finite(last.get("test/acc")),
        "test_loss": _finite(last.get("test/loss")),
        "best_test_acc": state["best_test_acc"],
        "val_acc": _finite(last.get("val/acc")),
        "test_batchstats_acc": _finite(last.get("test_batchstats/acc")),
        "train_loss": _finite(last.get("train/loss")),
        "train_acc": _finite(last.get("train/acc")),
        "steps": state["step"],
        "epochs": state["step"] * cfg.train.batch_size / len(data.train),
        "images": images,
        "train_images": len(data.train),
        "images_per_s": images / state["train_s"] if state["train_s"] else None,
        "train_s": state["train_s"],
        "wall_s": time.perf_counter() - t0,
        "seed": cfg.seed,
        "overrides": list(overrides),
        "parameters": sum(p.numel() for p in model.parameters()),
        "frozen_bn_calibration_batches": state["calibrated"],
        "data_source": _data_source(cfg),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "threads": torch.get_num_threads(),
        "git_commit": _git("rev-parse", "HEAD"),
        # Dirty = any change to the code, untracked files included; results/ is data the
        # harness writes itself (a regenerated report must not taint the next runs).
        "git_dirty": bool(_git("status", "--porcelain", "--", ":(top)", ":(top,exclude)results")),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _data_source(cfg: Config) -> str | None:
    """What scripts/get_data.py wrote about where the files came from (official or JPEG copy)."""
    marker = Path(cfg.dataset.root) / FOLDERS[cfg.dataset.name] / "SOURCE"
    return marker.read_text().strip() if marker.is_file() else None


def _git(*args: str) -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def wandb_sink(cfg: Config, dcfg: DictConfig, run_dir: Path):
    """A wandb run mirroring the metrics, or None. Imported lazily: wandb is slow to import."""
    if not cfg.logger.wandb or cfg.logger.mode == "disabled":
        return None
    import wandb

    return wandb.init(project=cfg.logger.project, name=cfg.name, dir=str(run_dir), mode=cfg.logger.mode,
                      tags=list(cfg.logger.tags), config=OmegaConf.to_container(dcfg, resolve=True))


# --- entry point ------------------------------------------------------------------------------


@hydra.main(version_base="1.3", config_path=str(CONFIGS), config_name="config")
def main(dcfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if records.is_done(run_dir):
        return _skip(run_dir, dcfg)
    if not records.claim(run_dir):
        log.warning("%s: another process is training this run; skipped", run_dir)
        return None
    try:
        if records.is_done(run_dir):  # finished by another process since the first look
            return _skip(run_dir, dcfg)
        records.clear_partial(run_dir)  # an interrupted or crashed earlier attempt starts over
        summary = run(dcfg, run_dir, list(hc.overrides.task), dict(hc.runtime.choices))
    except (ConfigError, DataError, OmegaConfBaseException) as e:
        records.release(run_dir)
        _remove_empty(run_dir)  # Hydra made it; a refused config leaves nothing behind
        _refuse(one_line_error(e) or str(e) if isinstance(e, OmegaConfBaseException) else str(e))
    except Exception:
        if hc.mode != RunMode.MULTIRUN:
            raise
        # In a sweep a crashed run is one result among many: its summary says `failed`, and
        # the other runs go on.
        log.exception("%s: run failed; recorded as failed", run_dir)
        return None
    finally:
        records.release(run_dir)
    return summary["test_acc"]


def _skip(run_dir: Path, dcfg: DictConfig) -> float | None:
    """A complete record of this very config is the result; one of another config is an error."""
    if records.run_key(records.read_config(run_dir)) != records.run_key(dcfg):
        _refuse(f"{run_dir} holds the record of a different config; choose another hydra.run.dir")
    log.info("%s: complete record found; skipped", run_dir)
    return records.read_summary(run_dir)["test_acc"]


def _refuse(message: str) -> None:
    """One line on stderr and exit status 2 (SystemExit passes through Hydra untouched)."""
    print(f"bnexp-train: error: {message}", file=sys.stderr)
    sys.exit(2)


def _remove_empty(path: Path) -> None:
    """Remove `path` if empty, then its empty parents up to the working directory."""
    cwd, path = Path.cwd().resolve(), path.resolve()
    while path.is_dir() and not any(path.iterdir()) and path != cwd:
        path.rmdir()
        if cwd not in path.parents:
            break
        path = path.parent


def cli() -> None:
    """`bnexp-train`: config mistakes end in one line on stderr and exit status 2."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's report
    try:
        main()
    except Exception as e:
        message = one_line_error(e)
        if message is None:
            raise
        _refuse(message)


if __name__ == "__main__":
    # Call through the importable module, not __main__, so that launchers running jobs in other
    # processes (joblib) pickle the task function by reference.
    from bnexp.train import cli as _cli

    _cli()
