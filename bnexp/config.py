"""Typed config schemas, registered in Hydra's ConfigStore.

Hydra composes `configs/config.yaml` on top of `Config` below, so an unknown key or a value of
the wrong type fails at composition, naming the key. `validate` (bnexp/validation.py) then checks
the values that are well-typed but impossible (a negative learning rate, groups that do not
divide a layer's channels), before anything is written or trained.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

from bnexp import norm_catalogue
from bnexp.profile import schema

CONFIGS = Path(__file__).resolve().parent.parent / "configs"  # the checkout's configs/ (editable install)


class Dataset(Enum):
    cifar10 = "cifar10"
    cifar100 = "cifar100"


class Arch(Enum):
    cnn = "cnn"  # plain conv stack in 3 stages (the claims' main workhorse)
    vgg = "vgg"  # VGG-11/13/16/19 layout, CIFAR-sized classifier
    resnet = "resnet"  # CIFAR ResNet (6n+2 layers, He et al. 2016, option-A shortcuts)
    mlp = "mlp"  # fully connected net on flattened images (Ioffe & Szegedy's MNIST setting)


# model.norm's choices, one per entry of bnexp/norm_catalogue.py (each entry says what its norm is).
Norm = Enum("Norm", {name: name for name in norm_catalogue.NORMS}, module=__name__, qualname="Norm")


class Activation(Enum):
    relu = "relu"
    sigmoid = "sigmoid"
    tanh = "tanh"


class InitScheme(Enum):
    default = "default"  # PyTorch's own (kaiming_uniform with a=sqrt(5))
    kaiming_normal = "kaiming_normal"
    kaiming_uniform = "kaiming_uniform"
    xavier_normal = "xavier_normal"
    xavier_uniform = "xavier_uniform"
    orthogonal = "orthogonal"
    normal = "normal"  # N(0, std^2)


class FanMode(Enum):
    fan_in = "fan_in"
    fan_out = "fan_out"


class Optimizer(Enum):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"


class Precision(Enum):
    fp32 = "fp32"  # float32 throughout (the default; what every run before this setting computed)
    tf32 = "tf32"  # float32 with TF32 matmuls and convolutions (CUDA Ampere and later)
    bf16 = "bf16"  # autocast to bfloat16 for the forward and the loss; fp32 weights, norms and statistics


class Schedule(Enum):
    constant = "constant"
    step = "step"
    cosine = "cosine"
    warmup_linear = "warmup_linear"  # linear warm-up, then linear decay to zero
    onecycle = "onecycle"


@dataclass
class DatasetConfig:
    name: Dataset = Dataset.cifar10
    root: str = "${oc.env:BNEXP_DATA,data}"  # folder holding cifar-10-batches-py / cifar-100-python
    subset: int = 0  # training images, class-balanced; 0 = all that are not held out
    val_size: int = 0  # images held out of the training files as a validation split
    test_size: int = 0  # test images evaluated, class-balanced; 0 = all 10,000 (fast smoke runs)
    split_seed: int = 0  # picks the subset and the validation split; fixed across training seeds
    augment: bool = True  # random crop (pad 4) and horizontal flip, on the device
    coarse_labels: bool = False  # CIFAR-100 only: the 20 superclasses instead of 100 classes
    train_size: int = 50000  # images in the official training files (a fact of the data set)


@dataclass
class _ModelOwn:
    """The model's own options; those each norm brings are added from bnexp/norm_catalogue.py."""

    arch: Arch = Arch.cnn
    depth: int = 9  # cnn: conv layers; vgg: 11/13/16/19; resnet: 6n+2; mlp: hidden layers
    width: int = 32  # channels of the first stage (cnn, vgg, resnet) or hidden units (mlp)
    norm: Norm = Norm.none  # type: ignore[valid-type]  # a name in bnexp/norm_catalogue.py
    momentum: float = 0.1  # BN running-statistics momentum, PyTorch convention (Keras 0.9)
    eps: float = 1e-5
    activation: Activation = Activation.relu
    dropout: float = 0.0  # p after each activation: Conv -> Norm -> Act -> Dropout
    head_dropout: float = 0.0  # p before the classifier (after global pooling), Inception's placement
    # norm=batch on several devices (train.devices > 1): statistics over the whole global batch,
    # all-reduced across devices, instead of each device's own images (the default, as in Wu & He).
    sync_bn: bool = False
    # Every conv's weights standardised per output channel in the forward pass (Qiao et al. 2019,
    # "Micro-Batch Training with Batch-Channel Normalization and Weight Standardization"): with
    # norm=group, the GN+WS that matches BN at large batches without depending on the batch.
    weight_standardization: bool = False


# The model config: its own options, then every option a norm brings (`model.virtual_batch`, ...),
# with the type and the default its catalogue entry gives.
ModelConfig = make_dataclass(
    "ModelConfig", [(name, type(o.default), field(default=o.default)) for name, o in norm_catalogue.options().items()],
    bases=(_ModelOwn,))
