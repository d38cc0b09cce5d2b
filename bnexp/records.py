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

import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bnexp import norm_catalogue
from bnexp.files import WriteError, write_atomic

CONFIG, OVERRIDES, METRICS, SUMMARY = "config.yaml", "overrides.yaml", "metrics.parquet", "summary.json"
CHECKPOINT = "checkpoint.pt"  # while a run is under way (bnexp/checkpoint.py)
LOCK = ".lock"
# Config entries that do not change what a run computes, left out of its key: where the data
# lives, CPU threads, progress bars, logging, labels, and the profile's own table of values
# (whatever of it an experiment uses has been interpolated into the entries that matter).
KEY_EXCLUDES = ("hydra", "profile", "dataset.root", "results", "threads", "train.progress", "logger", "name",
                "train.cudnn_benchmark", "train.jobs_per_device")
# Entries added to the schema after records existed, at the value that computes exactly what
# every run computed before they existed: left out of the key at that value, so that adding them
# did not re-key those records (any other value is part of the key as usual).
KEY_NEUTRAL = {"train.devices": 1, "model.sync_bn": False, "train.deterministic": False,
               "train.precision": "fp32", "train.compile": False, "train.compile_mode": "default",
               "model.weight_standardization": False, **norm_catalogue.key_neutral()}
STATUSES = ("completed", "diverged", "failed")
METRIC_SCHEMA = pa.schema([("step", pa.int64()), ("epoch", pa.float64()),
                           ("name", pa.string()), ("value", pa.float64())])


# A record that cannot be written (full disk, read-only folder): one line, as every atomic write says.
RecordError = WriteError


def write_config(run_dir: Path, cfg: DictConfig, overrides: list[str]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / CONFIG, OmegaConf.to_yaml(cfg, resolve=True).encode())
    write_atomic(run_dir / OVERRIDES, OmegaConf.to_yaml(OmegaConf.create(list(overrides))).encode())


