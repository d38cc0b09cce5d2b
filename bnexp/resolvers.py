"""The OmegaConf resolvers of bnexp's configs, registered when the package is imported.

- `${bnexp_run_key:}` (`hydra.sweep.subdir`): names each sweep job's directory by what it
  computes, so a rerun of a sweep finds every job's record where it left it.
- `${bnexp_seeds:${profile.seeds},<claim>}`: a sweep's seeds, from the ledger (verdict, tuning).
- `${bnexp_tuned:${profile.name},<question>,<arm>}`: a constant the profile's calibration chose
  (results/<profile>/tuned.json, bnexp/calibration.py); refused on one line when there is none.
What they need is imported on first use, so that importing the package stays cheap.
"""

from __future__ import annotations

from enum import Enum

from omegaconf import DictConfig, OmegaConf


def run_key(root: DictConfig) -> str:
    """The key of what a composed config (Hydra's node included) computes on this machine: its
    values and its computation (bnexp.run.provenance.computation)."""
    from bnexp import records
    from bnexp.config import Config
    from bnexp.run import provenance
    from bnexp.sweep import without_hydra

    try:
        cfg: Config = OmegaConf.to_object(without_hydra(root))  # type: ignore[assignment]
        return records.run_key(root, provenance.computation(cfg))
    except Exception:  # a config that cannot run gets refused by name before it is used
        return records.run_key(root)


def config_key(root: DictConfig) -> str:
    """The key of what a composed config asks for on any machine (records.config_key)."""
    from bnexp import records
    from bnexp.run import provenance

    return records.config_key(root, provenance.data_source(root))  # it reads dataset.root and .name only


def seeds(spec, claim: str) -> str:
    from bnexp.method.ledger.seeds import seeds_for

    return seeds_for(spec, claim)


def tuned(profile: str, question: str, arm: str | None = None, *, _root_: DictConfig) -> float:
    from bnexp.calibration import value

    # an arm named by a typed field (`${model.norm}`) arrives as its enum member: the arm is its value
    arm = None if arm is None else str(arm.value if isinstance(arm, Enum) else arm)
    return value(str(profile), str(question), arm, _root_.get("results", "results"))


def sweep_dir(results: str, profile: str, experiment: str | None, elsewhere: str) -> str:
    """An experiment's sweep goes to <results>/<profile>/runs/<experiment> (its runs under their run
    keys, so a rerun finds each); a sweep of no experiment to `elsewhere`."""
    return f"{results}/{profile}/runs/{experiment}" if experiment else elsewhere


def sweep_subdir(experiment: str | None, *, _root_: DictConfig) -> str:
    """A job's folder in its sweep: its run key, an experiment's sweep or an ad-hoc one, so that the
    same command run again finds each job where it left it (complete: skipped; a checkpoint:
    continued)."""
    return run_key(_root_)


# Command-line entries that do not change what a sweep computes (records.KEY_EXCLUDES' top level).
_IDLE_OVERRIDES = ("threads", "device", "train.progress", "logger", "results", "name", "hydra")


def adhoc_sweep(results: str, name: str) -> str:
    """An ad-hoc sweep's folder (no experiment): <results>/runs/multirun/<name>, `name` being the
    config's own (`name=mysweep`) or, left at its default, `sweep-` and 8 hex digits of the command
    line's overrides in any order (those that change no number left out), so that the same command
    is the same folder, and resumes there. Read off the command line of the process that composes
    the sweep, and cached: each job's config is given the sweep's value (Hydra copies the cache, as
    for its own `now`), never one computed from the job's own overrides."""
    import hashlib
    import sys

    if name and name != "run":
        return f"{results}/runs/multirun/{name}"
    task = sorted(a for a in sys.argv[1:] if "=" in a and not a.startswith("-")
                  and not a.lstrip("+~").split("=", 1)[0].startswith(_IDLE_OVERRIDES))
    return f"{results}/runs/multirun/sweep-{hashlib.sha1(' '.join(task).encode()).hexdigest()[:8]}"


def single_dir(results: str, *, _root_: DictConfig) -> str:
    """A single run's folder: <results>/runs/single/<run key>, so that the same command run again
    continues it from its checkpoint, or finds it complete."""
    return f"{results}/runs/single/{run_key(_root_)}"


OmegaConf.register_new_resolver("bnexp_tuned", tuned, replace=True)
OmegaConf.register_new_resolver("bnexp_run_key", lambda *, _root_: run_key(_root_), replace=True)
OmegaConf.register_new_resolver("bnexp_seeds", seeds, replace=True)
OmegaConf.register_new_resolver("bnexp_sweep_dir", sweep_dir, replace=True)
OmegaConf.register_new_resolver("bnexp_sweep_subdir", sweep_subdir, replace=True)
# cached, as Hydra's own `now`: each job's config gets the sweep's value (Hydra copies the cache), not
# one of its own overrides
OmegaConf.register_new_resolver("bnexp_adhoc_sweep", adhoc_sweep, replace=True, use_cache=True)
OmegaConf.register_new_resolver("bnexp_single_dir", single_dir, replace=True)
