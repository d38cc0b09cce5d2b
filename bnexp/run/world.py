"""Where a run computes: its device, and its place among the ranks of a multi-device run.

A run on K devices is K processes, one per device (started by `bnexp.run.ranks` or by torchrun),
training one model with DistributedDataParallel. Every rank loads the same data and draws the
same permutation and augmentation from the same seed; rank r trains on its slice of each global
batch (`shard`). Gradients are averaged by DDP, so with equal slices the update is that of the
global batch on one process. BN statistics are each device's own (Wu & He's "images per GPU")
unless `model.sync_bn`. Rank 0 alone writes the record, the checkpoint and the wandb run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from bnexp.config import Config, ConfigError
from bnexp.norms import sync_batch_norm
from bnexp.run import provenance


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


def share_device(device: torch.device, jobs: int) -> float | None:
    """Cap this process's share of a GPU's memory when `jobs` processes share it; the fraction, or
    None where nothing is capped (a CPU, or one job). A little under 1/n each: the CUDA context
    itself lives outside the cap."""
    if device.type != "cuda" or jobs <= 1:
        return None
    fraction = round(0.95 / jobs, 4)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def check_devices(cfg: Config) -> torch.device:
    """The device type of a multi-device run, refused before any rank starts when this machine
    has fewer devices than `train.devices`: visible GPUs on CUDA, CPU cores for gloo processes
    (each rank needs a core of its own; more would only queue, and gloo's rendezvous of dozens
    of processes on two cores does not finish in any useful time)."""
    device = resolve_device(cfg.device)
    k = cfg.train.devices
    if device.type not in ("cpu", "cuda"):
        raise ConfigError("device", f"{device.type}: multi-device runs train on CUDA GPUs or CPU processes")
    if device.type == "cuda" and torch.cuda.device_count() < k:
        raise ConfigError("train.devices", f"{k} asked for, but this machine has {torch.cuda.device_count()} "
                                           "CUDA device(s)")
    cores = provenance.cores()
    if device.type == "cpu" and cores < k:
        raise ConfigError("train.devices", f"{k} CPU processes asked for, but this machine has {cores} CPU core(s) "
                                           f"for them; use train.devices <= {cores}")
    return device


def check_speed(cfg: Config, device: torch.device) -> None:
    """Refuse, in one line, a speed setting that cannot apply on `device`."""
    if cfg.train.precision.value == "tf32" and device.type != "cuda":
        raise ConfigError("train.precision", f"tf32 is a CUDA matmul and convolution mode; on {device.type} use "
                                             "fp32 or bf16")
    if cfg.train.compile and cfg.train.compile_mode == "reduce-overhead" and device.type != "cuda":
        raise ConfigError("train.compile_mode", "reduce-overhead uses CUDA graphs; on a CPU use default")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """(this rank, ranks): which slice of each global batch is this process's."""
        return self.rank, self.size

    @classmethod
    def from_env(cls) -> World:
        """This process's place, from the variables torchrun (and bnexp.run.ranks) set; one process otherwise."""
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    def device(self, name: str) -> torch.device:
        """The device this rank trains on: `name` resolved; cuda:<local rank> on several GPUs."""
        device = resolve_device(name)
        if self.size > 1 and device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def start(self, device: torch.device) -> bool:
        """Join the process group (NCCL on GPUs, gloo on CPUs); True if this call started it."""
        if self.size == 1 or dist.is_initialized():
            return False
        # On GPUs, NCCL for the tensors and gloo for the few objects sent between ranks.
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo", rank=self.rank,
                                world_size=self.size)
        return True

    def stop(self, started: bool, together: bool) -> None:
        """Leave the process group this process started. `together` (every rank got here without
        an error): first wait for every rank, so that none leaves, and exits, while rank 0 still
        writes the record. A rank that left early aborted now and then at its exit ("terminate
        called without an active exception", SIGABRT in a static destructor: about 1 run in 25
        under load with gloo, none in 120 with the barrier), failing a completed run. After an
        error there is no waiting: a peer may be dead, and the launcher stops the rest."""
        if not (started and dist.is_initialized()):
            return
        if together:
            dist.barrier()  # on the CPU (gloo) on GPUs too: the group's object device is "cpu"
        dist.destroy_process_group()


def shard(x: torch.Tensor, world: World) -> torch.Tensor:
    """Rank r's slice of a global batch: images [r b, (r + 1) b) with b = len(x) / size."""
    if world.size == 1:
        return x
    b = len(x) // world.size
    return x[world.rank * b:(world.rank + 1) * b]


def wrap(model: nn.Module, world: World, device: torch.device, sync_bn: bool) -> nn.Module:
    """`model` ready to train on this rank: DDP over the process group (itself on one process),
    with BN statistics synchronised across ranks if `sync_bn`. DDP broadcasts rank 0's
    parameters now and rank 0's buffers (BN running statistics) before every training forward,
    so every rank evaluates with rank 0's running statistics."""
    if world.size == 1:
        return model
    if sync_bn:
        model = sync_batch_norm(model, device)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def inner(model: nn.Module) -> nn.Module:
    """The model DDP wraps (itself when not wrapped): what checkpoints, probes and evaluation use."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_sum(*values: torch.Tensor) -> list[torch.Tensor]:
    """Each value summed over the ranks (one all-reduce); the values themselves on one process."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return list(values)
    flat = torch.stack([v.detach().to(torch.float64).reshape(()) for v in values])
    dist.all_reduce(flat)
    return [flat[k].to(v.dtype) for k, v in enumerate(values)]


def all_max(value: torch.Tensor) -> torch.Tensor:
    """The largest value over the ranks (NaN wins, as in torch.maximum)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    v = value.detach().clone()
    nan = torch.isnan(v).to(v.dtype)
    dist.all_reduce(nan, op=dist.ReduceOp.MAX)
    dist.all_reduce(v, op=dist.ReduceOp.MAX)
    return torch.where(nan > 0, torch.full_like(v, float("nan")), v)


def agree(value: Any, world: World) -> Any:
    """Rank 0's `value` on every rank (broadcast); `value` itself on one process."""
    if world.size == 1 or not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
