"""python -m bnexp.scaffold: a new claim from the template, in a clone of this repository, is a
working claim: its own tests pass, the inventory misses only its registration, and (slow) after
the documented steps its smoke sweep runs and the smoke report shows it."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--local", str(ROOT), str(clone)], check=True, timeout=120)
    for key, value in (("user.email", "test@example.com"), ("user.name", "test")):
        subprocess.run(["git", "-C", str(clone), "config", key, value], check=True)
    return clone


def _run(clone, *args, env=None):
    env = os.environ | {"PYTHONPATH": str(clone)} | (env or {})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=clone, env=env, timeout=900)


def _scaffold(clone):
    return _run(clone, "-m", "bnexp.scaffold", "toy_claim", "--statement", "BN beats no norm.", "--source", "a test",
                "--arms", "none,batch", "--threshold", "0.02")


@pytest.mark.slow  # a clone, its own pytest and inventory, about 30 s: make test-slow
def test_a_scaffolded_claim_passes_its_own_tests_and_misses_only_its_registration(tmp_path):
    clone = _clone(tmp_path)
    r = _scaffold(clone)
    assert r.returncode == 0, r.stderr
    for part in ("bnexp/claims/toy_claim.py", "configs/experiment/toy_claim.yaml", "configs/arm/toy_claim/none.yaml",
                 "configs/arm/toy_claim/batch.yaml", "tests/claims/test_toy_claim.py"):
        assert (clone / part).is_file(), part
    assert all("toy_claim: {subset:" in p.read_text() for p in (clone / "configs" / "profile").glob("*.yaml"))
    assert "python -m bnexp.method.ledger register toy_claim 1" in r.stdout
    own = _run(clone, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/claims/test_toy_claim.py")
    assert own.returncode == 0 and "2 passed" in own.stdout, own.stdout[-2000:]
    missing = _run(clone, "-m", "bnexp.inventory")
    assert missing.stdout.count("\n") == 1 and "toy_claim" in missing.stdout and "register" in missing.stdout, \
        missing.stdout
    again = _scaffold(clone)
    assert again.returncode == 2 and "already has claim toy_claim: nothing written" in again.stderr


def test_a_scaffold_with_a_bad_id_or_norm_writes_nothing(tmp_path):
    clone = _clone(tmp_path)
    bad = ((["Bad-Id"], "lower-case letters"), (["ok", "--arms", "none,nonorm"], "'nonorm' is not a norm"))
    for args, words in bad:
        r = _run(clone, "-m", "bnexp.scaffold", *args, "--statement", "s", "--source", "s")
        assert r.returncode == 2 and words in r.stderr, r.stderr
    status = subprocess.run(["git", "-C", str(clone), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == ""


@pytest.mark.slow  # a clone, two commits and a smoke sweep of two runs, about 1.5 minutes: make test-slow
def test_the_documented_steps_take_a_scaffolded_claim_to_the_smoke_report(tmp_path, real_data):
    clone = _clone(tmp_path)
    assert _scaffold(clone).returncode == 0
    git = ["git", "-C", str(clone)]
    subprocess.run([*git, "add", "-A", "bnexp", "configs", "tests"], check=True)
    subprocess.run([*git, "commit", "-qm", "claim toy_claim"], check=True)
    reg = _run(clone, "-m", "bnexp.method.ledger", "register", "toy_claim", "1", "--seeds", "5", "--reason", "first")
    assert reg.returncode == 0, reg.stderr
    subprocess.run([*git, "commit", "-qam", "register toy_claim v1"], check=True)
    r = _run(clone, "scripts/reproduce.py", "--profile", "smoke", "--only", "toy_claim", "--results", "results",
             env={"BNEXP_DATA": str(real_data), "WANDB_MODE": "disabled"})
    assert r.returncode == 0, r.stderr[-2000:]
    report = (clone / "results" / "smoke" / "REPORT.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| [toy_claim](#toy_claim) | v1 |"))
    assert "| confirmatory |" in row and "| 2 |" in row  # registered first, clean code: its 2 runs count
