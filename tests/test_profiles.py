"""Every profile composes every experiment into jobs that pass every check, and the full profile's
models (VGG-11, ResNet-20, the MLP, the CNNs at full width) train a few real steps, so a user with a
GPU does not learn of a broken config hours into a sweep."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bnexp import calibration, sweep
from bnexp.config import CONFIGS, calibrations, experiments, pilots
from bnexp.run.lifecycle import run


@pytest.fixture
def planned(tmp_path):
    """Stand-in tuned constants for a profile that has not been calibrated here (the middle of
    each grid, calibration.planning), in a results folder of the test's own."""
    import json

    def write(profile: str) -> Path:
        (tmp_path / "results" / profile).mkdir(parents=True, exist_ok=True)
        (tmp_path / "results" / profile / "tuned.json").write_text(json.dumps(calibration.planning(profile)))
        return tmp_path / "results"

    return write


def expand(profile: str, name: str, data, results: Path) -> tuple:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        master = compose("config", [f"experiment={name}", f"profile={profile}", f"dataset.root={data}",
                                    f"results={results}",
                                    "hydra/launcher=basic"], return_hydra_config=True)
        return master, sweep.expand(master)


# smoke in `make test`; quick (about 35 s: 5 seeds of every sweep) and full with the slow tests.
@pytest.mark.parametrize("profile", ["smoke", pytest.param("quick", marks=pytest.mark.slow),
                                     pytest.param("full", marks=pytest.mark.slow)])
def test_every_experiment_of_every_profile_expands_into_jobs_that_pass_every_check(profile, real_data, planned):
    results = planned(profile)
    for name in calibrations() + pilots() + experiments():
        master, jobs = expand(profile, name, real_data, results)
        assert jobs and sweep.check(jobs) is None, (profile, name)
        assert sweep.planned(master, jobs) >= len(jobs) // 2


def _distinct_models(jobs) -> list:
    """One job per distinct model config (arch, norm, width, depth, batch), first of each."""
    seen, out = set(), []
    for job in jobs:
        m, t = job.config.model, job.config.train
        key = (m.arch, m.norm, m.width, m.depth, m.dropout, m.virtual_batch, t.batch_size)
        if key not in seen:
            seen.add(key)
            out.append(job)
    return out


@pytest.mark.slow  # ~1.5 min per experiment on 2 cores (VGG-11 at width 64, 45,000 images loaded): make test-slow
@pytest.mark.parametrize("name", experiments())
def test_the_full_profile_trains_a_few_steps_of_every_model_it_sweeps(name, real_data, tmp_path, planned):
    results = planned("full")
    _, jobs = expand("full", name, real_data, results)
    for i, job in enumerate(_distinct_models(jobs)[:2]):
        cfg = sweep.without_hydra(job.config)
        # Two steps, a small test set: the models, the data split and every option are the full profile's.
        cfg = OmegaConf.merge(cfg, {"train": {"max_steps": 2, "eval_batch_size": 100, "checkpoint_minutes": 0,
                                              "recalibrate": min(cfg.train.recalibrate, 2)},
                                    "dataset": {"test_size": 100}, "threads": 2})
        summary = run(cfg, tmp_path / str(i))
        assert summary["status"] in ("completed", "diverged") and summary["steps"] >= 1, (name, job.label)
        assert summary["train_images"] == cfg.dataset.subset  # 45,000: the 45k / 5k split


def test_cost_estimates_every_sweep_from_timed_steps(real_data, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = tmp_path / "cost" / "smoke.json"
    r = subprocess.run([sys.executable, "scripts/cost.py", "--profile", "smoke", "--only", "gradient_flow,lr_tolerance",
                        "--steps", "1", "--threads", "1", "--json", str(out)], capture_output=True, text=True,
                       timeout=300, cwd=ROOT, env=os.environ | {"BNEXP_DATA": str(real_data)})
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()[1:]}
    assert rows["gradient_flow"][:2] == ["4", "2"]  # 2 models x 2 scales, 2 steps each (smoke)
    assert rows["lr_tolerance"][0] == "4"  # a bisection: 2 models x 1 seed x 2 probes
    assert float(rows["total"][0]) > 0
    # what it writes for the report is what the report's reader accepts (bnexp/scales.py)
    from bnexp import scales

    written = scales.costs(tmp_path)["smoke"]
    assert written["sweeps"]["lr_tolerance"]["runs"] == 4 and written["git_commit"]
    assert scales.cost_of("gradient_flow", written).sweeps == {"gradient_flow": 4}


@pytest.mark.slow  # expands the full profile's small_batch sweep (45,000-image split checked): make test-slow
def test_the_full_profile_reads_its_own_constants_and_gn_keeps_four_channels_per_group(real_data, planned):
    """At full, every tuned constant comes from results/full/tuned.json (here stand-ins), none from
    another profile; GN groups are at least 4 channels wide in every layer; the ResNet's blocks
    start as the identity."""
    from bnexp import models
    from bnexp.config import Norm

    results = planned("full")
    answers = calibration.planning("full")
    _, jobs = expand("full", "small_batch", real_data, results)  # v4's sweep: BN, ghost BN, GN+WS at 128 and small
    gn = [j for j in jobs if j.config.model.norm == Norm.group]
    assert {j.config.train.batch_size for j in gn} == {128, 2}  # GN+WS at 128 and at full's real small batch
    # lr per 256 images: GN+WS's tuned one at both batches (the small batch's is scaled from it in training)
    assert all(j.config.optim.lr == answers["small_batch/lr_v4"]["values"]["v4_gnws"] for j in gn)
    assert all(j.config.model.weight_standardization for j in gn)
    bn = [j for j in jobs if j.config.model.norm != Norm.group]
    assert bn and all(j.config.optim.lr == answers["small_batch/lr_v4"]["values"]["v4_bn"] for j in bn)
    for job in gn:
        model = models.build(OmegaConf.to_object(job.config.model), 10)
        norms = [m for m in model.modules() if isinstance(m, __import__("torch").nn.GroupNorm)]
        assert norms and min(m.num_channels // m.num_groups for m in norms) >= 4
    assert all(j.config.init.zero_init_residual for j in jobs)
