"""A run's wandb mirror: one wandb run per job, readable in a run table, always finished.

- One run per job, also in a joblib worker that trains several jobs one after another:
  `reinit="finish_previous"` ends whatever run the process still holds before starting this one.
- Named by what tells the job apart (`bn lr=0.3 s=2`), grouped by profile/experiment, its
  `job_type` the experiment (the claim that reads it), tagged with model, norm, batch size and
  profile; its config is the resolved config plus the run key.
- A redone or continued run replaces its earlier offline run: the wandb run id is the run key,
  the run folder's `wandb/` is cleared first, and a continued run re-logs the metrics it
  restored from its checkpoint, so the history is whole.
- `wandb.init` failing is a warning recorded in the summary, never a lost job; nothing waits
  on a network longer than `INIT_TIMEOUT` seconds.
- Finished with the job's exit code: 0, or 1 when the job failed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bnexp import records
from bnexp.config import Config
from bnexp.run.job import Job

log = logging.getLogger("bnexp")
INIT_TIMEOUT = 60.0  # seconds; offline runs start at once
# Short names of swept keys in run names; any other key keeps its last part (model.dropout -> dropout).
SHORT = {"seed": "s", "optim.lr": "lr", "init.scale": "x", "train.batch_size": "bs", "model.virtual_batch": "vb"}
NOT_NAMES = ("experiment", "profile", "threads", "device", "hydra", "dataset.root", "logger", "name")
# Test and validation metrics are summarised by their best and last values; the rest by the last.
BEST = {"test/acc": "max", "test/loss": "min", "val/acc": "max", "val/loss": "min", "test_recal/acc": "max"}


def run_name(choices: dict[str, str], overrides: list[str]) -> str:
    """The job by the values that tell it apart: its model or arm, then key=value for the rest."""
    head = (choices.get("arm") or choices.get("model") or "run").split("/")[-1]
    parts = [head]
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+~")
        if key.startswith(NOT_NAMES) or key in ("model", "arm"):
            continue
        parts.append(f"{SHORT.get(key, key.split('.')[-1])}={value}")
    return " ".join(parts)


def tags(cfg: Config, choices: dict[str, str]) -> list[str]:
    """The run's tags; `profile:<name>` for a claim's sweep only: an ad-hoc run reads no profile."""
    return [*cfg.logger.tags, f"model:{choices.get('model', cfg.model.arch.value)}", f"norm:{cfg.model.norm.value}",
            f"batch:{cfg.train.batch_size}", *([f"profile:{cfg.profile.name}"] if choices.get("experiment") else [])]


def start(job: Job, key: str, restored: records.MetricLog | None = None):
    """(the wandb run or None, a warning or None); `restored`: the metrics a continued run
    brought back from its checkpoint, logged again so that the history is whole. Never raises:
    tracking must not cost a job."""
    cfg, run_dir = job.cfg, job.dir
    if not cfg.logger.wandb or cfg.logger.mode == "disabled":
        return None, None
    try:
        import wandb  # slow to import: only when asked for

        shutil.rmtree(run_dir / "wandb", ignore_errors=True)  # an earlier attempt's offline run
        experiment = job.choices.get("experiment") or "single"
        group = f"{cfg.profile.name}/{experiment}" if job.choices.get("experiment") else "ad-hoc"
        config = OmegaConf.to_container(job.config, resolve=True) | {"run_key": key}
        run = wandb.init(project=cfg.logger.project, name=run_name(job.choices, job.overrides), id=key,
                         group=group, job_type=experiment, tags=tags(cfg, job.choices),
                         config=config, dir=str(run_dir), mode=cfg.logger.mode, reinit="finish_previous",
                         settings=wandb.Settings(init_timeout=INIT_TIMEOUT, console="off", quiet=True))
        for metric, best in BEST.items():
            run.define_metric(metric, summary=f"{best},last")
        for step, values in _by_step(restored):
            run.log(values, step=step)
        return run, None
    except Exception as e:  # no network, no credentials, a wandb bug: the job goes on
        warning = f"wandb run not started: {type(e).__name__}: {e}"
        log.warning("%s: %s", run_dir, warning)
        return None, warning


def _by_step(metrics: records.MetricLog | None) -> list[tuple[int, dict[str, float]]]:
    """The rows of a metric log grouped by step, in step order."""
    if metrics is None:
        return []
    by_step: dict[int, dict[str, float]] = {}
    for step, name, value in zip(metrics.rows["step"], metrics.rows["name"], metrics.rows["value"], strict=True):
        by_step.setdefault(int(step), {})[name] = value
    return sorted(by_step.items())


class Sink:
    """Where a run's metrics go: the record's metric log (rank 0's; in memory on other ranks),
    and the wandb run when there is one."""

    def __init__(self, metrics: records.MetricLog, run=None):
        self.metrics, self.run = metrics, run

    def add(self, step: int, epoch: float, values: dict[str, float]) -> None:
        self.metrics.add(step, epoch, values)
        if self.run:
            self.run.log(values, step=step)

    def flush(self) -> None:
        self.metrics.flush()


def finish(run, summary: dict[str, Any] | None, failed: bool) -> None:
    """Copy the run's summary in and finish it with the job's exit code. Never raises."""
    if run is None:
        return
    try:
        if summary:
            run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
        run.finish(exit_code=1 if failed else 0)
    except Exception as e:
        log.warning("wandb run %s could not be finished: %s", getattr(run, "id", "?"), e)


# --- the report run: the verdicts on the dashboard ---------------------------------------------

CLAIM_COLUMNS = ("id", "version", "verdict", "status", "effect", "ci_low", "ci_high", "unit", "n_seeds", "n_runs_used",
                 "criterion")


def report_run(results: Path, profile: str, project: str = "bnexp", mode: str = "offline") -> str | None:
    """One wandb run per report (`job_type=report`, group `<profile>/report`): the claims table as a
    wandb.Table, every figure as an image, REPORT.md and the endpoints table as an artifact.
    Returns the run's folder, or None (with a warning) when wandb cannot start."""
    import json

    import wandb

    claims = json.loads((results / "claims.json").read_text())
    try:
        run = wandb.init(project=project, name=f"{profile} report", group=f"{profile}/report", job_type="report",
                         tags=[f"profile:{profile}", "report"], dir=str(results), mode=mode,
                         reinit="finish_previous", settings=wandb.Settings(init_timeout=INIT_TIMEOUT, console="off"))
    except Exception as e:
        log.warning("wandb report run not started: %s: %s", type(e).__name__, e)
        return None
    try:
        table = wandb.Table(columns=list(CLAIM_COLUMNS), data=[[c.get(k) for k in CLAIM_COLUMNS] for c in claims])
        images = {f"figures/{p.stem}": wandb.Image(str(p)) for p in sorted((results / "figures").glob("*.png"))}
        run.log({"claims": table, **images})
        run.summary.update({f"verdict/{c['id']}": c["verdict"] for c in claims})
        artifact = wandb.Artifact(f"{profile}-report", type="report",
                                  description="REPORT.md, claims.json and the endpoints table it was computed from")
        for name in ("REPORT.md", "claims.json", "runs.csv", "curves.parquet", "exact.csv"):
            if (results / name).is_file():
                artifact.add_file(str(results / name))
        run.log_artifact(artifact)
        run.finish(exit_code=0)
    except Exception:
        run.finish(exit_code=1)
        raise
    return str(Path(run.dir).parent)
