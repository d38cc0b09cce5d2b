"""Typed profiles: the budget and grid every experiment gets at one scale (configs/profile/).

A profile is a few general values (`General`) and one budget per experiment, named like the
experiment. Budgets are found, not listed: the keys of experiment X's budget are the
`${profile.X.<key>}` that its config files read (configs/experiment/X.yaml, its calibration
sweep configs/experiment/X/tune.yaml and its arms configs/arm/X/), and each key has the type
of the config entry it fills (a string where it fills a sweep grid, Any where the entry has no
schema). `schema` turns that into the dataclass Hydra composes a
profile against, so a stray or misspelt key in configs/profile/<name>.yaml fails at composition
like a typo anywhere else (`Key 'subsett' not in 'LrToleranceBudget'`), and a missing one fails
before any run starts. Adding an experiment adds no Python: its config, and a budget line in
each profile.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field, make_dataclass
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING

BUDGET_KEY = re.compile(r"\$\{profile\.(\w+)\.(\w+)\}")


@dataclass
class General:
    name: str = MISSING  # also the results folder: results/<name>/
    test_size: int = MISSING  # class-balanced test images per evaluation
    arch: str = MISSING  # the conv net of the experiments that do not fix one: cnn, vgg or resnet
    width: int = MISSING  # channels of its first stage
    depth: int = MISSING  # its depth (cnn: conv layers; vgg: 11/13/16/19; resnet: 6n+2)
    val_size: int = MISSING  # training images held out as a validation split
    tuning_seeds: str = MISSING  # calibration sweeps' seeds: tuning:N from the ledger
    seeds: str = MISSING  # every verdict sweep's seeds: a list ("0,1"), verdict[:N] or tuning:N from the ledger
    descriptive_seeds: str = MISSING  # seeds of sweeps no verdict reads (gn_groups)
    only: str = ""  # the experiments the profile is for (comma-separated); "": all of them


def experiment_files(configs: Path) -> dict[str, list[Path]]:
    """Every experiment (configs/experiment/<name>.yaml) with the config files it reads its budget in."""
    return {p.stem: [p, *sorted((configs / "experiment" / p.stem).glob("*.yaml")),
                     *sorted((configs / "arm" / p.stem).glob("*.yaml"))]
            for p in sorted((configs / "experiment").glob("*.yaml"))}


def _uses(node: Any, path: str = "") -> typing.Iterator[tuple[str, str, str, bool]]:
    """(experiment, key, the dotted path that reads it, whether the value is the reference alone)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _uses(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for v in node:
            yield from _uses(v, path)
    elif isinstance(node, str):
        for m in BUDGET_KEY.finditer(node):
            yield m.group(1), m.group(2), path, m.group(0) == node.strip()


def _field_type(sections: dict[str, Any], path: str, alone: bool) -> Any:
    """The type of the entry at `path` of the config schema whose top-level entries are
    `sections` (str for a sweep grid or a reference inside a longer string, Any where there is
    no schema)."""
    if path.startswith("hydra.sweeper.params.") or not alone:
        return str
    head, *rest = path.split(".")
    node: Any = sections.get(head, Any)
    for part in rest:
        hints = typing.get_type_hints(node) if dataclasses.is_dataclass(node) else {}
        node = hints.get(part, Any)
    return node if node in (int, float, str, bool) or (isinstance(node, type) and issubclass(node, Enum)) else Any


def _class_name(experiment: str) -> str:
    return "".join(part.capitalize() for part in experiment.split("_")) + "Budget"


@cache
def schema(configs: Path, sections: tuple[tuple[str, Any], ...]) -> type:
    """The Profile dataclass: `General`, then a budget dataclass per experiment found in
    `configs`, its keys typed by the entries of the config schema (top-level entries and their
    types: `sections`) that they fill. The budget classes become attributes of this module, so
    that they pickle by name like any other class."""
    top = dict(sections)
    budgets = []
    for experiment, files in experiment_files(configs).items():
        keys: dict[str, Any] = {}
        for f in files:
            for exp, key, path, alone in _uses(yaml.safe_load(f.read_text()) or {}):
                if exp != experiment:
                    raise ValueError(f"{f}: reads profile.{exp}.{key}, another experiment's budget")
                kind = _field_type(top, path, alone)
                keys[key] = kind if keys.get(key, kind) is kind else Any  # read as two types: untyped
        budget = make_dataclass(_class_name(experiment), [(k, t, field(default=MISSING)) for k, t in
                                                          sorted(keys.items())])
        budget.__module__ = __name__
        globals()[budget.__name__] = budget
        budgets.append((experiment, budget, field(default_factory=budget)))
    profile = make_dataclass("Profile", budgets, bases=(General,))
    profile.__module__ = __name__
    globals()["Profile"] = profile
    return profile


GENERAL_READ = ("test_size", "val_size", "arch", "width", "depth")  # General values an experiment may read


def budget_values(configs: Path, profile: str, experiment: str) -> dict[str, Any]:
    """The values of configs/profile/<profile>.yaml that `experiment` reads: its budget line and the
    general values (test images, validation split, the default net)."""
    data = yaml.safe_load((configs / "profile" / f"{profile}.yaml").read_text()) or {}
    return {**{k: data.get(k) for k in GENERAL_READ}, experiment: data.get(experiment)}


def budget_hash(configs: Path, profile: str, experiment: str) -> str:
    """12 hex digits over `budget_values`: registered with a version piloted at that profile, so that a
    later change of its grids, budgets or architecture makes the version's verdicts there exploratory."""
    import hashlib
    import json

    blob = json.dumps(budget_values(configs, profile, experiment), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
