"""`make bench` runs as documented and writes its ratios (tiny settings: this checks the
benchmark, it times nothing)."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # a real sweep or several runs, 10-30 s here: make test-slow (CI runs it)
def test_bench_compares_the_harness_with_a_naive_loop_and_the_compute_bound(tmp_path, real_data):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "scripts/bench.py", "--presets", "plain", "--steps", "2", "--repeats", "2",
                        "--batch", "32", "--workers", "1", "--out", str(out)], capture_output=True, text=True,
                       cwd=ROOT, timeout=600, env=os.environ | {"BNEXP_DATA": str(real_data)})
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())["presets"]["plain"]
    for name in ("harness", "naive", "bound"):
        assert len(result["images_per_s"][name]) == 2 and min(result["images_per_s"][name]) > 0
    for ratio in ("harness/naive", "harness/bound"):
        s = result["summary"][ratio]
        assert s["min"] <= s["median"] <= s["max"]
    assert "harness/naive" in r.stdout and "harness/bound" in r.stdout
