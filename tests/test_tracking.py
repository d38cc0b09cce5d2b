"""The wandb mirror, read back with wandb's own reader (`wandb leet inspect --json`): one finished
run per job, named, grouped and typed for a run table, a failing job's run finished with exit code
1, a failing wandb.init a warning in the summary, and the dashboard built as code."""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bnexp import records
from bnexp.run.tracking import run_name
from tests.conftest import ROOT

WANDB = Path(sys.executable).with_name("wandb")


def read_back(run_dir: Path) -> list[dict]:
    """Every record of the run's offline .wandb file, as wandb's own reader prints them."""
    files = list((run_dir / "wandb").glob("offline-run-*/*.wandb"))
    assert len(files) == 1, files  # one offline run per record folder: a redone run replaces its earlier one
    out = subprocess.run([str(WANDB), "leet", "inspect", "--json", str(files[0])], capture_output=True, text=True,
                         timeout=120, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def one(rows: list[dict], kind: str) -> dict:
    found = [r[kind] for r in rows if r["type"] == kind]
    assert len(found) == 1, (kind, len(found))
    return found[0]


def history(rows: list[dict]) -> list[dict]:
    return [r["history"]["item"] for r in rows if r["type"] == "history"]


def train(tmp_path, real_data, *args, env=None, **kw):
    width = [] if any(a.startswith("model.width=") for a in args) else ["model.width=4"]
    cmd = [sys.executable, "-m", "bnexp.cli", *args, "dataset.subset=256", "dataset.test_size=200",
           "train.batch_size=32", *width, "threads=1", "logger=wandb"]
    env = os.environ | {"BNEXP_DATA": str(real_data), "WANDB_MODE": "offline"} | (env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env, **kw)


def test_run_names_say_what_tells_a_job_apart():
    assert run_name({"model": "bn"}, ["model=bn", "optim.lr=0.3", "seed=2", "experiment=lr_tolerance",
                                      "profile=quick", "threads=1"]) == "bn lr=0.3 s=2"
    assert run_name({"arm": "small_batch/ghost2", "model": "bn"}, ["arm=small_batch/ghost2", "seed=3"]) == "ghost2 s=3"


@pytest.mark.slow  # a real sweep or several runs, 10-30 s here: make test-slow (CI runs it)
def test_an_offline_run_reads_back_with_its_name_group_type_config_history_and_exit(tmp_path, real_data):
    r = train(tmp_path, real_data, "model=bn", "train.max_steps=4", "train.log_every=2",
              f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    summary = records.read_summary(tmp_path / "run")
    rows = read_back(tmp_path / "run")
    run = one(rows, "run")
    assert run["run_id"] == summary["run_key"] and run["run_group"] == "ad-hoc" and run["job_type"] == "single"
    assert run["display_name"].startswith("bn ") and "norm:batch" in run["tags"]
    assert not any(t.startswith("profile:") for t in run["tags"])  # an ad-hoc run reads no profile
    assert "wandb: Run summary" not in r.stdout + r.stderr  # quiet: no summary table in the console
    config = run["config"]["update"]
    assert config["run_key"] == summary["run_key"] and config["model"]["norm"] == "batch"
    steps = [h["_step"] for h in history(rows)]
    assert steps[0] == 0 and steps == sorted(steps) and steps[-1] == summary["steps"]
    assert any("test/acc" in h for h in history(rows)) and any("grad_norm" in h for h in history(rows))
    defined = {m["name"]: m.get("summary", {}) for m in (r["metric"] for r in rows if r["type"] == "metric")}
    assert defined["test/acc"] == {"max": True, "last": True}
    assert one(rows, "exit")["exit_code"] == 0
    final = {}
    for r in rows:
        if r["type"] == "summary":
            final |= r["summary"]["update"]
    assert final["status"] == "completed" and final["run_key"] == summary["run_key"]
    # Redone: the earlier offline run is replaced, not kept beside the new one (read_back asserts one).
    (tmp_path / "run" / records.SUMMARY).unlink()
    assert train(tmp_path, real_data, "model=bn", "train.max_steps=4", "train.log_every=2",
                 f"hydra.run.dir={tmp_path / 'run'}").returncode == 0
    assert one(read_back(tmp_path / "run"), "exit")["exit_code"] == 0


@pytest.mark.slow  # a real sweep or several runs, 10-30 s here: make test-slow (CI runs it)
def test_a_failing_wandb_init_is_a_warning_in_the_summary_not_a_lost_job(tmp_path, real_data):
    env = {"HOME": str(tmp_path), "WANDB_MODE": "online", "WANDB_API_KEY": ""}  # online, no credentials
    r = train(tmp_path, real_data, "model=bn", "train.max_steps=2", "logger.mode=online",
              f"hydra.run.dir={tmp_path / 'run'}", env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    summary = records.read_summary(tmp_path / "run")
    assert summary["status"] == "completed" and summary["wandb"]["id"] is None
    assert summary["wandb"]["warning"].startswith("wandb run not started: ")


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))  # 2 MiB: the wide net's checkpoint does not fit


@pytest.mark.slow  # a real sweep or several runs, 10-30 s here: make test-slow (CI runs it)
def test_a_sweep_whose_first_job_fails_leaves_two_separate_finished_runs(tmp_path, real_data):
    """One joblib worker trains both jobs (n_jobs=1): job 0 fails mid-run (its checkpoint exceeds
    the file-size limit), job 1 then completes. Each gets its own run, finished with its own code."""
    r = train(tmp_path, real_data, "-m", "model.width=64,4", "model=bn", "train.epochs=2", "train.log_every=2",
              f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweep.subdir=${bnexp_run_key:}",
              "hydra/launcher=joblib", "hydra.launcher.n_jobs=1", preexec_fn=_limit_file_size)
    assert r.returncode == 1 and "2 jobs: 1 completed, 1 failed" in r.stderr.splitlines()[-1], r.stderr[-2000:]
    runs = {records.read_summary(d)["status"]: d for d in (tmp_path / "sweep").iterdir() if d.is_dir()}
    assert set(runs) == {"failed", "completed"}
    failed, done = read_back(runs["failed"]), read_back(runs["completed"])
    assert one(failed, "exit")["exit_code"] == 1 and one(done, "exit")["exit_code"] == 0
    assert one(failed, "run")["run_id"] != one(done, "run")["run_id"]
    assert history(done)[0]["_step"] == 0  # the second job's run starts at its own step 0
    assert one(done, "run")["config"]["update"]["model"]["width"] == 4  # its own config, not job 0's
    assert one(failed, "run")["config"]["update"]["model"]["width"] == 64


def test_the_dashboard_is_built_as_code_without_a_server():
    sys.path.insert(0, str(ROOT / "scripts"))
    import dashboard

    w = dashboard.workspace("lab", "bnexp", "quick")
    assert [s.name for s in w.sections] == ["claims", "learning rate", "small batch", "gradients", "training curves"]
    spec = w._to_model().model_dump_json()  # what --save would send, built offline
    for key in ("config:optim.value.lr", "summary:test_acc", "config:model.value.virtual_batch", "grad_norm/.*",
                "profile:quick", "claims"):
        assert key in spec, key


def test_the_report_run_carries_the_claims_table_the_figures_and_the_report(tmp_path):
    import shutil

    from bnexp.run.tracking import report_run

    shutil.copytree(ROOT / "results" / "quick", tmp_path / "quick", ignore=shutil.ignore_patterns("runs", "logs"))
    folder = report_run(tmp_path / "quick", "quick", mode="offline")
    rows = read_back(Path(folder).parent.parent)  # <results>/wandb/offline-run-*/
    run = one(rows, "run")
    assert run["job_type"] == "report" and run["run_group"] == "quick/report"
    logged = history(rows)[0]  # media are flattened: claims._type, claims.nrows, figures/<id>._type, ...
    claims = json.loads((ROOT / "results" / "quick" / "claims.json").read_text())
    assert logged["claims._type"] == "table-file" and logged["claims.nrows"] == len(claims)
    assert {k.split(".")[0] for k in logged if k.startswith("figures/")} == {
        f"figures/{p.stem}" for p in (ROOT / "results" / "quick" / "figures").glob("*.png")}
    assert all(logged[f"{k.split('.')[0]}._type"] == "image-file" for k in logged if k.startswith("figures/"))
    final = {}
    for r in rows:
        if r["type"] == "summary":
            final |= r["summary"]["update"]
    assert final["verdict/lr_tolerance"] == next(c["verdict"] for c in claims if c["id"] == "lr_tolerance")
    assert any(r["type"] == "artifact" and r["artifact"]["name"] == "quick-report" for r in rows)
    assert one(rows, "exit")["exit_code"] == 0
