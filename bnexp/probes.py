"""Measurements some claims need beyond loss, accuracy and gradient norms.

- Pre-activation percentiles (Ioffe & Szegedy 2015, Fig. 1 b,c): the {15, 50, 85}th
  percentiles of one unit's input to its nonlinearity, captured during the training forward.
- Loss-landscape probes (Santurkar et al. 2018, Fig. 4): from the current weights, step along
  the gradient by several step sizes and record how much the loss and the gradient change.

Neither changes training: the percentile hook only reads, and the landscape probe runs on
copies of the buffers with the random-number state restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

ACTIVATIONS = (nn.ReLU, nn.Sigmoid, nn.Tanh)
PERCENTILES = (0.15, 0.50, 0.85)


def activation(model: nn.Module, name: str) -> nn.Module:
    """The activation module called `name`, or the last one for "last" (Ioffe's choice)."""
    acts = {n: m for n, m in model.named_modules() if isinstance(m, ACTIVATIONS)}
    if name == "last":
        return list(acts.values())[-1]
    if name not in acts:
        raise KeyError(f"no activation called {name!r}; there are {', '.join(acts)}")
    return acts[name]


@contextlib.contextmanager
def capture_input(module: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, `box["x"]` is the input of the module's latest call (detached)."""
    box: dict[str, torch.Tensor] = {}
    handle = module.register_forward_pre_hook(lambda _m, args: box.__setitem__("x", args[0].detach()))
    try:
        yield box
    finally:
        handle.remove()


def unit_percentiles(x: torch.Tensor, unit: int) -> torch.Tensor:
    """{15, 50, 85}th percentiles of one unit (a channel, for convs) over the batch and pixels."""
    values = x[:, unit].reshape(-1).float()
    return torch.quantile(values, torch.tensor(PERCENTILES, device=values.device))


def all_unit_percentiles(x: torch.Tensor) -> torch.Tensor:
    """(3, units): the {15, 50, 85}th percentiles of every unit (channel) over batch and pixels."""
    per_unit = x.transpose(0, 1).reshape(x.shape[1], -1).float()
    return torch.quantile(per_unit, torch.tensor(PERCENTILES, device=x.device), dim=1)


def drift(now: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """How far the units' input distributions moved since `ref`: the median over units of
    |median now - median then| in units of the unit's initial 15-85 spread (both (3, units))."""
    spread = (ref[2] - ref[0]).clamp_min(1e-12)
    return ((now[1] - ref[1]).abs() / spread).median()


def landscape(model: nn.Module, x: torch.Tensor, y: torch.Tensor, etas: list[float]) -> dict[str, torch.Tensor]:
    """Loss and gradient along the negative gradient at step sizes `etas` (absolute lr units).

    Call after `backward` and before the update: `p.grad` must hold the gradient at the current
    weights. Returns 0-d tensors:
      loss_range  max - min of the loss over the step sizes
      grad_change max over step sizes of ||grad(w - eta g) - g||  ('gradient predictiveness')
      beta        max over step sizes of ||grad(w - eta g) - g|| / ||eta g||  (effective smoothness)
    """
    params = {n: p.detach() for n, p in model.named_parameters()}
    grads = {n: p.grad.detach() for n, p in model.named_parameters() if p.grad is not None}
    g_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()]))
    losses, changes, betas = [], [], []
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        start = torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]
        for eta in etas:
            # One draw of whatever is random in the forward (noisy BN's noise, dropout) for the
            # whole probe, so that the step sizes differ only in the step.
            torch.set_rng_state(start[0])
            for d, state in zip(devices, start[1], strict=True):
                torch.cuda.set_rng_state(state, d)
            moved = {n: (params[n] - eta * g).requires_grad_(True) for n, g in grads.items()}
            buffers = {n: b.clone() for n, b in model.named_buffers()}  # BN statistics untouched
            loss = F.cross_entropy(functional_call(model, {**params, **moved, **buffers}, (x,)), y)
            new = torch.autograd.grad(loss, list(moved.values()))
            change = torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(a - grads[n]) for a, n in zip(new, moved, strict=True)]))
            losses.append(loss.detach())
            changes.append(change)
            betas.append(change / (eta * g_norm))
    losses_t = torch.stack(losses)
    return {"landscape/loss_range": losses_t.max() - losses_t.min(),
            "landscape/grad_change": torch.stack(changes).max(),
            "landscape/beta": torch.stack(betas).max()}
