"""small_batch, specified on hand-made tables: v1 (BN's rise from the largest to the smallest batch,
GN's rise a third of it, GN better at the smallest), v2 (ghost BN at one optimiser batch) and v3
(v2 on a sequential plan, the GN part guarded by GN on par with BN at 128 images per statistic).
The v3 tables also show the protocol's machinery: a failed guard, a borderline look, a look with a
seed unfinished, neighbouring choices. `hand_made()` feeds the same tables to re-certification."""

import numpy as np
import pandas as pd
import pytest

from bnexp.claims import by_id, small_batch
from bnexp.evaluation import whole_seeds
from bnexp.method.contract import Context
from bnexp.method.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, UNTESTABLE

PAR = {"bn": 0.62, "ghost2": 0.72, "gn": 0.63}  # test error by cell: a 10-point rise, GN on par at 128
TRAILS = {"bn": 0.62, "ghost2": 0.72, "gn": 0.78}  # GN 16 points behind BN at 128 (the quick regime)
BORDER = {"bn": 0.62, "ghost2": 0.675, "gn": 0.63}  # a rise of 5.5 points against a 5-point bar


def batches_v1() -> pd.DataFrame:
    """Errors at 2 and 128 images per statistic per seed: BN rises 0.3, 0.2, 0.35; GN barely."""
    rows = []
    for seed, (bn_lo, bn_hi, gn_lo, gn_hi) in {0: (0.9, 0.6, 0.7, 0.7), 1: (0.8, 0.6, 0.7, 0.7),
                                                 2: (0.95, 0.6, 0.72, 0.7)}.items():
        for a, b, err in (("bn", 2, bn_lo), ("bn", 128, bn_hi), ("gn", 2, gn_lo), ("gn", 128, gn_hi)):
            rows.append({"seed": seed, "arm": a, "per_stat": b, "final_acc": 1 - err, "test_batchstats_acc": None})
    return pd.DataFrame(rows).sample(frac=1, random_state=0)  # order must not matter


def cells_v2(gn_err: float) -> pd.DataFrame:
    """BN at 128 (0.60 error), ghost BN at 2 (~0.70), GN at `gn_err`, three seeds."""
    rows = []
    for seed, bump in ((3, 0.0), (4, 0.01), (5, -0.01)):
        for cell, err in (("bn", 0.60), ("ghost2", 0.70 + bump), ("gn", gn_err + bump / 2)):
            rows.append({"seed": seed, "arm": cell, "final_acc": 1 - err, "recal_acc": 1 - err,
                         "test_batchstats_acc": None})
    return pd.DataFrame(rows).sample(frac=1, random_state=2)


def cells_v3(seeds, err: dict[str, float], noise: float = 0.001) -> pd.DataFrame:
    """Test errors per cell, with a little per-seed noise (deterministic)."""
    rng = np.random.default_rng(1)
    return pd.DataFrame([{"seed": s, "arm": a, "final_acc": 1 - e + rng.normal(0, noise), "recal_acc": 1 - e}
                         for s in seeds for a, e in err.items()])


# v4's cells: BN at 128 and at 2 images per statistic, GN+WS at 128 and at the real small batch.
V4_HOLDS = {"v4_bn": 0.20, "v4_ghost2": 0.30, "v4_gnws": 0.21, "v4_gnws_small": 0.212}
V4_TRAILS = {"v4_bn": 0.20, "v4_ghost2": 0.30, "v4_gnws": 0.28, "v4_gnws_small": 0.28}  # GN+WS 8 points behind
V4_DEGRADES = {"v4_bn": 0.20, "v4_ghost2": 0.30, "v4_gnws": 0.21, "v4_gnws_small": 0.26}  # GN+WS worse at small batch
V4_FLAT_RISE = {"v4_bn": 0.20, "v4_ghost2": 0.21, "v4_gnws": 0.205, "v4_gnws_small": 0.205}  # BN does not degrade


def cells_v4(seeds, err: dict[str, float], noise: float = 0.003,
             spread: dict[str, float] | None = None) -> pd.DataFrame:
    """Test errors per cell and seed: a shared per-seed offset (seeds differ as a whole) plus a
    little noise per cell, and `spread` extra noise for the cells it names."""
    rng = np.random.default_rng(4)
    out = []
    for s in seeds:
        offset = rng.normal(0, 0.01)
        for a, e in err.items():
            sd = noise + (spread or {}).get(a, 0.0)
            out.append({"seed": s, "arm": a, "final_acc": 1 - e - offset + rng.normal(0, sd), "recal_acc": 1 - e})
    return pd.DataFrame(out)


def verdict(n: int, t: pd.DataFrame):
    claim = by_id()["small_batch"]
    return (claim.versions.get(n) or claim.drafts[n]).verdict(t, Context())


