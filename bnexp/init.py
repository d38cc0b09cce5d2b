"""Weight initialisation schemes for conv and linear layers, with a global scale on top.

Norm layers are left as torch builds them (gamma=1, beta=0); the ResNet's zero-initialised
last gamma is a constructor option of the model. Biases start at zero under every scheme but
`default`, which keeps PyTorch's own init untouched (the baseline the scale multiplies).
"""

from __future__ import annotations

import torch
from torch import nn

from bnexp.config import Activation, InitConfig, InitScheme

GAIN_NAME = {Activation.relu: "relu", Activation.sigmoid: "sigmoid", Activation.tanh: "tanh"}


def _init_weight(w: torch.Tensor, cfg: InitConfig, act: Activation) -> None:
    nonlinearity = GAIN_NAME[act]
    gain = nn.init.calculate_gain(nonlinearity)
    mode = cfg.mode.value
    match cfg.scheme:
        case InitScheme.kaiming_normal:
            nn.init.kaiming_normal_(w, mode=mode, nonlinearity=nonlinearity)
        case InitScheme.kaiming_uniform:
            nn.init.kaiming_uniform_(w, mode=mode, nonlinearity=nonlinearity)
        case InitScheme.xavier_normal:
            nn.init.xavier_normal_(w, gain=gain)
        case InitScheme.xavier_uniform:
            nn.init.xavier_uniform_(w, gain=gain)
        case InitScheme.orthogonal:
            nn.init.orthogonal_(w, gain=gain)
        case InitScheme.normal:
            nn.init.normal_(w, std=cfg.std)


@torch.no_grad()
def apply(model: nn.Module, cfg: InitConfig, act: Activation) -> None:
    """Re-initialise every conv/linear weight by `cfg.scheme`, then multiply it by `cfg.scale`.

    The classifier is treated like any other layer, with a linear gain, so that the init-scale
    sweeps scale the whole net.
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for i, m in enumerate(layers):
        last = i == len(layers) - 1
        if cfg.scheme is not InitScheme.default:
            # The classifier feeds no nonlinearity: relu's sqrt(2) gain would be wrong there,
            # and sigmoid's gain of 1 is the linear one.
            _init_weight(m.weight, cfg, Activation.sigmoid if last else act)
            if m.bias is not None:
                m.bias.zero_()
        m.weight.mul_(cfg.scale)