ModelConfig.__module__ = __name__  # found by pickling (joblib, submitit) as bnexp.config.ModelConfig


@dataclass
class InitConfig:
    scheme: InitScheme = InitScheme.kaiming_normal
    mode: FanMode = FanMode.fan_in  # kaiming only
    std: float = 0.01  # scheme=normal only
    scale: float = 1.0  # multiplies every conv/linear weight after the scheme (init-scale sweeps)
    zero_init_residual: bool = False  # resnet: last gamma of each block starts at 0


@dataclass
class OptimConfig:
    name: Optimizer = Optimizer.sgd
    lr: float = 0.05  # per step; see lr_reference_batch
    lr_reference_batch: int = 0  # >0: lr is per this many images, scaled linearly with batch size
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    weight_decay: float = 5e-4
    wd_exempt_norm_bias: bool = True  # no weight decay on norm gammas/betas and biases
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam, adamw
    eps: float = 1e-8  # adam, adamw


@dataclass
class ScheduleConfig:
    name: Schedule = Schedule.cosine
    warmup: float = 0.0  # fraction of all steps spent warming up linearly from 0 (any schedule)
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # step: fractions
    gamma: float = 0.1  # step: factor at each milestone
    final_lr_frac: float = 0.0  # cosine: final lr as a fraction of the peak
    pct_start: float = 0.25  # onecycle: fraction of steps rising to the peak


@dataclass
class TrainConfig:
    epochs: int = 10
    max_steps: int = 0  # >0: stop after this many steps (the schedule spans them)
    # The global batch: images per optimiser step over all devices. Each of `devices` processes
    # gets a disjoint batch_size / devices of them ("images per device"); lr scaling, steps per
    # epoch and the record all count the global batch.
    batch_size: int = 128
    devices: int = 1  # processes training one model with DistributedDataParallel (one per GPU, or CPU processes)
    log_every: int = 20  # steps between train metrics and gradient/weight norms
    eval_every: int = 1  # epochs between test evaluations (and always at the end)
    eval_batch_size: int = 200  # images; larger batches run slower on a CPU (cache)
    eval_batch_stats: bool = False  # also evaluate with batch statistics (train-size batches)
    recalibrate: int = 0  # >0: at the end, also evaluate with BN statistics re-estimated on this many batches
    diverge_loss: float = 1e3  # train loss above this (or non-finite) ends the run as `diverged`
    eval_every_steps: int = 0  # >0: also evaluate every this many steps (time-to-accuracy)
    probe_layer: str = ""  # activation whose input percentiles are logged: "", "last" or a module path
    probe_unit: int = 0  # the unit (channel) of probe_layer; `preact/drift` covers all its units
    landscape_every: int = 0  # >0: loss-landscape probe every this many steps
    landscape_steps: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0])  # x current lr
    progress: bool = True  # progress bar when stderr is a terminal
    channels_last: bool = True  # NHWC memory layout: 15-30% faster convs on a CPU, faster on GPUs
    checkpoint_minutes: float = 10.0  # also checkpoint inside an epoch this often (0: at epoch ends only)
    keep_checkpoint: bool = False  # keep checkpoint.pt, saved at the end, once the run is complete
    # Deterministic kernels: torch.use_deterministic_algorithms, cuDNN deterministic and no
    # benchmark, CUBLAS_WORKSPACE_CONFIG=:4096:8. Bitwise-repeatable GPU runs, somewhat slower.
    deterministic: bool = False
    precision: Precision = Precision.fp32  # see Precision; recorded, and part of the run key
    compile: bool = False  # torch.compile the net (forward and backward); part of the run key
    compile_mode: str = "default"  # torch.compile's mode: default | reduce-overhead | max-autotune
    # cuDNN autotuning on CUDA (never in deterministic mode, never on a CPU); recorded, not in the
    # run key: it picks among kernels that compute the same convolution.
    cudnn_benchmark: bool = True
    # Processes sharing one GPU (a sweep's jobs): each may take at most 1/this of its memory, so
    # that none grabs what the others need. Recorded, not in the run key.
    jobs_per_device: int = 1


@dataclass
class LoggerConfig:
    wandb: bool = False
    project: str = "bnexp"
    mode: str = "${oc.env:WANDB_MODE,offline}"  # offline | online | disabled
    tags: list[str] = field(default_factory=list)


# Every experiment's budget, found in configs/ (bnexp/profile.py): no list of experiments here.
Profile = schema(CONFIGS, (("dataset", DatasetConfig), ("model", ModelConfig), ("init", InitConfig),
                           ("optim", OptimConfig), ("schedule", ScheduleConfig), ("train", TrainConfig),
                           ("logger", LoggerConfig), ("seed", int), ("device", str), ("threads", int), ("name", str)))


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads; 0 = torch's default
    name: str = "run"  # a label for wandb and the summary
    # Where profiles keep their results: <results>/<profile>/ holds tuned.json, the table and the
    # report, <results>/<profile>/runs/ an experiment's sweeps. A path on this machine: never in a key.
    results: str = "results"
    # Values the experiment configs interpolate, set by configs/profile/ (smoke, quick, full).
    profile: Profile = field(default_factory=Profile)


