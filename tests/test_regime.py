"""Rows of a sweep made in the regime its profile describes now (bnexp/regime.py): what the pilot of
a version reads, so that a sweep rerun after its budget changed is not averaged with its old runs."""

import pandas as pd

from bnexp import regime


def _row(experiment: str, **values) -> dict:
    base = {"experiment": experiment, "arch": "cnn", "depth": 6, "width": 16, "activation": "relu",
            "batch_size": 128, "subset": 3000, "dataset": "cifar10", "init_scheme": "kaiming_normal",
            "init_scale": 1.0}
    return base | values


def test_an_earlier_budget_is_left_out_and_what_the_sweep_varies_is_kept():
    """lr_tolerance's pilot at quick: plain, 8 epochs (the profile now), any lr (its bisection's key)."""
    rows = pd.DataFrame([_row("lr_tolerance/pilot", norm="none", epochs_planned=8, lr=0.01),
                         _row("lr_tolerance/pilot", norm="none", epochs_planned=8, lr=0.3),
                         _row("lr_tolerance/pilot", norm="none", epochs_planned=4, lr=0.01),  # before the change
                         _row("lr_tolerance/pilot", norm="batch", epochs_planned=8, lr=0.01)])  # not this sweep's net
    kept, stale = regime.current(rows, "quick")
    assert stale == 2 and list(kept.index) == [0, 1]


def test_a_swept_config_group_varies_every_column_its_options_set():
    """convergence's tuning sweep: arm plain,bn sets model.norm both ways, so norm is not fixed; its
    lr grid varies lr; the epochs are fixed by the profile."""
    fixed = regime.fixed_values("convergence/tune", "quick")
    assert "norm" not in fixed and "lr" not in fixed and fixed["epochs_planned"] == 6
    rows = pd.DataFrame([_row("convergence/tune", norm=n, lr=lr, epochs_planned=6)
                         for n in ("none", "batch") for lr in (0.01, 1.0)])
    assert regime.current(rows, "quick")[1] == 0


def test_a_group_swept_over_a_profile_list_varies_everything_under_it():
    """init_insensitivity's pilot sweeps `init: ${profile...schemes}`: no init column is fixed."""
    fixed = regime.fixed_values("init_insensitivity/pilot", "quick")
    assert not {"init_scheme", "init_scale"} & set(fixed) and fixed["norm"] == "none"