class MetricLog:
    """Collects metric rows in memory; `flush` rewrites the parquet file atomically."""

    def __init__(self, run_dir: Path | None):
        self.path = run_dir / METRICS if run_dir is not None else None  # None: kept in memory only
        self.rows: dict[str, list] = {"step": [], "epoch": [], "name": [], "value": []}

    def add(self, step: int, epoch: float, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.rows["step"].append(step)
            self.rows["epoch"].append(epoch)
            self.rows["name"].append(name)
            self.rows["value"].append(float(value))

    def flush(self) -> None:
        if self.path is None:
            return
        table = pa.Table.from_pydict(self.rows, schema=METRIC_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        write_atomic(self.path, sink.getvalue().to_pybytes())


def run_key(cfg: DictConfig, computation: dict[str, Any] | None = None) -> str:
    """12 hex digits identifying what a run computes: a hash of its resolved config without
    KEY_EXCLUDES, and of `computation`, the facts outside the config that change its numbers
    (device, CPU threads, torch version, data origin: bnexp.provenance.computation). Equal keys
    mean the same numbers, whenever and wherever the run was made."""
    values = {k: OmegaConf.to_container(cfg[k], resolve=True, enum_to_str=True)
              if OmegaConf.is_config(cfg[k]) else cfg[k]
              for k in cfg if k not in KEY_EXCLUDES}  # never resolve `hydra`: it names the key
    for dotted in KEY_EXCLUDES:
        head, _, tail = dotted.partition(".")
        if tail and isinstance(values.get(head), dict):
            values[head].pop(tail, None)
    for dotted, neutral in KEY_NEUTRAL.items():
        head, _, tail = dotted.partition(".")
        if isinstance(values.get(head), dict) and tail in values[head] and values[head][tail] == neutral:
            del values[head][tail]
    if computation is not None:
        values["__computation__"] = computation
    blob = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def config_key(cfg: DictConfig, data_source: str | None) -> str:
    """12 hex digits identifying what a run asks for, on whatever machine: its config (as
    `run_key`) and the origin of its data, without the machine's facts (CPU, threads, device,
    torch). Two runs with one config key are draws of the same experiment; their numbers may
    differ in the last digits, and each keeps its own run key and provenance."""
    return run_key(cfg, {"data_source": data_source})


_HELD: dict[Path, int] = {}  # run directory -> the open lock file this process holds


def claim(run_dir: Path) -> bool:
    """Take the run directory for this process; False if another process holds it.

    An exclusive flock on `.lock`, held for as long as this process trains the run: the kernel
    gives it to one process only and drops it when the holder dies, however it dies, so a
    stale lock is one nobody holds (no pid or host to guess from). The owner is written into
    the file for people to read.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:  # the holder before us may have removed the file after we opened it: lock the new one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
    _HELD[run_dir.resolve()] = fd
    return True


def release(run_dir: Path) -> None:
    """Give the run directory back (remove the lock file while still holding it, then unlock)."""
    fd = _HELD.pop(run_dir.resolve(), None)
    if fd is None:
        return
    (run_dir / LOCK).unlink(missing_ok=True)
    os.close(fd)


def clear_partial(run_dir: Path) -> None:
    """Remove what an interrupted or failed attempt left. With a checkpoint the run continues
    from it (only the failed attempt's summary goes); without one it starts from nothing."""
    keep = {CHECKPOINT, CONFIG, OVERRIDES, METRICS} if (run_dir / CHECKPOINT).is_file() else set()
    for name in {CONFIG, OVERRIDES, METRICS, SUMMARY} - keep:
        (run_dir / name).unlink(missing_ok=True)


@dataclass
class Summary:
    """summary.json: how a run ended, what it measured, and where and how it ran. Every record
    has these fields, whatever ended the run; what a run never got to measure is None (a run
    that failed before training: steps 0, no accuracies). `where` (bnexp.run.provenance) and
    `extra` (what only some runs have: `distributed`, `wandb`) are written at the top level."""

    status: str  # completed | diverged | failed
    reason: str | None  # why it diverged or failed
    run_key: str
    seed: int | None
    overrides: list[str]
    choices: dict[str, str]  # bnexp's own config-group choices
    name: str | None = None
    steps: int = 0  # optimiser steps done
    epochs: float | None = None  # passes over the training images
    images: int | None = None  # images trained on (steps x global batch)
    train_images: int | None = None
    test_acc: float | None = None  # the latest evaluation's (None when non-finite)
    test_loss: float | None = None
    best_test_acc: float | None = None
    val_acc: float | None = None
    test_batchstats_acc: float | None = None
    test_recal_acc: float | None = None
    train_acc: float | None = None  # mean over the last log interval
    train_loss: float | None = None
    images_per_s: float | None = None
    train_s: float | None = None  # seconds of training (evaluation excluded), over every attempt
    wall_s: float | None = None  # seconds of this attempt
    attempts: int | None = None  # 1 + the times the run continued from a checkpoint
    parameters: int | None = None
    frozen_bn_calibration_batches: int | None = None
    batch_size: int | None = None  # the global batch
    batch_per_device: int | None = None
    devices: int | None = None
    sync_bn: bool | None = None
    determinism: dict[str, Any] | None = None  # the flags in force (bnexp.run.lifecycle.determinism)
    computation: dict[str, Any] | None = None  # what enters the run key besides the config
    started: str | None = None
    finished: str | None = None
    where: dict[str, Any] = field(default_factory=dict)  # host, code version, environment
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        return {k: v for k, v in out.items() if k not in ("where", "extra")} | out["where"] | out["extra"]


def write_summary(run_dir: Path, summary: Summary) -> None:
    assert summary.status in STATUSES, summary.status
    _write_summary_json(run_dir, summary.to_json())


def _write_summary_json(run_dir: Path, fields: dict[str, Any]) -> None:
    write_atomic(run_dir / SUMMARY, (json.dumps(fields, indent=2, sort_keys=True) + "\n").encode())


def discard_summary(run_dir: Path) -> None:
    """Make a complete record incomplete again (its summary goes), so that the run is trained anew."""
    (run_dir / SUMMARY).unlink(missing_ok=True)


def amend_reason(run_dir: Path, reason: str) -> None:
    """Replace the reason a written summary gives, the rest as it is."""
    _write_summary_json(run_dir, read_summary(run_dir) | {"reason": reason})


def write_failure(run_dir: Path, config: DictConfig, overrides: list[str], summary: Summary) -> None:
    """The record of a failed run, whatever failed and whenever: the config (as written, unresolved
    when it cannot resolve) and empty metrics unless the run wrote its own, then the summary, so
    that every failure leaves a complete record which a rerun of the sweep tries again."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / CONFIG).is_file():
        try:
            write_config(run_dir, config, overrides)
        except OmegaConfBaseException:  # a value that does not resolve: keep it unresolved
            write_config(run_dir, OmegaConf.create(OmegaConf.to_container(config, resolve=False)), overrides)
    if not (run_dir / METRICS).is_file():
        MetricLog(run_dir).flush()
    write_summary(run_dir, summary)


# --- readers ----------------------------------------------------------------------------------

def is_complete(run_dir: Path) -> bool:
    """The record is whole: a readable summary (written last) and the metrics. A summary cut
    short or edited into something that is not one (`unreadable`) counts as no record: the run
    is trained again, and the sweep's tally says so."""
    return (run_dir / SUMMARY).is_file() and (run_dir / METRICS).is_file() and not unreadable(run_dir)


def unreadable(run_dir: Path) -> bool:
    """A summary.json that is there but is not a run's summary (cut short, hand-edited)."""
    try:
        summary = json.loads((run_dir / SUMMARY).read_text())
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError, ValueError):
        return True
    return not (isinstance(summary, dict) and summary.get("status") in STATUSES)


def is_done(run_dir: Path) -> bool:
    """A complete record of a run that ended as a result (`completed` or `diverged`); a
    `failed` run is a crash, which a rerun of the sweep tries again."""
    return is_complete(run_dir) and read_summary(run_dir)["status"] != "failed"


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / SUMMARY).read_text())


