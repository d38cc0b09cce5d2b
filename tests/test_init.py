"""Init schemes give the variances they promise; the scale multiplies on top of any scheme."""

import math

import pytest
import torch
from torch import nn

from bnexp import init, models
from bnexp.config import Activation, FanMode, InitConfig, InitScheme, ModelConfig, Norm


def big_net(norm=Norm.none):
    return models.build(ModelConfig(depth=3, width=64, norm=norm), 10)


@pytest.mark.parametrize("scheme,expected_std", [
    (InitScheme.kaiming_normal, lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
    (InitScheme.kaiming_uniform, lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
    (InitScheme.xavier_normal, lambda fan_in, fan_out: math.sqrt(2) * math.sqrt(2 / (fan_in + fan_out))),
    (InitScheme.orthogonal, None),
    (InitScheme.normal, lambda fan_in, fan_out: 0.01),
])
def test_scheme_sets_the_promised_weight_std(scheme, expected_std):
    torch.manual_seed(0)
    net = big_net()
    init.apply(net, InitConfig(scheme=scheme, std=0.01), Activation.relu)
    conv = net[2].conv  # 64 -> 128 channels, 3x3
    fan_in, fan_out = 64 * 9, 128 * 9
    if expected_std is None:  # orthogonal: rows of the flattened weight orthogonal, norm = gain
        w = conv.weight.reshape(128, -1)
        assert torch.allclose(w @ w.T, 2 * torch.eye(128), atol=1e-4)
    else:
        assert conv.weight.std().item() == pytest.approx(expected_std(fan_in, fan_out), rel=0.03)
    assert conv.bias.abs().sum() == 0


def test_fan_out_mode_uses_the_output_fan():
    torch.manual_seed(0)
    net = big_net()
    init.apply(net, InitConfig(mode=FanMode.fan_out), Activation.relu)
    assert net[2].conv.weight.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.03)


def test_scale_multiplies_every_weight_after_the_scheme():
    torch.manual_seed(0)
    a = big_net()
    init.apply(a, InitConfig(), Activation.relu)
    torch.manual_seed(0)
    b = big_net()
    init.apply(b, InitConfig(scale=0.1), Activation.relu)
    for (name, wa), wb in zip(models.weight_layers(a).items(), models.weight_layers(b).values(), strict=True):
        assert torch.allclose(wb, 0.1 * wa), name


def test_default_scheme_keeps_pytorch_init_and_norms_start_at_identity():
    torch.manual_seed(0)
    a = big_net(Norm.batch)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    init.apply(a, InitConfig(scheme=InitScheme.default), Activation.relu)
    for k, v in a.state_dict().items():
        assert torch.equal(v, before[k]), k
    bn = a[0].norm
    assert bn.weight.eq(1).all() and bn.bias.eq(0).all()


def test_classifier_gets_a_linear_gain():
    torch.manual_seed(0)
    net = big_net()
    init.apply(net, InitConfig(), Activation.relu)
    fc = net[-1].fc
    assert isinstance(fc, nn.Linear)
    assert fc.weight.std().item() == pytest.approx(math.sqrt(1 / 256), rel=0.05)
