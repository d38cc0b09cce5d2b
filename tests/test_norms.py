"""The exact properties of CLAIMS.md (scale_invariance, eval_semantics, bias_redundancy,
gn_special_cases) and the semantics of bnexp's own norm layers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnexp import exact
from bnexp.norms import (
    BatchNorm,
    FrozenBatchNorm,
    GhostBatchNorm,
    GroupNorm,
    batch_statistics,
    calibrate,
)


def rand(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- the exact claims, measured by bnexp.exact (the report prints the same numbers) ----------

def test_scale_invariance_bn_output_ignores_weight_scale_and_grad_scales_by_one_over_a():
    err = exact.scale_invariance()
    assert err["output_abs_err"] <= 1e-10 and err["grad_rel_err"] <= 1e-10


def test_eval_semantics_batch_stats_in_training_running_stats_in_eval():
    err = exact.running_statistics()
    assert max(err.values()) <= 1e-12, err


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("conv_bias", [False, True])
def test_eval_semantics_folding_bn_into_the_conv_is_exact(dtype, tol, conv_bias):
    assert exact.fold_error(dtype, conv_bias) <= tol


def test_bias_redundancy_conv_bias_before_bn_is_cancelled():
    err = exact.bias_redundancy()
    assert err["output_err"] <= 1e-10 and err["bias_grad"] <= 1e-10


def test_gn_special_cases_layer_and_instance_norm():
    err = exact.gn_special_cases()
    assert err["layer_norm_err"] <= 1e-6 and err["instance_norm_err"] <= 1e-6
    assert err["group_norm_g3_is_neither"] > 0.1  # the comparison can tell norms apart


def test_batch_statistics_mode_normalises_by_the_batch_and_leaves_buffers_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), BatchNorm(4), nn.Dropout(0.5)).double()
    model(rand(8, 3, 6, 6))
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    x = rand(8, 3, 6, 6, seed=3)
    with batch_statistics(model):
        y = model(x)
        assert not model[2].training  # dropout off
    z = model[0](x)
    expected = F.batch_norm(z, None, None, model[1].weight, model[1].bias, True, 0.0, model[1].eps)
    assert torch.allclose(y, expected, atol=1e-12)
    for k, v in model.state_dict().items():
        assert torch.equal(v, buffers[k]), k
    assert model.training and model[1].track_running_stats


# --- group norm ----------------------------------------------------------------------------

def _random_affine(m: nn.Module, seed: int) -> None:
    with torch.no_grad():
        m.weight.copy_(rand(*m.weight.shape, dtype=m.weight.dtype, seed=seed))
        m.bias.copy_(rand(*m.bias.shape, dtype=m.bias.dtype, seed=seed + 1))


def test_group_norm_normalises_within_each_group():
    x = rand(2, 8, 4, 4) * 5 + 3
    y = GroupNorm(8, groups=4).double()(x).reshape(2, 4, -1)
    assert torch.allclose(y.mean(-1), torch.zeros(2, 4, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(y.var(-1, unbiased=False), torch.ones(2, 4, dtype=torch.float64), atol=1e-4)


# --- ghost and frozen BN ----------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(16, 4, 5, 5), (16, 7)])
def test_ghost_bn_with_one_virtual_batch_is_bn(shape):
    x = rand(*shape).requires_grad_(True)
    ghost, bn = GhostBatchNorm(shape[1], virtual_batch=16).double(), BatchNorm(shape[1]).double()
    _random_affine(ghost, 1)
    bn.load_state_dict(ghost.state_dict())
    y1, y2 = ghost(x), bn(x)
    assert torch.allclose(y1, y2, atol=1e-12)
    g1 = torch.autograd.grad((y1 * rand(*shape, seed=5)).sum(), x)[0]
    g2 = torch.autograd.grad((y2 * rand(*shape, seed=5)).sum(), x)[0]
    assert torch.allclose(g1, g2, atol=1e-10)
    for k, v in bn.state_dict().items():
        assert torch.allclose(ghost.state_dict()[k].double(), v.double(), atol=1e-12), k


def test_ghost_bn_normalises_each_virtual_batch_on_its_own():
    x = rand(12, 3, 4, 4)
    x[4:8] += 10  # a virtual batch with a very different mean
    ghost = GhostBatchNorm(3, virtual_batch=4).double()
    y = ghost(x)
    chunks, running = [], []
    for part in x.split(4):
        bn = BatchNorm(3).double()
        chunks.append(bn(part))
        running.append((bn.running_mean, bn.running_var))
    assert torch.allclose(y, torch.cat(chunks), atol=1e-12)
    # Running statistics: the virtual batches' updates averaged.
    assert torch.allclose(ghost.running_mean, torch.stack([r[0] for r in running]).mean(0), atol=1e-12)
    assert torch.allclose(ghost.running_var, torch.stack([r[1] for r in running]).mean(0), atol=1e-12)


def test_ghost_bn_rejects_a_batch_that_is_not_a_multiple():
    with pytest.raises(ValueError, match="virtual_batch=4"):
        GhostBatchNorm(3, virtual_batch=4)(torch.randn(6, 3, 2, 2))


def test_frozen_bn_normalises_with_calibrated_running_statistics_in_training():
    model = nn.Sequential(FrozenBatchNorm(3)).double().train()
    batches = [rand(8, 3, 4, 4, seed=s) * 2 + 1 for s in range(4)]
    assert calibrate(model, iter(batches)) == 4
    bn = model[0]
    every = torch.cat(batches)
    assert torch.allclose(bn.running_mean, every.mean((0, 2, 3)), atol=1e-12)  # equal-size batches
    rm, rv = bn.running_mean.clone(), bn.running_var.clone()
    x = rand(8, 3, 4, 4, seed=11) * 5
    y = model(x)  # training mode
    assert torch.allclose(y, (x - rm[:, None, None]) / torch.sqrt(rv[:, None, None] + bn.eps), atol=1e-12)
    assert torch.equal(bn.running_mean, rm) and bn.momentum == 0.1 and not bn.calibrating


def test_calibrate_is_a_no_op_without_frozen_bn():
    model = nn.Sequential(BatchNorm(3))
    assert calibrate(model, iter([torch.randn(4, 3, 2, 2)])) == 0
    assert model[0].num_batches_tracked.item() == 0


def test_noisy_bn_moves_the_output_distribution_every_step_in_training_only():
    from bnexp.norms import NoisyBatchNorm

    torch.manual_seed(0)
    noisy = NoisyBatchNorm(4, shift=0.5, scale=1.0).double()
    x = rand(32, 4, 5, 5)
    a, b = noisy(x), noisy(x)
    mean_a, mean_b = a.mean((0, 2, 3)), b.mean((0, 2, 3))
    assert not torch.allclose(mean_a, mean_b)  # a new distribution each step
    assert mean_a.abs().max() <= 0.5 + 1e-9 and (a.std((0, 2, 3)) >= 1 - 1e-2).all()
    noisy.eval()
    bn = BatchNorm(4).double().eval()
    bn.load_state_dict(noisy.state_dict())
    assert torch.equal(noisy(x), bn(x))


# --- Batch Renorm and recalibration ------------------------------------------------------------

def _renorm(limits_open: bool, virtual: int = 4):
    from bnexp.norms import BatchRenorm

    m = BatchRenorm(3, virtual, r_max=3.0, d_max=5.0, warmup=0 if limits_open else 10**6, ramp=0).double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor([1.5, 0.5, 2.0]))
        m.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        m.running_mean.copy_(torch.tensor([0.5, -1.0, 0.0]))
        m.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
    return m


def test_batch_renorm_before_its_clips_open_is_ghost_bn_forward_and_backward():
    x = rand(8, 3, 5, 5).requires_grad_()
    renorm, ghost = _renorm(limits_open=False), GhostBatchNorm(3, 4).double()
    ghost.load_state_dict({k: v for k, v in renorm.state_dict().items() if k != "steps"})
    a, b = renorm(x), ghost(x)
    ga, = torch.autograd.grad(a.square().sum(), x)
    gb, = torch.autograd.grad(b.square().sum(), x)
    assert torch.allclose(a, b, atol=1e-12) and torch.allclose(ga, gb, atol=1e-12)
    assert torch.allclose(renorm.running_var, ghost.running_var) and int(renorm.steps) == 1


def test_batch_renorm_corrects_each_virtual_batch_towards_the_running_statistics():
    m = _renorm(limits_open=True)
    x = rand(8, 3, 5, 5) * 3 + 1
    mu, sd = m.running_mean.clone().view(1, 1, 3, 1, 1), torch.sqrt(m.running_var + m.eps).view(1, 1, 3, 1, 1)
    xg = x.view(2, 4, 3, 5, 5)
    var, mean = torch.var_mean(xg, dim=(1, 3, 4), unbiased=False, keepdim=True)
    std = torch.sqrt(var + m.eps)
    r, d = (std / sd).clamp(1 / 3, 3), ((mean - mu) / sd).clamp(-5, 5)
    want = ((xg - mean) / std * r + d).view_as(x) * m.weight.view(1, 3, 1, 1) + m.bias.view(1, 3, 1, 1)
    assert torch.allclose(m(x), want, atol=1e-12)
    # r and d are constants in backprop: the gradient is that of BN scaled by r per virtual batch
    x.requires_grad_()
    g, = torch.autograd.grad((m(x) * rand(8, 3, 5, 5, seed=1)).sum(), x)
    assert torch.isfinite(g).all()


def test_batch_renorm_limits_open_over_the_ramp():
    from bnexp.norms import BatchRenorm

    m = BatchRenorm(2, 2, r_max=3.0, d_max=5.0, warmup=10, ramp=20)
    seen = []
    for t in (0, 10, 20, 30, 100):
        m.steps.fill_(t)
        seen.append(m.limits())
    assert seen == [(1.0, 0.0), (1.0, 0.0), (2.0, 2.5), (3.0, 5.0), (3.0, 5.0)]


def test_recalibrate_sets_the_statistics_the_current_weights_produce():
    from bnexp.norms import NoisyBatchNorm, recalibrate

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), NoisyBatchNorm(4, shift=0.5, scale=1.0), nn.ReLU(), nn.Dropout(0.5),
                        nn.Conv2d(4, 4, 3), BatchNorm(4)).double()
    batches = [rand(6, 3, 9, 9, seed=s) for s in range(3)]
    assert recalibrate(net, iter(batches)) == 3
    assert net.training and net[1].momentum == 0.1 and not net[1].quiet  # everything put back
    # noise-free, dropout off, a cumulative average over the batches: as a direct computation
    with torch.no_grad():
        z = [net[0](b) for b in batches]
        mean = torch.stack([v.mean((0, 2, 3)) for v in z]).mean(0)
        var = torch.stack([v.var((0, 2, 3), unbiased=True) for v in z]).mean(0)
    assert torch.allclose(net[1].running_mean, mean, atol=1e-12)
    assert torch.allclose(net[1].running_var, var, atol=1e-12)


def test_recalibrate_is_a_no_op_without_batch_statistics():
    from bnexp.norms import recalibrate

    net = nn.Sequential(nn.Conv2d(3, 4, 3), GroupNorm(4, 2))
    assert recalibrate(net, iter([rand(2, 3, 8, 8, dtype=torch.float32)])) == 0
