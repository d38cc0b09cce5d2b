"""The submitit launcher presets: a real sweep through submitit_local (a process per job, the
records read by the same analysis as any other), and the SLURM preset composed down to the
sbatch script it would submit."""

import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bnexp import endpoints, records
from bnexp.config import CONFIGS
from tests.conftest import ROOT

submitit = pytest.importorskip("submitit")


def _sweep(sweep_dir, real_data):
    env = dict(os.environ, BNEXP_DATA=str(real_data), WANDB_MODE="offline")
    cmd = [sys.executable, "-m", "bnexp.cli", "-m", "experiment=gradient_flow", "profile=smoke",
           "hydra/launcher=submitit_local", "threads=1", f"hydra.sweep.dir={sweep_dir}"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


@pytest.mark.slow  # about 25 s: four jobs, each a process of its own
def test_a_sweep_through_submitit_local_runs_each_job_in_its_own_process(tmp_path, real_data):
    sweep_dir = tmp_path / "results" / "runs" / "gradient_flow"
    done = _sweep(sweep_dir, real_data)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = list(records.find_runs(sweep_dir))
    summaries = [records.read_summary(r) for r in runs]
    statuses = [s["status"] for s in summaries]
    assert len(runs) == 4 and f"4 jobs: {statuses.count('completed')} completed" in done.stderr
    assert "0 failed" in done.stderr and set(statuses) <= {"completed", "diverged"}  # plain at init scale 2 may diverge
    # Each job ran in a process of its own, named by submitit's job id, in a folder named by its run key.
    assert len({s["pid"] for s in summaries}) == len(runs) and os.getpid() not in {s["pid"] for s in summaries}
    assert len({s["job_id"] for s in summaries}) == len(runs)
    assert all((sweep_dir / ".submitit" / s["job_id"]).is_dir() for s in summaries)
    assert all(r.name == s["run_key"] for r, s in zip(runs, summaries, strict=True))
    assert (sweep_dir / ".submitit").is_dir()
    # The analysis reads them as it reads any sweep's records.
    table, _ = endpoints.build(tmp_path / "results")
    assert len(table) == len(runs) and set(table["experiment"]) == {"gradient_flow"}
    assert sorted(table["status"]) == sorted(statuses)
    # Resubmitting the sweep (a requeue does the same per job) skips every complete run.
    again = _sweep(sweep_dir, real_data)
    assert again.returncode == 0 and "4 jobs: 0 completed, 0 failed, 4 skipped" in again.stderr
    assert len(list(records.find_runs(sweep_dir))) == len(runs)


def test_the_slurm_preset_reaches_sbatch_with_its_values():
    from submitit.slurm.slurm import _make_sbatch_string

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=submitit_slurm", "train.devices=2",
                                           "hydra.launcher.partition=gpu", "hydra.launcher.account=proj",
                                           "hydra.launcher.array_parallelism=8"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["max_num_timeout"] == 3
    cfg.hydra.sweep.dir = "/tmp/sweep"
    cfg.hydra.job.name = "bnexp"
    node = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert node["gpus_per_task"] == 2  # a GPU for each device of a run
    plugin = instantiate(cfg.hydra.launcher)
    params = {k: v for k, v in plugin.params.items() if k not in ("submitit_folder", "max_num_timeout", "setup",
                                                                   "signal_delay_s", "array_parallelism",
                                                                   "additional_parameters", "timeout_min",
                                                                   "tasks_per_node", "name", "mem_gb",
                                                                   "stderr_to_stdout")}
    text = _make_sbatch_string(command="python -m bnexp.cli", folder="/tmp/sweep/.submitit/%j", job_name="bnexp",
                               time=plugin.params["timeout_min"], ntasks_per_node=plugin.params["tasks_per_node"],
                               mem=f"{plugin.params['mem_gb']}GB", map_count=10,
                               array_parallelism=plugin.params["array_parallelism"],
                               signal_delay_s=plugin.params["signal_delay_s"], **params)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=proj", "#SBATCH --gpus-per-task=2",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB", "#SBATCH --time=240", "#SBATCH --array=0-9%8"):
        assert line in text, line
