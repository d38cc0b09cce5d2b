#!/usr/bin/env python3
"""The harness's training step against a naive loop and against the compute bound: `make bench`.

    python scripts/bench.py [--presets bn,plain] [--steps 30] [--repeats 3] [--batch 128] [--workers 2]
                            [--loops harness,naive,bound] [--jobs-per-device N] [overrides...]

For each model preset, three loops train the same model with the same `train_step`:
    harness  bnexp's data path: uint8 images on the device, whole-batch crop and flip
    naive    the usual way: a per-sample Dataset, a DataLoader with worker processes, per-image
             random crop and flip in Python (what torchvision's transforms do, written out, since
             torchvision does not load beside this CPU build of torch)
    bound    the same step on one preloaded, already-augmented batch: the model's compute alone
Each is timed `--repeats` times over `--steps` steps after warm-up; the ratios harness/naive and
harness/bound, with min/median/max over repeats, go to results/bench/bench.json and the screen.
Absolute images/s vary between machines; the ratios measured in one run are what carries over.
Hydra overrides apply to every preset (train.precision=bf16 train.compile=true model.width=8);
`--jobs-per-device N` caps this process's share of a GPU's memory as a sweep job's would be (on a
CPU: its share of the cores, as `threads` does for sweep jobs); with `--barrier DIR` the N
processes started together wait for one another after warm-up, so that their timed steps overlap.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bnexp import optim
from bnexp.config import CONFIGS, register
from bnexp.data import PAD, Data
from bnexp.run.train import as_configured, build, train_step
from bnexp.run.world import resolve_device, share_device


class NaiveCifar(torch.utils.data.Dataset):
    """One image at a time, augmented in Python: the textbook input pipeline."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mean: np.ndarray, std: np.ndarray):
        self.x, self.y, self.mean, self.std = x, y, mean[:, None, None], std[:, None, None]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = np.pad(self.x[i], ((0, 0), (PAD, PAD), (PAD, PAD)))  # (3, 40, 40)
        dy, dx = np.random.randint(0, 2 * PAD + 1, size=2)
        img = img[:, dy:dy + 32, dx:dx + 32]
        if np.random.rand() < 0.5:
            img = img[:, :, ::-1]
        img = (img.astype(np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(img)), int(self.y[i])


def timed(steps: int, batches, step) -> float:
    """Images per second over `steps` steps drawn from the iterator `batches`."""
    n = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = next(batches)
        step(x, y)
        n += len(y)
    return n / (time.perf_counter() - t0)


def rendezvous(folder: str | None, n: int, deadline_s: float = 600.0) -> None:
    """Wait until `n` processes have reached this point (one file each in `folder`)."""
    if not folder or n < 2:
        return
    here = Path(folder)
    here.mkdir(parents=True, exist_ok=True)
    (here / str(os.getpid())).touch()
    t0 = time.perf_counter()
    while len(list(here.iterdir())) < n and time.perf_counter() - t0 < deadline_s:
        time.sleep(0.02)


def bench_preset(name: str, data: Data, a, device: torch.device) -> dict:
    register()
    cfg = OmegaConf.to_object(compose("config", [f"model={name}", f"train.batch_size={a.batch}", *a.overrides]))
    torch.manual_seed(0)
    model = build(cfg, data.classes).to(device).to(memory_format=torch.channels_last).train()
    opt = optim.optimizer(model, cfg.optim, cfg.optim.lr)
    net, low = as_configured(model, cfg)

    def step(x, y):
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        train_step(net, opt, x, y.to(device), low=low)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def harness():
        gen = torch.Generator().manual_seed(0)
        while True:
            yield from data.train_batches(a.batch, gen)

    x_np = data.train.x.cpu().numpy()
    naive_set = NaiveCifar(x_np, data.train.y.cpu().numpy(), data.mean.cpu().numpy(), data.std.cpu().numpy())

    def naive():
        while True:
            yield from torch.utils.data.DataLoader(naive_set, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                                                   drop_last=True, persistent_workers=False)

    one = next(harness())

    def bound():
        while True:
            yield one

    out = {}
    for label, make in ((k, v) for k, v in (("harness", harness), ("naive", naive), ("bound", bound))
                        if k in a.loops.split(",")):
        it = make()
        timed(3, it, step)  # warm-up (and the DataLoader's workers started)
        rendezvous(a.barrier, a.jobs_per_device)  # returns at once once every peer has arrived
        out[label] = [timed(a.steps, it, step) for _ in range(a.repeats)]
        del it
    ratios = {f"harness/{k}": [h / n for h, n in zip(out["harness"], out[k], strict=True)]
              for k in ("naive", "bound") if k in out and "harness" in out}
    summary = {k: {"min": min(v), "median": statistics.median(v), "max": max(v)} for k, v in (out | ratios).items()}
    return {"images_per_s": out, "ratios": ratios, "summary": summary}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="bn", help="comma-separated model presets")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the naive loop")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="results/bench/bench.json")
    p.add_argument("--loops", default="harness,naive,bound", help="which loops to time")
    p.add_argument("--jobs-per-device", type=int, default=1, help="processes sharing the GPU (memory cap 0.95/N)")
    p.add_argument("--barrier", help="a folder where the --jobs-per-device processes meet before timing")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every preset")
    a = p.parse_args()
    device = resolve_device(a.device)
    share_device(device, a.jobs_per_device)
    if device.type == "cpu":  # processes sharing the CPU split its cores, as sweep jobs do with `threads`
        torch.set_num_threads(max(1, torch.get_num_threads() // a.jobs_per_device))
    results = {}
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        register()
        base = OmegaConf.to_object(compose("config", [f"dataset.subset={max(4096, a.batch * (a.steps + 4))}"]))
        data = Data(base.dataset, device, channels_last=True)
        for name in a.presets.split(","):
            results[name] = r = bench_preset(name, data, a, device)
            s = r["summary"]
            print(f"{name}: "
                  + "; ".join(f"{k} {v['median']:.3g} [{v['min']:.3g}, {v['max']:.3g}]" for k, v in s.items())
                  + f" (images/s and ratios, median [min, max] of {a.repeats})")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "machine": platform.machine(), "steps": a.steps, "repeats": a.repeats, "batch": a.batch,
            "workers": a.workers, "overrides": a.overrides, "jobs_per_device": a.jobs_per_device}
    out.write_text(json.dumps({"meta": meta, "presets": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