def hand_made() -> list[pd.DataFrame]:
    return [batches_v1(), cells_v2(0.62), cells_v2(0.80), cells_v3(range(11, 14), TRAILS), cells_v3(range(11, 14), PAR),
            cells_v3(range(11, 14), {"bn": 0.62, "ghost2": 0.50, "gn": 0.78}),
            cells_v3(range(11, 14), BORDER, noise=0.01), cells_v3(range(11, 16), BORDER, noise=0.01),
            cells_v4(range(19, 24), V4_HOLDS), cells_v4(range(19, 24), V4_TRAILS), cells_v4(range(19, 24), V4_DEGRADES),
            cells_v4(range(19, 24), V4_FLAT_RISE), cells_v4(range(19, 31), V4_HOLDS, spread={"v4_gnws_small": 0.02})]


def test_v1_pairs_the_gn_and_bn_rises_by_seed():
    res = verdict(1, batches_v1())
    assert res.verdict == REPRODUCED, res.detail
    assert res.effect == pytest.approx((0.3 + 0.2 + 0.35) / 3)


def test_v2_needs_both_the_rise_and_gn_beating_bn_at_two_images():
    assert verdict(2, cells_v2(0.62)).verdict == REPRODUCED
    res = verdict(2, cells_v2(0.80))  # BN degrades, but GN is worse still
    assert res.verdict == NOT_REPRODUCED and res.effect == pytest.approx(0.10), res.detail


def test_v3_a_failed_guard_makes_its_part_untestable_not_not_reproduced():
    r = verdict(3, cells_v3(range(11, 14), TRAILS))
    assert r.verdict == UNTESTABLE
    assert r.derived["deciding"] == "BN error at 2 images per statistic minus GN error"
    assert not r.derived["guards"]["GN's test error minus BN's at 128 images per statistic (mean over seeds)"]["holds"]
    assert any("fails; GN trails BN already at the large batch" in line for line in r.detail)
    assert [p["verdict"] for p in r.derived["parts"]] == [REPRODUCED, UNTESTABLE]
    assert len(r.derived["looks"]) == 1 and r.derived["next_seeds"] is None  # nothing more to learn: it stops


def test_v3_with_the_guard_holding_the_same_part_is_decided():
    assert verdict(3, cells_v3(range(11, 14), PAR)).verdict == REPRODUCED
    # ... and a part that clearly fails decides, guard or not
    r = verdict(3, cells_v3(range(11, 14), {"bn": 0.62, "ghost2": 0.50, "gn": 0.78}))
    assert r.verdict == NOT_REPRODUCED and r.derived["deciding"] == "BN error at 2 minus at 128 images per statistic"


def test_v3_a_borderline_claim_asks_for_the_next_look_and_is_read_at_it():
    three = verdict(3, cells_v3(range(11, 14), BORDER, noise=0.01))
    assert three.verdict == INCONCLUSIVE and three.derived["next_seeds"] == 5
    assert any("the next look needs 5 seeds" in line for line in three.detail)
    five = verdict(3, cells_v3(range(11, 16), BORDER, noise=0.01))
    assert [lk["n"] for lk in five.derived["looks"]] == [3, 5]
    assert five.derived["seeds"] == [11, 12, 13, 14, 15]


def test_v3_a_look_with_a_seed_missing_a_run_is_not_taken_but_asked_for_again():
    """A table committed in the middle of a look (one arm of its last seeds still training): the
    report leaves the unfinished seeds out, so the verdict stays at the look before, which asks
    for the unfinished look's seeds."""
    full = cells_v3(range(11, 16), BORDER, noise=0.01)
    part, left_out = whole_seeds(full[~((full["seed"] >= 14) & (full["arm"] == "gn"))])
    assert left_out == 4 and sorted(part["seed"].unique()) == [11, 12, 13]
    r = verdict(3, part)
    assert [lk["n"] for lk in r.derived["looks"]] == [3] and r.derived["next_seeds"] == 5
    assert whole_seeds(full)[1] == 0 and verdict(3, full).derived["looks"][-1]["n"] == 5


def test_v3_neighbouring_choices_are_reported_beside_the_verdict():
    r = verdict(3, cells_v3(range(11, 14), PAR))
    choices = {s["choice"]: s["verdict"] for s in r.derived["sensitivity"]}
    assert set(choices) == {"rise >= 0.03", "rise >= 0.07", "GN on par within 0.02", "GN on par within 0.05"}
    assert choices["rise >= 0.03"] == REPRODUCED


def test_v3_reads_the_same_cells_as_v2():
    """v3 keeps v2's statistic: on v2's table its effect is v2's, only the interval and plan differ."""
    t = cells_v2(0.62)
    assert verdict(3, t).effect == pytest.approx(verdict(2, t).effect)
    assert small_batch.RISE_V3 == small_batch.RISE_V2


GUARD_V4 = "GN+WS's test error minus BN's at 128 images per statistic (upper end of its 95% interval)"


