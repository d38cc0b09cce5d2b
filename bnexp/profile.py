"""Typed profiles: the budget and grid every experiment gets at one scale (configs/profile/).

A profile is a value of `Profile`, so a stray or misspelt key in configs/profile/<name>.yaml
fails at composition like a typo anywhere else, and a missing one fails before any run starts.
Grids are strings in Hydra's sweep syntax ("0.01,0.1,1.0"), which the experiment configs hand
to `hydra.sweeper.params`. Adding an experiment adds its budget class here and a field below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class Budget:
    subset: int = MISSING  # training images (class-balanced)
    epochs: int = MISSING


@dataclass
class LrToleranceBudget(Budget):
    depth: int = MISSING  # conv layers (the plain net must train at its own good lr)
    low: float = MISSING  # the bisection's bracket in lr (per step at batch 128), ends never run
    high: float = MISSING
    steps: int = MISSING  # bisection rounds: probes per model and seed


@dataclass
class ConvergenceBudget(Budget):
    depth: int = MISSING  # conv layers (the plain net must reach the target)
    eval_every_steps: int = MISSING  # test accuracy every this many steps


@dataclass
class InitInsensitivityBudget(Budget):
    depth: int = MISSING  # conv layers (the plain net must train under careful init)
    schemes: str = MISSING  # init config-group options
    scales: str = MISSING  # multipliers of every conv/linear weight


@dataclass
class SmallBatchBudget(Budget):
    arch: str = MISSING  # the net (Wu & He used ResNet-50)
    depth: int = MISSING
    width: int = MISSING
    arms: str = MISSING  # cells of configs/arm/small_batch/ (small_batch/ghost2,...)
    renorm_warmup: int = MISSING  # Batch Renorm: steps as BN before its clips open
    renorm_ramp: int = MISSING  # Batch Renorm: steps over which r_max reaches 3 and d_max 5


@dataclass
class DropoutRedundancyBudget(Budget):
    width: int = MISSING  # hidden units of the fully connected net


@dataclass
class GradientFlowBudget(Budget):
    depths: str = MISSING  # conv layers of the CNNs
    scales: str = MISSING
    steps: int = MISSING  # training steps after the measurement at initialisation


@dataclass
class SigmoidBudget(Budget):
    fc_subset: int = MISSING  # the fully connected arm's training images
    fc_epochs: int = MISSING
    lr: float = MISSING  # one lr shared by BN and plain (tuned on tuning seeds)


@dataclass
class LandscapeBudget(Budget):
    depth: int = MISSING  # conv layers (the plain net must train at the shared lr)
    lr: float = MISSING  # one constant lr shared by every model
    every: int = MISSING  # steps between landscape probes


@dataclass
class GnGroupsBudget(Budget):
    groups: str = MISSING


@dataclass
class Profile:
    name: str = MISSING  # also the results folder: results/<name>/
    test_size: int = MISSING  # class-balanced test images per evaluation
    arch: str = MISSING  # the conv net of the experiments that do not fix one: cnn, vgg or resnet
    width: int = MISSING  # channels of its first stage
    depth: int = MISSING  # its depth (cnn: conv layers; vgg: 11/13/16/19; resnet: 6n+2)
    val_size: int = MISSING  # training images held out as a validation split
    seeds: str = MISSING  # every sweep's seeds: a list ("0,1"), verdict[:N] or tuning:N from the ledger
    descriptive_seeds: str = MISSING  # seeds of sweeps no verdict reads (gn_groups)
    lr_tolerance: LrToleranceBudget = field(default_factory=LrToleranceBudget)
    convergence: ConvergenceBudget = field(default_factory=ConvergenceBudget)
    init_insensitivity: InitInsensitivityBudget = field(default_factory=InitInsensitivityBudget)
    small_batch: SmallBatchBudget = field(default_factory=SmallBatchBudget)
    dropout_redundancy: DropoutRedundancyBudget = field(default_factory=DropoutRedundancyBudget)
    gradient_flow: GradientFlowBudget = field(default_factory=GradientFlowBudget)
    sigmoid: SigmoidBudget = field(default_factory=SigmoidBudget)
    landscape: LandscapeBudget = field(default_factory=LandscapeBudget)
    gn_groups: GnGroupsBudget = field(default_factory=GnGroupsBudget)
