"""The speed settings a GPU user switches on, checked on the CPU: bf16 autocast trains and says so,
a compiled step computes what the eager one does, and a precision change is a different run."""

import json
import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from bnexp import optim, records
from bnexp.data import Data
from bnexp.run.train import build, train_step
from tests.conftest import ROOT, SHRINK, make_config


@pytest.mark.slow  # a real sweep or several runs, 10-30 s here: make test-slow (CI runs it)
def test_a_bf16_run_trains_and_its_record_says_bf16(tmp_path, real_data):
    run_dir = tmp_path / "run"
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    r = subprocess.run([sys.executable, "-m", "bnexp.cli", f"hydra.run.dir={run_dir}", "model=bn", "model.width=8",
                        *SHRINK, "train.epochs=3", "train.precision=bf16"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((run_dir / records.SUMMARY).read_text())
    assert summary["speed"] == {"precision": "bf16", "tf32": False, "compile": None, "cudnn_benchmark": False,
                                "jobs_per_device": 1, "memory_fraction": None}
    loss = records.read_metrics(run_dir).query("name == 'train/loss'")["value"].tolist()
    assert loss[-1] < loss[0] - 0.05, loss  # learning happened in bfloat16
    assert OmegaConf.load(run_dir / records.CONFIG).train.precision == "bf16"


def _steps(model, data, cfg, n: int) -> list[float]:
    opt = optim.optimizer(model, cfg.optim, cfg.optim.lr)
    gen = torch.Generator().manual_seed(0)
    out = []
    for step, (x, y) in enumerate(data.train_batches(cfg.train.batch_size, gen)):
        out.append(float(train_step(model, opt, x, y).loss))
        if step + 1 == n:
            return out
    return out


@pytest.mark.slow  # about 40 s of inductor code generation on 2 cores
def test_a_compiled_step_gives_the_eager_loss(real_data):
    cfg = OmegaConf.to_object(make_config(f"dataset.root={real_data}", "model=bn", "model.width=8", "model.depth=3",
                                          *SHRINK, "train.channels_last=false"))
    data = Data(cfg.dataset, torch.device("cpu"))
    torch.manual_seed(0)
    eager = build(cfg, data.classes)
    compiled = build(cfg, data.classes)
    compiled.load_state_dict(eager.state_dict())
    a = _steps(eager, data, cfg, 4)
    b = _steps(torch.compile(compiled), data, cfg, 4)
    print(f"\neager loss {a}\ncompiled loss {b}")
    assert b == pytest.approx(a, rel=1e-4, abs=1e-5)  # fused kernels reorder float sums: not bit for bit


def test_precision_is_part_of_the_run_key_and_a_label_is_not():
    base = make_config("model=bn")
    key = records.run_key(base)
    assert records.run_key(make_config("model=bn", "name=another-label")) == key
    assert records.run_key(make_config("model=bn", "train.precision=bf16")) != key
    assert records.run_key(make_config("model=bn", "train.compile=true")) != key
    assert records.run_key(make_config("model=bn", "train.cudnn_benchmark=false")) == key  # speed only
    assert records.run_key(make_config("model=bn", "train.jobs_per_device=4")) == key  # sharing a GPU: speed only
    assert records.run_key(make_config("model=bn", "train.precision=fp32")) == key  # the default: as before


def test_tf32_on_a_cpu_is_refused_in_one_line(tmp_path, real_data):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    r = subprocess.run([sys.executable, "-m", "bnexp.cli", f"hydra.run.dir={tmp_path / 'run'}", "device=cpu",
                        *SHRINK, "train.precision=tf32"], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "bnexp-train: error: train.precision: tf32 is a CUDA matmul and convolution mode; on cpu use fp32 or bf16"]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # a compiled run through the trainer: about 1 min of compilation on 2 cores
def test_a_compiled_run_through_the_trainer_matches_the_eager_run(tmp_path, real_data):
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    common = ["model=bn", "model.width=8", "model.depth=3", *SHRINK, "train.max_steps=6", "train.log_every=1",
              "train.channels_last=false"]
    for name, extra in (("eager", []), ("compiled", ["train.compile=true"])):
        r = subprocess.run([sys.executable, "-m", "bnexp.cli", f"hydra.run.dir={tmp_path / name}", *common, *extra],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    a, b = (records.read_summary(tmp_path / n) for n in ("eager", "compiled"))
    assert b["speed"]["compile"] == "default" and a["speed"]["compile"] is None and a["run_key"] != b["run_key"]
    loss = {n: records.read_metrics(tmp_path / n).query("name == 'train/loss'")["value"].tolist()
            for n in ("eager", "compiled")}
    assert loss["compiled"] == pytest.approx(loss["eager"], rel=1e-3), loss
