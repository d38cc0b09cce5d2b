"""convergence, specified on hand-made tables: BN's steps to a target over plain's. v0 / v1 (each
net at its best lr; a run that never reaches the target counted at its own length or at twice the
plan), v2 (a fixed target, censored at twice the plan) and v3 (the target a fraction of plain's
tuned validation accuracy; steps known only between two evaluations, so each ratio is a bracket)
and v4 (the crossing interpolated between evaluations; looks at 5, 8, 12 seeds), v5 (v4 on a plan of
20, 30, 40 seeds).
`hand_made()` feeds the same tables, with the contexts they need, to re-certification."""

import json

import numpy as np
import pandas as pd
import pytest

from bnexp.claims import by_id, convergence
from bnexp.method import pilot
from bnexp.method.contract import Context
from bnexp.method.stats import NOT_REPRODUCED, REPRODUCED, UNTESTABLE


def runs_v1() -> pd.DataFrame:
    """Plain at lr 0.5 diverges at step 21; both nets reach 0.3 at lr 0.02, BN sooner."""
    runs = {("plain", 0.5, s): (21, [[10, 0.1], [21, 0.1]]) for s in range(3)}
    runs |= {("plain", 0.02, s): (124, [[10, 0.1], [90 + s, 0.3]]) for s in range(3)}
    runs |= {("bn", 0.02, s): (124, [[10, 0.1], [20 + s, 0.3]]) for s in range(3)}
    return pd.DataFrame([{"choice_model": model, "lr": lr, "seed": seed, "steps": steps, "status": "completed",
                          "best_test_acc": max(v for _, v in curve), "acc_curve": json.dumps(curve)}
                         for (model, lr, seed), (steps, curve) in runs.items()])


def arms(reached: dict, every: int = 8, hit: float = 0.3) -> pd.DataFrame:
    """Per seed, the step at which BN and plain first reach `hit` test accuracy (None: never), on
    curves evaluated every `every` steps of 138; BN at plain's lr beside them."""
    rows = []
    for seed, (bn_at, plain_at) in reached.items():
        for cell, at in (("bn", bn_at), ("plain", plain_at), ("bn_shared", 32)):
            curve = [[s, hit if at is not None and s >= at else 0.15] for s in range(every, 139, every)]
            rows.append({"seed": seed, "arm": cell, "lr": {"bn": 0.1}.get(cell, 0.03), "steps": 138,
                         "acc_curve": json.dumps(curve), "final_acc": curve[-1][1]})
    return pd.DataFrame(rows)


def tuned(plain_val_acc: float) -> Context:
    """The profile's tuned target: v3's target is 0.8 x plain's tuned validation accuracy (0.32 at 0.4)."""
    return Context(tuned={"convergence/target": {"reference_val_acc": plain_val_acc}})


# eight seeds, evaluations every 4 steps: BN reaches the target within 12-20 steps, plain within 56-72
FAST = {s: (12 + 4 * (s % 3), 56 + 8 * (s % 3)) for s in range(11, 19)}
SAME = {s: (48 + 4 * (s % 3), 52 + 4 * (s % 2)) for s in range(11, 19)}  # BN about as slow as plain


def verdict(n: int, t: pd.DataFrame, ctx: Context | None = None):
    return by_id()["convergence"].versions[n].verdict(t, ctx or Context())


def hand_made() -> list:
    return [runs_v1(), arms({3: (8, 56), 4: (16, 64), 5: (8, 48), 6: (8, None)}),
            arms({3: (8, 56), 4: (8, 64), 5: (8, 48)}),
            (arms(FAST, 4, 0.35), tuned(0.4)), (arms(SAME, 4, 0.35), tuned(0.4)), (arms(FAST, 4, 0.35), tuned(0.15)),
            (ramps(FAST_12), tuned(0.4)), (ramps(SAME_12), tuned(0.4)), (ramps(SPREAD_40), tuned(0.4))]


