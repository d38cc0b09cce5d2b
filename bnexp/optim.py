"""Optimisers and learning-rate schedules (torch's own, configured from the typed config)."""

from __future__ import annotations

import math

import torch
from torch import nn

from bnexp.config import OptimConfig, Optimizer, Schedule, ScheduleConfig


def peak_lr(cfg: OptimConfig, batch_size: int) -> float:
    """The lr the schedule peaks at: `lr`, or `lr` per `lr_reference_batch` images scaled
    linearly to the batch size (Goyal et al.; Wu & He use 0.1 * N / 32)."""
    return cfg.lr * batch_size / cfg.lr_reference_batch if cfg.lr_reference_batch else cfg.lr


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Weight decay on conv/linear weights; none on norm parameters and biases if exempt."""
    if not cfg.wd_exempt_norm_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": cfg.weight_decay}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            # Norm gammas/betas and biases are the 1-D parameters of every net here.
            (decay if p.dim() > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    match cfg.name:
        case Optimizer.sgd:
            return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
        case Optimizer.adam:
            return torch.optim.Adam(groups, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps)
        case Optimizer.adamw:
            return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps)
    raise AssertionError(cfg.name)


def lr_factor(step: int, total: int, cfg: ScheduleConfig) -> float:
    """Multiplier of the peak lr at `step` (0-based) of `total` steps; onecycle excluded."""
    warm = int(cfg.warmup * total)
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(total - warm, 1)  # progress after warm-up, in [0, 1)
    match cfg.name:
        case Schedule.constant:
            return 1.0
        case Schedule.step:
            return cfg.gamma ** sum(step >= m * total for m in cfg.milestones)
        case Schedule.cosine:
            return cfg.final_lr_frac + (1 - cfg.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * t))
        case Schedule.warmup_linear:
            return 1.0 - t
    raise AssertionError(cfg.name)


def scheduler(opt: torch.optim.Optimizer, cfg: ScheduleConfig, total: int
              ) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per training step."""
    if cfg.name is Schedule.onecycle:
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total,
            pct_start=cfg.pct_start, cycle_momentum=isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] > 0)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, cfg))
