"""A sweep that fails: a job that fails before training, a write that fails half-way and a
killed sweep each leave a record (or nothing half-written) and a failed sweep."""

import os
import time

import pytest

from bnexp import records
from tests.launch import TINY, start_sweep


@pytest.mark.slow  # a real sweep or several runs, 10-30 s here: make test-slow (CI runs it)
def test_a_job_that_fails_before_training_is_recorded_and_fails_the_sweep(tmp_path, real_data):
    p = start_sweep(tmp_path, real_data, "train.probe_layer=last,nope", *TINY, "train.max_steps=2")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1, err
    assert "2 jobs: 1 completed, 1 failed" in err.splitlines()[-1]
    runs = {records.read_summary(d)["status"]: d for d in records.find_runs(tmp_path / "sweep")}
    assert set(runs) == {"completed", "failed"}
    assert records.read_summary(runs["failed"])["reason"].startswith("train.probe_layer:")
    assert records.read_config(runs["failed"]).train.probe_layer == "nope"  # the report can place it
    # A rerun skips the completed job, tries the failed one again, and says so.
    p = start_sweep(tmp_path, real_data, "train.probe_layer=last,nope", *TINY, "train.max_steps=2")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1 and "2 jobs: 0 completed, 1 failed, 1 skipped" in err.splitlines()[-1]


def _limit_file_size():
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


@pytest.mark.slow  # a real sweep or several runs, 10-30 s here: make test-slow (CI runs it)
def test_a_write_that_fails_leaves_no_partial_file_and_fails_the_sweep(tmp_path, real_data):
    """The kernel refuses any file over 256 KiB: the first checkpoint (about 1 MiB) cannot be written."""
    p = start_sweep(tmp_path, real_data, "seed=0,1", "model=bn", *TINY, "train.epochs=2",
                    preexec_fn=_limit_file_size)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1 and "2 jobs: 0 completed, 2 failed" in err.splitlines()[-1], err[-2000:]
    for d in records.find_runs(tmp_path / "sweep"):
        reason = records.read_summary(d)["reason"]
        assert "checkpoint.pt: could not be written (File too large); nothing partial was left" in reason
    assert not [f for f in (tmp_path / "sweep").rglob("*") if f.name.endswith(".tmp")]


@pytest.mark.slow  # a real sweep or several runs, 10-30 s here: make test-slow (CI runs it)
def test_killing_a_joblib_sweep_stops_its_workers(tmp_path, real_data):
    p = start_sweep(tmp_path, real_data, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1",
                    "model=bn", "dataset.subset=2048", "dataset.test_size=200", "threads=1", "train.epochs=50")
    deadline, locks = time.monotonic() + 180, []
    while time.monotonic() < deadline and len(locks) < 2:
        locks = [f for f in (tmp_path / "sweep").glob("*/.lock") if f.read_text().strip()]
        time.sleep(0.2)
    assert len(locks) == 2, p.stderr.read() if p.poll() is not None else "no two jobs started"
    workers = [int(f.read_text().split()[1]) for f in locks]
    p.terminate()  # SIGTERM, as a scheduler or `kill` sends it
    p.wait(timeout=60)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its sweep"
    for f in locks:  # a rerun started now can take every run again
        assert records.claim(f.parent)
        records.release(f.parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has died; only its entry is left
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False
