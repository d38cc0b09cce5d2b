"""A run killed with SIGKILL in the middle of an epoch, then rerun, leaves exactly the record
of a run that was never interrupted (CPU, same threads)."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from bnexp import records
from tests.conftest import ROOT

TIMING = {"train_s", "wall_s", "images_per_s", "started", "finished", "attempts", "pid"}  # and the process
# BN with dropout: the model, the optimizer's momentum, the running statistics, the data order,
# the augmentation and the dropout masks all have to come back exactly.
ARGS = ["model=bn_dropout", "dataset.subset=512", "dataset.test_size=500", "train.batch_size=32", "train.epochs=3",
        "train.log_every=3", "train.eval_every_steps=10", "threads=1", "train.checkpoint_minutes=0.0005"]


def _start(run_dir, real_data, *extra):
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    return subprocess.Popen([sys.executable, "-m", "bnexp.cli", f"hydra.run.dir={run_dir}", *ARGS, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _saved_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state"]


def _kill_mid_epoch(proc, ckpt, min_step: int) -> dict:
    """Freeze the run once a checkpoint lies inside an epoch past `min_step`, then SIGKILL it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if ckpt.is_file():
            proc.send_signal(signal.SIGSTOP)
            state = _saved_state(ckpt)
            if state["step"] >= min_step and state["batch"] > 0:
                proc.kill()
                proc.wait()
                return state
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("no checkpoint inside an epoch appeared")


@pytest.mark.slow  # three runs of 48 steps, one killed mid-epoch: about 40 s
def test_sigkill_mid_epoch_then_rerun_gives_the_uninterrupted_record(tmp_path, real_data):
    whole = tmp_path / "whole"
    assert _start(whole, real_data).wait(timeout=300) == 0
    assert not (whole / records.CHECKPOINT).exists()  # removed once the run is complete

    cut = tmp_path / "cut"
    state = _kill_mid_epoch(_start(cut, real_data), cut / records.CHECKPOINT, min_step=20)
    assert 0 < state["batch"] < 16 and state["epoch"] >= 1  # 16 steps an epoch: inside the second
    assert not records.is_complete(cut)
    again = _start(cut, real_data)
    assert again.wait(timeout=300) == 0, again.stderr.read()

    a, b = records.read_summary(whole), records.read_summary(cut)
    assert b["attempts"] == 2 and a["attempts"] == 1
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    pd.testing.assert_frame_equal(records.read_metrics(whole), records.read_metrics(cut), check_exact=True)
    assert json.loads((whole / records.SUMMARY).read_text())["steps"] == 48


@pytest.mark.slow  # a real sweep or several runs, 10-30 s here: make test-slow (CI runs it)
def test_keep_checkpoint_keeps_it(tmp_path, real_data):
    run_dir = tmp_path / "run"
    assert _start(run_dir, real_data, "train.keep_checkpoint=true", "train.epochs=1").wait(timeout=300) == 0
    assert records.is_complete(run_dir) and _saved_state(run_dir / records.CHECKPOINT)["step"] == 16
