"""landscape, specified on hand-made tables: BN's loss range and gradient change along the gradient
<= 0.5x plain's, and noisy BN within 3 points of BN. v1 (means over every probed step), v2 (probes
after initialisation; noisy BN on noise-free statistics) and v3 (v2 on a sequential plan, the noisy-BN
part judged only if a power calculation on the tuning seeds asks for at most 8 seeds) and v4 (each run's
median over the probes, the lr shared by plain and BN, the landscape parts judged only where plain
clearly trains).
`hand_made()` feeds the same tables, with the contexts they need, to re-certification."""

import math

import pandas as pd
import pytest

from bnexp.claims import by_id
from bnexp.claims import landscape as ls
from bnexp.method.contract import Context
from bnexp.method.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, UNTESTABLE


def probes(seeds, ratio: float = 0.3, noisy_gap: float = 0.0, plain_acc: float = 0.38) -> pd.DataFrame:
    """Per seed at lr 0.03: plain's loss range and gradient change 1.0 (x 0.9-1.1 by seed mod 3), BN's
    and noisy BN's `ratio` of that; BN 0.40 test accuracy on recalibrated statistics (+-0.004), noisy
    BN `noisy_gap` below it; noisy BN near chance on its own noisy running statistics."""
    rows = []
    for seed in seeds:
        w, e = 0.9 + 0.1 * (seed % 3), 0.004 * (seed % 3 - 1)
        for model, scale, recal, final in (("plain", 1.0, plain_acc + e, plain_acc + e),
                                           ("bn", ratio, 0.40 + e, 0.40 + e),
                                           ("noisy_bn", ratio, 0.40 - noisy_gap - e, 0.12)):
            size = scale * w if model == "plain" else scale * (2 - w)
            rows.append({"seed": seed, "choice_model": model, "lr": 0.03, "final_acc": final, "recal_acc": recal}
                        | {f"{probe}_{when}": size for probe in ("loss_range", "grad_change", "beta")
                           for when in ("mean", "after_init", "median")})
    return pd.DataFrame(rows)


def tuned(val_accs: tuple[float, ...]) -> Context:
    """BN's tuned lr 0.03 and its validation accuracy on each tuning seed there."""
    tuning = pd.DataFrame([{"experiment": "landscape/tune", "choice_model": "bn", "lr": 0.03, "seed": s, "val_acc": a}
                           for s, a in enumerate(val_accs)])
    return Context(tuned={"landscape/lr": {"values": {"bn": 0.03, "plain": 0.03, "noisy_bn": 0.03}}}, tuning=tuning)


THREE, FIVE, EIGHT = (3, 4, 5), range(21, 26), range(11, 19)
STEADY, NOISY = tuned((0.40, 0.41, 0.42)), tuned((0.30, 0.40, 0.50))


def verdict(n: int, t: pd.DataFrame, ctx: Context | None = None):
    return by_id()["landscape"].versions[n].verdict(t, ctx or Context())


def hand_made() -> list:
    return [probes(THREE), probes(THREE, noisy_gap=0.1), probes(THREE, ratio=0.9), (probes(EIGHT), STEADY),
            (probes(EIGHT), NOISY), (probes(EIGHT, noisy_gap=0.1), STEADY), (probes(EIGHT, ratio=0.9), STEADY),
            probes(FIVE), probes(FIVE, plain_acc=0.12), probes(FIVE, ratio=0.9)]


def test_v2_needs_both_ratios_and_noisy_bn_near_bn():
    res = verdict(2, probes(THREE))
    assert res.verdict == REPRODUCED, res.detail
    assert res.effect == pytest.approx(math.exp(sum(math.log(0.3 * (2 - w) / w) for w in (0.9, 1.0, 1.1)) / 3))
    assert verdict(2, probes(THREE, ratio=0.9)).verdict == NOT_REPRODUCED
    assert verdict(2, probes(THREE, noisy_gap=0.1)).verdict == NOT_REPRODUCED


def test_v1_read_noisy_bn_on_its_noisy_statistics():
    """Noisy BN at 0.12 on its own running statistics: v1 finds it 28 points behind BN, although on
    statistics re-estimated without noise (v2) it is level."""
    res = verdict(1, probes(THREE))
    assert res.verdict == NOT_REPRODUCED and res.effect == pytest.approx(verdict(2, probes(THREE)).effect)
    assert "BN - noisy BN test accuracy: 0.28" in res.detail[2]


def test_v3_asks_the_tuning_seeds_how_many_seeds_noisy_bns_margin_needs():
    assert ls.seeds_needed(STEADY) == 2  # spread 0.01: two seeds resolve a 3-point margin
    assert ls.seeds_needed(NOISY) > ls.MAX_SEEDS_V3  # spread 0.1: 87 seeds
    assert ls.seeds_needed(Context()) == math.inf  # no tuning rows: no power calculation


def test_v3_decides_all_three_parts_with_the_power_for_them():
    res = verdict(3, probes(EIGHT), STEADY)
    assert res.verdict == REPRODUCED, res.detail
    assert verdict(3, probes(EIGHT, noisy_gap=0.1), STEADY).verdict == NOT_REPRODUCED
    assert verdict(3, probes(EIGHT, ratio=0.9), STEADY).verdict == NOT_REPRODUCED


