"""Save and restore a run in the middle: model, optimizer, schedule, every RNG, the position in
the data order, the loop state and the metrics so far, in one file written atomically.

A run restored from its checkpoint continues exactly as if it had never stopped (on the CPU,
with the same threads): the same batches, the same augmentation, the same dropout.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from bnexp import records

if TYPE_CHECKING:
    from bnexp.run.train import LoopState, Trainee


def save(path: Path, run_key: str, state: LoopState, t: Trainee) -> None:
    payload = {
        "run_key": run_key,  # a checkpoint only ever continues the computation that wrote it
        "state": dataclasses.asdict(state),
        "model": t.model.state_dict(),
        "optimizer": t.opt.state_dict(),
        "scheduler": t.sched.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "data": t.gen.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "metrics": t.sink.metrics.rows,
    }
    buffer = io.BytesIO()  # serialised first, so that a failing disk only ever sees one plain write
    torch.save(payload, buffer)
    records.write_atomic(path, buffer.getvalue())


def key(path: Path) -> str | None:
    """The run key of the run that wrote the checkpoint."""
    return torch.load(path, map_location="cpu", weights_only=True).get("run_key")


def progress(path: Path) -> dict:
    """What the run had done when the checkpoint was written (steps, attempts, seconds of
    training), for a record written by another process than the one that trained; {} without one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state"]
    except (OSError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError):
        return {}
    return {"steps": int(state["step"]), "attempts": int(state["attempts"]), "train_s": float(state["train_s"])}


def restore(path: Path, state_type: type[LoopState], t: Trainee) -> LoopState:
    """The loop state saved in `path`, with everything else put back in place in `t`."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    device = next(t.model.parameters()).device
    t.model.load_state_dict(payload["model"])
    t.opt.load_state_dict(payload["optimizer"])
    t.sched.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng"]["torch"])
    if payload["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
    t.gen.set_state(payload["rng"]["data"])
    t.sink.metrics.rows = payload["metrics"]
    fields = payload["state"]
    for name in ("loss_sum", "correct", "loss_max", "order"):
        if isinstance(fields.get(name), torch.Tensor):
            fields[name] = fields[name].to(device)
    return state_type(**fields)
