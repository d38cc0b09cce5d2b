"""The values of a composed config that can run: `validate` refuses the first impossible one
(ConfigError, naming its dotted key). Types were checked at composition (bnexp/config.py); what
only this machine knows (the device, the data files, whether the channels divide the groups)
is checked where it is known (bnexp.run.world, bnexp.data, bnexp.models.check)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import fields, is_dataclass

from bnexp import norm_catalogue
from bnexp.config import VGG_DEPTHS, Arch, Config, ConfigError, Dataset, Norm, num_classes


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(key, message)


def _floats(node, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every float in a config dataclass (and its lists), with its dotted key."""
    for f in fields(node):
        value, key = getattr(node, f.name), f"{prefix}{f.name}"
        if is_dataclass(value):
            yield from _floats(value, f"{key}.")
        elif isinstance(value, float):
            yield key, value
        elif isinstance(value, list):
            yield from ((f"{key}[{k}]", v) for k, v in enumerate(value) if isinstance(v, float))



def validate(cfg: Config) -> None:
    """Raise ConfigError for the first impossible value; types were checked at composition."""
    d, m, i, o, s, t = cfg.dataset, cfg.model, cfg.init, cfg.optim, cfg.schedule, cfg.train
    for key, value in _floats(cfg):
        _check(math.isfinite(value), key, f"must be a finite number, got {value}")
    classes = num_classes(d)
    _check(d.subset >= 0, "dataset.subset", f"must be >= 0 (0 = all), got {d.subset}")
    _check(d.val_size >= 0, "dataset.val_size", f"must be >= 0, got {d.val_size}")
    available = d.train_size - d.val_size
    _check(d.val_size < d.train_size, "dataset.val_size",
           f"{d.val_size} leaves no training images out of {d.train_size}")
    _check(d.subset <= available, "dataset.subset",
           f"{d.subset} is larger than the {available} training images available")
    _check(0 <= d.test_size <= 10000, "dataset.test_size", f"must be in [0, 10000], got {d.test_size}")
    _check(not d.coarse_labels or d.name is Dataset.cifar100, "dataset.coarse_labels",
           "only CIFAR-100 has coarse labels")

    _check(m.width >= 1, "model.width", f"must be >= 1, got {m.width}")
    _check(0.0 <= m.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {m.dropout}")
    _check(0.0 <= m.head_dropout < 1.0, "model.head_dropout", f"must be in [0, 1), got {m.head_dropout}")
    _check(0.0 <= m.momentum <= 1.0, "model.momentum", f"must be in [0, 1], got {m.momentum}")
    _check(m.eps > 0, "model.eps", f"must be > 0, got {m.eps}")
    if m.arch is Arch.cnn:
        _check(m.depth >= 1, "model.depth", f"cnn depth must be >= 1, got {m.depth}")
    elif m.arch is Arch.vgg:
        _check(m.depth in VGG_DEPTHS, "model.depth", f"vgg depth must be one of {VGG_DEPTHS}, got {m.depth}")
    elif m.arch is Arch.resnet:
        _check(m.depth >= 8 and (m.depth - 2) % 6 == 0, "model.depth",
               f"resnet depth must be 6n+2 (20, 32, 44, 56, 110), got {m.depth}")
    else:
        _check(m.depth >= 1, "model.depth", f"mlp hidden layers must be >= 1, got {m.depth}")
    entry = norm_catalogue.NORMS[m.norm.value]
    brought = norm_catalogue.options()
    for option in norm_catalogue.checked_options(m.norm.value):  # whether groups divide the channels: models.check
        low, value = brought[option].at_least, getattr(m, option)
        _check(value >= low, f"model.{option}", f"must be >= {low}, got {value}")
    _check(t.devices >= 1, "train.devices", f"must be >= 1, got {t.devices}")
    _check(t.batch_size % t.devices == 0, "train.batch_size",
           f"{t.batch_size} images cannot be split evenly over train.devices={t.devices}")
    per_device = t.batch_size // t.devices
    if entry.over == "virtual":
        _check(per_device % m.virtual_batch == 0, "model.virtual_batch",
               f"{m.virtual_batch} does not divide the {per_device} images per device" if t.devices > 1 else
               f"{m.virtual_batch} does not divide train.batch_size={t.batch_size}")
    if m.sync_bn:
        _check(m.norm is Norm.batch, "model.sync_bn",
               f"synchronises plain BN only (model.norm=batch), got {m.norm.value}")
        _check(t.devices > 1, "model.sync_bn", "synchronises statistics across devices; needs train.devices > 1")
    if t.devices > 1:
        # Both compute on one device's model alone; on several they would need their own collectives.
        _check(not t.landscape_every, "train.landscape_every", "the landscape probe runs on one device only "
               "(train.devices=1)")
        _check(not t.eval_batch_stats, "train.eval_batch_stats", "evaluation with batch statistics runs on one "
               "device only (train.devices=1)")
        _check(cfg.device in ("auto", "cpu", "cuda"), "device",
               f"{cfg.device!r} names one device; with train.devices={t.devices} use auto, cuda or cpu "
               "(rank r trains on cuda:r)")
    _check(t.compile_mode in ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
           "train.compile_mode", f"must be default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs, "
                                 f"got {t.compile_mode!r}")

    _check(i.scale > 0, "init.scale", f"must be > 0, got {i.scale}")
    _check(i.std > 0, "init.std", f"must be > 0, got {i.std}")

    _check(o.lr > 0, "optim.lr", f"must be > 0, got {o.lr}")
    _check(o.lr_reference_batch >= 0, "optim.lr_reference_batch", f"must be >= 0, got {o.lr_reference_batch}")
    _check(0.0 <= o.momentum < 1.0, "optim.momentum", f"must be in [0, 1), got {o.momentum}")
    _check(o.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {o.weight_decay}")
    _check(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optim.betas",
           f"must be two numbers in [0, 1), got {list(o.betas)}")
    _check(not o.nesterov or o.momentum > 0, "optim.nesterov", "needs optim.momentum > 0")

    _check(0.0 <= s.warmup < 1.0, "schedule.warmup", f"must be in [0, 1), got {s.warmup}")
    _check(all(0 < f < 1 for f in s.milestones), "schedule.milestones",
           f"must be fractions of the run in (0, 1), got {list(s.milestones)}")
    _check(0 < s.gamma <= 1, "schedule.gamma", f"must be in (0, 1], got {s.gamma}")
    _check(0 <= s.final_lr_frac <= 1, "schedule.final_lr_frac", f"must be in [0, 1], got {s.final_lr_frac}")
    _check(0 < s.pct_start < 1, "schedule.pct_start", f"must be in (0, 1), got {s.pct_start}")

    _check(t.batch_size >= 1, "train.batch_size", f"must be >= 1, got {t.batch_size}")
    _check(t.epochs >= 1, "train.epochs", f"must be >= 1, got {t.epochs}")
    _check(t.max_steps >= 0, "train.max_steps", f"must be >= 0 (0 = no cap), got {t.max_steps}")
    _check(t.log_every >= 1, "train.log_every", f"must be >= 1, got {t.log_every}")
    _check(t.eval_every >= 1, "train.eval_every", f"must be >= 1, got {t.eval_every}")
    _check(t.eval_batch_size >= 1, "train.eval_batch_size", f"must be >= 1, got {t.eval_batch_size}")
    _check(t.recalibrate >= 0, "train.recalibrate", f"must be >= 0, got {t.recalibrate}")
    _check(t.eval_every_steps >= 0, "train.eval_every_steps", f"must be >= 0, got {t.eval_every_steps}")
    _check(t.landscape_every >= 0, "train.landscape_every", f"must be >= 0, got {t.landscape_every}")
    _check(len(t.landscape_steps) > 0 and all(v > 0 for v in t.landscape_steps), "train.landscape_steps",
           f"must be positive multiples of the lr, got {list(t.landscape_steps)}")
    _check(t.probe_unit >= 0, "train.probe_unit", f"must be >= 0, got {t.probe_unit}")  # < every width: models.check
    _check(t.diverge_loss > 0, "train.diverge_loss", f"must be > 0, got {t.diverge_loss}")
    _check(t.checkpoint_minutes >= 0, "train.checkpoint_minutes", f"must be >= 0, got {t.checkpoint_minutes}")
    _check(t.jobs_per_device >= 1, "train.jobs_per_device", f"must be >= 1, got {t.jobs_per_device}")
    n_train = d.subset or available
    _check(n_train >= classes, "dataset.subset",
           f"{n_train} training images cannot hold one of each of the {classes} classes")
    _check(t.batch_size <= n_train, "train.batch_size",
           f"{t.batch_size} is larger than the {n_train} training images")
    if m.arch is Arch.mlp and entry.over != "image":
        # (N, C) activations: a batch statistic over one image is undefined (frozen BN calibrates
        # its statistics on training batches first).
        ghost = entry.over == "virtual"
        per_stat = m.virtual_batch if ghost else t.batch_size if m.sync_bn else per_device
        _check(per_stat >= 2, "model.virtual_batch" if ghost else "train.batch_size",
               "batch norm on a fully connected net needs at least 2 images per statistic")

    _check(cfg.threads >= 0, "threads", f"must be >= 0 (0 = default), got {cfg.threads}")
    _check(cfg.device == "auto" or cfg.device == "cpu" or cfg.device.startswith("cuda")
           or cfg.device == "mps", "device", f"must be auto, cpu, cuda[:N] or mps, got {cfg.device!r}")
    _check(cfg.logger.mode in ("offline", "online", "disabled"), "logger.mode",
           f"must be offline, online or disabled, got {cfg.logger.mode!r}")
