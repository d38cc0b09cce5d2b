"""What produced a run: code version, environment, data. Two uses:

- `computation(cfg)`: the facts outside the config that change a run's numbers on this machine
  (device, CPU threads, torch version, the data files' origin). They are part of the run key
  (bnexp.records.run_key), so a record is only ever reused for exactly the same computation.
- `describe(cfg, device)`: everything the summary records about where and with what it ran.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from bnexp.config import Config
from bnexp.data import FOLDERS


def cores() -> int:
    """CPU cores this process may use: its affinity set on Linux (smaller than the machine under
    taskset or a SLURM allocation), else every core (macOS and Windows have no sched_getaffinity)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads(cfg: Config) -> int:
    """CPU threads a run uses: `threads`, or every core this process may use (shared among the
    ranks of a multi-device run on CPUs). Pinned explicitly (torch.set_num_threads) because CPU
    results differ between thread counts."""
    n = cores()
    if not cfg.threads and cfg.train.devices > 1 and device_type(cfg) == "cpu":
        return max(1, n // cfg.train.devices)
    return cfg.threads or n


def device_type(cfg: Config) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else torch.device(cfg.device).type


def data_source(cfg: Config) -> str | None:
    """What scripts/get_data.py wrote about where the files came from (official or JPEG copy)."""
    marker = Path(cfg.dataset.root) / FOLDERS[cfg.dataset.name] / "SOURCE"
    return marker.read_text().strip() if marker.is_file() else None


def cpu() -> str:
    """The CPU model and the instruction set torch dispatches to: CPU kernels differ between them
    (a rerun of the same config on an AVX-512 and an AVX2 machine gives different numbers)."""
    name = platform.processor() or platform.machine()
    try:
        name = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def computation(cfg: Config) -> dict[str, Any]:
    """The environment that changes the numbers: equal for two runs only if they compute alike."""
    kind = device_type(cfg)
    env: dict[str, Any] = {"device": kind, "torch": torch.__version__, "data_source": data_source(cfg)}
    if kind == "cpu":
        env["threads"] = threads(cfg)
        env["cpu"] = cpu()
    elif kind == "cuda":
        env["gpu"] = torch.cuda.get_device_name(torch.device(cfg.device) if cfg.device != "auto" else None)
    return env


def _git(*args: str) -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def describe(cfg: Config, device: torch.device) -> dict[str, Any]:
    """Everything a summary records about where and with what a run ran."""
    return {
        "data_source": data_source(cfg),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "threads": torch.get_num_threads(),
        **process(),
    }


def process() -> dict[str, Any]:
    """This process: its code version, software and host; what even a run refused before it
    trained records."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu(),
        # Where the process ran: a sweep's jobs may each run on another node of a cluster.
        "host": platform.node(),
        "pid": os.getpid(),
        "job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(changes()),
    }


def changes() -> list[str]:
    """The checkout's uncommitted changes that make a run dirty (`git status --porcelain` lines):
    any change to the code, untracked files included; results/ is data the harness writes itself
    (a regenerated report must not taint the next runs)."""
    out = _git("status", "--porcelain", "--", ":(top)", ":(top,exclude)results")
    return [line for line in (out or "").splitlines() if line.strip()]
