"""The nets: a plain CNN family, VGG, a CIFAR ResNet and a fully connected net.

Norm, activation and dropout are constructor arguments: `norm_layer(channels)` (None for no
norm), `act_layer()` and `dropout` p. Every unit is Conv -> Norm -> Act -> Dropout, and a conv
has a bias only where no norm follows (a bias before a norm is cancelled by the mean).
`forward` holds no Python-side state, so several models can later be batched into one.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bnexp.config import Activation, Arch, Config, ConfigError, ModelConfig, Norm
from bnexp.norms import NormLayer, StandardizedConv2d, norm_layer

ActLayer = Callable[[], nn.Module]
ACTIVATIONS: dict[Activation, ActLayer] = {
    Activation.relu: lambda: nn.ReLU(inplace=True),
    Activation.sigmoid: nn.Sigmoid,
    Activation.tanh: nn.Tanh,
}


def unit(c_in: int, c_out: int, norm: NormLayer | None, act: ActLayer, dropout: float,
         linear: bool = False) -> nn.Sequential:
    """Conv (or Linear) -> Norm -> Act -> Dropout; names kept stable for per-layer metrics."""
    layer = nn.Linear if linear else nn.Conv2d
    kw = {} if linear else dict(kernel_size=3, padding=1)
    parts = {"conv" if not linear else "fc": layer(c_in, c_out, bias=norm is None, **kw)}
    if norm is not None:
        parts["norm"] = norm(c_out)
    parts["act"] = act()
    if dropout > 0:
        parts["drop"] = nn.Dropout(dropout)
    return nn.Sequential(OrderedDict(parts))


class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    """(N, C, H, W) -> (N, C, 1, 1). torch's adaptive pool, except under deterministic algorithms
    on a GPU, where its backward has no deterministic kernel and torch would refuse the run: there
    it is a mean over (H, W), whose backward is deterministic (the CPU path is left untouched)."""

    def __init__(self):
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda and torch.are_deterministic_algorithms_enabled():
            return x.mean((2, 3), keepdim=True)
        return super().forward(x)


class Head(nn.Sequential):
    """Global average pool and a linear classifier (`fc` in per-layer metric names)."""

    def __init__(self, c_in: int, num_classes: int):
        super().__init__(OrderedDict(pool=GlobalAvgPool(), flatten=nn.Flatten(),
                                     fc=nn.Linear(c_in, num_classes)))


def cnn(depth: int, width: int, num_classes: int, norm: NormLayer | None, act: ActLayer,
        dropout: float) -> nn.Sequential:
    """`depth` 3x3 conv units in 3 stages of width (w, 2w, 4w) at 32, 16 and 8 pixels."""
    per_stage = [depth // 3 + (s < depth % 3) for s in range(3)]  # e.g. 9 -> 3,3,3; 10 -> 4,3,3
    layers: list[nn.Module] = []
    c_in = 3
    for stage, n in enumerate(per_stage):
        if n == 0:
            continue
        if stage > 0:
            layers.append(nn.MaxPool2d(2))
        for _ in range(n):
            layers.append(unit(c_in, width * 2**stage, norm, act, dropout))
            c_in = width * 2**stage
    return nn.Sequential(*layers, Head(c_in, num_classes))


VGG_LAYOUTS = {  # channels as multiples of the width; "M" is a 2x2 max-pool (Simonyan & Zisserman)
    11: [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    13: [1, 1, "M", 2, 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    16: [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"],
    19: [1, 1, "M", 2, 2, "M", 4, 4, 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M"],
}


def vgg(depth: int, width: int, num_classes: int, norm: NormLayer | None, act: ActLayer,
        dropout: float) -> nn.Sequential:
    """VGG-`depth` with first-stage width `width` (64 in the paper) and a linear classifier."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in VGG_LAYOUTS[depth]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers.append(unit(c_in, width * v, norm, act, dropout))
            c_in = width * v
    return nn.Sequential(*layers, Head(c_in, num_classes))  # 1x1 pixels after 5 pools


class Shortcut(nn.Module):
    """He et al.'s option A: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.pad = c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    """conv-norm-act-drop, conv-norm, add the shortcut, act."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: NormLayer | None,
                 act: ActLayer, dropout: float, zero_init_residual: bool):
        super().__init__()
        self.unit1 = unit(c_in, c_out, norm, act, dropout)
        self.unit1.conv.stride = (stride, stride)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=norm is None)
        self.norm2 = norm(c_out) if norm is not None else nn.Identity()
        if zero_init_residual and norm is not None:
            nn.init.zeros_(self.norm2.weight)  # each block starts as the identity
        self.shortcut = Shortcut(c_in, c_out) if stride != 1 or c_in != c_out else nn.Identity()
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm2(self.conv2(self.unit1(x))) + self.shortcut(x))


