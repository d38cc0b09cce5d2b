#!/usr/bin/env python3
"""Training throughput of model presets on real CIFAR-10, as images/s and as a ratio to the first.

    python scripts/bench.py [--steps 30] [--batch 128] [--device auto] plain bn gn ...

Each preset trains `--steps` steps (after 3 warm-up steps) through the same `train_step` the
harness uses; nothing is written. The ratios, not the absolute numbers, are what carries over
between machines.
"""

from __future__ import annotations

import argparse
import time

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bnexp import models, optim
from bnexp.config import CONFIGS, Config, register
from bnexp.data import Data
from bnexp.train import build, resolve_device, train_step


def throughput(cfg: Config, data: Data, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = build(cfg, data.classes).to(device).to(memory_format=torch.channels_last).train()
    opt = optim.optimizer(model, cfg.optim, cfg.optim.lr)
    layers = models.weight_layers(model)
    gen = torch.Generator().manual_seed(0)
    batches = iter(data.train_batches(cfg.train.batch_size, gen))
    for _ in range(3):
        x, y = next(batches)
        train_step(model, opt, x, y, layers, measure=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for k in range(steps):
        x, y = next(batches)
        train_step(model, opt, x, y, layers, measure=k % 20 == 0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.train.batch_size / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("presets", nargs="*", default=["plain", "bn", "gn", "ghost_bn", "resnet20", "vgg"])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    register()
    device = resolve_device(a.device)
    n_images = (a.steps + 3) * a.batch
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        base = OmegaConf.to_object(compose("config", [f"dataset.subset={n_images}"]))
        data = Data(base.dataset, device, channels_last=True)
        first = None
        print(f"{'preset':<14}{'images/s':>10}{'ratio':>8}   ({device}, batch {a.batch}, {a.steps} steps)")
        for name in a.presets:
            cfg = OmegaConf.to_object(compose("config", [f"model={name}", f"train.batch_size={a.batch}"]))
            ips = throughput(cfg, data, a.steps, device)
            first = first or ips
            print(f"{name:<14}{ips:>10.0f}{ips / first:>8.2f}")


if __name__ == "__main__":
    main()
