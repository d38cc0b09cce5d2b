"""One run as it is asked for: its config, resolved once, and where its record goes.

The config travels in one form, the resolved plain container (picklable, so the ranks of a
multi-device run receive exactly what the launching process resolved); the schema-typed views
the code reads (`config` for the record and the run key, `cfg` for everything else) are made
from it where they are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bnexp.config import Config, check_keys
from bnexp.validation import validate


@dataclass(frozen=True)
class Job:
    container: dict[str, Any]  # the resolved config, without Hydra's own node
    dir: Path  # the run directory: where the record goes
    overrides: list[str] = field(default_factory=list)  # the command-line overrides that made it
    choices: dict[str, str] = field(default_factory=dict)  # bnexp's own config-group choices (model=bn, ...)

    @classmethod
    def of(cls, dcfg: DictConfig, run_dir: Path, overrides=(), choices: dict | None = None) -> Job:
        """The job of a composed config: unknown keys refused, interpolations resolved, values
        checked (ConfigError names the first impossible one)."""
        check_keys(dcfg)
        own = {k: v for k, v in (choices or {}).items() if not k.startswith("hydra/")}
        job = cls(OmegaConf.to_container(dcfg, resolve=True), Path(run_dir), list(overrides), own)
        validate(job.cfg)
        return job

    @cached_property
    def config(self) -> DictConfig:
        """The config with its schema (enums typed, defaults filled): what config.yaml holds."""
        return OmegaConf.merge(OmegaConf.structured(Config), self.container)  # type: ignore[return-value]

    @cached_property
    def cfg(self) -> Config:
        return OmegaConf.to_object(self.config)  # type: ignore[return-value]
