#!/usr/bin/env python3
"""Everything about the GPU path in one command, sized for a short allocation: `make gpu-check`.

    python scripts/gpu_check.py [--device auto|cuda|cpu] [--tiny] [--out results/gpu]

Writes results/gpu/<device name>.json and <device name>.txt with, each section timed and run in a
process of its own (a section that fails is recorded with its error; the others still run):

    tests    the CUDA-only tests: SyncBatchNorm in an NCCL group against BN, deterministic runs
             repeating bit for bit (skipped, and said, without a CUDA device)
    speed    the harness against the naive DataLoader loop and against the compute bound for the
             BN CNN, ResNet-20 and VGG-11, in fp32, bf16 and bf16 + torch.compile (scripts/bench.py;
             median of repeats, as ratios)
    sharing  images/s of 1, 2 and 4 processes training at once on the device, each capped at its
             share of the memory as sweep jobs are (train.jobs_per_device)
    smoke    the smoke profile end to end on the device (scripts/reproduce.py)
    cost     the full profile's estimated hours per sweep and in all on this device, with the
             settings the speed section found fastest (scripts/cost.py)

and checks the performance goals (harness >= 0.8x its bound per model; 4 jobs >= 2.5x one;
bf16 + compile >= 2x fp32 eager for VGG-11; the full profile <= 3 GPU-hours), reported as
measured, never asserted. `--tiny` runs every section at toy sizes (narrow nets, a few steps,
two smoke sweeps, one experiment costed): the same code path in a few minutes on a CPU, which
is what the test suite runs so that the command keeps working while no GPU is at hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bnexp.run import provenance

ROOT = Path(__file__).resolve().parent.parent
PRESETS = {"bn": "BN CNN", "resnet20": "ResNet-20", "vgg": "VGG-11"}
VARIANTS = {"fp32": [], "bf16": ["train.precision=bf16"],
            "bf16+compile": ["train.precision=bf16", "train.compile=true"]}
CUDA_TESTS = ["tests/test_distributed.py::test_torch_syncbatchnorm_in_a_one_process_group_equals_bn_on_a_gpu",
              "tests/test_distributed.py::test_deterministic_gpu_runs_repeat_bit_for_bit"]


def device_name(device: str) -> str:
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu-{platform.machine()}"


def run(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[int, str, float]:
    """(exit code, output tail, seconds) of one section's process."""
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                           env=os.environ | (env or {}))
        code, out = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        code, out = 124, f"timed out after {timeout:.0f} s: {(e.stdout or b'')[-2000:]!r}"
    return code, out[-3000:], time.perf_counter() - t0


def bench(device: str, presets: list[str], variant: list[str], tiny: bool, out: Path, loops: str,
          jobs_per_device: int = 1, barrier: Path | None = None) -> list[str]:
    steps, repeats, batch = ("3", "1", "32") if tiny else ("40", "3", "128")
    return [sys.executable, "scripts/bench.py", "--presets", ",".join(presets), "--steps", steps, "--repeats", repeats,
            "--batch", batch, "--device", device, "--out", str(out), "--loops", loops,
            "--jobs-per-device", str(jobs_per_device), *(["--barrier", str(barrier)] if barrier else []),
            *variant, *(["model.width=8"] if tiny else [])]


def section_tests(a) -> dict:
    if a.device == "cpu" or not torch.cuda.is_available():
        return {"status": "skipped", "why": "no CUDA device"}
    code, out, s = run([sys.executable, "-m", "pytest", "-q", "-rs", *CUDA_TESTS], 600)
    return {"status": "passed" if code == 0 else "failed", "seconds": s, "output": out[-1500:]}


def section_speed(a, tmp: Path) -> dict:
    out: dict = {"variants": {}}
    for label, variant in VARIANTS.items():
        path = tmp / f"speed-{label}.json"
        loops = "harness,naive,bound" if label == "fp32" else "harness,bound"
        code, text, s = run(bench(a.device, list(PRESETS), variant, a.tiny, path, loops), 900)
        if code != 0:
            out["variants"][label] = {"status": "failed", "seconds": s, "output": text[-1500:]}
            continue
        presets = json.loads(path.read_text())["presets"]
        out["variants"][label] = {"status": "passed", "seconds": s,
                                  "summary": {p: {k: v["median"] for k, v in r["summary"].items()}
                                              for p, r in presets.items()}}
    ok = [v for v in out["variants"].values() if v["status"] == "passed"]
    out["status"] = "passed" if len(ok) == len(VARIANTS) else "failed"
    return out


