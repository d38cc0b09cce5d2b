"""Norm layers, each a thin class straight off a torch class, all built as `layer(num_channels)`.

Channels come first in every constructor so that models take any of them as `norm_layer` and
BN, GN, LN and IN swap without the model knowing which it got. Every layer accepts (N, C) as
well as (N, C, H, W) inputs, so the fully connected net takes the same norms as the conv nets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from bnexp.config import ModelConfig
from bnexp.norm_catalogue import NORMS

NormLayer = Callable[[int], nn.Module]


class BatchNorm(nn.BatchNorm2d):
    """Per-channel statistics over (N, H, W); also over N alone for (N, C) inputs."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"expected (N, C) or (N, C, H, W) input, got {x.dim()}D")


class GhostBatchNorm(BatchNorm):
    """BN whose training statistics come from virtual batches of `virtual_batch` images.

    This is how one device reproduces unsynchronised BN on several GPUs ('images per GPU'
    in Wu & He 2018) and Hoffer et al.'s ghost batches. Eval uses the running statistics,
    which are updated with the virtual batches' statistics averaged, as if each "GPU" kept
    the same buffers. With one virtual batch it is exactly BN.
    """

    def __init__(self, num_channels: int, virtual_batch: int, **kw):
        super().__init__(num_channels, **kw)
        self.virtual_batch = virtual_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        xg, var, mean = self._virtual_batches(x)
        g, c = xg.shape[0], x.shape[1]
        y = ((xg - mean) * torch.rsqrt(var + self.eps)).reshape_as(x)
        if self.track_running_stats:
            self._update_running(mean.reshape(g, c), var.reshape(g, c), xg[0].numel() // c)
        shape = (1, c) + (1,) * (x.dim() - 2)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape)

    def _virtual_batches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x as (G, N/G, C, *spatial) and each virtual batch's biased variance and mean, (G, 1, C, 1..)."""
        n = x.shape[0]
        g = n // self.virtual_batch
        if g * self.virtual_batch != n:
            raise ValueError(f"batch {n} is not a multiple of virtual_batch={self.virtual_batch}")
        xg = x.reshape(g, self.virtual_batch, *x.shape[1:])
        dims = [1, *range(3, xg.dim())]  # everything but the group and the channel
        var, mean = torch.var_mean(xg, dim=dims, unbiased=False, keepdim=True)
        return xg, var, mean

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        # Unbiased variance for the running estimate, as torch's BN does.
        unbiased = var * (count / max(count - 1, 1))
        # momentum None: a cumulative average, as torch's BN does (used by `recalibrate`)
        factor = self.momentum if self.momentum is not None else 1 / (int(self.num_batches_tracked) + 1)
        self.running_mean.lerp_(mean.mean(0), factor)
        self.running_var.lerp_(unbiased.mean(0), factor)
        self.num_batches_tracked.add_(1)


class BatchRenorm(GhostBatchNorm):
    """Batch Renormalization (Ioffe 2017), over virtual batches like ghost BN.

    Training normalises each virtual batch by its own statistics and then corrects towards the
    running ones: y = (x - mu_B) / sigma_B * r + d, with r = sigma_B / sigma and
    d = (mu_B - mu) / sigma clipped to [1/r_max, r_max] and [-d_max, d_max] and treated as
    constants in backprop. The clips open up over training: r_max from 1 to `r_max`, d_max from
    0 to `d_max`, linearly over `ramp` steps after `warmup` steps of plain BN (the paper: r_max
    1 -> 3, d_max 0 -> 5). With r = 1, d = 0 it is BN; eval uses the running statistics as BN.
    """

    def __init__(self, num_channels: int, virtual_batch: int, r_max: float, d_max: float, warmup: int, ramp: int,
                 **kw):
        super().__init__(num_channels, virtual_batch, **kw)
        self.r_max, self.d_max, self.warmup, self.ramp = r_max, d_max, warmup, ramp
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # training forwards so far

    def limits(self) -> tuple[float, float]:
        """(r_max, d_max) at the current step."""
        t = int(self.steps)
        frac = 1.0 if self.ramp <= 0 and t >= self.warmup else min(max((t - self.warmup) / max(self.ramp, 1), 0.0), 1.0)
        return 1 + (self.r_max - 1) * frac, self.d_max * frac

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or getattr(self, "recalibrating", False):
            return super().forward(x)
        xg, var, mean = self._virtual_batches(x)
        g, c = xg.shape[0], x.shape[1]
        std = torch.sqrt(var + self.eps)
        shape = (1, 1, c) + (1,) * (x.dim() - 2)
        run_std = torch.sqrt(self.running_var + self.eps).reshape(shape)
        r_max, d_max = self.limits()
        with torch.no_grad():
            r = (std / run_std).clamp(1 / r_max, r_max)
            d = ((mean - self.running_mean.reshape(shape)) / run_std).clamp(-d_max, d_max)
        y = ((xg - mean) / std * r + d).reshape_as(x)
        if self.track_running_stats:
            self._update_running(mean.reshape(g, c), var.reshape(g, c), xg[0].numel() // c)
        self.steps.add_(1)
        shape = (1, c) + (1,) * (x.dim() - 2)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape)


