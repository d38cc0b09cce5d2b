"""Schedules have the shapes their names promise; weight decay skips norms and biases."""

import itertools

import pytest
import torch

from bnexp import models, optim
from bnexp.config import ModelConfig, Norm, OptimConfig, Optimizer, Schedule, ScheduleConfig


def lrs(cfg: ScheduleConfig, total: int = 100) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0, momentum=0.9)
    sched = optim.scheduler(opt, cfg, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant_and_step():
    assert set(lrs(ScheduleConfig(name=Schedule.constant))) == {1.0}
    s = lrs(ScheduleConfig(name=Schedule.step, milestones=[0.5, 0.75], gamma=0.1))
    assert s[49] == 1.0 and s[50] == pytest.approx(0.1) and s[75] == pytest.approx(0.01)


def test_cosine_falls_from_peak_to_floor():
    s = lrs(ScheduleConfig(name=Schedule.cosine, final_lr_frac=0.1))
    assert s[0] == 1.0 and s[50] == pytest.approx(0.55, abs=0.02) and s[-1] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in itertools.pairwise(s))


def test_warmup_linear_rises_then_decays_linearly():
    s = lrs(ScheduleConfig(name=Schedule.warmup_linear, warmup=0.1))
    assert s[0] == pytest.approx(0.1) and s[9] == pytest.approx(1.0)
    assert s[10] == pytest.approx(1.0) and s[55] == pytest.approx(0.5) and s[-1] == pytest.approx(1 / 90)


def test_warmup_applies_to_any_schedule():
    s = lrs(ScheduleConfig(name=Schedule.constant, warmup=0.2))
    assert s[0] == pytest.approx(0.05) and s[19] == 1.0 and s[-1] == 1.0


def test_onecycle_peaks_at_pct_start():
    s = lrs(ScheduleConfig(name=Schedule.onecycle, pct_start=0.25))
    assert max(range(100), key=s.__getitem__) in (24, 25) and s[0] < 0.1 and s[-1] < 1e-3


def test_lr_scales_linearly_with_batch_when_given_per_reference_batch():
    assert optim.peak_lr(OptimConfig(lr=0.1, lr_reference_batch=32), 8) == pytest.approx(0.025)
    assert optim.peak_lr(OptimConfig(lr=0.1), 8) == 0.1


@pytest.mark.parametrize("exempt", [True, False])
def test_weight_decay_skips_norm_parameters_and_biases_when_exempt(exempt):
    net = models.build(ModelConfig(depth=3, width=4, norm=Norm.batch), 10)
    opt = optim.optimizer(net, OptimConfig(weight_decay=1e-3, wd_exempt_norm_bias=exempt), 0.1)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    bn = net[0].norm
    assert (id(bn.weight) in decayed) is (not exempt)
    assert id(net[0].conv.weight) in decayed
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))


@pytest.mark.parametrize("name,cls", [(Optimizer.sgd, torch.optim.SGD), (Optimizer.adam, torch.optim.Adam),
                                      (Optimizer.adamw, torch.optim.AdamW)])
def test_optimizer_kinds(name, cls):
    net = models.build(ModelConfig(depth=3, width=4), 10)
    assert isinstance(optim.optimizer(net, OptimConfig(name=name), 0.1), cls)