def resnet(depth: int, width: int, num_classes: int, norm: NormLayer | None, act: ActLayer,
           dropout: float, zero_init_residual: bool = False) -> nn.Sequential:
    """CIFAR ResNet-`depth` (6n+2): 3 stages of n blocks, widths (w, 2w, 4w), w=16 in the paper."""
    n = (depth - 2) // 6
    layers: list[nn.Module] = [unit(3, width, norm, act, 0.0)]
    c_in = width
    for stage in range(3):
        for b in range(n):
            c_out = width * 2**stage
            stride = 2 if stage > 0 and b == 0 else 1
            layers.append(BasicBlock(c_in, c_out, stride, norm, act, dropout, zero_init_residual))
            c_in = c_out
    return nn.Sequential(*layers, Head(c_in, num_classes))


def mlp(depth: int, width: int, num_classes: int, norm: NormLayer | None, act: ActLayer,
        dropout: float, in_features: int = 3 * 32 * 32) -> nn.Sequential:
    """`depth` hidden layers of `width` units on flattened images (Ioffe & Szegedy: 3 x 100)."""
    layers: list[nn.Module] = [nn.Flatten()]
    c_in = in_features
    for _ in range(depth):
        layers.append(unit(c_in, width, norm, act, dropout, linear=True))
        c_in = width
    return nn.Sequential(*layers, nn.Sequential(OrderedDict(fc=nn.Linear(c_in, num_classes))))


def build(m: ModelConfig, num_classes: int, zero_init_residual: bool = False) -> nn.Module:
    """The net a model config describes, with PyTorch's default init (see bnexp.init)."""
    args = (m.depth, m.width, num_classes, norm_layer(m), ACTIVATIONS[m.activation], m.dropout)
    if m.arch is Arch.resnet:
        model = resnet(*args, zero_init_residual=zero_init_residual)
    else:
        model = {Arch.cnn: cnn, Arch.vgg: vgg, Arch.mlp: mlp}[m.arch](*args)
    if m.head_dropout > 0:  # before the classifier, keeping the classifier's name `fc`
        head = model[-1]
        parts = OrderedDict((n, c) for n, c in head.named_children() if n != "fc")
        parts |= {"head_drop": nn.Dropout(m.head_dropout), "fc": head.fc}
        model[-1] = nn.Sequential(parts)
    if m.weight_standardization:  # the same parameters (names, init, gradient norms), a standardised forward
        for mod in model.modules():
            if type(mod) is nn.Conv2d:
                mod.__class__ = StandardizedConv2d
    return model


def weight_layers(model: nn.Module) -> dict[str, nn.Parameter]:
    """Conv and linear weights by module path, in depth order: the 'layers' of per-layer metrics."""
    return {name: mod.weight for name, mod in model.named_modules()
            if isinstance(mod, (nn.Conv2d, nn.Linear))}


def widths(m: ModelConfig) -> list[int]:
    """Channels (or units) of every layer a norm may follow, ascending, read off the net itself
    (built on the meta device: no memory, no time), so that no second copy of its layout exists."""
    with torch.device("meta"):
        model = build(dataclasses.replace(m, norm=Norm.none), num_classes=10)
    linears = [mod.out_features for mod in model.modules() if isinstance(mod, nn.Linear)][:-1]  # not the classifier
    return sorted({mod.out_channels for mod in model.modules() if isinstance(mod, nn.Conv2d)} | set(linears))


def check(cfg: Config) -> None:
    """Refuse, naming the key, what only the net's layout can tell: GroupNorm groups that do not
    divide a layer's channels, a probed unit that not every layer has."""
    m, t = cfg.model, cfg.train
    w = widths(m)
    if m.norm is Norm.group and m.channels_per_group:
        bad = [c for c in w if c % m.channels_per_group]
        if bad:
            raise ConfigError("model.channels_per_group", f"{m.channels_per_group} does not divide {bad[0]} channels")
    elif m.norm is Norm.group:
        bad = [c for c in w if c % m.groups]
        if bad:
            raise ConfigError("model.groups", f"{m.groups} groups do not divide {bad[0]} channels")
    if t.probe_layer and t.probe_unit >= w[0]:
        raise ConfigError("train.probe_unit", f"{t.probe_unit} is not a unit of every layer (narrowest has {w[0]})")
