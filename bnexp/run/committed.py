"""Runs that the committed endpoints table already holds count as done.

A profile longer than one session (or one machine) is finished in parts: only
results/<profile>/runs.csv travels in git, not the raw runs. A job whose run key is in that table,
as a result (`completed` or `diverged`) of clean code at a commit this repository knows, is not
trained again: the job leaves `in_table.json` (the row) in its folder instead of a record, which
the sweep counts as skipped and the bisection sweeper reads as the probe's outcome. The table row
stays the evidence; the endpoints table is rebuilt from the records on disk merged with it.
"""

from __future__ import annotations

import json
import math
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from bnexp import table as schema
from bnexp.files import write_atomic

MARK = "in_table.json"
# Config groups whose choice's name is not part of what a run computes: the logger and the profile
# (records.KEY_EXCLUDES), and an experiment's arms, which only set values (two arms setting the
# same values, such as BN at its own tuned lr and at the plain net's when both are 0.03, are one
# run under one run key, recorded under whichever arm ran it first).
IDLE_GROUPS = ("logger", "profile", "arm", "experiment")


def _table_of(run_dir: Path) -> tuple[Path, str] | None:
    """(results/<profile>/runs.csv, the experiment) for a job folder results/<profile>/runs/<experiment>/<key>."""
    parts = run_dir.resolve().parts
    if "runs" not in parts[:-1]:
        return None
    at = len(parts) - 1 - parts[::-1][1:].index("runs") - 1
    return Path(*parts[:at]) / schema.RUNS, "/".join(parts[at + 1:-1])


@cache
def _rows(path: Path, mtime: float) -> pd.DataFrame:
    return schema.read_runs(path)


def find(run_dir: Path, key: str, config_key: str | None = None, identity: dict | None = None) -> dict | None:
    """The committed table's row for this job, if it is a result of clean, known code; else None.
    A row matches, in this order: by run key (this config, computed as this machine computes it);
    by config key (this config, run on another machine: another CPU, thread count or device); or,
    for a row written before the table had config keys, by `identity`, the values the table holds
    of a config (`identity(...)`), when exactly one such row of the experiment has them. A match
    of either of the last two kinds comes back with the job's config key in it, which
    `bnexp.endpoints` then writes into the row."""
    where = _table_of(run_dir)
    if where is None or not where[0].is_file():
        return None
    table = _rows(where[0], where[0].stat().st_mtime)
    table = table[(table["experiment"] == where[1]) & (table["status"].isin(schema.RESULTS))]
    table = table[schema.clean(table)]
    by_run = table[(table["key"] == run_dir.name) & (table["run_key"] == key)]
    if len(by_run):
        return _plain(by_run.iloc[0])
    if config_key is None:
        return None
    keyed = table["config_key"].notna() if "config_key" in table else pd.Series(False, index=table.index)
    by_config = table[keyed & (table.get("config_key") == config_key)]
    if len(by_config):
        return _plain(by_config.iloc[0]) | {"config_key": config_key}
    if identity is None:
        return None
    legacy = table[~keyed]
    same = legacy[pd.Series([all(_same(row.get(c), v) for c, v in identity.items()) for _, row in legacy.iterrows()],
                            index=legacy.index, dtype=bool)]
    return _plain(same.iloc[0]) | {"config_key": config_key} if len(same) == 1 else None


def identity(container: dict, choices: dict) -> dict:
    """The values the table holds of a job's config (resolved, as a plain container): its seed,
    the config columns, its own config-group choices."""
    out = {"seed": container.get("seed")}
    for dotted, column in schema.CONFIG_COLUMNS.items():
        node: Any = container
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[column] = node
    return out | {f"choice_{k}": v for k, v in choices.items() if not k.startswith("hydra") and k not in IDLE_GROUPS}


def _same(a: Any, b: Any) -> bool:
    """Equal as the table holds them (a CSV cell against a config value)."""
    a, b = _cell(a), _cell(b)
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=1e-12)
    return a == b


def _cell(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.name  # as config.yaml, and so the table, writes it
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bool) or str(v) in ("True", "False"):
        return str(v) == "True"
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def _plain(row: pd.Series) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v.item() if hasattr(v, "item") else v)
            for k, v in row.items()}


def mark(run_dir: Path, row: dict) -> None:
    """Leave the row where the sweep looks for the job's outcome. The bisection judges BN probes on
    recalibrated statistics: the table keeps them as `recal_acc` (the test accuracy where there
    was nothing to recalibrate), the summary as `test_recal_acc`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    out = dict(row)
    if out.get("recal_acc") is not None:
        out.setdefault("test_recal_acc", out["recal_acc"])
    write_atomic(run_dir / MARK, json.dumps(out, indent=1, default=str))


def marked(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / MARK).read_text())
    except (OSError, ValueError):
        return None