# twelve seeds: the step at which each net's accuracy, rising linearly from chance, reaches 0.32
FAST_12 = {s: (10 + 1.5 * (s % 4), 40 + 3 * (s % 3)) for s in range(21, 33)}
SAME_12 = {s: (38 + 1.5 * (s % 4), 40 + 3 * (s % 3)) for s in range(21, 33)}
# forty seeds, BN about 0.35x plain's 80 steps with v4's quick spread (log sd about 0.66), the 12 first
# further from 0.35 than the rest: exp(log(0.35) + 0.66 z), z cycling over a fixed pattern of mean 0
_Z = (1.4, -1.2, 0.3, -0.5, 0.9, -0.9, 0.1, -0.1, 1.1, -1.1, 0.6, -0.6)
SPREAD_40 = {31 + i: (round(80 * float(np.exp(np.log(0.35) + 0.66 * _Z[i % 12])), 3), 80) for i in range(40)}


def ramps(reached: dict, every: int = 2) -> pd.DataFrame:
    """Curves evaluated every `every` of 138 steps, rising linearly from 0.1 at step 0 to 0.32 at the
    seed's step (BN, plain), then to 0.4; BN at plain's lr as fast as plain."""
    rows = []
    for seed, (bn_at, plain_at) in reached.items():
        for cell, at in (("bn", bn_at), ("plain", plain_at), ("bn_shared", plain_at)):
            curve = [[s, round(min(0.1 + 0.22 * s / at, 0.4), 6)] for s in range(every, 139, every)]
            rows.append({"seed": seed, "arm": cell, "lr": {"bn": 0.1}.get(cell, 0.03), "steps": 138,
                         "acc_curve": json.dumps(curve), "final_acc": curve[-1][1]})
    return pd.DataFrame(rows)


def test_v1_counts_a_run_that_never_reaches_the_target_as_slow():
    """v0 counted a run that diverged at step 21 as 2 x 21 steps (fast); v1 as 2 x the planned length."""
    t = runs_v1()
    v0, v1 = verdict(0, t), verdict(1, t)
    assert v1.derived["best_lr"] == {"bn": 0.02, "plain": 0.02}
    assert v1.effect == pytest.approx((20 * 21 * 22 / (90 * 91 * 92)) ** (1 / 3))
    assert v0.derived["best_lr"]["plain"] == 0.5  # the diverged lr looked fastest under v0


def test_v2_counts_steps_to_a_fixed_target_and_censors_at_twice_the_plan():
    res = verdict(2, arms({3: (8, 56), 4: (16, 64), 5: (8, 48), 6: (8, None)}))
    want = [8 / 56, 16 / 64, 8 / 48, 8 / (2 * 138)]  # seed 6's plain never reaches the target: 276 steps
    assert res.effect == pytest.approx(float(np.exp(np.log(want).mean())))
    assert any("BN at plain's lr" in d for d in res.detail) and "never reached: plain 1" in res.detail[-1]
    assert verdict(2, arms({3: (8, 56), 4: (8, 64), 5: (8, 48)})).verdict == REPRODUCED


def test_v3_brackets_each_seeds_steps_between_two_evaluations():
    """Target 0.8 x 0.4 = 0.32: where the first evaluation at it is step 12, the steps lie in (8, 12]."""
    assert convergence._bracket(json.dumps([[4, 0.1], [8, 0.2], [12, 0.3]]), 0.3, 138) == (8.0, 12.0)
    assert convergence._bracket(json.dumps([[4, 0.1], [8, 0.2]]), 0.3, 138) == (8.0, 2 * 138)  # never: censored
    res = verdict(3, arms(FAST, 4, 0.35), tuned(0.4))
    assert res.derived["target"] == pytest.approx(0.32)
    assert res.verdict == REPRODUCED and res.ci_high <= convergence.THRESHOLD_V3, res.detail


def test_v3_bn_as_slow_as_plain_is_not_reproduced():
    res = verdict(3, arms(SAME, 4, 0.35), tuned(0.4))
    assert res.verdict == NOT_REPRODUCED and res.ci_low > convergence.THRESHOLD_V3, res.detail


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_v3_is_untestable_when_plain_does_not_learn():
    """Plain's tuned validation accuracy 0.15 (below 2x chance): a target relative to it means nothing."""
    res = verdict(3, arms(FAST, 4, 0.35), tuned(0.15))
    assert res.verdict == UNTESTABLE and any("plain does not learn" in line for line in res.detail)
    assert np.isnan(verdict(3, arms(FAST, 4, 0.35)).derived["target"])  # no tuned target: nothing to aim at


