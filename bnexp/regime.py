"""Which rows of a sweep were made in the regime the profile now describes.

A tuning or pilot sweep's folder keeps the runs of every regime it was ever run in: when a profile's
budget changes (more epochs after a failed pilot), the old runs stay in the table beside the new
ones, with the same arms, grid values and seeds. A reader that takes the sweep's rows whole would
average the two regimes without a word. `current` keeps the rows whose configuration matches the
sweep composed at the profile now, on every table column the sweep does not itself vary, and
counts the others.
"""

from __future__ import annotations

import functools
import itertools
import math

import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bnexp.config import CONFIGS, register
from bnexp.table import CONFIG_COLUMNS


@functools.cache  # composing is slow, and the configs do not change within a process
def fixed_values(experiment: str, profile: str) -> dict[str, object]:
    """Table column -> the value the sweep gives every run at the profile, for the configuration
    columns it does not vary: a swept value (`optim.lr: 0.1,0.3`, a bisection's key) varies its own
    column; a swept config group (`arm: plain,bn`) varies every column its options set differently,
    found by composing each option. A value that cannot be resolved here (a tuned constant) is left out."""
    register()
    base = [f"experiment={experiment}", f"profile={profile}"]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        sweeper = compose("config", base, return_hydra_config=True).hydra.sweeper
        params = OmegaConf.to_container(sweeper.params, resolve=False) if "params" in sweeper else {}
        varied = {k for k, v in params.items() if "," in str(v) or "${" in str(v)}
        if sweeper.get("key"):
            varied.add(str(sweeper.key))
        # a parameter with one value is what every job gets: composed in, as each job composes it
        fixed = [f"{k}={v}" for k, v in params.items() if k not in varied]
        groups = [[f"{k}={o.strip()}" for o in str(params[k]).split(",")] for k in sorted(varied)
                  if k in params and "." not in k and "${" not in str(params[k])]
        masters = [compose("config", base + fixed + list(choice)) for choice in itertools.product(*groups)]
    out = {}
    for dotted, column in CONFIG_COLUMNS.items():
        # a swept value varies its own column; a group swept over values only a job resolves
        # (`init: ${profile...schemes}`) may vary every column under it
        opaque = [k for k in varied if "." in k or "${" in str(params.get(k, ""))]
        if any(dotted == k or dotted.startswith(f"{k}.") for k in opaque):
            continue
        try:
            values = {str(OmegaConf.select(m, dotted, throw_on_missing=True)) for m in masters}
        except Exception:  # an interpolation that needs what only a run resolves (a tuned value)
            continue
        if len(values) == 1:
            value = OmegaConf.select(masters[0], dotted)
            out[column] = value.value if hasattr(value, "value") else value
    return out


def _same(a, b) -> bool:
    if isinstance(b, bool | int | float) and not isinstance(b, bool):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return str(a) == str(b)


def current(rows: pd.DataFrame, profile: str) -> tuple[pd.DataFrame, int]:
    """The rows made in each of their sweeps' current regime at `profile`, and how many were not."""
    if rows.empty:
        return rows, 0
    keep = pd.Series(True, index=rows.index)
    for experiment, own in rows.groupby("experiment"):
        fixed = fixed_values(str(experiment), profile)
        for column, value in fixed.items():
            if column in own:
                keep.loc[own.index] &= own[column].map(lambda v, want=value: _same(v, want))
    return rows[keep], int((~keep).sum())