class _SumOverRanks(torch.autograd.Function):
    """A tensor summed over every rank (all-reduce); its gradient is summed likewise, since each
    rank's loss depends on every rank's input through the sum."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        torch.distributed.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(BatchNorm):
    """BN with statistics over every rank's images, for CPU processes.

    torch.nn.SyncBatchNorm is the synchronised BN on GPUs, but it refuses CPU tensors; this is
    the same computation on gloo, for CPU runs and for the tests that check multi-device
    training on a CPU: per-channel sums all-reduced (torch.distributed.all_reduce, in both
    directions: `_SumOverRanks`), so the mean and variance are those of the global batch
    and the gradients are those of one process holding all of it. Used only where
    torch.nn.SyncBatchNorm cannot run (`sync_batch_norm`). Eval uses the running statistics.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        count = torch.tensor(float(x.numel() // c), dtype=x.dtype)
        torch.distributed.all_reduce(count)  # images x positions per channel, over every rank
        mean = _SumOverRanks.apply(x.sum(dims)) / count
        shape = (1, c) + (1,) * (x.dim() - 2)
        centred = x - mean.reshape(shape)
        var = _SumOverRanks.apply((centred * centred).sum(dims)) / count  # biased, as BN normalises
        if self.track_running_stats:
            with torch.no_grad():
                factor = self.momentum if self.momentum is not None else 1 / (int(self.num_batches_tracked) + 1)
                n = float(count)
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * (n / max(n - 1, 1)), factor)
                self.num_batches_tracked.add_(1)
        y = centred * torch.rsqrt(var + self.eps).reshape(shape)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape)


def sync_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with every plain BN layer synchronised across the process group's ranks:
    torch.nn.SyncBatchNorm on GPUs, CpuSyncBatchNorm on CPUs (where torch's refuses to run).
    Parameters and running statistics carry over."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is BatchNorm:
            sync = CpuSyncBatchNorm(child.num_features, eps=child.eps, momentum=child.momentum).to(
                child.weight.device)
            sync.load_state_dict(child.state_dict())
            sync.train(child.training)
            setattr(model, name, sync)
        else:
            sync_batch_norm(child, device)
    return model


class FrozenBatchNorm(BatchNorm):
    """BN that normalises with its running statistics in training too (Mask R-CNN's fix).

    From scratch there are no pre-trained statistics to freeze, so `calibrate` estimates
    them on a few training batches before the first step; gamma and beta still learn.
    """

    calibrating = False  # set only by `calibrate`, never inside forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            return super().forward(x)
        self._check_input_dim(x)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            False, 0.0, self.eps)


class NoisyBatchNorm(BatchNorm):
    """BN followed by noise whose distribution changes at every step (Santurkar et al. 2018).

    In training each channel's output is multiplied by s ~ U(1, 1 + scale) and shifted by
    m ~ U(-shift, shift), with s and m drawn afresh every forward pass: the next layer's input
    distribution moves all the time (large 'internal covariate shift') while the optimisation
    keeps BN's normalisation. Eval is plain BN.
    """

    def __init__(self, num_channels: int, shift: float, scale: float, **kw):
        super().__init__(num_channels, **kw)
        self.shift, self.scale = shift, scale

    quiet = False  # set only by `recalibrate`: statistics of the noise-free network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if not self.training or self.quiet:
            return y
        shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        s = 1 + self.scale * torch.rand(shape, device=x.device, dtype=x.dtype)
        m = self.shift * (2 * torch.rand(shape, device=x.device, dtype=x.dtype) - 1)
        return y * s + m


