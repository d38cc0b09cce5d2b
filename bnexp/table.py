"""The endpoints table's schema, owned here: its files beside a profile's report, its columns
and their types, how it is read, and which of its rows are results of clean code at a commit this
repository knows. The writer (bnexp/endpoints.py), the committed-table skip of a sweep
(bnexp/run/committed.py), calibration, the ledger's rules and the report all read it through here.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

import pandas as pd

RUNS, CURVES, EXACT = "runs.csv", "curves.parquet", "exact.csv"
ID = ["experiment", "key"]
# config_key is computed from the record's config (records.config_key), the rest read off its summary.
SUMMARY_COLUMNS = ("run_key", "config_key", "seed", "status", "reason", "steps", "epochs", "train_s", "images_per_s",
                   "test_acc", "best_test_acc", "train_acc", "val_acc", "test_batchstats_acc", "git_commit",
                   "git_dirty", "data_source", "threads", "device", "torch")
# Config values every row holds, under these column names. A claim that groups by another config
# value reads it in its own endpoints (`rec.value("optim.weight_decay")`), so adding a claim adds
# nothing here; these also identify a row written before the table had config keys (run/committed.py).
CONFIG_COLUMNS = {
    "model.arch": "arch", "model.norm": "norm", "model.depth": "depth", "model.width": "width",
    "model.activation": "activation", "model.groups": "groups", "model.dropout": "dropout",
    "model.virtual_batch": "virtual_batch", "model.head_dropout": "head_dropout",
    "init.scheme": "init_scheme", "init.scale": "init_scale", "optim.lr": "lr",
    "optim.lr_reference_batch": "lr_reference_batch", "train.batch_size": "batch_size",
    "train.epochs": "epochs_planned", "dataset.subset": "subset", "dataset.name": "dataset",
}
TEXT_COLUMNS = ("experiment", "key", "run_key", "config_key", "status", "reason", "git_commit", "data_source", "device",
                "torch")
RESULTS = ("completed", "diverged")  # a run that ended as a result; `failed` is a crash


def text_column(name: str) -> bool:
    """Read as text, never as a number: identities, choices and arms."""
    return name in TEXT_COLUMNS or name.startswith("choice_") or name == "arm"


def read_runs(path: Path) -> pd.DataFrame:
    """runs.csv with its text columns as text."""
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={c: str for c in header if text_column(c)}, low_memory=False)


def empty() -> pd.DataFrame:
    return pd.DataFrame(columns=[*ID, *SUMMARY_COLUMNS])


@cache
def known_commit(commit: str) -> bool:
    """A commit of the repository this code belongs to."""
    return subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "cat-file", "-e",
                           f"{commit}^{{commit}}"], capture_output=True).returncode == 0


def dirty(rows: pd.DataFrame) -> pd.Series:
    """Rows made by a tree with uncommitted changes, or that do not say they were not."""
    return rows["git_dirty"].astype(str).str.lower() != "false"


def foreign(rows: pd.DataFrame) -> pd.Series:
    """Rows whose code is no commit of this repository (or unrecorded)."""
    return pd.Series([not (isinstance(c, str) and c and known_commit(c)) for c in rows["git_commit"]],
                     index=rows.index, dtype=bool)


def clean(rows: pd.DataFrame) -> pd.Series:
    """Rows made by clean code at a commit this repository knows: the only ones any choice or verdict reads."""
    return ~dirty(rows) & ~foreign(rows)
