"""Run locks: a run is held by one process at a time; a lock whose holder died is taken over."""

import subprocess
import sys
from pathlib import Path

from bnexp import records
from tests.conftest import ROOT


def test_claim_refuses_a_held_lock_and_takes_over_one_whose_holder_died(tmp_path):
    run = tmp_path / "run"
    assert records.claim(run)
    assert not records.claim(run)  # this very process holds it
    records.release(run)
    assert not (run / records.LOCK).exists()
    (run / records.LOCK).write_text("")  # an empty file left behind is not a held lock
    assert records.claim(run)
    records.release(run)
    # A holder killed with SIGKILL: the kernel drops its lock, the next claim succeeds.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from bnexp import records; assert records.claim(Path(sys.argv[1])); "
                               "print('held', flush=True); time.sleep(60)", str(run)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    assert not records.claim(run)
    holder.kill()
    holder.wait()
    assert records.claim(run)
    records.release(run)


def _race(run: str, rounds: int, barrier, wins) -> None:

    for k in range(rounds):
        barrier.wait()
        if records.claim(Path(run) / str(k)):
            wins.put(k)
            barrier.wait()  # hold it until both have tried
            records.release(Path(run) / str(k))
        else:
            barrier.wait()


def test_two_processes_never_both_hold_a_run(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier, wins = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), 1000, barrier, wins)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    won = [wins.get(timeout=5) for _ in range(wins.qsize())] if wins.qsize() else []
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(won) == list(range(1000))  # every round exactly one winner