def test_v3_noisy_bns_part_is_untestable_without_the_power_for_it():
    res = verdict(3, probes(EIGHT), NOISY)
    assert res.verdict == UNTESTABLE, res.detail
    assert [p["verdict"] for p in res.derived["parts"]] == [REPRODUCED, REPRODUCED, UNTESTABLE]


def test_v2_leaves_out_the_probe_at_initialisation():
    class Rec:
        def __init__(self):
            self.summary = {"test_acc": 0.3, "test_recal_acc": 0.35, "status": "completed"}
            self.config = {"dataset": {"name": "cifar10", "coarse_labels": False}}

        def metric(self, prefix):
            return pd.DataFrame({"name": ["landscape/loss_range"] * 3, "step": [0, 10, 20], "value": [5.0, 0.1, 0.3]})

    e = ls.endpoints_v2(Rec())
    assert e["loss_range_after_init"] == pytest.approx(0.2) and e["recal_acc"] == 0.35


def test_v4_reads_each_runs_median_probe_and_judges_the_landscape_only_where_plain_trains():
    res = verdict(4, probes(FIVE))
    assert res.verdict == REPRODUCED and res.n_seeds == 5, res.detail  # decided at the first look
    assert verdict(4, probes(FIVE, ratio=0.9)).verdict == NOT_REPRODUCED
    stuck = verdict(4, probes(FIVE, plain_acc=0.12))  # plain near chance at the shared lr
    assert stuck.verdict == UNTESTABLE, stuck.detail
    assert [p["verdict"] for p in stuck.derived["parts"]] == [UNTESTABLE, UNTESTABLE, REPRODUCED]


def test_v4_a_spike_in_a_few_probes_does_not_move_a_runs_median():
    class Rec:
        def __init__(self):
            self.summary = {"test_acc": 0.3, "test_recal_acc": 0.35, "status": "completed"}
            self.config = {"dataset": {"name": "cifar10", "coarse_labels": False}}

        def metric(self, prefix):
            return pd.DataFrame({"name": ["landscape/loss_range"] * 5, "step": [0, 10, 20, 30, 40],
                                 "value": [50.0, 0.1, 0.2, 0.3, 40.0]})

    e = ls.endpoints_v4(Rec())
    assert e["loss_range_median"] == pytest.approx(0.25) and e["recal_acc"] == 0.35  # the mean would be 10.15


def test_v4s_lr_is_shared_by_plain_and_bn_and_its_pilot_reads_plain_there():
    """Noisy BN's validation accuracy is read on its noisy running statistics: it takes no part in the
    shared lr. The pilot reads plain's validation accuracy at that lr on the tuning seeds."""
    from bnexp import calibration
    from bnexp.method import pilot

    q = next(q for q in ls.TUNING if q.id == "landscape/lr_v4")
    assert q.rule == "shared" and q.arms == ("plain", "bn")

    def tuning(plain: tuple[float, float]) -> pd.DataFrame:
        out = []
        for model, by_lr in (("plain", {0.03: plain, 0.1: (0.15, 0.16)}),
                             ("bn", {0.03: (0.40, 0.41), 0.1: (0.45, 0.46)}),
                             ("noisy_bn", {0.03: (0.10, 0.10), 0.1: (0.13, 0.12)})):
            for lr, accs in by_lr.items():
                out += [{"experiment": "landscape/tune", "choice_model": model, "lr": lr, "seed": 9000 + k,
                         "val_acc": a, "status": "completed"} for k, a in enumerate(accs)]
        return pd.DataFrame(out)

    version = ls.CLAIM.versions[4]
    t = tuning((0.27, 0.29))
    answer = calibration._scores(t[t["choice_model"].isin(q.arms)], q).min(axis=0).idxmax()
    assert answer == 0.03  # plain trains there; v3's rule, scored on noisy BN too, would take 0.1
    tuned = {"landscape/lr_v4": {"values": {"plain": 0.03, "bn": 0.03}}}
    [g] = pilot.run(version, t, tuned)
    assert g.holds and g.value == pytest.approx(0.28) and g.seeds == 2
    [g] = pilot.run(version, tuning((0.20, 0.24)), tuned)
    assert not g.holds  # mean 0.22, its projected lower end at 5 seeds below 0.2


def test_v5_a_plain_accuracy_guard_still_open_keeps_the_plan_going():
    """Plain at the shared lr 0.17-0.27 over 5 seeds (mean 0.22, lower end 0.17): v4 stops untestable at its
    first look, v5 stays undecided and asks for 8 seeds."""
    t = probes(FIVE)
    plain = t["choice_model"] == "plain"
    t.loc[plain, "final_acc"] = [0.17, 0.27, 0.20, 0.25, 0.21]
    assert verdict(4, t).verdict == UNTESTABLE
    res = verdict(5, t)
    assert res.verdict == INCONCLUSIVE and res.derived["next_seeds"] == 8, res.detail
