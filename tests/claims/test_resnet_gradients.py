"""resnet_gradients, specified on hand-made tables: v1 (the whole net's gradient norm at init is
>= 100x larger without BN in the deepest ResNet, and that ratio grows >= 10x from the shallowest
ResNet to the deepest). `hand_made()` feeds the same tables to re-certification."""

import numpy as np
import pandas as pd
import pytest

from bnexp.claims import by_id
from bnexp.method.contract import Context
from bnexp.method.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

TWELVE = range(41, 53)


def nets(seeds, per_block: float = 2.0, depths=(20, 56, 110)) -> pd.DataFrame:
    """Per seed and depth: BN's gradient norm 3 at init, plain's (per_block x v)^blocks times BN's (its
    activations compound block by block), v = 1 + 0.002 (seed mod 3)."""
    rows = []
    for seed in seeds:
        v = 1 + 0.002 * (seed % 3)
        for d in depths:
            blocks = (d - 2) // 2
            rows += [{"seed": seed, "choice_model": "bn", "depth": d, "grad_init": 3.0, "loss_init": 3.0,
                      "spread_init": 20.0},
                     {"seed": seed, "choice_model": "plain", "depth": d, "grad_init": 3.0 * (per_block * v) ** blocks,
                      "loss_init": 1e3, "spread_init": 5.0}]
    return pd.DataFrame(rows).assign(final_acc=0.1)


def verdict(t: pd.DataFrame):
    return by_id()["resnet_gradients"].versions[1].verdict(t, Context())


def hand_made() -> list[pd.DataFrame]:
    return [nets(TWELVE), nets(TWELVE, per_block=1.0), nets(TWELVE, depths=(110,))]


def test_far_larger_and_growing_with_depth_is_reproduced():
    res = verdict(nets(TWELVE))
    assert res.verdict == REPRODUCED, res.detail
    assert res.derived["seeds"] == [41, 42, 43, 44, 45]
    # the deciding part is the smaller margin on the log scale: the growth, (2v)^54 / (2v)^9 against
    # 10, rather than the ratio at 110, (2v)^54 against 100
    want = [(2 * (1 + 0.002 * (s % 3))) ** 45 for s in res.derived["seeds"]]
    assert res.effect == pytest.approx(float(np.exp(np.mean(np.log(want)))), rel=1e-9)
    assert sum(line.startswith("ResNet-") for line in res.detail) == 3


def test_no_larger_without_bn_is_not_reproduced():
    res = verdict(nets(TWELVE, per_block=1.0))  # plain 1-1.2x BN at every depth
    assert res.verdict == NOT_REPRODUCED, res.detail


def test_one_depth_cannot_show_the_growth():
    """Only ResNet-110 in the table: the first part holds, the growth has no values, so the claim
    stays undecided rather than being read off one depth."""
    res = verdict(nets(TWELVE, depths=(110,)))
    assert res.verdict == INCONCLUSIVE, res.detail
    assert [line.split(":")[0] for line in res.detail if line.startswith("ResNet-")] == ["ResNet-110"]