class GroupNorm(nn.GroupNorm):
    """Channels first, like the BN layers: GroupNorm(num_channels, groups). With
    `channels_per_group`, each layer gets num_channels / channels_per_group groups instead (Wu &
    He's Table 3 fixes either G or the channels per group; the latter keeps every layer's groups
    equally wide when a net's stages differ in width)."""

    def __init__(self, num_channels: int, groups: int, eps: float = 1e-5, channels_per_group: int = 0):
        super().__init__(num_channels // channels_per_group if channels_per_group else groups, num_channels, eps=eps)


class LayerNorm(GroupNorm):
    """GN with one group: statistics over (C, H, W) per image, per-channel gamma/beta."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__(num_channels, 1, eps=eps)


class InstanceNorm(GroupNorm):
    """GN with a group per channel: statistics over (H, W) per image and channel."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__(num_channels, num_channels, eps=eps)


class StandardizedConv2d(nn.Conv2d):
    """A conv whose weight is standardised per output channel (zero mean, unit variance over its
    inputs and kernel) in every forward pass (Qiao et al. 2019); the parameter itself is the
    unstandardised weight, so init, weight decay and per-layer gradient norms read it as for any
    conv. `model.weight_standardization=true` turns a net's convs into these."""

    eps = 1e-5

    def standardized(self) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (w - mean) / torch.sqrt(var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.standardized(), self.bias)


def norm_layer(m: ModelConfig) -> NormLayer | None:
    """The layer a model config asks for, as a constructor of one argument; None for no norm. Its
    class and the options it reads are its entry in bnexp/norm_catalogue.py."""
    entry = NORMS[m.norm.value]
    if entry.layer is None:
        return None
    return partial(globals()[entry.layer], **{kw: getattr(m, option) for kw, option in entry.reads.items()})


def fp32_inputs(model: nn.Module) -> None:
    """Every norm layer normalises in float32 under autocast: its input is cast up before the
    statistics are taken (nothing inside a norm is on autocast's lower-precision list, so the
    rest follows), as torch's autocast lists keep norms in fp32. For bf16 runs only: an fp32 run
    has no hook at all."""
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
            m.register_forward_pre_hook(lambda mod, args: (args[0].float(), *args[1:]))


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterator[torch.Tensor]) -> int:
    """Set every FrozenBatchNorm's statistics to the average over `batches` (forward only).

    Returns the number of batches used; 0 when the model has no frozen BN.
    """
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm)]
    return _average_statistics(model, frozen, batches, ("calibrating",), whole_model_training=True)


@torch.no_grad()
def recalibrate(model: nn.Module, batches: Iterator[torch.Tensor]) -> int:
    """Re-estimate every BN layer's running statistics from `batches` with the weights as they
    are now: a cumulative average over the batches, the rest of the model in eval mode (no
    dropout), noisy BN without its noise. At a high learning rate the running averages lag
    the weights; these are the statistics the final weights produce. Returns the batches used
    (0 when there is no BN to recalibrate). Frozen BN keeps its statistics."""
    layers = [m for m in batch_norms(model) if not isinstance(m, FrozenBatchNorm)]
    return _average_statistics(model, layers, batches, ("quiet", "recalibrating"), whole_model_training=False)


def _average_statistics(model: nn.Module, layers: list, batches: Iterator[torch.Tensor], flags: tuple[str, ...],
                        whole_model_training: bool) -> int:
    """Reset `layers`' running statistics to the cumulative average over `batches` (forward only,
    `layers` in training mode, the rest of the model as `whole_model_training` says), with the
    attributes `flags` set on them meanwhile; everything is put back. Returns the batches used."""
    if not layers:
        return 0
    was_training = model.training
    model.train(whole_model_training)
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.train()
        m.momentum = None  # momentum None: a cumulative average
        for flag in flags:
            setattr(m, flag, True)
    used = 0
    try:
        for x in batches:
            model(x)
            used += 1
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
            for flag in flags:
                setattr(m, flag, False)
        model.train(was_training)
    return used


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Evaluate with batch statistics: BN layers normalise by the batch and update nothing.

    Everything else (dropout) is in eval mode. Frozen BN keeps its running statistics.
    """
    was_training = model.training
    model.eval()
    switched = [m for m in batch_norms(model) if not isinstance(m, FrozenBatchNorm)]
    for m in switched:
        m.train()
        m.track_running_stats = False  # torch then normalises by the batch and skips updates
    try:
        yield
    finally:
        for m in switched:
            m.track_running_stats = True
        model.train(was_training)


@torch.no_grad()
def fold(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> nn.Conv2d:
    """A conv equal to `bn(conv(x))` in eval mode: BN's test-time transform is an affine map
    per channel, gamma * (z - mean) / sqrt(var + eps) + beta, so it folds into W and b."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, conv.groups, bias=True).to(conv.weight)
    out.weight.copy_(conv.weight * scale[:, None, None, None])
    out.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return out
