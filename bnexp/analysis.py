"""Run records under a results folder -> pandas DataFrames, and the statistics over seeds.

`load_runs` gives one row per run: the experiment (the folder under runs/), the summary, the
config-group choices (`model`, `arm`, `init`) and the config values the claims group by.
`load_metrics` gives the logged metrics of chosen runs in long form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bnexp import records

# Config values copied into the runs table, under these column names.
CONFIG_COLUMNS = {
    "model.arch": "arch", "model.norm": "norm", "model.depth": "depth", "model.width": "width",
    "model.activation": "activation", "model.groups": "groups", "model.dropout": "dropout",
    "model.virtual_batch": "virtual_batch",
    "init.scheme": "init_scheme", "init.scale": "init_scale", "optim.lr": "lr",
    "optim.lr_reference_batch": "lr_reference_batch", "train.batch_size": "batch_size",
    "train.epochs": "epochs_planned", "dataset.subset": "subset", "dataset.name": "dataset",
    "dataset.coarse_labels": "coarse_labels",
}


def load_runs(root: Path | str) -> pd.DataFrame:
    """One row per complete run under root/runs/<experiment>/<key>/."""
    rows = []
    for run_dir in records.find_runs(Path(root) / "runs"):
        summary = records.read_summary(run_dir)
        cfg = records.read_config(run_dir)
        row = {"experiment": run_dir.parent.name, "run_dir": str(run_dir), "key": run_dir.name}
        row |= {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
        row |= {f"choice_{k}": v for k, v in summary.get("choices", {}).items()}
        for dotted, column in CONFIG_COLUMNS.items():
            node = cfg
            for part in dotted.split("."):
                node = node[part]
            row[column] = node
        rows.append(row)
    runs = pd.DataFrame(rows)
    if len(runs):
        # A diverged run's accuracy is what it ended with (usually chance); none recorded = chance.
        classes = np.where(runs["dataset"] == "cifar10", 10, np.where(runs["coarse_labels"], 20, 100))
        runs["final_acc"] = runs["test_acc"].fillna(pd.Series(1 / classes, index=runs.index))
        runs["model"] = runs.get("choice_model")  # the model preset, for legends
        runs["effective_lr"] = np.where(runs["lr_reference_batch"] > 0,
                                        runs["lr"] * runs["batch_size"] / runs["lr_reference_batch"].clip(lower=1),
                                        runs["lr"])
    return runs


def load_metrics(runs: pd.DataFrame, prefix: str | tuple[str, ...] = "") -> pd.DataFrame:
    """Metrics (long form) of the given runs whose names start with `prefix`, with run columns."""
    parts = []
    for _, run in runs.iterrows():
        m = records.read_metrics(Path(run["run_dir"]))
        if prefix:
            m = m[m["name"].str.startswith(prefix)]
        parts.append(m.assign(run_dir=run["run_dir"]))
    if not parts:
        return pd.DataFrame(columns=["step", "epoch", "name", "value", "run_dir"])
    run_columns = runs.drop(columns=[c for c in ("step", "epoch", "name", "value") if c in runs])
    return pd.concat(parts, ignore_index=True).merge(run_columns, on="run_dir", how="left")


def arm_of(r: pd.DataFrame) -> pd.Series:
    """The arm's short name (`small_batch/gn` -> `gn`)."""
    return r["choice_arm"].str.split("/").str[-1]


def images_per_statistic(r: pd.DataFrame) -> np.ndarray:
    """Images behind each BN statistic: the batch size, or ghost BN's virtual batch."""
    return np.where(r["norm"] == "ghost_batch", r["virtual_batch"], r["batch_size"])


def layer_spread(grad_norms: pd.DataFrame) -> pd.Series:
    """max / min of the per-layer gradient norms, per (run_dir, step): long-form `grad_norm/*` rows."""
    return grad_norms.groupby(["run_dir", "step"])["value"].agg(lambda v: v.max() / max(v.min(), 1e-30))


# --- intervals over seeds ---------------------------------------------------------------------

@dataclass
class Estimate:
    """A mean over seeds with its 95% t-interval (infinite with fewer than two seeds)."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3g} [{self.low:.3g}, {self.high:.3g}]"


def t_interval(values, log: bool = False) -> Estimate:
    """95% t-interval of the mean of per-seed values; `log` for ratios (geometric mean)."""
    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))],
                   dtype=float)
    if log:
        v = np.log(np.clip(v, 1e-12, None))
    n = len(v)
    if n == 0:
        return Estimate(math.nan, -math.inf, math.inf, 0)
    mean = float(v.mean())
    if n < 2:
        low, high = -math.inf, math.inf
    else:
        half = float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))
        low, high = mean - half, mean + half
    if log:
        return Estimate(math.exp(mean), math.exp(low) if low > -math.inf else 0.0,
                        math.exp(high) if high < math.inf else math.inf, n)
    return Estimate(mean, low, high, n)
