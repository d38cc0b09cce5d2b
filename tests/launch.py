"""Launching a real sweep from a test: `python -m bnexp.cli -m`, run-key folders under the
test's tmp_path, on the real data."""

import os
import subprocess
import sys

from tests.conftest import ROOT

TINY = ["dataset.subset=256", "dataset.test_size=200", "train.batch_size=32", "threads=1"]


def start_sweep(tmp_path, real_data, *args, **kw):
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    return subprocess.Popen([sys.executable, "-m", "bnexp.cli", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                             "hydra.sweep.subdir=${bnexp_run_key:}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, **kw)

