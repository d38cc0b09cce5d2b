"""Protocols v3 on hand-made tables: a failed fidelity guard gives its own verdict, a clear claim
stops at the first look, a borderline one asks for the next look's seeds, and a trainability
bracket can never invert."""

import numpy as np
import pandas as pd
import pytest

from bnexp.claims import lr_tolerance, small_batch
from bnexp.method.contract import Context
from bnexp.method.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, UNTESTABLE


def small_batch_table(seeds, err: dict[str, float], noise: float = 0.001) -> pd.DataFrame:
    """Test errors per cell, with a little per-seed noise (deterministic)."""
    rng = np.random.default_rng(1)
    rows = [{"seed": s, "arm": a, "final_acc": 1 - e + rng.normal(0, noise), "recal_acc": 1 - e}
            for s in seeds for a, e in err.items()]
    return pd.DataFrame(rows)


def test_a_failed_guard_makes_its_part_untestable_not_not_reproduced():
    # BN rises 10 points from 128 to 2; GN trails BN by 16 points already at 128 (the quick regime)
    t = small_batch_table(range(11, 14), {"bn": 0.62, "ghost2": 0.72, "gn": 0.78})
    r = small_batch.verdict_v3(t, Context())
    assert r.verdict == UNTESTABLE
    assert r.derived["deciding"] == "BN error at 2 images per statistic minus GN error"
    assert not r.derived["guards"]["GN's test error minus BN's at 128 images per statistic (mean over seeds)"]["holds"]
    assert any("fails; GN trails BN already at the large batch" in line for line in r.detail)
    assert [p["verdict"] for p in r.derived["parts"]] == [REPRODUCED, UNTESTABLE]
    assert len(r.derived["looks"]) == 1 and r.derived["next_seeds"] is None  # nothing more to learn: it stops


def test_with_the_guard_holding_the_same_part_is_decided():
    t = small_batch_table(range(11, 14), {"bn": 0.62, "ghost2": 0.72, "gn": 0.63})
    assert small_batch.verdict_v3(t, Context()).verdict == REPRODUCED
    # ... and a part that clearly fails decides, guard or not
    t = small_batch_table(range(11, 14), {"bn": 0.62, "ghost2": 0.50, "gn": 0.78})
    r = small_batch.verdict_v3(t, Context())
    assert r.verdict == NOT_REPRODUCED and r.derived["deciding"] == "BN error at 2 minus at 128 images per statistic"


def test_a_borderline_claim_asks_for_the_next_look_and_is_read_at_it():
    err = {"bn": 0.62, "ghost2": 0.675, "gn": 0.63}  # a rise of 5.5 points against a 5-point bar
    three = small_batch.verdict_v3(small_batch_table(range(11, 14), err, noise=0.01), Context())
    assert three.verdict == INCONCLUSIVE and three.derived["next_seeds"] == 5
    assert any("the next look needs 5 seeds" in line for line in three.detail)
    five = small_batch.verdict_v3(small_batch_table(range(11, 16), err, noise=0.01), Context())
    assert [lk["n"] for lk in five.derived["looks"]] == [3, 5]
    assert five.derived["seeds"] == [11, 12, 13, 14, 15]


def test_a_look_with_a_seed_missing_a_run_is_not_taken_but_asked_for_again():
    """A table committed in the middle of a look (one arm of its last seeds still training): the
    report leaves the unfinished seeds out, so the verdict stays at the look before, which asks
    for the unfinished look's seeds."""
    from bnexp.evaluation import whole_seeds

    err = {"bn": 0.62, "ghost2": 0.675, "gn": 0.63}
    full = small_batch_table(range(11, 16), err, noise=0.01)
    part, left_out = whole_seeds(full[~((full["seed"] >= 14) & (full["arm"] == "gn"))])
    assert left_out == 4 and sorted(part["seed"].unique()) == [11, 12, 13]
    r = small_batch.verdict_v3(part, Context())
    assert [lk["n"] for lk in r.derived["looks"]] == [3] and r.derived["next_seeds"] == 5
    assert whole_seeds(full)[1] == 0 and small_batch.verdict_v3(full, Context()).derived["looks"][-1]["n"] == 5


def test_neighbouring_choices_are_reported_beside_the_verdict():
    r = small_batch.verdict_v3(small_batch_table(range(11, 14), {"bn": 0.62, "ghost2": 0.72, "gn": 0.63}), Context())
    choices = {s["choice"]: s["verdict"] for s in r.derived["sensitivity"]}
    assert set(choices) == {"rise >= 0.03", "rise >= 0.07", "GN on par within 0.02", "GN on par within 0.05"}
    assert choices["rise >= 0.03"] == REPRODUCED


def probes(model: str, seed: int, outcome: dict[float, float]) -> list[dict]:
    return [{"choice_model": model, "seed": seed, "lr": lr, "recal_acc": acc,
             "status": "completed" if acc > 0 else "diverged"} for lr, acc in outcome.items()]


def test_a_non_monotone_bracket_widens_and_is_flagged_instead_of_inverting():
    # trains at 1 and at 3, fails at 2 in between (running statistics lagging), fails at 10
    t = pd.DataFrame(probes("bn", 7, {1.0: 0.3, 2.0: 0.1, 3.0: 0.25, 10.0: 0.0}))
    b = lr_tolerance.brackets_v3(t).loc[("bn", 7)]
    assert (b["low"], b["high"]) == (1.0, 10.0) and not b["monotone"]
    # v2's rule returned low 3 > high 2 here
    v2 = lr_tolerance.brackets_v2(t.assign(trains=t["recal_acc"] >= 0.2)).loc[("bn", 7)]
    assert v2["low"] > v2["high"]


@pytest.mark.parametrize("seed", range(200))
def test_no_set_of_probes_inverts_a_bracket(seed):
    rng = np.random.default_rng(seed)
    lrs = np.unique(10 ** rng.uniform(-3, 2, size=rng.integers(1, 8)))
    t = pd.DataFrame(probes("plain", 0, {float(lr): float(rng.choice([0.0, 0.1, 0.3])) for lr in lrs}))
    for bar, relative in ((0.2, False), (0.15, False), (0.75, True)):
        b = lr_tolerance.brackets_v3(t, bar, relative).iloc[0]
        assert lr_tolerance.LOW_V3 <= b["low"] < b["high"] <= lr_tolerance.HIGH_V3
