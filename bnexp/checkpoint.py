"""Save and restore a run in the middle: model, optimizer, schedule, every RNG, the position in
the data order, the loop state and the metrics so far, in one file written atomically.

A run restored from its checkpoint continues exactly as if it had never stopped (on the CPU,
with the same threads): the same batches, the same augmentation, the same dropout.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import torch
from torch import nn

from bnexp import records


def save(path: Path, run_key: str, state, model: nn.Module, opt: torch.optim.Optimizer, sched,
         gen: torch.Generator, metrics: records.MetricLog) -> None:
    payload = {
        "run_key": run_key,  # a checkpoint only ever continues the computation that wrote it
        "state": dataclasses.asdict(state),
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "data": gen.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "metrics": metrics.rows,
    }
    buffer = io.BytesIO()  # serialised first, so that a failing disk only ever sees one plain write
    torch.save(payload, buffer)
    records.write_atomic(path, buffer.getvalue())


def key(path: Path) -> str | None:
    """The run key of the run that wrote the checkpoint."""
    return torch.load(path, map_location="cpu", weights_only=True).get("run_key")


def restore(path: Path, state_type, model: nn.Module, opt: torch.optim.Optimizer, sched, gen: torch.Generator,
            metrics: records.MetricLog):
    """The loop state saved in `path`, with everything else put back in place."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    device = next(model.parameters()).device
    model.load_state_dict(payload["model"])
    opt.load_state_dict(payload["optimizer"])
    sched.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng"]["torch"])
    if payload["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
    gen.set_state(payload["rng"]["data"])
    metrics.rows = payload["metrics"]
    fields = payload["state"]
    for name in ("loss_sum", "correct", "loss_max", "order"):
        if isinstance(fields.get(name), torch.Tensor):
            fields[name] = fields[name].to(device)
    return state_type(**fields)
