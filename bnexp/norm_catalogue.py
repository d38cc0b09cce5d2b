"""Every normalisation a model can use, one entry each: the layer class that builds it (in
bnexp/norms.py), the model options it reads, the options it brings (with their defaults, their
lower bounds and whether run keys leave them out at their default) and what one of its
statistics is computed over.

Everything else is derived from this table, so that a new norm is its class plus one entry:
`model.norm`'s choices (config.Norm), its options as `model.<option>` fields (config.ModelConfig),
their checks (validation.validate), the layer a config builds (norms.norm_layer) and the run-key
neutral values of late options (records.KEY_NEUTRAL). Torch-free: configs compose without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Option:
    """A `model.<name>` option that a norm brings."""

    default: int | float
    doc: str
    at_least: int | float = 0  # validate refuses a value below it ("must be >= ...")
    # Added after run keys existed: left out of a run's key at its default, so that records made
    # before the option existed keep theirs (records.KEY_NEUTRAL).
    key_neutral: bool = False


@dataclass(frozen=True)
class Entry:
    layer: str | None  # the class in bnexp/norms.py, built as layer(num_channels, **reads); None: no norm
    doc: str
    reads: dict[str, str] = field(default_factory=dict)  # the layer's keyword -> the model option it takes
    options: dict[str, Option] = field(default_factory=dict)  # the options it brings (others may read them)
    # What one statistic is computed over: "batch" (the images on the device), "virtual" (model.virtual_batch
    # of them: it must divide the batch) or "image" (per image: no batch dependence).
    over: str = "image"


BN = {"eps": "eps", "momentum": "momentum"}  # what every batch-statistics layer reads (model.eps, model.momentum)

NORMS: dict[str, Entry] = {
    "none": Entry(None, "no normalisation"),
    "batch": Entry("BatchNorm", "Batch Normalization (Ioffe & Szegedy 2015)", BN, over="batch"),
    "group": Entry("GroupNorm", "Group Normalization (Wu & He 2018)",
                   {"groups": "groups", "eps": "eps", "channels_per_group": "channels_per_group"},
                   {"groups": Option(8, "GroupNorm groups (norm=group)", at_least=1),
                    "channels_per_group": Option(0, ">0: GroupNorm with this many channels per group in every "
                                                    "layer, instead of `groups`", key_neutral=True)}),
    "layer": Entry("LayerNorm", "GroupNorm with G=1", {"eps": "eps"}),
    "instance": Entry("InstanceNorm", "GroupNorm with G=C", {"eps": "eps"}),
    "ghost_batch": Entry("GhostBatchNorm", 'BN statistics over virtual sub-batches ("images per GPU")',
                         {"virtual_batch": "virtual_batch", **BN},
                         {"virtual_batch": Option(16, "images per BN statistic (norm=ghost_batch, batch_renorm)",
                                                  at_least=1)}, over="virtual"),
    "frozen_batch": Entry("FrozenBatchNorm", "running statistics in training too, calibrated before step 0", BN,
                          {"calibration_batches": Option(20, "batches that set frozen BN's statistics "
                                                             "(norm=frozen_batch)", at_least=1)}, over="batch"),
    "noisy_batch": Entry("NoisyBatchNorm", "BN, then per-channel noise redrawn every step (Santurkar et al.)",
                         {"shift": "noise_shift", "scale": "noise_scale", **BN},
                         {"noise_shift": Option(0.5, "noisy_batch: per-channel shift ~ U(-shift, shift)"),
                          "noise_scale": Option(1.0, "noisy_batch: per-channel scale ~ U(1, 1 + scale)")},
                         over="batch"),
    "batch_renorm": Entry("BatchRenorm", "Batch Renormalization (Ioffe 2017), over virtual batches like ghost BN",
                          {"virtual_batch": "virtual_batch", "r_max": "renorm_r_max", "d_max": "renorm_d_max",
                           "warmup": "renorm_warmup", "ramp": "renorm_ramp", **BN},
                          {"renorm_r_max": Option(3.0, "the final clip of r = sigma_B / sigma (Ioffe 2017: 3)",
                                                  at_least=1),
                           "renorm_d_max": Option(5.0, "the final clip of d = (mu_B - mu) / sigma (Ioffe 2017: 5)"),
                           "renorm_warmup": Option(0, "steps of plain BN (r_max 1, d_max 0) before the clips open"),
                           "renorm_ramp": Option(0, "steps over which the clips open linearly (0: at once)")},
                          over="virtual"),
}


def options() -> dict[str, Option]:
    """Every option the norms bring, by name, in the order of the table."""
    out: dict[str, Option] = {}
    for name, entry in NORMS.items():
        for option, spec in entry.options.items():
            if option in out:
                raise ValueError(f"norm {name!r} brings model.{option}, which another norm brought already")
            out[option] = spec
    return out


def checked_options(norm: str) -> list[str]:
    """The options validate checks when `norm` is chosen: those it brings and those of other norms
    its layer reads (frozen BN's calibration_batches is read by the run, not by its layer)."""
    brought = options()
    entry = NORMS[norm]
    return list(dict.fromkeys([*entry.options, *(o for o in entry.reads.values() if o in brought)]))


def key_neutral() -> dict[str, int | float]:
    """`model.<option>` -> its default, for the options run keys leave out at their default."""
    return {f"model.{name}": o.default for name, o in options().items() if o.key_neutral}
