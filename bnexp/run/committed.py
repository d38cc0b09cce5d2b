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
import subprocess
from functools import cache
from pathlib import Path

import pandas as pd

MARK = "in_table.json"
TABLE = "runs.csv"  # bnexp.endpoints.RUNS, named here so that a job does not import the analysis


def _table_of(run_dir: Path) -> tuple[Path, str] | None:
    """(results/<profile>/runs.csv, the experiment) for a job folder results/<profile>/runs/<experiment>/<key>."""
    parts = run_dir.resolve().parts
    if "runs" not in parts[:-1]:
        return None
    at = len(parts) - 1 - parts[::-1][1:].index("runs") - 1
    return Path(*parts[:at]) / TABLE, "/".join(parts[at + 1:-1])


@cache
def _rows(path: Path, mtime: float) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"experiment": str, "key": str, "run_key": str, "status": str,
                                    "git_commit": str, "git_dirty": str}, low_memory=False)


@cache
def _known(commit: str) -> bool:
    """A commit of the repository this code belongs to."""
    return subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "cat-file", "-e",
                           f"{commit}^{{commit}}"], capture_output=True).returncode == 0


def find(run_dir: Path, key: str) -> dict | None:
    """The committed table's row for this job, if it is a result of clean, known code; else None."""
    where = _table_of(run_dir)
    if where is None or not where[0].is_file():
        return None
    table = _rows(where[0], where[0].stat().st_mtime)
    hit = table[(table["experiment"] == where[1]) & (table["key"] == run_dir.name) & (table["run_key"] == key)]
    for _, row in hit.iterrows():
        clean = str(row["git_dirty"]).lower() == "false"
        if row["status"] in ("completed", "diverged") and clean and _known(str(row["git_commit"])):
            return {k: (None if isinstance(v, float) and math.isnan(v) else v.item() if hasattr(v, "item") else v)
                    for k, v in row.items()}
    return None


def mark(run_dir: Path, row: dict) -> None:
    """Leave the row where the sweep looks for the job's outcome. The bisection judges BN probes on
    recalibrated statistics: the table keeps them as `recal_acc` (the test accuracy where there
    was nothing to recalibrate), the summary as `test_recal_acc`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    out = dict(row)
    if out.get("recal_acc") is not None:
        out.setdefault("test_recal_acc", out["recal_acc"])
    tmp = run_dir / f".{MARK}.tmp"
    tmp.write_text(json.dumps(out, indent=1, default=str))
    tmp.replace(run_dir / MARK)


def marked(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / MARK).read_text())
    except (OSError, ValueError):
        return None
