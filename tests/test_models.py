"""Every preset builds the net it describes: norms where asked, conv biases only where no norm
follows, Conv -> Norm -> Act -> Dropout order, and the published ResNet-20 size."""

import json

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bnexp import models, norms
from bnexp.config import Activation, Arch, ModelConfig, Norm
from tests.conftest import MODEL_PRESETS, make_config

NORM_CLASS = {Norm.batch: norms.BatchNorm,
              Norm.noisy_batch: norms.NoisyBatchNorm, Norm.group: norms.GroupNorm, Norm.layer: norms.LayerNorm,
              Norm.instance: norms.InstanceNorm, Norm.ghost_batch: norms.GhostBatchNorm,
              Norm.frozen_batch: norms.FrozenBatchNorm}


def preset(name: str) -> ModelConfig:
    return OmegaConf.to_object(make_config(f"model={name}")).model


@pytest.mark.parametrize("name", MODEL_PRESETS)
def test_every_preset_builds_and_classifies(name):
    m = preset(name)
    net = models.build(m, num_classes=10)
    net.train()
    y = net(torch.randn(32, 3, 32, 32))
    assert y.shape == (32, 10) and torch.isfinite(y).all()
    layers = [mod for mod in net.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    found = {type(mod) for mod in net.modules() if isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm))}
    if m.norm is Norm.none:
        assert not found and all(mod.bias is not None for mod in layers)
    else:
        assert found == {NORM_CLASS[m.norm]}
        normed = [mod for mod in layers[:-1]]  # every layer but the classifier is followed by a norm
        assert all(mod.bias is None for mod in normed) and layers[-1].bias is not None


def test_units_are_conv_norm_act_dropout_in_that_order():
    net = models.build(ModelConfig(norm=Norm.batch, dropout=0.3, activation=Activation.tanh), 10)
    unit = net[0]
    assert [type(mod) for mod in unit] == [nn.Conv2d, norms.BatchNorm, nn.Tanh, nn.Dropout]
    assert unit.drop.p == 0.3


@pytest.mark.parametrize("depth,per_stage", [(3, [1, 1, 1]), (9, [3, 3, 3]), (10, [4, 3, 3])])
def test_cnn_depth_counts_conv_layers_over_three_stages(depth, per_stage):
    net = models.build(ModelConfig(depth=depth, width=8), 10)
    convs = [mod for mod in net.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == depth
    widths = [c.out_channels for c in convs]
    assert [widths.count(w) for w in (8, 16, 32)] == per_stage


def test_resnet20_has_the_published_size():
    net = models.build(ModelConfig(arch=Arch.resnet, depth=20, width=16, norm=Norm.batch), 10)
    n = sum(p.numel() for p in net.parameters())
    assert 0.26e6 < n < 0.28e6  # He et al. 2016, Table 6: 0.27M
    convs = [mod for mod in net.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 19  # + the classifier = 20 weight layers


def test_zero_init_residual_starts_each_block_as_identity():
    net = models.build(ModelConfig(arch=Arch.resnet, depth=20, width=16, norm=Norm.batch), 10,
                       zero_init_residual=True)
    blocks = [mod for mod in net.modules() if isinstance(mod, models.BasicBlock)]
    assert len(blocks) == 9 and all(b.norm2.weight.abs().sum() == 0 for b in blocks)
    assert all(b.unit1.norm.weight.eq(1).all() for b in blocks)


@pytest.mark.parametrize("depth,convs", [(11, 8), (16, 13)])
def test_vgg_depth_counts_weight_layers(depth, convs):
    net = models.build(ModelConfig(arch=Arch.vgg, depth=depth, width=4, norm=Norm.group, groups=4), 10)
    assert sum(isinstance(mod, nn.Conv2d) for mod in net.modules()) == convs


def test_mlp_is_the_ioffe_szegedy_net():
    net = models.build(preset("fc_sigmoid_bn"), 10)
    linears = [mod for mod in net.modules() if isinstance(mod, nn.Linear)]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(3072, 100), (100, 100), (100, 100), (100, 10)]
    assert sum(isinstance(mod, nn.Sigmoid) for mod in net.modules()) == 3


def test_weight_layers_are_named_in_depth_order():
    names = list(models.weight_layers(models.build(ModelConfig(depth=3), 10)))
    assert names == ["0.conv", "2.conv", "4.conv", "5.fc"]


def test_head_dropout_sits_before_the_classifier_and_keeps_its_name():
    for arch, depth in ((Arch.cnn, 3), (Arch.mlp, 2), (Arch.resnet, 8), (Arch.vgg, 11)):
        net = models.build(ModelConfig(arch=arch, depth=depth, width=8, head_dropout=0.5), 10)
        names = [n for n, _ in net[-1].named_children()]
        assert names[-2:] == ["head_drop", "fc"] and net[-1].head_drop.p == 0.5, (arch, names)
        assert "fc" in {n.split(".")[-1] for n in models.weight_layers(net)}
    assert not any(isinstance(m, nn.Dropout) for m in models.build(ModelConfig(depth=3, width=8), 10).modules())


def test_weight_standardization_standardises_every_conv_in_the_forward_and_keeps_the_parameters():
    """model.weight_standardization: each conv computes with its weight at zero mean and unit
    variance per output channel (Qiao et al. 2019), its parameter unchanged in name and value (so
    init, weight decay and per-layer gradient norms see the same weights); the classifier is not
    standardised; off, the net is the plain one."""
    torch.manual_seed(0)
    ws = models.build(ModelConfig(norm=Norm.group, weight_standardization=True), num_classes=10)
    plain = models.build(ModelConfig(norm=Norm.group), num_classes=10)
    convs = [m for m in ws.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, norms.StandardizedConv2d) for m in convs)
    assert not any(isinstance(m, norms.StandardizedConv2d) for m in plain.modules())
    assert [n for n, _ in ws.named_parameters()] == [n for n, _ in plain.named_parameters()]
    conv = convs[1]
    with torch.no_grad():
        conv.weight.mul_(3.0).add_(0.5)  # far from standardised
    w = conv.standardized()
    assert torch.allclose(w.mean(dim=(1, 2, 3)), torch.zeros(w.shape[0]), atol=1e-5)
    assert torch.allclose(w.var(dim=(1, 2, 3), unbiased=False), torch.ones(w.shape[0]), atol=1e-2)  # eps 1e-5
    x = torch.randn(2, conv.in_channels, 8, 8)
    want = nn.functional.conv2d(x, w, conv.bias, conv.stride, conv.padding)
    assert torch.allclose(conv(x), want, atol=1e-5)
    # the forward of a standardised conv does not depend on the weight's scale or offset
    with torch.no_grad():
        before = conv(x)
        conv.weight.mul_(7.0).add_(-2.0)
    assert torch.allclose(conv(x), before, rtol=2e-3, atol=1e-3)  # up to eps
    loss = ws(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    assert all(m.weight.grad is not None and torch.isfinite(m.weight.grad).all() for m in convs)


def test_weight_standardization_off_leaves_every_run_key_as_it_was():
    """The option came after run keys existed: at its default it is left out of the key."""
    from bnexp import records

    cfg = make_config("model=gn")
    on = make_config("model=gn_ws")
    assert records.run_key(cfg) == records.run_key(make_config("model=gn", "model.weight_standardization=false"))
    assert records.run_key(on) != records.run_key(cfg)
    assert "weight_standardization" not in json.dumps(records.KEY_NEUTRAL) or \
        records.KEY_NEUTRAL["model.weight_standardization"] is False
