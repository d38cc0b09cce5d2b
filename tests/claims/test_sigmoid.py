"""sigmoid, specified on hand-made tables: BN lets a sigmoid CNN train (>= 20 points over plain) and
keeps the 3 x 100 sigmoid net's inputs from drifting (<= 0.5x plain's drift). v1 (each at its best
lr, percentile drift), v2 (one shared lr; drift in initial spreads) and v3 (v2 on a sequential plan,
the drift part guarded by plain's inputs drifting at all) and v4 (each CNN at its own lr tuned on the
CNN, the guard by its interval, looks at 5, 8, 12). `hand_made()` feeds the same tables to
re-certification."""

import pandas as pd
import pytest

from bnexp.claims import by_id
from bnexp.method import pilot
from bnexp.method.contract import Context
from bnexp.method.stats import NOT_REPRODUCED, REPRODUCED, UNTESTABLE


def nets(seeds, cnn_gap: float, drift_bn: float, drift_plain: float = 5.8) -> pd.DataFrame:
    """Per seed at lr 0.05: the sigmoid CNN plain at chance and BN `cnn_gap` (+1% per seed mod 3)
    above it; the 3 x 100 net's drift BN `drift_bn` against plain's `drift_plain` (x 0.9-1.1)."""
    rows = []
    for seed in seeds:
        w = 0.9 + 0.1 * (seed % 3)
        rows += [{"seed": seed, "arm": "cnn", "norm": "none", "lr": 0.05, "final_acc": 0.1, "drift_all": 2.5 * w},
                 {"seed": seed, "arm": "cnn", "norm": "batch", "lr": 0.05, "final_acc": 0.1 + cnn_gap + w / 100,
                  "drift_all": 0.04},
                 {"seed": seed, "arm": "fc", "norm": "none", "lr": 0.05, "final_acc": 0.37,
                  "drift_all": drift_plain * w},
                 {"seed": seed, "arm": "fc", "norm": "batch", "lr": 0.05, "final_acc": 0.41, "drift_all": drift_bn}]
    t = pd.DataFrame(rows)
    return t.assign(drift=t["drift_all"], cell=t["arm"] + "_" + t["norm"])  # v1's percentile drift, read the same


THREE, EIGHT, TWELVE = (3, 4, 5), range(11, 19), range(21, 33)


def verdict(n: int, t: pd.DataFrame):
    return by_id()["sigmoid"].versions[n].verdict(t, Context())


def hand_made() -> list[pd.DataFrame]:
    return [nets(THREE, 0.26, 0.06), nets(THREE, 0.26, 20.0), nets(THREE, 0.10, 0.06), nets(EIGHT, 0.26, 0.06),
            nets(EIGHT, 0.26, 0.06, drift_plain=0.05), nets(EIGHT, 0.10, 0.06), nets(TWELVE, 0.26, 0.06),
            nets(TWELVE, 0.26, 0.06, drift_plain=0.11)]


def test_v1_compares_each_net_at_its_best_lr_on_the_cnn():
    res = verdict(1, nets(THREE, 0.26, 0.06))
    assert res.verdict == REPRODUCED, res.detail  # the CNN's drift: BN 0.04 against plain's 2.25-2.75
    assert res.effect == pytest.approx(0.26 + 0.01)
    assert res.derived["best_lr"] == {"cnn": {"batch": 0.05, "none": 0.05}, "fc": {"batch": 0.05, "none": 0.05}}


def test_v2_needs_the_accuracy_gain_on_the_cnn_and_less_drift_in_the_mlp():
    assert verdict(2, nets(THREE, 0.26, 0.06)).verdict == REPRODUCED
    assert verdict(2, nets(THREE, 0.26, 20.0)).verdict == NOT_REPRODUCED  # BN's inputs drift more
    assert verdict(2, nets(THREE, 0.10, 0.06)).verdict == NOT_REPRODUCED


def test_v3_decides_both_parts_on_eight_seeds():
    res = verdict(3, nets(EIGHT, 0.26, 0.06))
    assert res.verdict == REPRODUCED, res.detail
    assert verdict(3, nets(EIGHT, 0.10, 0.06)).verdict == NOT_REPRODUCED


def test_v3_the_drift_part_is_untestable_when_plains_inputs_do_not_drift():
    res = verdict(3, nets(EIGHT, 0.26, 0.06, drift_plain=0.05))
    assert res.verdict == UNTESTABLE, res.detail
    assert [p["verdict"] for p in res.derived["parts"]] == [REPRODUCED, UNTESTABLE]


def test_v4_decides_both_parts_at_its_first_look():
    res = verdict(4, nets(TWELVE, 0.26, 0.06))
    assert res.verdict == REPRODUCED and res.derived["seeds"] == [21, 22, 23, 24, 25], res.detail
    assert "plain sigmoid CNN within a point of chance on 12 of 12 seeds" in res.detail


def test_v4_reads_the_drift_guard_by_its_interval():
    """Plain's drift 0.099-0.121 (mean 0.11 over 0.1): v4's lower end is under 0.1, so the drift part
    cannot show; v3's point guard holds, and v3 judges the drift (0.06 / 0.11, over its 0.5)."""
    t = nets(TWELVE, 0.26, 0.06, drift_plain=0.11)
    assert verdict(4, t).verdict == UNTESTABLE
    assert verdict(3, t[t["seed"] < 29]).verdict == NOT_REPRODUCED


def test_v4_pilot_reads_plains_drift_on_the_tuning_seeds():
    v4 = by_id()["sigmoid"].versions[4]
    rows = nets((9000, 9001), 0.26, 0.06).assign(experiment="sigmoid/pilot")
    rows = rows[(rows["arm"] == "fc") & (rows["norm"] == "none")]
    (guard,) = pilot.run(v4, rows, {})
    assert guard.holds and guard.seeds == 2
    assert not pilot.run(v4, rows.assign(drift_all=[0.12, 0.06]), {})[0].holds