def experiments() -> list[str]:
    """Every experiment config there is: configs/experiment/<name>.yaml."""
    return sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))


def calibrations() -> list[str]:
    """Every calibration sweep there is: configs/experiment/<claim>/tune*.yaml, as `<claim>/tune...`."""
    return sorted(f"{p.parent.name}/{p.stem}" for p in (CONFIGS / "experiment").glob("*/tune*.yaml"))


def pilots() -> list[str]:
    """Every pilot sweep there is: configs/experiment/<claim>/pilot*.yaml, as `<claim>/pilot...`. A
    version's guards measured on tuning seeds at its regime (bnexp/method/pilot.py), for a claim
    that tunes nothing its guards could be piloted on; run by the calibration stage, never decided."""
    return sorted(f"{p.parent.name}/{p.stem}" for p in (CONFIGS / "experiment").glob("*/pilot*.yaml"))


def drafts() -> list[str]:
    """Every draft's verdict sweep: configs/experiment/<claim>/v<n>_draft.yaml, as `<claim>/v<n>_draft`
    (run by hand while the draft is piloted; it becomes the claim's sweep once registered)."""
    return sorted(f"{p.parent.name}/{p.stem}" for p in (CONFIGS / "experiment").glob("*/v*_draft.yaml"))


def profile_only(profile: str) -> list[str]:
    """The experiments a profile is for (`only` in configs/profile/<name>.yaml); empty: all of them,
    or a name that is not a profile."""
    if not (CONFIGS / "profile" / f"{profile}.yaml").is_file():
        return []
    from hydra import compose, initialize_config_dir  # here: the rest of this module needs no Hydra state

    register()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return [e for e in str(compose("config", [f"profile={profile}"]).profile.only).split(",") if e]


def register() -> None:
    """Make `Config` the schema that configs/config.yaml extends (its defaults name it)."""
    ConfigStore.instance().store(name="bnexp_schema", node=Config)
    # configs/hydra/launcher/submitit_{slurm,local}.yaml are checked against the submitit plugin's
    # schema by their shared name, which Hydra 1.3 warns is deprecated on every run; the
    # documented alternative (the schema in a defaults list) fails with the pinned plugin.
    warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")


class ConfigError(ValueError):
    """A config value that cannot run; `key` is its dotted path."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def num_classes(d: DatasetConfig | dict) -> int:
    """Classes of the labels a dataset config reads (the typed config, or a record's as written)."""
    name, coarse = (d.name, d.coarse_labels) if isinstance(d, DatasetConfig) else (d["name"], d["coarse_labels"])
    return 10 if Dataset(name) is Dataset.cifar10 else 20 if coarse else 100


VGG_DEPTHS = (11, 13, 16, 19)


def check_keys(dcfg: Any, prefix: str = "") -> None:
    """Refuse keys the schema does not have. `+optim.lrr=0.1` gets past Hydra's struct mode (a
    `+` may add keys) and would be stored and silently ignored."""
    from omegaconf import DictConfig, OmegaConf

    schema = OmegaConf.get_type(dcfg)
    known = {f.name for f in fields(schema)} if is_dataclass(schema) else None
    for key in dcfg:
        dotted = f"{prefix}{key}"
        if known is not None and key not in known:
            raise ConfigError(dotted, f"not a key of {schema.__name__} (a typo?)")
        value = dcfg._get_node(key)
        if isinstance(value, DictConfig) and key != "hydra":
            check_keys(value, f"{dotted}.")


def one_line_error(e: BaseException) -> str | None:
    """A Hydra/OmegaConf composition error as one line naming the key; None if not one."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(e, (HydraException, OmegaConfBaseException)):
        return None
    cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else e
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        first = str(getattr(cause, "msg", cause)).strip().splitlines()[0]
        return f"{cause.full_key}: {first}"
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    missing = re.search(r"Could not find '([^']+)/([^'/]+)'", str(e))
    if missing:  # a misspelt option of a config group: name it and the options, not Hydra's search path
        group, option = missing.groups()
        at = lines.index(f"Available options in '{group}':") if f"Available options in '{group}':" in lines else -1
        options = [ln for ln in lines[at + 1:] if not ln.startswith(("Config search path", "provider="))]
        return f"{group}={option}: no such option" + (f" (options: {', '.join(options)})" if at >= 0 else "")
    key = next((ln.removeprefix("full_key:").strip() for ln in lines if ln.startswith("full_key:")), "")
    if key:  # a composition error inside a config file (a profile, a preset): the key, then the reason
        where = lines[0].split(":")[0] if lines[0].startswith("In '") else ""
        reason = lines[1] if len(lines) > 1 else lines[0]
        return f"{key}: {reason}" + (f" ({where.removeprefix('In ')})" if where else "")
    lines = [ln for ln in lines if not ln.startswith(("object_type=", "reference_type="))]
    return " ".join(lines)
