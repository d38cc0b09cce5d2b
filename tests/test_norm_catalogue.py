"""A norm is its class in bnexp/norms.py plus one entry in bnexp/norm_catalogue.py: its config
choice, its options, their checks, its layer and its run-key neutral values all come from there."""

import dataclasses
import inspect
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from omegaconf import OmegaConf

from bnexp import norm_catalogue, norms, records
from bnexp.config import ConfigError, ModelConfig, Norm
from bnexp.validation import validate
from tests.conftest import ROOT, make_config


@pytest.mark.parametrize("name", list(norm_catalogue.NORMS))
def test_every_entry_builds_its_class_with_the_options_it_reads(name):
    entry = norm_catalogue.NORMS[name]
    layer = norms.norm_layer(ModelConfig(norm=Norm[name]))
    if entry.layer is None:
        assert layer is None
        return
    cls = getattr(norms, entry.layer)
    assert inspect.isclass(cls) and issubclass(cls, torch.nn.Module)
    assert layer.func is cls and set(layer.keywords) == set(entry.reads)
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    assert set(entry.reads.values()) <= fields
    y = layer(8).train()(torch.randn(32, 8, 4, 4))
    assert y.shape == (32, 8, 4, 4) and torch.isfinite(y).all()


def test_every_option_a_norm_brings_is_a_model_field_with_its_type_and_default():
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    for name, option in norm_catalogue.options().items():
        assert defaults[name] == option.default and type(defaults[name]) is type(option.default)


@pytest.mark.parametrize("norm,option,value", [
    ("group", "groups", 0), ("ghost_batch", "virtual_batch", 0), ("batch_renorm", "virtual_batch", 0),
    ("batch_renorm", "renorm_r_max", 0.5), ("batch_renorm", "renorm_ramp", -1), ("noisy_batch", "noise_scale", -0.1),
    ("frozen_batch", "calibration_batches", 0),
])
def test_an_option_below_its_bound_is_refused_for_the_norms_that_read_it_only(norm, option, value):
    low = norm_catalogue.options()[option].at_least
    with pytest.raises(ConfigError, match=f"model.{option}: must be >= {low}, got {value}"):
        validate(OmegaConf.to_object(make_config(f"model.norm={norm}", f"model.{option}={value}")))
    validate(OmegaConf.to_object(make_config("model.norm=layer", f"model.{option}={value}")))  # not read: ignored


def test_late_options_are_left_out_of_run_keys_at_their_default_only():
    assert records.KEY_NEUTRAL["model.channels_per_group"] == 0
    base = make_config("model=gn")
    assert records.run_key(base) == records.run_key(make_config("model=gn", "model.channels_per_group=0"))
    assert records.run_key(base) != records.run_key(make_config("model=gn", "model.channels_per_group=4"))


NEW_CLASS = '''

class ScaledBatchNorm(BatchNorm):
    """BN whose output is multiplied by a fixed gain (a norm added as a class plus one entry)."""

    def __init__(self, num_channels: int, gain: float, **kw):
        super().__init__(num_channels, **kw)
        self.gain = gain

    def forward(self, x):
        return super().forward(x) * self.gain
'''

NEW_ENTRY = '''
NORMS["scaled_batch"] = Entry("ScaledBatchNorm", "BN times a gain", {"gain": "scaled_gain", **BN},
                              {"scaled_gain": Option(1.0, "the gain", at_least=0, key_neutral=True)}, over="batch")
'''

CHECK = textwrap.dedent('''
    import dataclasses, torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from bnexp import models, norms, records
    from bnexp.config import CONFIGS, ConfigError, Norm
    from bnexp.validation import validate
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", ["model.norm=scaled_batch", "model.scaled_gain=2.0", "model.depth=3", "model.width=8"])
        bad = compose("config", ["model.norm=scaled_batch", "model.scaled_gain=-1.0"])
        plain = compose("config", ["model.norm=batch"])
    typed = OmegaConf.to_object(cfg)
    validate(typed)
    try:
        validate(OmegaConf.to_object(bad))
        print("not refused")
    except ConfigError as e:
        print("refused:", e)
    net = models.build(typed.model, 10).train()
    layer = [m for m in net.modules() if isinstance(m, norms.ScaledBatchNorm)]
    print("layers:", len(layer), layer[0].gain)
    print("forward:", tuple(net(torch.randn(4, 3, 32, 32)).shape))
    print("neutral:", records.KEY_NEUTRAL["model.scaled_gain"])
    names = {f.name for f in dataclasses.fields(typed.model)}
    print("choice:", Norm.scaled_batch.value, "field:", "scaled_gain" in names)
''')


def test_a_new_norm_is_a_class_plus_one_entry(tmp_path):
    """In a copy of the package, add a class to norms.py and one entry to norm_catalogue.py, and
    nothing else: the new norm composes, validates its option, builds and trains a forward pass."""
    shutil.copytree(ROOT / "bnexp", tmp_path / "bnexp", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    with open(tmp_path / "bnexp" / "norms.py", "a") as f:
        f.write(NEW_CLASS)
    with open(tmp_path / "bnexp" / "norm_catalogue.py", "a") as f:
        f.write(NEW_ENTRY)
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused: model.scaled_gain: must be >= 0, got -1.0" in out.stdout
    assert "layers: 3 2.0" in out.stdout
    assert "forward: (4, 10)" in out.stdout
    assert "neutral: 1.0" in out.stdout
    assert "choice: scaled_batch field: True" in out.stdout
