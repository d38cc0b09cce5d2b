"""`hydra/sweeper=bisection`: for every point of a grid, bisect one numeric key for the boundary
where a run stops passing a test (the largest learning rate that still trains, say).

    bnexp-train -m hydra/sweeper=bisection model=plain,bn seed=3,4 \
        hydra.sweeper.key=optim.lr hydra.sweeper.low=0.01 hydra.sweeper.high=100 hydra.sweeper.steps=5 \
        hydra.sweeper.metric=train_loss hydra.sweeper.at_most=2.0

Each round launches one probe per grid point, all at once on the configured launcher (joblib
runs them in parallel), at the midpoint of that point's bracket (geometric with `log`). A probe
passes when its run completed and its summary's `metric` is within `at_least` / `at_most`;
a pass raises the bracket's lower end, a failure lowers the upper end. The ends themselves are
never run: after `steps` rounds each bracket is [largest passing probe or `low`, smallest
failing probe or `high`]. Probe values are rounded to 6 significant digits, so a rerun asks for
the same runs, finds them complete and retraces the same path: an interrupted bisection resumes.

`<sweep dir>/bisection.json` lists every probe (its run folder, value, outcome, pass) and each
point's bracket, rewritten as the rounds go (bnexp.sweep reads it for the tally and progress).
"""


import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
STATE = "bisection.json"


@dataclass
class BisectionSweeperConf:
    _target_: str = "hydra_plugins.bnexp_bisection.bisection_sweeper.BisectionSweeper"
    params: Any = None  # the grid, as for the basic sweeper: one bisection per point
    key: str = "optim.lr"  # the key bisected
    low: float = 0.0  # the bracket; its ends are assumed, never run
    high: float = 1.0
    steps: int = 5  # rounds (probes per grid point)
    log: bool = True  # bisect log(value): probes at geometric midpoints
    metric: str = "test_acc"  # the summary value a probe is judged by
    at_least: Any = None  # pass: metric >= at_least (when set)
    at_most: Any = None  # pass: metric <= at_most (when set)


ConfigStore.instance().store(group="hydra/sweeper", name="bisection", node=BisectionSweeperConf)


def midpoint(low: float, high: float, log_scale: bool) -> float:
    value = math.sqrt(low * high) if log_scale else (low + high) / 2
    return float(f"{value:.6g}")


def passes(summary: dict | None, metric: str, at_least, at_most) -> bool:
    """A probe passes when its run completed and its metric is inside the bounds."""
    if not summary or summary.get("status") != "completed":
        return False
    value = summary.get(metric)
    if value is None or not math.isfinite(value):
        return False
    return (at_least is None or value >= at_least) and (at_most is None or value <= at_most)


def check(conf) -> str | None:
    """What is wrong with a bisection's settings, or None."""
    if conf.steps < 1:
        return f"hydra.sweeper.steps: must be >= 1, got {conf.steps}"
    if not conf.low < conf.high:
        return f"hydra.sweeper.low/high: need low < high, got {conf.low} and {conf.high}"
    if conf.log and conf.low <= 0:
        return f"hydra.sweeper.low: must be > 0 with log=true, got {conf.low}"
    if conf.at_least is None and conf.at_most is None:
        return "hydra.sweeper: set at_least or at_most (what makes a probe pass)"
    return None


def grid(params: dict | None, arguments: list[str], config_loader) -> list[list[str]]:
    """The grid points: every combination of the swept params and command-line overrides."""
    conf = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(conf)
    return [list(p) for p in BasicSweeper.split_arguments(parsed, None)[0]]


class BisectionSweeper(Sweeper):
    def __init__(self, key: str, low: float, high: float, steps: int, log: bool, metric: str,
                 at_least=None, at_most=None, params=None) -> None:
        self.conf = BisectionSweeperConf(params=params, key=key, low=float(low), high=float(high), steps=int(steps),
                                         log=bool(log), metric=metric, at_least=at_least, at_most=at_most)
        self.launcher: Launcher | None = None
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def _dir(self, overrides: list[str]) -> str:
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        return str(Path(self.config.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir))

    def sweep(self, arguments: list[str]) -> Any:
        c = self.conf
        problem = check(c)
        if problem:
            raise ValueError(problem)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        points = grid(c.params, arguments, self.hydra_context.config_loader)
        brackets = [[c.low, c.high] for _ in points]
        probes: list[dict] = []
        returns, job_idx = [], 0
        for round_ in range(c.steps):
            values = [midpoint(lo, hi, c.log) for lo, hi in brackets]
            batch = [[*p, f"{c.key}={v!r}"] for p, v in zip(points, values, strict=True)]
            new = [{"round": round_, "point": " ".join(p), "value": v, "dir": self._dir(b), "outcome": None,
                    "passed": None} for p, v, b in zip(points, values, batch, strict=True)]
            probes += new
            self._save(sweep_dir, points, brackets, probes)
            log.info("bisection round %d/%d: %d probes of %s", round_ + 1, c.steps, len(batch), c.key)
            results = self.launcher.launch(batch, initial_job_idx=job_idx)
            job_idx += len(batch)
            returns.append(results)
            for probe, bracket, r in zip(new, brackets, results, strict=True):
                probe["outcome"] = _outcome(r)
                summary = _summary(Path(probe["dir"]))
                probe["passed"] = passes(summary, c.metric, c.at_least, c.at_most)
                bracket[0 if probe["passed"] else 1] = probe["value"]
            self._save(sweep_dir, points, brackets, probes)
        return returns

    def _save(self, sweep_dir: Path, points, brackets, probes) -> None:
        c = self.conf
        state = {"key": c.key, "metric": c.metric, "at_least": c.at_least, "at_most": c.at_most, "log": c.log,
                 "steps": c.steps, "brackets": [{"point": " ".join(p), "low": lo, "high": hi}
                                                for p, (lo, hi) in zip(points, brackets, strict=True)],
                 "probes": probes}
        tmp = sweep_dir / f".{STATE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(sweep_dir / STATE)


def _outcome(r) -> str:
    try:
        value = r.return_value
    except Exception as e:  # the job raised: the sweep's tally reports it from disk
        return f"raised {type(e).__name__}"
    return str(value)


def _summary(run_dir: Path) -> dict | None:
    """The probe's summary, or the committed table's row where the run was not trained again
    (bnexp/run/committed.py)."""
    for name in ("summary.json", "in_table.json"):
        try:
            return json.loads((run_dir / name).read_text())
        except (OSError, ValueError):
            continue
    return None


def ends(conf, points: list[list[str]]) -> list[list[str]]:
    """The overrides at each grid point's bracket ends: every value a probe can take lies
    between them, so checking these checks every config the bisection can launch."""
    return [[*p, f"{conf.key}={float(v)!r}"] for p in points for v in (conf.low, conf.high)]
