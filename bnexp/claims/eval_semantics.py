"""eval_semantics: training uses batch statistics, eval running averages; the eval transform folds."""

from __future__ import annotations

import pandas as pd
import torch

from bnexp import exact
from bnexp.claims.small_batch import batchstats_gap, endpoints_v1
from bnexp.method.contract import Claim, Context, Version, exact_result

TOLERANCE_V1 = 1e-5


def measure_v1() -> dict[str, float]:
    return exact.running_statistics() | {"fold_err_float32": exact.fold_error(torch.float32),
                                         "fold_err_float32_with_bias": exact.fold_error(torch.float32, True)}


def verdict_v1(t: pd.DataFrame, ctx: Context):
    res = exact_result(ctx.measured, TOLERANCE_V1)
    res.detail += batchstats_gap(t.assign(per_stat=t["per_stat"].astype(int))) if len(t) else []
    return res


VERSIONS = {1: Version(f"errors <= {TOLERANCE_V1:g}; the running- vs batch-statistics accuracy gap is reported",
                       "exact check; the gap from the small_batch runs", endpoints_v1, verdict_v1, "small_batch",
                       measure=measure_v1)}


CLAIM = Claim(
    "eval_semantics",
    statement="Training uses batch statistics, eval running averages (momentum, unbiased variance); the eval "
              "transform folds into the conv.",
    source="Ioffe & Szegedy 2015; the BN notes",
    published="PyTorch momentum 0.1 = Keras 0.9; unbiased running variance.",
    unit="max error",
    order=120,
    versions=VERSIONS,
)
