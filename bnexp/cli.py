"""`bnexp-train [hydra overrides]` (or `python -m bnexp.cli`): one run, or a sweep with `-m`.

- A mistake in a config, the data or the results folder is one line on stderr and exit status
  2, with nothing written. A sweep checks every job's config, the device and the data before
  the first job trains.
- Each job is skipped when its record is complete, continued from its checkpoint when it has
  one, and locked so that two processes never train it at once.
- Every job of a sweep ends with a summary on disk, a failure included, and the sweep ends with
  a tally (completed / diverged / failed / skipped / no record) and exit status 1 if any job
  failed or left no record.
- A worker process of the joblib launcher dies with the sweep that started it.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bnexp import records, sweep
from bnexp.config import CONFIGS, ConfigError, one_line_error
from bnexp.data import DataError
from bnexp.files import InputError, unwritable
from bnexp.resolvers import config_key, run_key
from bnexp.run import committed, provenance, ranks
from bnexp.run.lifecycle import run
from bnexp.run.world import World, agree

log = logging.getLogger("bnexp")
WAIT_S = 2.0  # how often a job waiting on a run another process trains looks again


class SweepCallback(Callback):
    """Checks every job before the first runs; counts what they left when the sweep ends, and
    ends the command with exit status 1 when any job failed or left no record."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        t0 = time.perf_counter()
        folder = Path(config.hydra.sweep.dir)
        _check_writable(folder)
        try:
            jobs = sweep.expand(config)
        except Exception as e:
            _remove_empty(folder)  # Hydra made it; a refused sweep leaves nothing behind
            _refuse(one_line_error(e) or str(e))
        problem = sweep.check(jobs)
        if problem:
            _remove_empty(folder)
            _refuse(problem)
        self.jobs = jobs
        self.done_before = sweep.done(records.find_runs(Path(config.hydra.sweep.dir)))
        self.unreadable = records.unreadable_runs(Path(config.hydra.sweep.dir))
        what = "bracket ends of a bisection" if sweep.is_bisection(config) else "jobs"
        log.info("sweep: %d %s checked in %.1f s, %d runs already complete", len(jobs), what,
                 time.perf_counter() - t0, len(self.done_before))
        for d in sorted(self.unreadable):
            log.warning("%s: its summary.json is unreadable (cut short or edited): no record, trained again", d)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        result = sweep.tally(sweep.launched(config, self.jobs), self.done_before, getattr(self, "unreadable", set()))
        print(f"bnexp sweep {config.hydra.sweep.dir}: {result}", file=sys.stderr, flush=True)
        if result.failed:
            sys.exit(1)  # SystemExit passes through Hydra's callback guard (it catches Exception)


@hydra.main(version_base="1.3", config_path=str(CONFIGS), config_name="config")
def main(dcfg: DictConfig) -> str:
    """One job; returns its outcome (completed, diverged, failed, skipped)."""
    hc = HydraConfig.get()
    in_sweep = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    overrides, choices = list(hc.overrides.task), dict(hc.runtime.choices)
    _die_with_parent()
    try:
        outcome = _job(dcfg, run_dir, overrides, choices)
        if not in_sweep:  # where to look, and how to go on: the same command resumes or finds it
            print(f"bnexp-train: {outcome}; record in {run_dir} (the same command continues an interrupted "
                  "run from its checkpoint)", file=sys.stderr)
        return outcome
    except (ConfigError, DataError, InputError, OmegaConfBaseException, OSError) as e:
        message = one_line_error(e) if isinstance(e, OmegaConfBaseException) else None
        message = message or (str(e) if not isinstance(e, OSError) or isinstance(e, records.RecordError)
                              else f"{e.filename or run_dir}: {e.strerror or e}")
        if not in_sweep:
            _remove_empty(run_dir)  # Hydra made it; a refused run leaves nothing behind
            _refuse(message)
        log.error("%s: failed: %s", run_dir, message)
        _record_failure(run_dir, dcfg, (overrides, choices), message)
        return "failed"
    except Exception as e:
        if not in_sweep:
            raise
        # In a sweep a crashed run is one result among many: its summary says `failed` (written
        # by the run's lifecycle), and the other runs go on.
        log.exception("%s: run failed; recorded as failed", run_dir)
        if not records.is_complete(run_dir):
            _record_failure(run_dir, dcfg, (overrides, choices), f"{type(e).__name__}: {e}")
        return "failed"


