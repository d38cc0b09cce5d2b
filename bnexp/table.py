"""The endpoints table's schema, owned here: its files beside a profile's report, its columns
and their types, how it is read, and which of its rows are results of clean code at a commit this
repository knows. The writer (bnexp/endpoints.py), the committed-table skip of a sweep
(bnexp/run/committed.py), calibration, the ledger's rules and the report all read it through here.
"""

from __future__ import annotations

import csv
import subprocess
from functools import cache
from pathlib import Path

import pandas as pd

from bnexp.files import InputError

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


REQUIRED = (*ID, "seed", "status", "git_commit", "git_dirty")  # what every reader of a row relies on


class TableError(InputError):
    """An endpoints table that is not as bnexp.endpoints wrote it; the message names the file and
    the line, column or run."""


def read_runs(path: Path) -> pd.DataFrame:
    """runs.csv with its text columns as text, checked against what bnexp.endpoints writes: every
    column a reader relies on, every row whole (a file cut mid-row is refused, naming the line), a
    number wherever its column holds numbers, and each run once (a run key twice with different
    values is refused, naming it; an exact repeat is one row). TableError otherwise."""
    path = Path(path)
    header = _check_fields(path)
    try:
        t = pd.read_csv(path, dtype={c: str for c in header if text_column(c)}, low_memory=False)
    except (ValueError, pd.errors.ParserError) as e:
        raise TableError(f"{path}: not readable as the endpoints table ({e})") from None
    _check_numbers(path, t)
    return _one_row_per_run(path, t)


def _check_fields(path: Path) -> list[str]:
    # The csv module, not pandas: pandas fills a row cut short with empty cells, silently.
    try:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise TableError(f"{path}: empty, without even a header line")
            absent = [c for c in REQUIRED if c not in header]
            if absent:
                raise TableError(f"{path}: no column {absent[0]!r}: not a table bnexp.endpoints wrote")
            for row in reader:
                if len(row) != len(header):
                    raise TableError(f"{path}: line {reader.line_num} has {len(row)} of the header's {len(header)} "
                                     f"fields (cut short or hand-edited): restore it, e.g. git checkout -- {path}")
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TableError(f"{path}: cannot be read ({e})") from None
    return header


def _check_numbers(path: Path, t: pd.DataFrame) -> None:
    """A column of numbers with a cell that is not one (a hand edit) is refused, naming the cell."""
    for c in t.columns:
        if text_column(c) or pd.api.types.is_numeric_dtype(t[c]) or pd.api.types.is_bool_dtype(t[c]):
            continue
        cells = t[c].dropna().astype(str)
        cells = cells[~cells.str.lower().isin(("true", "false"))]
        parsed = pd.to_numeric(cells, errors="coerce")
        if parsed.notna().sum() and parsed.isna().any():
            at = parsed.index[parsed.isna()][0]
            raise TableError(f"{path}: line {at + 2}: column {c} holds {cells[at]!r}, not a number")


def _one_row_per_run(path: Path, t: pd.DataFrame) -> pd.DataFrame:
    repeated = t.duplicated(ID, keep=False)
    if not repeated.any():
        return t
    same = t.astype(str).duplicated(keep="first")  # an exact repeat (a row appended twice) is the same run
    t = t[~same]
    clash = t[t.duplicated(ID, keep=False)]
    if len(clash):
        exp, key = clash.iloc[0][ID]
        lines = ", ".join(str(i + 2) for i in clash.index[(clash["experiment"] == exp) & (clash["key"] == key)])
        raise TableError(f"{path}: run {key} of experiment {exp} appears on lines {lines} with different values; "
                         f"a table holds each run once: restore it, e.g. git checkout -- {path}")
    return t


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