def test_v4_holds_where_bn_rises_gn_ws_beats_it_at_two_and_stays_flat_across_batch_sizes():
    r = verdict(4, cells_v4(range(19, 24), V4_HOLDS))
    assert r.verdict == REPRODUCED, r.detail
    assert [lk["n"] for lk in r.derived["looks"]] == [5]  # decided at the first look
    assert [p["verdict"] for p in r.derived["parts"]] == [REPRODUCED] * 4
    assert r.derived["guards"][GUARD_V4]["holds"]


def test_v4_the_guard_reads_the_end_of_its_interval_and_blocks_only_the_gn_parts():
    r = verdict(4, cells_v4(range(19, 24), V4_TRAILS))
    assert r.verdict == UNTESTABLE
    guard = r.derived["guards"][GUARD_V4]
    assert not guard["holds"] and guard["value"] > 0.08  # the upper end, above the 8-point mean
    assert [p["verdict"] for p in r.derived["parts"]] == [REPRODUCED, UNTESTABLE, UNTESTABLE, UNTESTABLE]


def test_v4_a_guard_still_open_keeps_the_plan_going_and_decides_once_it_closes():
    """GN+WS 1.5 points behind BN at 128 with a wide spread: at 5 seeds the guard's upper end reaches past
    3 points while its mean is under them, so the GN parts stay undecided and the plan asks for 8 seeds
    (the guard is open); at 12 seeds the interval has closed under 3 points and every part decides."""
    trails_a_little = {"v4_bn": 0.20, "v4_ghost2": 0.30, "v4_gnws": 0.215, "v4_gnws_small": 0.215}
    five = verdict(4, cells_v4(range(19, 24), trails_a_little, spread={"v4_gnws": 0.02, "v4_gnws_small": 0.02}))
    guard = five.derived["guards"][GUARD_V4]
    assert not guard["holds"] and guard["value"] > 0.03  # the upper end, past the bar; the mean under it
    assert five.verdict == INCONCLUSIVE and five.derived["next_seeds"] == 8
    twelve = verdict(4, cells_v4(range(19, 31), trails_a_little, spread={"v4_gnws": 0.004, "v4_gnws_small": 0.004}))
    assert twelve.derived["guards"][GUARD_V4]["holds"] and twelve.verdict == REPRODUCED, twelve.detail


def test_v4_gn_ws_that_degrades_at_the_small_batch_is_not_equivalent():
    r = verdict(4, cells_v4(range(19, 24), V4_DEGRADES))
    assert r.verdict == NOT_REPRODUCED
    assert r.derived["deciding"] == "GN+WS error at the small batch minus at 128 (upper side)"
    assert r.effect == pytest.approx(0.05, abs=0.01)


def test_v4_without_bns_rise_the_claim_fails_on_its_first_part():
    r = verdict(4, cells_v4(range(19, 24), V4_FLAT_RISE))
    assert r.verdict == NOT_REPRODUCED and r.derived["deciding"] == "BN error at 2 minus at 128 images per statistic"


def test_v4_a_noisy_small_batch_arm_takes_more_looks_and_its_neighbours_are_reported():
    r = verdict(4, cells_v4(range(19, 31), V4_HOLDS, spread={"v4_gnws_small": 0.02}))
    assert r.derived["looks"][0]["n"] == 5 and len(r.derived["looks"]) >= 2
    choices = {s["choice"] for s in r.derived["sensitivity"]}
    assert choices == {"rise >= 0.03", "rise >= 0.07", "GN+WS on par within 0.02", "GN+WS on par within 0.05",
                       "GN flat within 0.01", "GN flat within 0.03"}


def test_v4_pilot_reads_bn_and_gn_ws_at_their_tuned_lrs_on_validation_accuracy():
    from bnexp.method import pilot

    tuning = pd.DataFrame([{"experiment": "small_batch/tune_v4", "choice_arm": f"small_batch/{a}", "lr": lr,
                            "seed": s, "val_acc": acc + 0.001 * s, "test_acc": 0.0}
                           for s in (9000, 9001) for a, lr, acc in (("v4_bn", 0.2, 0.80), ("v4_bn", 0.4, 0.70),
                                                                     ("v4_gnws", 0.4, 0.79), ("v4_gnws", 0.2, 0.60))])
    tuned = {"small_batch/lr_v4": {"rule": "best", "values": {"v4_bn": 0.2, "v4_gnws": 0.4}}}
    rows = small_batch.pilot_rows_v4(tuning, tuned)
    assert sorted(zip(rows["arm"], rows["lr"], strict=True)) == [("v4_bn", 0.2)] * 2 + [("v4_gnws", 0.4)] * 2
    assert (rows["final_acc"] == rows["val_acc"]).all()  # never the test accuracy
    (g,) = pilot.run(by_id()["small_batch"].versions[4], tuning, tuned)
    assert g.value == pytest.approx(0.01) and g.holds  # GN+WS 1 point behind on both tuning seeds
