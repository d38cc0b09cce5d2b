"""The claim-specific measurements: landscape probes equal a direct computation and leave
training untouched; pre-activation percentiles; evaluation every few steps."""

import copy

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from bnexp import models, probes, records
from bnexp.config import ModelConfig, Norm
from tests.test_train import train


def test_landscape_probe_matches_moving_a_copy_of_the_model():
    torch.manual_seed(0)
    net = models.build(ModelConfig(depth=3, width=4, norm=Norm.batch), 10).train()
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    F.cross_entropy(net(x), y).backward()
    buffers = {k: v.clone() for k, v in net.state_dict().items()}
    etas = [0.1, 0.5, 2.0]
    got = probes.landscape(net, x, y, etas)
    assert all(torch.equal(v, buffers[k]) for k, v in net.state_dict().items())  # BN stats untouched

    g = {n: p.grad.clone() for n, p in net.named_parameters()}
    g_norm = torch.sqrt(sum((v**2).sum() for v in g.values()))
    losses, changes = [], []
    for eta in etas:
        moved = copy.deepcopy(net)
        with torch.no_grad():
            for n, p in moved.named_parameters():
                p.sub_(eta * g[n])
        moved.zero_grad()
        loss = F.cross_entropy(moved(x), y)
        loss.backward()
        losses.append(loss.item())
        changes.append(torch.sqrt(sum(((p.grad - g[n]) ** 2).sum() for n, p in moved.named_parameters())).item())
    assert abs(got["landscape/loss_range"].item() - (max(losses) - min(losses))) < 1e-5
    assert abs(got["landscape/grad_change"].item() - max(changes)) < 1e-4 * max(changes)
    expected_beta = max(c / (e * g_norm.item()) for c, e in zip(changes, etas, strict=True))
    assert abs(got["landscape/beta"].item() - expected_beta) < 1e-4 * expected_beta


def test_unit_percentiles():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    got = probes.unit_percentiles(x, 1).numpy()
    expected = np.percentile(x[:, 1].numpy().reshape(-1), [15, 50, 85])
    assert np.allclose(got, expected)


def test_probes_do_not_change_the_training_trajectory(tmp_path, real_data):
    args = ("model=bn_dropout", "train.max_steps=4", "train.log_every=1")
    _, plain = train(tmp_path / "a", real_data, *args)
    _, probed = train(tmp_path / "b", real_data, *args, "train.landscape_every=2", "train.probe_layer=last")
    a, b = records.read_metrics(plain), records.read_metrics(probed)
    shared = a["name"].unique()
    pd.testing.assert_frame_equal(a, b[b["name"].isin(shared)].reset_index(drop=True))
    wide = records.metrics_wide(b)
    land = wide.dropna(subset=["landscape/beta"])
    assert list(land["step"]) == [0, 2] and (land["landscape/loss_range"] >= 0).all()
    pre = wide.dropna(subset=["preact/p50"])
    assert len(pre) == 4
    assert (pre["preact/p15"] <= pre["preact/p50"]).all() and (pre["preact/p50"] <= pre["preact/p85"]).all()


def test_evaluation_every_few_steps_for_time_to_accuracy(tmp_path, real_data):
    summary, run_dir = train(tmp_path, real_data, "model=bn", "train.max_steps=6", "train.eval_every_steps=2")
    evals = records.metrics_wide(records.read_metrics(run_dir)).dropna(subset=["test/acc"])
    assert list(evals["step"]) == [2, 4, 6]
    assert summary["best_test_acc"] == evals["test/acc"].max()


def test_drift_is_the_median_shift_of_every_unit_in_units_of_its_initial_spread():
    ref = probes.all_unit_percentiles(torch.randn(64, 5, 4, 4, generator=torch.Generator().manual_seed(0)))
    assert ref.shape == (3, 5) and float(probes.drift(ref, ref)) == 0.0
    moved = ref.clone()
    moved[1] += 2 * (ref[2] - ref[0])  # every median moves by twice its unit's 15-85 spread
    assert abs(float(probes.drift(moved, ref)) - 2.0) < 1e-5


def test_a_landscape_probe_draws_the_noise_once_for_all_its_step_sizes():
    torch.manual_seed(0)
    net = models.build(ModelConfig(depth=3, width=4, norm=Norm.noisy_batch), 10).train()
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    F.cross_entropy(net(x), y).backward()
    state = torch.get_rng_state()
    got = probes.landscape(net, x, y, [1e-12, 1e-12])
    # two equal (vanishing) steps: the same noise gives the same loss, so the range is zero
    assert float(got["landscape/loss_range"]) < 1e-6
    assert torch.equal(torch.get_rng_state(), state)  # training's random stream is untouched
