"""`make gpu-check DEVICE=cpu`: the GPU check's every section at toy sizes on the CPU, so that the
command keeps working while no GPU is at hand."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # about 3 minutes on 2 cores: make test-slow (CI runs it)
def test_gpu_check_runs_every_section_on_the_cpu_and_writes_its_report(tmp_path, real_data):
    r = subprocess.run(["make", "-s", "gpu-check", "DEVICE=cpu", f"GPU_CHECK_OUT={tmp_path / 'gpu'}"],
                       capture_output=True, text=True, timeout=900, cwd=ROOT,
                       env=os.environ | {"BNEXP_DATA": str(real_data)})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    path = next((tmp_path / "gpu").glob("cpu-*-tiny.json"))
    report = json.loads(path.read_text())
    sections = report["sections"]
    assert sections["tests"] == {"status": "skipped", "why": "no CUDA device", "seconds": sections["tests"]["seconds"]}
    for name in ("speed", "sharing", "smoke", "cost"):
        assert sections[name]["status"] == "passed", (name, sections[name])
    for variant in ("fp32", "bf16", "bf16+compile"):
        assert set(sections["speed"]["variants"][variant]["summary"]) == {"bn", "resnet20", "vgg"}
        assert all(r["harness"] > 0 for r in sections["speed"]["variants"][variant]["summary"].values())
    assert {"harness/naive", "harness/bound"} <= set(sections["speed"]["variants"]["fp32"]["summary"]["bn"])
    assert set(sections["sharing"]["jobs"]) == {"1", "2"}
    assert "reproduce smoke: " in sections["smoke"]["tally"]
    assert sections["cost"]["sweeps"] and sections["cost"]["total_hours"] > 0
    assert path.with_suffix(".txt").read_text().startswith("gpu-check on cpu-")
    # bad input: one line, non-zero exit, nothing written
    bad = subprocess.run([sys.executable, "scripts/gpu_check.py", "--device", "tpu", "--out", str(tmp_path / "g")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "--device: 'tpu' is not auto, cpu or cuda[:N]" in bad.stderr
    assert not (tmp_path / "g").exists()