def test_v4_interpolates_the_crossing_between_evaluations():
    curve = json.dumps([[4, 0.1], [8, 0.2], [12, 0.4]])
    assert convergence.time_to_target(curve, 0.3, 138) == pytest.approx(10.0)  # halfway from 0.2 to 0.4
    assert convergence.time_to_target(json.dumps([[4, 0.3]]), 0.2, 138) == pytest.approx(2.0)  # from chance at 0
    assert convergence.time_to_target(json.dumps([[4, 0.1], [8, 0.2]]), 0.3, 138) == 2 * 138  # never: censored


def test_v4_decides_at_the_first_look_on_interpolated_steps():
    """BN 0.25-0.32x plain's steps on 12 seeds: the first look's 5 decide, on the interpolated steps
    (exact for curves that are straight between evaluations)."""
    res = verdict(4, ramps(FAST_12), tuned(0.4))
    assert res.verdict == REPRODUCED and res.derived["seeds"] == [21, 22, 23, 24, 25], res.detail
    want = [(10 + 1.5 * (s % 4)) / (40 + 3 * (s % 3)) for s in range(21, 26)]
    assert res.effect == pytest.approx(float(np.exp(np.log(want).mean())), rel=0.02)
    sparse = ramps(FAST_12, every=8)
    # every 8 steps, BN's curve bends (at 0.4) between the two evaluations around its crossing: close, not exact
    assert verdict(4, sparse, tuned(0.4)).effect == pytest.approx(res.effect, rel=0.05)


def test_v4_bn_as_slow_as_plain_is_not_reproduced():
    res = verdict(4, ramps(SAME_12), tuned(0.4))
    assert res.verdict == NOT_REPRODUCED and res.ci_low > convergence.THRESHOLD_V4, res.detail


def test_v4_pilot_is_the_tuned_reference():
    v4 = by_id()["convergence"].versions[4]
    runs = pd.DataFrame([{"experiment": "convergence/tune", "choice_arm": f"convergence/{a}", "lr": lr, "seed": s,
                          "val_acc": 0.3} for a in ("plain", "bn") for lr in (0.03, 0.1) for s in (9000, 9001)])
    answers = {"convergence/lr": {"values": {"plain": 0.03, "bn": 0.1}},
               "convergence/target": {"reference_val_acc": 0.3}}
    (guard,) = pilot.run(v4, runs, answers)
    assert guard.holds and guard.value == pytest.approx(0.3) and guard.seeds == 2
    (low,) = pilot.run(v4, runs, answers | {"convergence/target": {"reference_val_acc": 0.15}})
    assert not low.holds


def test_v5_is_v4_on_a_larger_plan():
    """v5 keeps v4's criterion, guard and neighbours; only the plan differs, in every neighbour too."""
    v4, v5 = convergence.protocol_v4(), convergence.protocol_v5()
    assert v5.plan == convergence.PLAN_V5 and v5.plan.looks == (20, 30, 40) and v4.plan.looks == (5, 8, 12)
    assert [p.name for p in v5.parts] == [p.name for p in v4.parts]
    assert [(g.name, g.threshold) for g in v5.guards] == [(g.name, g.threshold) for g in v4.guards]
    assert [label for label, _ in v5.neighbours] == [label for label, _ in v4.neighbours]
    assert all(p.plan == convergence.PLAN_V5 for _, p in v5.neighbours)
    versions = by_id()["convergence"].versions
    assert versions[5].criterion == versions[4].criterion and versions[5].pilot == versions[4].pilot


def test_v5_decides_where_v4s_twelve_seeds_could_not():
    """With v4's spread, 12 seeds leave the interval across 0.5 at v4's last look; v5's first look
    (20 seeds, the same spread) decides."""
    t, ctx = ramps(SPREAD_40), tuned(0.4)
    v4 = verdict(4, t, ctx)
    assert v4.verdict == "inconclusive" and v4.derived["seeds"] == list(range(31, 43)), v4.detail
    assert v4.ci_low < convergence.THRESHOLD_V4 < v4.ci_high
    v5 = verdict(5, t, ctx)
    assert v5.verdict == REPRODUCED and v5.derived["seeds"] == list(range(31, 51)), v5.detail
    assert v5.ci_high < convergence.THRESHOLD_V4 and v5.effect == pytest.approx(0.35, rel=0.1)

