"""Fixtures: the real Hydra config, composed from configs/ and shrunk for a 2-core CPU."""

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from bnexp.config import CONFIGS, register

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BNEXP_DATA", ROOT / "data"))
MODEL_PRESETS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))

# A run small enough for a test: a few hundred real images, a class-balanced 1,000-image test
# set, and nets at a quarter of their width where the preset's width is what makes them slow.
SHRINK = ["dataset.subset=256", "dataset.test_size=1000", "train.batch_size=32", "train.epochs=1",
          "train.log_every=2", "threads=2"]

register()


def make_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real CIFAR-10 (`make data` writes it); tests that train need it."""
    if not (DATA / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.fail(f"CIFAR-10 not found under {DATA}: run `make data` (make test does)")
    return DATA