def section_sharing(a, tmp: Path) -> dict:
    """N processes start together, meet after warm-up, and each times the harness loop on the BN CNN; their
    images/s add up. On a CPU each gets 1/N of the cores, as sweep jobs do."""
    out: dict = {"jobs": {}}
    for n in (1, 2) if a.tiny else (1, 2, 4):
        procs, paths, t0 = [], [], time.perf_counter()
        for k in range(n):
            paths.append(tmp / f"share-{n}-{k}.json")
            procs.append(subprocess.Popen(bench(a.device, ["bn"], [], a.tiny, paths[-1], "harness", n,
                                                tmp / f"barrier-{n}"), cwd=ROOT,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        texts = [p.communicate(timeout=900)[0] for p in procs]
        if any(p.returncode for p in procs):
            out["jobs"][n] = {"status": "failed", "output": texts[0][-1500:]}
            continue
        rates = [json.loads(p.read_text())["presets"]["bn"]["summary"]["harness"]["median"] for p in paths]
        out["jobs"][n] = {"status": "passed", "images_per_s": sum(rates), "per_job": rates,
                          "seconds": time.perf_counter() - t0}
    one = out["jobs"].get(1, {}).get("images_per_s")
    for r in out["jobs"].values():
        if one and r.get("images_per_s"):
            r["speedup"] = r["images_per_s"] / one
    out["status"] = "passed" if all(r["status"] == "passed" for r in out["jobs"].values()) else "failed"
    return out


def section_smoke(a, tmp: Path) -> dict:
    only = ["--only", "gradient_flow,lr_tolerance"] if a.tiny else []
    code, text, s = run([sys.executable, "scripts/reproduce.py", "--profile", "smoke", "--results", str(tmp / "smoke"),
                         "--device", a.device, *only], 1800)
    return {"status": "passed" if code == 0 else "failed", "seconds": s,
            "tally": next((line for line in reversed(text.splitlines()) if line.startswith("reproduce smoke: ")), ""),
            **({} if code == 0 else {"output": text[-1500:]})}


def fastest(speed: dict) -> list[str]:
    """The variant with the most harness images/s summed over the models (fp32 if none ran)."""
    done = {k: v for k, v in speed.get("variants", {}).items() if v.get("status") == "passed"}
    if not done:
        return []
    best = max(done, key=lambda k: sum(p.get("harness", 0.0) for p in done[k]["summary"].values()))
    return VARIANTS[best]


def section_cost(a, settings: list[str], tmp: Path) -> dict:
    args = ["--profile", "smoke", "--only", "lr_tolerance", "--steps", "1"] if a.tiny else \
        ["--profile", "full", "--steps", "5"]
    path = tmp / "cost.json"
    code, text, s = run([sys.executable, "scripts/cost.py", *args, "--device", a.device, "--json", str(path),
                         "--results", str(ROOT / "results"), *settings], 1800)
    table = json.loads(path.read_text()) if code == 0 else {}
    return {"status": "passed" if code == 0 else "failed", "seconds": s, "settings": settings,
            "sweeps": table.get("sweeps", {}), "total_hours": table.get("total_hours"),
            **({} if code == 0 else {"output": text[-1500:]})}


def goals(report: dict) -> dict:
    if report["meta"]["tiny"]:  # toy sizes time start-up and warm-up, not throughput
        return {}
    speed = report["sections"].get("speed", {}).get("variants", {})
    fp32 = speed.get("fp32", {}).get("summary", {})
    fast = speed.get("bf16+compile", {}).get("summary", {})
    share = report["sections"].get("sharing", {}).get("jobs", {})
    cost = report["sections"].get("cost", {}).get("total_hours")
    vgg = (fast.get("vgg", {}).get("harness") or 0) / (fp32.get("vgg", {}).get("harness") or float("inf"))
    out = {f"harness >= 0.8x bound, {PRESETS[p]}": fp32.get(p, {}).get("harness/bound") for p in PRESETS}
    out |= {"4 jobs >= 2.5x one": share.get(4, {}).get("speedup"), "VGG-11 bf16+compile >= 2x fp32": vgg or None,
            "full profile <= 3 GPU-hours": cost}
    limits = {"4 jobs >= 2.5x one": (2.5, True), "VGG-11 bf16+compile >= 2x fp32": (2.0, True),
              "full profile <= 3 GPU-hours": (3.0, False)}
    return {k: {"measured": v, "met": None if v is None else (v >= limits.get(k, (0.8, True))[0]
                                                                if limits.get(k, (0.8, True))[1]
                                                                else v <= limits[k][0])} for k, v in out.items()}


def text(report: dict) -> str:
    m = report["meta"]
    tiny = ", tiny sizes" if m["tiny"] else ""
    code = f", code {str(m.get('git_commit'))[:10]}{' (dirty)' if m.get('git_dirty') else ''}"
    lines = [f"gpu-check on {m['device_name']} ({m['device']}, torch {m['torch']}{tiny}{code}): {m['seconds']:.0f} s"]
    for name, sec in report["sections"].items():
        lines.append(f"{name}: {sec.get('status')}" + (f" ({sec['why']})" if sec.get("why") else ""))
    for label, v in report["sections"].get("speed", {}).get("variants", {}).items():
        for p, r in v.get("summary", {}).items():
            lines.append(f"  speed {label} {PRESETS.get(p, p)}: harness {r.get('harness', 0):.0f} img/s"
                         + "".join(f", {k} {r[k]:.2f}" for k in ("harness/naive", "harness/bound") if k in r))
    for n, r in report["sections"].get("sharing", {}).get("jobs", {}).items():
        if "images_per_s" in r:
            lines.append(f"  sharing {n} job(s): {r['images_per_s']:.0f} img/s ({r.get('speedup', 1):.2f}x one)")
    cost = report["sections"].get("cost", {})
    if cost.get("total_hours") is not None:
        lines.append(f"  cost ({' '.join(cost['settings']) or 'fp32 eager'}): {cost['total_hours']:.2f} h in all")
    if m["tiny"]:
        lines.append("goals: not evaluated at tiny sizes (a few steps of toy nets time start-up, not throughput)")
    for goal, g in report["goals"].items():
        shown = "not measured" if g["measured"] is None else f"{g['measured']:.3g} ({'met' if g['met'] else 'missed'})"
        lines.append(f"goal {goal}: {shown}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true", help="toy sizes: the code path in minutes on a CPU")
    p.add_argument("--out", default=str(ROOT / "results" / "gpu"))
    p.add_argument("--sections", default="tests,speed,sharing,smoke,cost")
    a = p.parse_args()
    if a.device not in ("auto", "cpu") and not a.device.startswith("cuda"):
        p.error(f"--device: {a.device!r} is not auto, cpu or cuda[:N]")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu-check: --device cuda, but torch sees no CUDA device here (use --device cpu --tiny to check the "
                 "code path)")
    if a.device == "auto" and not torch.cuda.is_available() and not a.tiny:
        # The full-size check on a CPU takes hours and measures nothing it is for: asked for by name only.
        sys.exit("gpu-check: no CUDA device here; `make gpu-check DEVICE=cpu` checks the code path at toy sizes "
                 "(--device cpu without --tiny runs the full size on the CPU)")
    a.device = "cuda" if a.device == "auto" and torch.cuda.is_available() else "cpu" if a.device == "auto" else a.device
    t0 = time.perf_counter()
    report: dict = {"meta": {"device": a.device, "device_name": device_name(a.device), "torch": torch.__version__,
                             "cuda": torch.version.cuda, "tiny": a.tiny, "cpu_threads": torch.get_num_threads(),
                             **provenance.process()},  # the commit (and whether it was clean), CPU, host
                    "sections": {}}
    wanted = a.sections.split(",")
    with tempfile.TemporaryDirectory(prefix="bnexp-gpu-check-") as tmp:
        tmp = Path(tmp)
        for name in wanted:
            started = time.perf_counter()
            if name == "tests":
                report["sections"][name] = section_tests(a)
            elif name == "speed":
                report["sections"][name] = section_speed(a, tmp)
            elif name == "sharing":
                report["sections"][name] = section_sharing(a, tmp)
            elif name == "smoke":
                report["sections"][name] = section_smoke(a, tmp)
            elif name == "cost":
                report["sections"][name] = section_cost(a, fastest(report["sections"].get("speed", {})), tmp)
            else:
                p.error(f"--sections: no section {name!r} (tests, speed, sharing, smoke, cost)")
            report["sections"][name].setdefault("seconds", time.perf_counter() - started)
            print(f"gpu-check {name}: {report['sections'][name]['status']} "
                  f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    report["meta"]["seconds"] = time.perf_counter() - t0
    report["goals"] = goals(report)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^\w.-]+", "_", report["meta"]["device_name"]) + ("-tiny" if a.tiny else "")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / f"{stem}.txt").write_text(text(report))
    print(text(report), end="")
    print(f"wrote {out / (stem + '.json')}")
    failed = [n for n, s in report["sections"].items() if s.get("status") == "failed"]
    if failed:
        sys.exit(f"gpu-check: {', '.join(failed)} failed (the JSON has each one's output)")


if __name__ == "__main__":
    main()
