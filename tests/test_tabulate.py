"""bnexp-table: any folder of records -> runs.csv with the swept keys, a pivot over seeds with
intervals, a sweep figure and one run's curves; refusals in one line."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from bnexp import tabulate
from tests.conftest import SHRINK

pytestmark = pytest.mark.slow  # one real ad-hoc sweep of 4 runs for the module, about 40 s: make test-slow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, real_data):
    """An ad-hoc sweep: plain and BN, two seeds, two steps each."""
    root = tmp_path_factory.mktemp("tab")
    env = os.environ | {"BNEXP_DATA": str(real_data)}
    r = subprocess.run([sys.executable, "-m", "bnexp.cli", "-m", "model=plain,bn", "seed=0,1", *SHRINK,
                        "train.max_steps=2", "train.eval_every_steps=1", "results=res", "name=mine"],
                       capture_output=True, text=True, env=env, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr
    return root / "res" / "runs" / "multirun" / "mine"


def _table(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bnexp.tabulate", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_a_sweep_folder_becomes_a_table_of_its_swept_keys_and_a_pivot_over_seeds(sweep):
    run = next(d for d in sweep.iterdir() if d.is_dir())
    r = _table(sweep, "--run", run)
    assert r.returncode == 0, r.stderr
    runs = pd.read_csv(sweep / "table" / "runs.csv")
    assert len(runs) == 4 and set(runs["seed"]) == {0, 1}
    assert "model.norm" in runs and set(runs["model.norm"]) == {"none", "batch"}
    assert "optim.lr" not in runs  # not swept: left out
    pivot = pd.read_csv(sweep / "table" / "pivot.csv")
    assert sorted(pivot["model.norm"]) == ["batch", "none"] and (pivot["seeds"] == 2).all()
    for _, row in pivot.iterrows():
        own = runs[runs["model.norm"] == row["model.norm"]]["test_acc"]
        assert row["test_acc_mean"] == pytest.approx(own.mean())
        assert row["ci_low"] <= row["test_acc_mean"] <= row["ci_high"]
    for name in ("sweep.png", f"run-{run.name}.png"):
        assert (sweep / "table" / name).stat().st_size > 10_000
    assert "swept: choice_model, model.norm" in r.stderr


def test_the_sweep_figure_takes_its_axis_and_lines_from_the_swept_keys(sweep):
    t = tabulate.table(sweep)
    fig = tabulate.plot_sweep(t, "test_acc", x="model.norm", hue=None)
    assert fig.axes[0].get_xlabel() == "model.norm" and "2 seeds" in fig.axes[0].get_title()
    pv = tabulate.pivot(t, "train_s")
    assert set(pv.columns) >= {"runs", "seeds", "train_s_mean", "ci_low", "ci_high"}


@pytest.mark.parametrize("args,words", [
    (("{empty}",), "holds no complete run record"),
    (("{sweep}", "--metric", "nope"), "--metric nope is not a column"),
    (("{sweep}", "--x", "optim.lr"), "optim.lr does not differ between these runs"),
    (("{sweep}", "--run", "{empty}"), "is not a complete run record"),
])
def test_bad_input_is_one_line_and_writes_nothing(sweep, tmp_path, args, words):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    r = _table(*[a.format(empty=empty, sweep=sweep) for a in args], "--out", out)
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()
