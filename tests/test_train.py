"""Real, short training runs on real CIFAR-10: every preset trains and leaves a complete record,
learning happens, absurd learning rates end `diverged`, and runs are reproducible."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from omegaconf import OmegaConf

from bnexp import records
from bnexp.run.lifecycle import run
from tests.conftest import MODEL_PRESETS, ROOT, SHRINK, make_config

# Wide presets at a quarter width, so that every preset trains in seconds on two cores.
FAST = {"vgg": ["model.width=8"], "resnet20": ["model.width=8"]}


def train(tmp_path, real_data, *overrides):
    run_dir = tmp_path / "run"
    cfg = make_config(f"dataset.root={real_data}", *SHRINK, *overrides)
    return run(cfg, run_dir, list(overrides)), run_dir


@pytest.mark.parametrize("name", MODEL_PRESETS)
def test_every_preset_trains_and_leaves_a_complete_record(tmp_path, real_data, name):
    summary, run_dir = train(tmp_path, real_data, f"model={name}", "train.max_steps=6", *FAST.get(name, []))
    assert summary["status"] == "completed" and summary["steps"] == 6
    assert records.is_complete(run_dir)
    on_disk = records.read_summary(run_dir)
    assert on_disk["test_acc"] == summary["test_acc"] and 0.0 <= on_disk["test_acc"] <= 1.0
    for key in ("status", "test_acc", "best_test_acc", "steps", "epochs", "images_per_s", "wall_s", "seed",
                "overrides", "torch", "device", "git_commit"):
        assert key in on_disk, key
    assert on_disk["overrides"][0] == f"model={name}"
    saved = OmegaConf.to_container(records.read_config(run_dir).model)
    assert saved == OmegaConf.to_container(make_config(f"model={name}", *FAST.get(name, [])).model, enum_to_str=True)
    names = set(records.read_metrics(run_dir)["name"])
    assert {"train/loss", "train/acc", "lr", "grad_norm", "test/loss", "test/acc"} <= names
    assert any(n.startswith("grad_norm/") for n in names) and any(n.startswith("weight_norm/") for n in names)


def test_learning_happens(tmp_path, real_data):
    """BN CNN on 2,000 real images for 4 epochs: the loss falls and accuracy is far above chance."""
    summary, run_dir = train(tmp_path, real_data, "model=bn", "dataset.subset=2000", "train.epochs=4",
                             "train.batch_size=64", "model.width=16", "train.log_every=10")
    m = records.metrics_wide(records.read_metrics(run_dir))
    losses = m["train/loss"].dropna()
    assert summary["status"] == "completed"
    assert losses.iloc[-3:].mean() < 0.8 * losses.iloc[:3].mean()
    assert summary["test_acc"] > 0.30, summary["test_acc"]  # chance is 0.10
    assert m["test/acc"].dropna().size == 4  # one evaluation per epoch


def test_absurd_learning_rate_ends_diverged_not_crashed(tmp_path, real_data):
    summary, run_dir = train(tmp_path, real_data, "model=plain", "optim.lr=1e4", "train.log_every=1",
                             "schedule=constant")
    assert summary["status"] == "diverged" and "train loss" in summary["reason"]
    assert summary["steps"] < 256 // 32
    assert records.read_summary(run_dir)["status"] == "diverged"


def test_same_seed_same_metrics_and_another_seed_differs(tmp_path, real_data):
    args = ("model=bn_dropout", "train.max_steps=5", "train.log_every=1")
    _, a = train(tmp_path / "a", real_data, *args)
    _, b = train(tmp_path / "b", real_data, *args)
    _, c = train(tmp_path / "c", real_data, *args, "seed=1")
    ma, mb, mc = (records.read_metrics(d) for d in (a, b, c))
    pd.testing.assert_frame_equal(ma, mb)
    assert not ma["value"].equals(mc["value"])


def test_eval_with_batch_statistics_and_a_validation_split(tmp_path, real_data):
    summary, run_dir = train(tmp_path, real_data, "model=bn", "train.max_steps=4", "train.eval_batch_stats=true",
                             "dataset.val_size=500")
    names = set(records.read_metrics(run_dir)["name"])
    assert {"test_batchstats/acc", "val/acc", "val/loss"} <= names
    assert summary["val_acc"] is not None and summary["test_batchstats_acc"] is not None


def test_frozen_bn_is_calibrated_before_training(tmp_path, real_data):
    summary, _ = train(tmp_path, real_data, "model=frozen_bn", "model.calibration_batches=3", "train.max_steps=2")
    assert summary["frozen_bn_calibration_batches"] == 3


def test_wandb_offline_mirrors_the_run(tmp_path, real_data, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    summary, run_dir = train(tmp_path, real_data, "model=bn", "train.max_steps=2", "logger=wandb")
    assert summary["status"] == "completed"
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))


@pytest.mark.slow  # a real sweep or several runs, 10-30 s here: make test-slow (CI runs it)
def test_cli_run_and_multirun_write_records_where_hydra_says(tmp_path, real_data):
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    common = [*SHRINK, "train.max_steps=2"]
    single = tmp_path / "single"
    r = subprocess.run([sys.executable, "-m", "bnexp.cli", f"hydra.run.dir={single}", "model=gn", *common],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((single / "summary.json").read_text())["choices"]["model"] == "gn"
    sweep = tmp_path / "sweep"
    r = subprocess.run([sys.executable, "-m", "bnexp.cli", "-m", f"hydra.sweep.dir={sweep}", "model=plain,bn",
                        *common], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    runs = sorted(records.find_runs(sweep))
    assert sorted(records.read_summary(d)["choices"]["model"] for d in runs) == ["bn", "plain"]
    assert all(records.read_summary(d)["run_key"] == d.name for d in runs)  # each job under its run key


@pytest.mark.slow
def test_acceptance_bn_on_10k_images_for_two_epochs(tmp_path, real_data):
    """The README's main job: BN CNN, 10,000 real images, 2 epochs, full test set (~1.5 min)."""
    run_dir = tmp_path / "run"
    cfg = make_config(f"dataset.root={real_data}", "model=bn", "dataset.subset=10000", "train.epochs=2")
    summary = run(cfg, run_dir)
    assert summary["status"] == "completed" and summary["steps"] == 2 * (10000 // 128)
    assert summary["test_acc"] > 0.30, summary["test_acc"]


def test_a_crash_is_recorded_as_failed_and_not_taken_for_a_result(tmp_path, real_data, monkeypatch):
    from bnexp.run import train as train_module

    calls = []
    real_step = train_module.train_step

    def crashing_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tmp_path, real_data, "model=bn", "train.max_steps=5", "train.log_every=1")
    run_dir = tmp_path / "run"
    summary = records.read_summary(run_dir)
    assert summary["status"] == "failed" and "simulated crash" in summary["reason"] and summary["steps"] == 2
    assert records.is_complete(run_dir) and not records.is_done(run_dir)  # a rerun tries it again


def test_unknown_probe_layer_is_a_config_error(tmp_path, real_data):
    from bnexp.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.probe_layer: no activation called 'nope'"):
        train(tmp_path, real_data, "model=bn", "train.probe_layer=nope")
    assert not (tmp_path / "run").exists()
