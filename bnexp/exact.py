"""The exact claims of CLAIMS.md as measurements: each function returns the largest error seen.

The test suite asserts on these numbers and the report prints them, so the checked facts in
the report come from the same code the tests run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bnexp.norms import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, fold


def _rand(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def scale_invariance(scales: tuple[float, ...] = (0.01, 3.0, 1000.0)) -> dict[str, float]:
    """BN(conv_{aW}(x)) = BN(conv_W(x)) and a * dL/d(aW) = dL/dW, in float64.

    Returns the largest absolute output error and relative gradient error over `scales`.
    """
    x, w, probe = _rand(16, 3, 8, 8), _rand(6, 3, 3, 3, seed=1), _rand(16, 6, 8, 8, seed=2)
    # torch needs eps > 0, which breaks exact invariance by about eps / var; 1e-30 is far below 1e-10.
    bn = BatchNorm(6, eps=1e-30).double()

    def out_and_grad(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight = weight.clone().requires_grad_(True)
        y = bn(F.conv2d(x, weight, padding=1))
        (y * probe).sum().backward()
        return y.detach(), weight.grad

    y1, g1 = out_and_grad(w)
    out_err = grad_err = 0.0
    for a in scales:
        ya, ga = out_and_grad(a * w)
        out_err = max(out_err, (ya - y1).abs().max().item())
        grad_err = max(grad_err, ((ga * a - g1).abs().max() / g1.abs().max()).item())
    return {"output_abs_err": out_err, "grad_rel_err": grad_err}


def running_statistics() -> dict[str, float]:
    """Train mode: batch statistics, running mean/var updated with momentum 0.1 (Keras 0.9) and
    the unbiased variance. Eval mode: the running statistics. Returns the largest errors."""
    x = _rand(8, 4, 5, 5) * 3 + 1
    bn = BatchNorm(4, momentum=0.1).double()
    y = bn(x)
    mean, var_b, var_u = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False), x.var((0, 2, 3), unbiased=True)
    train_err = (y - (x - mean[:, None, None]) / torch.sqrt(var_b[:, None, None] + bn.eps)).abs().max()
    keras = 0.9  # Keras' momentum is the weight of the old value: new = 0.9 * old + 0.1 * batch
    mean_err = (bn.running_mean - (keras * 0 + (1 - keras) * mean)).abs().max()
    var_err = (bn.running_var - (keras * 1 + (1 - keras) * var_u)).abs().max()
    bn.eval()
    z = _rand(3, 4, 5, 5, seed=9)
    expected = (z - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
    eval_err = (bn(z) - expected).abs().max()
    return {"train_output_err": train_err.item(), "running_mean_err": mean_err.item(),
            "running_var_err": var_err.item(), "eval_output_err": eval_err.item()}


@torch.no_grad()
def fold_error(dtype: torch.dtype = torch.float32, conv_bias: bool = False) -> float:
    """Largest |fold(conv, bn)(x) - bn(conv(x))| in eval mode, with trained-looking statistics."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=conv_bias).to(dtype)
    bn = BatchNorm(8).to(dtype)
    bn.weight.uniform_(0.5, 2.0)
    bn.bias.uniform_(-1, 1)
    for seed in range(3):
        bn(conv(_rand(16, 3, 8, 8, dtype=dtype, seed=seed) * 2))
    bn.eval()
    x = _rand(4, 3, 8, 8, dtype=dtype, seed=7)
    return (fold(conv, bn)(x) - bn(conv(x))).abs().max().item()


def bias_redundancy() -> dict[str, float]:
    """A conv bias before BN changes neither the output nor receives any gradient (float64)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, bias=True).double()
    with torch.no_grad():
        conv.bias.uniform_(-10, 10)
    no_bias = nn.Conv2d(3, 5, 3, bias=False).double()
    no_bias.weight.data.copy_(conv.weight.data)
    x = _rand(8, 3, 7, 7)
    y = BatchNorm(5).double()(conv(x))
    out_err = (y - BatchNorm(5).double()(no_bias(x))).abs().max().item()
    (y * _rand(*y.shape, seed=4)).sum().backward()
    return {"output_err": out_err, "bias_grad": conv.bias.grad.abs().max().item()}


def gn_special_cases() -> dict[str, float]:
    """GN(G=1) against torch's LayerNorm over (C, H, W); GN(G=C) against InstanceNorm2d (float32)."""
    x = _rand(4, 6, 5, 5, dtype=torch.float32) * 3 + 2
    gamma, beta = _rand(6, dtype=torch.float32, seed=1), _rand(6, dtype=torch.float32, seed=2)
    ln_gn, in_gn = LayerNorm(6), InstanceNorm(6)
    ln = nn.LayerNorm((6, 5, 5), eps=ln_gn.eps)
    inorm = nn.InstanceNorm2d(6, eps=in_gn.eps, affine=True)
    with torch.no_grad():
        for m in (ln_gn, in_gn, inorm):
            m.weight.copy_(gamma)
            m.bias.copy_(beta)
        ln.weight.copy_(gamma[:, None, None].expand(6, 5, 5))  # LN's affine is per element
        ln.bias.copy_(beta[:, None, None].expand(6, 5, 5))
        return {"layer_norm_err": (ln_gn(x) - ln(x)).abs().max().item(),
                "instance_norm_err": (in_gn(x) - inorm(x)).abs().max().item(),
                "group_norm_g3_is_neither": min((GroupNorm(6, 3)(x) - ln(x)).abs().max().item(),
                                                (GroupNorm(6, 3)(x) - inorm(x)).abs().max().item())}
