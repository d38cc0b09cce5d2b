"""gradient_flow, specified on hand-made tables: v1 (BN's worst per-layer gradient spread at init
<= 10 at every scale, plain's >= 100 at its worst), v2 (the gradient norm's response to the init
scale at depth 15) and v3 (the per-layer spread at He init in the deepest net, BN <= 10 and plain
>= 2x BN's). `hand_made()` feeds the same tables to re-certification."""

import numpy as np
import pandas as pd
import pytest

from bnexp.claims import by_id
from bnexp.claims import gradient_flow as gf
from bnexp.method.contract import Context
from bnexp.method.stats import NOT_REPRODUCED, REPRODUCED


def nets(seeds, bn_spread: float = 3.0, plain_spread: float = 30.0, depths=(6, gf.DEPTH_V2),
         bn_power: float = -1.0) -> pd.DataFrame:
    """Per seed, depth and init scale (0.5, 1, 2). Gradient norm at init: BN's ~scale^bn_power (1/scale
    by default), plain's scale^(depth-1). Per-layer spread at init: BN's `bn_spread`, plain's
    `plain_spread` at scale 1 and scale^(depth/3) times that elsewhere; both 5% wider per seed mod 3."""
    rows = []
    for seed in seeds:
        w = 1 + 0.05 * (seed % 3)
        for d in depths:
            for scale in (0.5, 1.0, 2.0):
                grad = 1.0 + 0.1 * seed * scale
                rows += [{"seed": seed, "choice_model": "bn", "depth": d, "init_scale": scale,
                          "grad_init": grad * scale ** bn_power, "spread_init": bn_spread * w},
                         {"seed": seed, "choice_model": "plain", "depth": d, "init_scale": scale,
                          "grad_init": grad * scale ** (d - 1), "spread_init": plain_spread * w * scale ** (d / 3)}]
    t = pd.DataFrame(rows)
    return t.assign(grad_train_median=1.0, grad_median_init=t["grad_init"], spread_max=t["spread_init"], final_acc=0.3)


THREE, EIGHT, TWELVE = (3, 4, 5), range(11, 19), range(21, 33)


def verdict(n: int, t: pd.DataFrame):
    return by_id()["gradient_flow"].versions[n].verdict(t, Context())


def hand_made() -> list[pd.DataFrame]:
    return [nets(THREE), nets(EIGHT), nets(EIGHT, plain_spread=3.3), nets(EIGHT, bn_spread=40.0, plain_spread=400.0),
            nets(TWELVE, depths=(6, 15, 30)), nets(TWELVE, bn_power=3.0)]


def test_v1_reads_the_worst_spread_over_init_scales():
    res = verdict(1, nets(THREE))  # BN 3-3.3 at every scale; plain 30 x 2^5 at scale 2, depth 15
    assert res.verdict == REPRODUCED, res.detail
    assert res.effect == pytest.approx(float(np.exp(np.mean(np.log([3.0 * (1 + 0.05 * (s % 3)) for s in THREE])))))


def test_v2_reads_the_gradient_size_across_scales_at_the_criterion_depth():
    res = verdict(2, nets(THREE))
    assert res.verdict == REPRODUCED, res.detail
    want = [(1 + 0.2 * s) / (1 + 0.05 * s) * 4.0 ** (gf.DEPTH_V2 - 1) for s in THREE]  # plain's x2 / x0.5
    assert res.effect == pytest.approx(float(np.exp(np.log(want).mean())), rel=1e-9)


def test_v3_reads_the_spread_at_he_init_in_the_deepest_net():
    res = verdict(3, nets(EIGHT))
    assert res.verdict == REPRODUCED, res.detail
    assert res.derived["seeds"] == [11, 12, 13]  # far from both bars: the first look decides, on its seeds
    want = [3.0 * (1 + 0.05 * (s % 3)) for s in res.derived["seeds"]]
    assert res.effect == pytest.approx(float(np.exp(np.mean(np.log(want)))))


def test_v3_plain_as_even_as_bn_is_not_reproduced():
    """Plain's spread 1.1x BN's at scale 1, however uneven at other scales: the scale response is
    reported, not decided."""
    res = verdict(3, nets(EIGHT, plain_spread=3.3))
    assert res.verdict == NOT_REPRODUCED, res.detail
    assert verdict(2, nets(EIGHT, plain_spread=3.3)).verdict == REPRODUCED  # v2 read only the scale response


def test_v3_bn_spread_over_ten_is_not_reproduced_whatever_plains():
    assert verdict(3, nets(EIGHT, bn_spread=40.0, plain_spread=400.0)).verdict == NOT_REPRODUCED


def test_v4_decides_the_scale_response_at_its_first_look():
    """BN's gradient ~1/scale (a factor of about 4 between x0.5 and x2), plain's scale^14 (4^14):
    both parts clear at the first look's 5 seeds; the other depths are reported, not decided."""
    res = verdict(4, nets(TWELVE, depths=(6, 15, 30)))
    assert res.verdict == REPRODUCED, res.detail
    assert res.derived["seeds"] == [21, 22, 23, 24, 25]
    assert any(line.startswith("depth 30 (reported)") for line in res.detail)


def test_v4_bn_following_the_scale_is_not_reproduced():
    """BN's gradient ~scale^3 (64x across the scales): its part is clear of 10x on the wrong side."""
    res = verdict(4, nets(TWELVE, bn_power=3.0))
    assert res.verdict == NOT_REPRODUCED, res.detail
    want = [64.0 * (1 + 0.2 * s) / (1 + 0.05 * s) for s in res.derived["seeds"]]  # x2 over x0.5
    assert res.effect == pytest.approx(float(np.exp(np.log(want).mean())), rel=1e-9)  # the deciding part: BN's


def test_v4_reads_only_its_depth():
    """Without depth 15 in the table there is nothing to decide on: inconclusive, never a verdict
    read off another depth."""
    res = verdict(4, nets(TWELVE, depths=(6, 30)))
    assert res.verdict not in (REPRODUCED, NOT_REPRODUCED), res.detail