def _job(dcfg: DictConfig, run_dir: Path, overrides: list[str], choices: dict) -> str:
    """Skip a complete run, leave one another process holds, or train it (continuing from its
    checkpoint). Under torchrun rank 0 decides, takes the lock and tells the others, and every
    rank trains in rank 0's folder (each rank's Hydra named its own)."""
    world = World.from_env()
    started = world.start(world.device(str(dcfg.get("device", "auto")))) if world.size > 1 else False
    claimed, decision, refusal, ended = False, None, None, False
    try:
        if world.main:
            try:
                decision = _decide(run_dir, dcfg, choices)
                claimed = decision is None
            except ConfigError as e:  # told to every rank, so that none waits for the others
                decision, refusal = "refused", e
        decision, shared = agree((decision, str(run_dir)), world)
        if not world.main and Path(shared).resolve() != run_dir.resolve():
            _remove_empty(run_dir)  # this rank's own Hydra folder: rank 0's is the record
        if refusal is not None:
            raise refusal
        if decision == "refused":
            _refuse("rank 0 refused this run (its message says why)")
        if decision is None:
            decision = run(dcfg, Path(shared), overrides, choices)["status"]
        ended = True
        return decision
    finally:
        if claimed:
            records.release(run_dir)
        world.stop(started, together=ended)


def _committed(run_dir: Path, dcfg: DictConfig, choices: dict) -> dict | None:
    """This job's row in the committed endpoints table (bnexp.run.committed.find), or None."""
    try:
        key = config_key(dcfg)
    except Exception:  # a config that cannot run is refused by name later, where it is used
        return committed.find(run_dir, run_key(dcfg))
    container = OmegaConf.to_container(dcfg, resolve=True, enum_to_str=True)
    own = {k: v for k, v in choices.items() if not k.startswith("hydra/")}
    identity = committed.identity(container, own) | {"data_source": provenance.data_source(dcfg)}
    return committed.find(run_dir, run_key(dcfg), key, identity)


def _decide(run_dir: Path, dcfg: DictConfig, choices: dict) -> str | None:
    """`skipped` (a complete record of this computation), or None: this process has taken the
    run, with what an earlier attempt left cleared (a checkpoint and what goes with it stay, to be
    continued from). A run another process is training (a second sweep or `reproduce.py` over the
    same results) is waited for, then skipped if it ended as a result or taken if it did not, so
    two processes over one folder share the runs: none is trained twice, none is lost."""
    if records.is_done(run_dir):
        if not (choices.get("experiment") and _dirty(run_dir) and not provenance.changes()):
            return _skip(run_dir, dcfg)
        # A claim's run made before its code was committed can never count for a verdict or a
        # choice; now that the checkout is clean it is trained again, rather than skipped as complete.
        log.warning("%s: made on a dirty tree, so no verdict or choice may use it; trained again on this "
                    "clean checkout", run_dir)
        records.discard_summary(run_dir)
    row = _committed(run_dir, dcfg, choices)
    if row is not None:
        committed.mark(run_dir, row)
        elsewhere = "" if row["run_key"] == run_dir.name else f", run {row['run_key']} on another machine"
        log.info("%s: in the committed endpoints table (%s at %s%s); not trained again", run_dir, row["status"],
                 str(row["git_commit"])[:10], elsewhere)
        return "skipped"
    if not records.claim(run_dir):
        log.info("%s: another process is training this run; waiting for it", run_dir)
        while not records.claim(run_dir):
            time.sleep(WAIT_S)
    try:
        if records.is_done(run_dir):  # finished by another process since the first look
            records.release(run_dir)
            return _skip(run_dir, dcfg)
    except BaseException:
        records.release(run_dir)
        raise
    records.clear_partial(run_dir)
    return None


