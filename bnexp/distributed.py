"""One run on several devices: a process per device, DistributedDataParallel between them.

Two ways in, one code path:
- `torchrun --nproc-per-node=K -m bnexp.train train.devices=K ...` starts the K processes itself;
- `train.devices=K` in any run or sweep job: `launch` starts them with torch's elastic launcher
  (what torchrun runs), so Hydra sweeps, joblib and submitit jobs need nothing else.

Every rank loads the same data and draws the same permutation and augmentation from the same
seed; rank r trains on its slice of each global batch (`shard`). Gradients are averaged by DDP,
so with equal slices the update is that of the global batch on one process. BN statistics are
each device's own (Wu & He's "images per GPU") unless `model.sync_bn`. Rank 0 writes the record,
the checkpoint and the wandb run; a rank that fails writes the failed summary itself, and the
launching process writes one for a rank that died without a word.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger("bnexp")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        """This process's place, from the variables torchrun (and `launch`) set; one process otherwise."""
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    def device(self, kind: str) -> torch.device:
        """Rank r's device: cuda:<local rank> on GPUs, the CPU otherwise."""
        if kind == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device(kind)

    def start(self, device: torch.device) -> bool:
        """Join the process group (NCCL on GPUs, gloo on CPUs); True if this call started it."""
        if self.size == 1 or dist.is_initialized():
            return False
        # On GPUs, NCCL for the tensors and gloo for the few objects sent between ranks.
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo", rank=self.rank,
                                world_size=self.size)
        return True


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
        from bnexp.norms import sync_batch_norm

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


# --- starting the processes -----------------------------------------------------------------------

class RankFailed(RuntimeError):
    """A rank of a multi-device run failed; the message names it."""


def launch(container: dict, run_dir: Path, overrides: list[str], choices: dict | None, devices: int
           ) -> dict[str, Any]:
    """Train the resolved config `container` on `devices` local processes (torch's elastic launcher,
    as `torchrun --standalone --nproc-per-node=devices`); rank 0's summary. A rank that fails ends
    every rank; RankFailed names it."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=devices, run_id=f"bnexp-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2,
                          start_method="spawn")
    # A spawned child sets the parent's default start method first; in a joblib (loky) worker that
    # is "loky", which a fresh interpreter does not know: make it the standard "spawn" meanwhile.
    method = multiprocessing.get_start_method(allow_none=True)
    foreign = method not in (None, *multiprocessing.get_all_start_methods())
    if foreign:
        multiprocessing.set_start_method("spawn", force=True)
    try:
        results = elastic_launch(config, _worker)(container, str(run_dir), list(overrides), dict(choices or {}))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()  # the ranks stopped after it fail too
        message = failure.message if isinstance(failure.message, str) else failure.message.get("message", "")
        generic = not message or not message.strip() or message.startswith("To enable traceback")  # no error file
        what = f"exit code {failure.exitcode}" if generic else message.strip().splitlines()[-1]
        raise RankFailed(f"rank {rank} of {devices} failed: {what}") from None
    finally:
        if foreign:
            multiprocessing.set_start_method(method, force=True)
    return results[0]


def _worker(container: dict, run_dir: str, overrides: list[str], choices: dict) -> dict[str, Any]:
    """One rank, in a process of its own (spawned: it imports everything afresh)."""
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(_train)(container, run_dir, overrides, choices)


def _train(container: dict, run_dir: str, overrides: list[str], choices: dict) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from bnexp.config import Config
    from bnexp.train import run

    os.environ["BNEXP_LAUNCHED"] = "1"  # recorded: started by train.devices, not by torchrun
    dcfg = OmegaConf.merge(OmegaConf.structured(Config), container)
    return run(dcfg, Path(run_dir), overrides, choices)