def read_config(run_dir: Path) -> DictConfig:
    return OmegaConf.load(run_dir / CONFIG)  # type: ignore[return-value]


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """Long form: columns step, epoch, name, value."""
    return pd.read_parquet(run_dir / METRICS)


@dataclass
class Record:
    """One complete run as the readers see it: its summary, its resolved config and (read on
    first use) its metrics. `experiment` is the folder the sweep put it in."""

    dir: Path

    @property
    def experiment(self) -> str:
        """The folder path under the results' `runs/` (`small_batch`, `convergence/tune`)."""
        parts = self.dir.parent.parts
        return "/".join(parts[len(parts) - parts[::-1].index("runs"):]) if "runs" in parts else self.dir.parent.name

    @property
    def key(self) -> str:
        return self.dir.name

    @cached_property
    def summary(self) -> dict[str, Any]:
        return read_summary(self.dir)

    @cached_property
    def config(self) -> dict[str, Any]:
        return OmegaConf.to_container(read_config(self.dir))  # type: ignore[return-value]

    @cached_property
    def metrics(self) -> pd.DataFrame:
        return read_metrics(self.dir)

    def value(self, dotted: str) -> Any:
        """A config value by its dotted path (`optim.lr`)."""
        node: Any = self.config
        for part in dotted.split("."):
            node = node[part]
        return node

    def metric(self, name: str) -> pd.DataFrame:
        """The rows of one metric (or of every name under a prefix ending in '/'), by step."""
        m = self.metrics
        rows = m[m["name"].str.startswith(name)] if name.endswith("/") else m[m["name"] == name]
        return rows.sort_values("step", kind="stable")


def metrics_wide(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per step, one column per metric name (NaN where not logged at that step)."""
    return metrics.pivot_table(index=["step", "epoch"], columns="name", values="value").reset_index()


def unreadable_runs(root: Path) -> set[Path]:
    """Every run directory under `root` whose summary.json is there but unreadable."""
    return {s.parent for s in Path(root).rglob(SUMMARY) if unreadable(s.parent)}


def find_runs(root: Path) -> Iterator[Path]:
    """Every complete run directory under `root`, in sorted order."""
    for summary in sorted(Path(root).rglob(SUMMARY)):
        if is_complete(summary.parent):
            yield summary.parent