def _dirty(run_dir: Path) -> bool:
    try:
        return bool(records.read_summary(run_dir).get("git_dirty"))
    except (OSError, ValueError):
        return False


def _skip(run_dir: Path, dcfg: DictConfig) -> str:
    """A complete record of this very computation is the result; one of another is an error."""
    if records.read_summary(run_dir).get("run_key") != run_key(dcfg):
        raise ConfigError("hydra.run.dir", f"{run_dir} holds the record of a different config or machine; "
                                           "choose another hydra.run.dir")
    log.info("%s: complete record found; skipped", run_dir)
    return "skipped"


def _record_failure(run_dir: Path, dcfg: DictConfig, asked: tuple[list[str], dict], reason: str) -> None:
    """The record of a sweep job that failed before its run could write one; `asked`: the job's
    overrides and config-group choices."""
    overrides, choices = asked
    own = {k: v for k, v in choices.items() if not k.startswith("hydra/")}
    summary = records.Summary("failed", reason, run_key(dcfg), dcfg.get("seed"), overrides, own,
                              name=dcfg.get("name"), where=provenance.process())
    try:
        records.write_failure(run_dir, dcfg, overrides, summary)
    except OSError as e:  # nothing can be written here: the sweep's tally counts it as `no record`
        log.error("%s: the failure could not be recorded either (%s)", run_dir, e)


def _check_writable(folder: Path) -> None:
    """Refuse a results folder that cannot take a file, before anything runs."""
    e = unwritable(folder)
    if e is not None:
        _refuse(f"{e.filename or folder}: the results folder is not writable ({e.strerror or e})")


def _die_with_parent() -> None:
    """A joblib (loky) worker dies with the process that started it, however that one ends, so
    that killing a sweep never leaves orphans training (and holding runs' locks)."""
    if not multiprocessing.current_process().name.startswith("LokyProcess") or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before the call took effect
        os._exit(1)


def _refuse(message: str) -> None:
    """One line on stderr and exit status 2 (SystemExit passes through Hydra untouched)."""
    print(f"bnexp-train: error: {message}", file=sys.stderr)
    sys.exit(2)


def _remove_empty(path: Path) -> None:
    """Remove `path` if empty (a lock file aside), then its empty parents up to the working directory."""
    cwd, path = Path.cwd().resolve(), path.resolve()
    (path / records.LOCK).unlink(missing_ok=True)
    while path.is_dir() and not any(path.iterdir()) and path != cwd:
        try:
            path.rmdir()
        except OSError:  # a mount point, or not ours to remove
            break
        if cwd not in path.parents:
            break
        path = path.parent


def cli() -> None:
    """`bnexp-train`: config mistakes end in one line on stderr and exit status 2; a sweep with
    failed jobs ends with exit status 1; SIGTERM stops a sweep like Ctrl-C (workers included)."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's report
    signal.signal(signal.SIGTERM, ranks.raise_interrupted)
    world = World.from_env()
    if world.size > 1:  # started by torchrun: every process is one rank of one run
        if any(a in ("-m", "--multirun") for a in sys.argv[1:]):
            _refuse("torchrun starts the ranks of one run; for a sweep of multi-device runs use "
                    "`bnexp-train -m ... train.devices=K` (each job starts its own ranks)")
        if not any(a.startswith(("train.devices=", "+train.devices=", "++train.devices=")) for a in sys.argv[1:]):
            sys.argv.append(f"train.devices={world.size}")
    try:
        main()
    except KeyboardInterrupt:
        print("bnexp-train: interrupted; rerun the same command to continue", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        message = one_line_error(e)
        if message is None and isinstance(e, OSError):  # Hydra could not make its output folder
            message = f"{e.filename or ''}: {e.strerror or e}"
        if message is None:
            raise
        _refuse(message)


if __name__ == "__main__":
    # Call through the importable module, not __main__, so that launchers running jobs in other
    # processes (joblib) pickle the task function by reference.
    from bnexp.cli import cli as _cli

    _cli()
