"""Starting the ranks of one multi-device run, and stopping them together.

Two ways in, one code path for the ranks:
- `torchrun --nproc-per-node=K -m bnexp.cli train.devices=K ...` starts the K processes itself;
- `train.devices=K` in any run or sweep job: `launch` starts them with torch's elastic launcher
  (what torchrun runs), so Hydra sweeps, joblib and submitit jobs need nothing else.
`launch` receives what each rank runs as an argument, so this module knows nothing of training.
"""

from __future__ import annotations

import multiprocessing
import signal
import uuid
from collections.abc import Callable
from typing import Any


class RankFailed(RuntimeError):
    """A rank of a multi-device run failed; the message names it. `silent`: it died without
    writing an error (killed by a signal, say), so what the other ranks report is a consequence."""

    def __init__(self, message: str, rank: int, silent: bool):
        super().__init__(message)
        self.rank, self.silent = rank, silent


class Interrupted(KeyboardInterrupt):
    """SIGTERM or Ctrl-C: the run stops where it is; `signal` names what stopped it."""

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal = signal_name


def raise_interrupted(signum, frame) -> None:
    """A signal handler: SIGTERM ends a run the way Ctrl-C does."""
    raise Interrupted(signal.Signals(signum).name)


def launch(target: Callable[..., dict[str, Any]], args: tuple, devices: int) -> dict[str, Any]:
    """Run `target(*args)` in `devices` local processes (torch's elastic launcher, as `torchrun
    --standalone --nproc-per-node=devices`), each one rank; rank 0's return value. `target` must
    be importable by name (the processes are spawned). A rank that fails ends every rank and
    raises RankFailed naming it; a signal to this process stops every rank and raises Interrupted."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=devices, run_id=f"bnexp-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2,
                          start_method="spawn")
    # A spawned child sets the parent's default start method first; in a joblib (loky) worker that
    # is "loky", which a fresh interpreter does not know: make it the standard "spawn" meanwhile.
    method = multiprocessing.get_start_method(allow_none=True)
    foreign = method not in (None, *multiprocessing.get_all_start_methods())
    if foreign:
        multiprocessing.set_start_method("spawn", force=True)
    # The launcher replaces this process's SIGTERM/SIGINT handlers with its own (which stop every
    # rank, then raise SignalException); put them back afterwards.
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        results = elastic_launch(config, _rank)(target, *args)
    except ChildFailedError as e:
        rank, failure = _culprit(e)
        message = failure.message if isinstance(failure.message, str) else failure.message.get("message", "")
        silent = _silent(failure) or not message.strip()
        what = (f"killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}") \
            if silent else message.strip().splitlines()[-1]
        raise RankFailed(f"rank {rank} of {devices} failed: {what}", rank, silent) from None
    except SignalException as e:  # every rank has been stopped by the launcher already
        raise Interrupted(signal.Signals(e.sigval).name) from None
    finally:
        if foreign:
            multiprocessing.set_start_method(method, force=True)
        for s, h in handlers.items():
            signal.signal(s, h)
    return results[0]


def _culprit(e) -> tuple[int, Any]:
    """The rank whose failure ended the run: one that died without a word (its peers then fail on
    the broken connection, and may write their error before the launcher sees the death), else
    the first failure by time."""
    silent = sorted(r for r, f in e.failures.items() if _silent(f))
    return (silent[0], e.failures[silent[0]]) if silent else e.get_first_failure()


def _silent(failure) -> bool:
    """The process left no error of its own: no error file (killed by a signal, or it exited
    without raising), which the launcher marks by naming the file "<N/A>"."""
    return failure.error_file == "<N/A>"


def _rank(target: Callable[..., dict[str, Any]], *args) -> dict[str, Any]:
    """One rank, in a process of its own: `target`, its error written where the launcher reads it."""
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(target)(*args)
