"""The run record on disk: the only code that knows its file layout.

A run directory holds
    config.yaml      the resolved config (every default filled in)
    overrides.yaml   the command-line overrides that made it
    metrics.parquet  one row per logged value: step (int), epoch (float), name (str), value (float)
    summary.json     written last and atomically; its presence means the record is complete
Metrics are in long form so that per-layer names (`grad_norm/<layer>`) need no schema change;
`metrics_wide` pivots them to one column per name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig, OmegaConf

CONFIG, OVERRIDES, METRICS, SUMMARY = "config.yaml", "overrides.yaml", "metrics.parquet", "summary.json"
STATUSES = ("completed", "diverged", "failed")
METRIC_SCHEMA = pa.schema([("step", pa.int64()), ("epoch", pa.float64()),
                           ("name", pa.string()), ("value", pa.float64())])


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_config(run_dir: Path, cfg: DictConfig, overrides: list[str]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(run_dir / CONFIG, OmegaConf.to_yaml(cfg, resolve=True).encode())
    _atomic_write(run_dir / OVERRIDES, OmegaConf.to_yaml(OmegaConf.create(list(overrides))).encode())


class MetricLog:
    """Collects metric rows in memory; `flush` rewrites the parquet file atomically."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / METRICS
        self.rows: dict[str, list] = {"step": [], "epoch": [], "name": [], "value": []}

    def add(self, step: int, epoch: float, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.rows["step"].append(step)
            self.rows["epoch"].append(epoch)
            self.rows["name"].append(name)
            self.rows["value"].append(float(value))

    def flush(self) -> None:
        table = pa.Table.from_pydict(self.rows, schema=METRIC_SCHEMA)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.path)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    assert summary["status"] in STATUSES, summary["status"]
    _atomic_write(run_dir / SUMMARY, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())


# --- readers ----------------------------------------------------------------------------------

def is_complete(run_dir: Path) -> bool:
    return (run_dir / SUMMARY).is_file() and (run_dir / METRICS).is_file()


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / SUMMARY).read_text())


def read_config(run_dir: Path) -> DictConfig:
    return OmegaConf.load(run_dir / CONFIG)  # type: ignore[return-value]


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """Long form: columns step, epoch, name, value."""
    return pd.read_parquet(run_dir / METRICS)


def metrics_wide(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per step, one column per metric name (NaN where not logged at that step)."""
    return metrics.pivot_table(index=["step", "epoch"], columns="name", values="value").reset_index()


def find_runs(root: Path) -> Iterator[Path]:
    """Every complete run directory under `root`, in sorted order."""
    for summary in sorted(Path(root).rglob(SUMMARY)):
        if is_complete(summary.parent):
            yield summary.parent
