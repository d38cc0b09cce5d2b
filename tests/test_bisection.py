"""The bisection sweeper: each point bracketed, a resumed sweep retraces its path, a bisection
without a pass rule or with an empty bracket refused."""

import json
from pathlib import Path

import pytest

from bnexp import records
from tests.launch import TINY, start_sweep

BISECT = ["hydra/sweeper=bisection", "hydra.sweeper.key=optim.lr", "hydra.sweeper.low=0.01", "hydra.sweeper.high=1000",
          "hydra.sweeper.steps=3", "hydra.sweeper.metric=train_loss", "hydra.sweeper.at_most=1e3"]


@pytest.mark.slow  # a real sweep or several runs, 10-30 s here: make test-slow (CI runs it)
def test_a_bisection_sweep_brackets_each_point_and_resumes_by_retracing_its_path(tmp_path, real_data):
    """`hydra/sweeper=bisection` from the command line: one bisection per grid point, probes at
    geometric midpoints, each moving its bracket by the probe's outcome; a rerun skips every probe."""
    args = ["model=plain,bn", *TINY, "train.max_steps=3", *BISECT]
    p = start_sweep(tmp_path, real_data, *args)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "6 jobs: " in err.splitlines()[-1]
    state = json.loads((tmp_path / "sweep" / "bisection.json").read_text())
    assert len(state["probes"]) == 6 and len(state["brackets"]) == 2
    for b in state["brackets"]:
        lo, hi = 0.01, 1000.0
        for probe in [q for q in state["probes"] if q["point"] == b["point"]]:
            assert abs(probe["value"] - (lo * hi) ** 0.5) <= 1e-5 * probe["value"]  # the geometric midpoint
            summary = records.read_summary(Path(probe["dir"]))
            assert summary["status"] in ("completed", "diverged")
            assert records.read_config(Path(probe["dir"])).optim.lr == probe["value"]
            assert probe["passed"] == (summary["status"] == "completed" and summary["train_loss"] <= 1e3)
            lo, hi = (probe["value"], hi) if probe["passed"] else (lo, probe["value"])
        assert (b["low"], b["high"]) == (lo, hi)
    first = state
    p = start_sweep(tmp_path, real_data, *args)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0 and "6 jobs: 0 completed, 0 failed, 6 skipped" in err.splitlines()[-1], err
    assert json.loads((tmp_path / "sweep" / "bisection.json").read_text())["brackets"] == first["brackets"]


def test_a_bisection_without_a_pass_rule_or_with_an_empty_bracket_is_refused(tmp_path, real_data):
    for bad, message in ((["hydra.sweeper.high=0.001"], "need low < high"),
                         (["hydra.sweeper.at_most=null"], "set at_least or at_most")):
        r = start_sweep(tmp_path, real_data, "model=plain", *TINY, *BISECT, *bad)
        _, err = r.communicate(timeout=120)
        assert r.returncode == 2 and message in err and not (tmp_path / "sweep" / "bisection.json").exists(), err
