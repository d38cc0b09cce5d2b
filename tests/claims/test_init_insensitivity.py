"""init_insensitivity, specified on hand-made tables: v1 (BN's accuracy spread over init scheme x
scale a third of plain's), v2 (the share of careful init's gain over chance kept elsewhere, BN minus
plain, plain required to train) and v3 (BN keeps >= 0.9 of it over the other cells, guarded by plain
losing something and training at all). `hand_made()` feeds the same tables to re-certification."""

import numpy as np
import pandas as pd
import pytest

from bnexp.claims import by_id
from bnexp.claims import init_insensitivity as ii
from bnexp.method import pilot
from bnexp.method.contract import Context
from bnexp.method.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, UNTESTABLE

SCHEMES, SCALES = ("kaiming_normal", "default"), (0.1, 1.0, 10.0)


def grid(seeds, bn_cost: float, plain_ref: float, plain_other: float | None = None) -> pd.DataFrame:
    """Every scheme x scale per seed. BN: 0.40 under careful init (He x1), `bn_cost` x (seed mod 3 + 1)
    less elsewhere. Plain: `plain_ref` (+0.002 per seed mod 3) under careful init, `plain_other`
    (default chance, 0.1) elsewhere."""
    rows = []
    for seed in seeds:
        for scheme in SCHEMES:
            for scale in SCALES:
                careful = (scheme, scale) == ii.REFERENCE_V3
                bn = 0.40 if careful else 0.40 - bn_cost * (seed % 3 + 1)
                plain = plain_ref + 0.002 * (seed % 3) if careful else (0.1 if plain_other is None else plain_other)
                rows += [{"seed": seed, "arm": "bn", "init_scheme": scheme, "init_scale": scale, "final_acc": bn},
                         {"seed": seed, "arm": "plain", "init_scheme": scheme, "init_scale": scale, "final_acc": plain}]
    t = pd.DataFrame(rows)
    return t.assign(choice_model=t["arm"])  # v1 named the arm choice_model


EIGHT = range(11, 19)
TWELVE = range(21, 33)


def verdict(n: int, t: pd.DataFrame):
    return by_id()["init_insensitivity"].versions[n].verdict(t, Context())


def hand_made() -> list[pd.DataFrame]:
    return [grid((3, 4, 5), 0.01, 0.3), grid((3, 4, 5), 0.01, 0.12), grid(EIGHT, 0.003, 0.3),
            grid(EIGHT, 0.03, 0.3), grid(EIGHT, 0.003, 0.3, plain_other=0.29), noisy_reference(TWELVE),
            grid(THIRTY, 0.003, 0.3), bn_keeps(THIRTY, SHARES_V5)]


THIRTY = range(43, 73)
SHARES_V5 = (0.79, 0.83, 0.86, 0.88, 0.90, 0.93)  # mean 0.865, sd 0.05: v5's measured spread (sd 0.059)


def bn_keeps(seeds, shares) -> pd.DataFrame:
    """BN keeps `shares[i mod len]` of its careful-init gain (0.40 - 0.1) in every other cell of the i-th
    seed; plain at chance away from careful init (0.30)."""
    t = grid(seeds, 0.0, 0.3)
    for i, seed in enumerate(seeds):
        other = (t["seed"] == seed) & (t["arm"] == "bn") & ~((t["init_scheme"] == ii.REFERENCE_V3[0])
                                                             & (t["init_scale"] == ii.REFERENCE_V3[1]))
        t.loc[other, "final_acc"] = 0.1 + 0.3 * shares[i % len(shares)]
    return t.assign(choice_model=t["arm"])


def noisy_reference(seeds) -> pd.DataFrame:
    """BN keeps all of its gain elsewhere (0.40 in every cell, 0.005 per seed mod 3 apart), but its
    reference run is +-0.03 noisy by seed; plain at chance away from careful init (0.30)."""
    t = grid(seeds, 0.0, 0.3)
    t["final_acc"] += np.where(t["arm"] == "bn", 0.005 * (t["seed"] % 3), 0.0)
    careful = (t["init_scheme"] == ii.REFERENCE_V3[0]) & (t["init_scale"] == ii.REFERENCE_V3[1]) & (t["arm"] == "bn")
    t.loc[careful, "final_acc"] += np.where(t.loc[careful, "seed"] % 2 == 0, 0.03, -0.03)
    return t


def test_v1_compares_the_accuracy_spread_over_inits():
    """BN's spread is 0.01-0.03 per seed, plain's 0.2: a ratio near 0.1, under the 1/3 bar. Three
    seeds leave the interval's upper end above the bar; eight decide it."""
    assert verdict(1, grid((3, 4, 5), 0.01, 0.3)).verdict == INCONCLUSIVE
    res = verdict(1, grid(EIGHT, 0.01, 0.3))
    assert res.verdict == REPRODUCED, res.detail
    ratios = [0.01 * (s % 3 + 1) / (0.2 + 0.002 * (s % 3)) for s in EIGHT]
    assert res.effect == pytest.approx(float(np.exp(np.mean(np.log(ratios)))))


def test_v2_decides_nothing_when_plain_never_trains():
    table = grid((3, 4, 5), 0.01, 0.3)
    good = verdict(2, table)
    assert good.verdict == REPRODUCED, good.detail  # BN keeps ~0.9 of its gain, plain 1/6
    assert good.effect == pytest.approx(ii.kept_v2(table)["kept"]["bn"].mean() - 1 / 6, rel=1e-2)
    bad = verdict(2, grid((3, 4, 5), 0.01, 0.12))
    assert bad.verdict == INCONCLUSIVE and any("did not train under careful init" in d for d in bad.detail)


def test_v3_leaves_the_reference_cell_out_of_the_share():
    t = grid(EIGHT, 0.003, 0.3)
    kept = ii.kept_v3(t)
    # seed 11 (11 mod 3 = 2): BN's other cells 0.391, so (0.391 - 0.1) / 0.3 = 0.97 of the gain kept
    assert kept.loc[("bn", 11), "kept"] == pytest.approx(0.291 / 0.3)
    assert kept.loc[("plain", 11), "kept"] == pytest.approx(0.0)
    res = verdict(3, t)
    assert res.verdict == REPRODUCED and res.ci_low >= ii.BN_KEEPS_V3, res.detail


def test_v3_bn_losing_a_fifth_of_its_gain_is_not_reproduced():
    res = verdict(3, grid(EIGHT, 0.03, 0.3))  # BN keeps 0.9, 0.8, 0.7 by seed
    assert res.verdict == NOT_REPRODUCED, res.detail


def test_v3_is_untestable_when_the_other_inits_barely_hurt_plain():
    res = verdict(3, grid(EIGHT, 0.003, 0.3, plain_other=0.29))
    assert res.verdict == UNTESTABLE and any("barely hurt plain" in line for line in res.detail)


def test_v4_an_unclipped_share_against_the_mean_reference_is_not_cut_by_a_noisy_reference_run():
    """v3 clips each seed's share at 1 against its own reference run, so a seed whose reference run is
    low loses what the clip takes and one whose run is high keeps less than all: v3's share falls
    below 1 with nothing lost. v4 divides by the reference's mean over seeds."""
    t = noisy_reference(TWELVE)
    v4 = verdict(4, t)
    assert v4.verdict == REPRODUCED, v4.detail
    assert v4.derived["seeds"] == [21, 22, 23, 24, 25]
    k3 = ii.kept_v3(t)["kept"]["bn"]
    assert k3.max() <= 1.0 and k3.mean() < 0.96  # clipped, and cut by the noisy runs
    k4 = ii.kept_v4(t).xs("bn", level="arm")["kept"]
    assert k4.max() > 1.0 and k4.mean() == pytest.approx(1.0, abs=0.02)


def test_v4_bn_minus_plain_must_reach_its_margin():
    """BN keeps 0.98-0.99 of its gain. Plain at 0.24 elsewhere against 0.30 keeps 0.69: BN - plain
    0.29-0.30, clear of the 0.3 margin on the wrong side; at 0.2 elsewhere it keeps 0.5 and the claim
    holds; at 0.28 the other inits cost plain only 0.11 of its gain, so the claim cannot show."""
    assert verdict(4, grid(TWELVE, 0.002, 0.3, plain_other=0.24)).verdict == NOT_REPRODUCED
    assert verdict(4, grid(TWELVE, 0.002, 0.3, plain_other=0.2)).verdict == REPRODUCED
    res = verdict(4, grid(TWELVE, 0.002, 0.3, plain_other=0.28))
    assert res.verdict == UNTESTABLE and any("barely hurt plain" in line for line in res.detail), res.detail


def test_v4_bn_losing_a_fifth_of_its_gain_is_not_reproduced():
    assert verdict(4, grid(TWELVE, 0.03, 0.3)).verdict == NOT_REPRODUCED


def test_v4_pilot_reads_plains_validation_accuracy_on_the_tuning_seeds():
    v4 = by_id()["init_insensitivity"].versions[4]
    t = grid((9000, 9001), 0.0, 0.3)
    t = t[t["arm"] == "plain"].assign(experiment="init_insensitivity/pilot", val_acc=lambda d: d["final_acc"],
                                      final_acc=0.99)  # the test accuracy never counts
    lost, trains = pilot.run(v4, t, {})
    assert lost.holds and lost.value == pytest.approx(1.0, abs=0.01)  # chance elsewhere: all of its gain lost
    assert trains.holds and trains.value == pytest.approx(0.301)
    t2 = t.assign(val_acc=np.where(t["val_acc"] > 0.2, 0.21 + 0.04 * (t["seed"] - 9000), t["val_acc"]))
    assert not pilot.run(v4, t2, {})[1].holds  # 0.21 and 0.25 over 2 seeds: the projected lower end < 0.2


def _plain_careful(t: pd.DataFrame, accs: list[float]) -> pd.DataFrame:
    """`t` with plain's careful-init accuracy set per seed, in seed order."""
    t = t.copy()
    careful = (t["init_scheme"] == ii.REFERENCE_V3[0]) & (t["init_scale"] == ii.REFERENCE_V3[1]) & (t["arm"] == "plain")
    for seed, acc in zip(sorted(t["seed"].unique()), accs, strict=False):
        t.loc[careful & (t["seed"] == seed), "final_acc"] = acc
    return t


def test_v5_a_careful_init_guard_still_open_keeps_the_plan_going():
    """Plain's careful-init accuracy 0.17-0.27 over 5 seeds (mean 0.22, lower end 0.17): v4 stops untestable
    at its first look; v5 reads the look undecided and asks for 8 seeds, and decides once the guard's
    interval has closed above 0.2. Clearly below the bar (mean 0.15), v5 is untestable at once."""
    spread = [0.17, 0.27, 0.20, 0.25, 0.21]
    five = _plain_careful(grid(range(21, 26), 0.003, 0.3), spread)
    assert verdict(4, five).verdict == UNTESTABLE
    res = verdict(5, five)
    assert res.verdict == INCONCLUSIVE and res.derived["next_seeds"] == 8, res.detail
    eight = _plain_careful(grid(range(21, 29), 0.003, 0.3), [*spread, 0.25, 0.25, 0.25])
    assert verdict(5, eight).verdict == REPRODUCED and verdict(5, eight).n_seeds == 8
    low = _plain_careful(grid(range(21, 26), 0.003, 0.3), [0.14, 0.16, 0.15, 0.15, 0.15])
    assert verdict(5, low).verdict == UNTESTABLE


def test_v6_is_v5_on_a_larger_plan():
    """v6 keeps v5's criterion, parts, open guards, neighbours and pilot; only the plan differs, in every
    neighbour too."""
    v5, v6 = ii.protocol_v5(), ii.protocol_v6()
    assert v6.plan == ii.PLAN_V6 and v6.plan.looks == (30, 45, 60) and v5.plan.looks == (5, 8, 12)
    assert v6.open_guards and v5.open_guards
    assert [p.name for p in v6.parts] == [p.name for p in v5.parts]
    assert [(g.name, g.threshold) for g in v6.guards] == [(g.name, g.threshold) for g in v5.guards]
    assert [label for label, _ in v6.neighbours] == [label for label, _ in v5.neighbours]
    assert all(p.plan == ii.PLAN_V6 and p.open_guards for _, p in v6.neighbours)
    versions = by_id()["init_insensitivity"].versions
    assert versions[6].criterion == versions[5].criterion and versions[6].pilot == versions[5].pilot


def test_v6_decides_where_v5s_twelve_seeds_could_not():
    """BN keeps 0.865 of its gain at v5's spread: 12 seeds leave v5's interval across 0.9 at its last look;
    v6's first look (30 seeds) puts it below, and where BN keeps 0.97-0.99 it decides the other way."""
    t = bn_keeps(THIRTY, SHARES_V5)
    v5 = verdict(5, t)
    assert v5.verdict == INCONCLUSIVE and v5.n_seeds == 12, v5.detail
    assert v5.ci_low < ii.BN_KEEPS_V4 < v5.ci_high
    v6 = verdict(6, t)
    assert v6.verdict == NOT_REPRODUCED and v6.derived["seeds"] == list(THIRTY), v6.detail
    assert v6.ci_high < ii.BN_KEEPS_V4 and v6.effect == pytest.approx(0.865, abs=1e-3)
    assert verdict(6, t[t["seed"] < 60]).verdict == INCONCLUSIVE  # 17 seeds: short of the first look
    assert verdict(6, grid(THIRTY, 0.003, 0.3)).verdict == REPRODUCED


def test_the_ledgers_deviation_on_v4_to_v6_recomputes_from_the_committed_quick_table():
    """The deviation's numbers (BN's kept share as a ratio of means, its interval carrying the reference
    mean's uncertainty, at each version's last look multiplier) come from results/quick/runs.csv, and a
    hand-made table with a noisy reference cell gives a wider interval than v4-v6's."""
    from pathlib import Path

    from bnexp.method import ledger
    from bnexp.method.stats import t_interval

    root = Path(__file__).resolve().parents[2]
    t = pd.read_csv(root / "results" / "quick" / "runs.csv", low_memory=False)
    t = t[t["experiment"] == "init_insensitivity"]
    t = t.assign(arm=t["choice_arm"].str.split("/").str[1], final_acc=t["test_acc"])
    text = next(d.text for d in ledger.load().deviations if d.claim == "init_insensitivity" and d.versions == [4, 5, 6])
    looks = ((range(31, 43), ii.PLAN_V4.multiplier(2, 12)), (range(43, 73), ii.PLAN_V6.multiplier(0, 30)))
    for seeds, multiplier in looks:
        est = t_interval(ii.kept_ratio(t[t["seed"].isin(seeds)], "bn"), multiplier=multiplier)
        assert est.n == len(seeds)
        assert f"{est.mean:.3f} [{est.low:.3f}, {est.high:.3f}]" in text, (est, text)
    noisy = noisy_reference(TWELVE)
    wide = t_interval(ii.kept_ratio(noisy, "bn"))
    known = t_interval(ii.kept_v4(noisy).xs("bn", level="arm")["kept"])
    assert wide.mean == pytest.approx(known.mean) and wide.high - wide.low > known.high - known.low


def v7(t: pd.DataFrame):
    return by_id()["init_insensitivity"].versions[7].verdict(t, Context())


def test_v7_reads_bns_share_as_a_ratio_of_means_with_the_reference_means_uncertainty():
    """Where BN's reference run is noisy by seed, v4-v6 divide by its mean as if known; v7's part is the
    ratio of the means with the delta method's interval: the same estimate, a wider interval. It decides
    either way where the shares are clear of 0.9, and looks first at 8 seeds."""
    from bnexp.method.stats import t_interval

    noisy = noisy_reference(range(21, 29))
    got = v7(noisy)
    bn = next(p for p in got.derived["parts"] if p["name"].startswith("BN's kept share"))
    ratio = t_interval(ii.kept_ratio(noisy, "bn"), multiplier=ii.PLAN_V7.multiplier(0, 8))
    assert ii.protocol_v7().plan == ii.PLAN_V7 and ii.PLAN_V7.looks == (8, 12, 20)
    assert (bn["effect"], bn["ci_low"], bn["ci_high"]) == pytest.approx((ratio.mean, ratio.low, ratio.high))
    known = t_interval(ii.kept_v4(noisy).xs("bn", level="arm")["kept"], multiplier=ii.PLAN_V7.multiplier(0, 8))
    assert got.effect == pytest.approx(known.mean) and got.ci_high - got.ci_low > known.high - known.low
    assert v7(grid(range(21, 29), 0.003, 0.3)).verdict == REPRODUCED
    assert v7(bn_keeps(range(21, 33), (0.5, 0.55, 0.6))).verdict == NOT_REPRODUCED


def test_v7_pairs_bn_and_plain_on_the_seeds_both_have_and_keeps_v5s_guards_open():
    """BN - plain is the difference of the two ratio-of-means pseudo-values on the seeds both arms have
    (a seed with plain's runs missing is left out of both); what the other inits cost plain is a ratio
    of means too; the guards are v5's, open."""
    t = grid(range(21, 29), 0.003, 0.3)
    gapped = t[~((t["seed"] == 28) & (t["arm"] == "plain"))]
    shares = ii._shares_v7(gapped)
    assert list(shares.index) == [21, 22, 23, 24, 25, 26, 27] and not shares.isna().any().any()
    pd.testing.assert_series_equal(shares["bn"], ii.kept_ratio_by_seed(gapped[gapped["seed"] < 28], "bn"),
                                   check_names=False)
    p7, p5 = ii.protocol_v7(), ii.protocol_v5()
    assert p7.open_guards and [(g.threshold, g.at_least) for g in p7.guards] == \
        [(g.threshold, g.at_least) for g in p5.guards]
    assert [label for label, _ in p7.neighbours] == [label for label, _ in p5.neighbours]
    lost = p7.guards[0].values(t, Context())
    assert len(lost) == 8 and lost == pytest.approx([1 - x for x in ii.kept_ratio(t, "plain")])
    low = _plain_careful(grid(range(21, 29), 0.003, 0.3), [0.14, 0.16, 0.15, 0.15, 0.15, 0.14, 0.16, 0.15])
    assert v7(low).verdict == UNTESTABLE


def test_v7_pilots_both_nets_on_the_tuning_seeds():
    """Its pilot reads plain's pilot sweep and BN's (pilot_bn), validation accuracy for test accuracy: the
    guards are judged on plain's rows; BN's rows are there for the plan's power."""
    rows = []
    for exp, a in (("init_insensitivity/pilot", "plain"), ("init_insensitivity/pilot_bn", "bn"),
                   ("init_insensitivity/tune", "plain")):
        for seed in (9000, 9001):
            for scheme in SCHEMES:
                for scale in SCALES:
                    careful = (scheme, scale) == ii.REFERENCE_V3
                    base = {"plain": 0.35 if careful else 0.12, "bn": 0.45 if careful else 0.43}[a]
                    val = base + 0.01 * (seed - 9000)
                    rows.append({"experiment": exp, "seed": seed, "arm": a, "init_scheme": scheme, "init_scale": scale,
                                 "val_acc": val, "final_acc": 0.0})
    tuning = pd.DataFrame(rows)
    got = ii.pilot_rows_v7(tuning, {})
    assert set(got["experiment"]) == {"init_insensitivity/pilot", "init_insensitivity/pilot_bn"}
    assert (got["final_acc"] == got["val_acc"]).all()
    result = pilot.run(by_id()["init_insensitivity"].versions[7], tuning, {})
    assert [g.holds for g in result] == [True, True]
    assert ii.kept_ratio(got, "bn") == pytest.approx([(0.33 / 0.35), (0.33 / 0.35)], abs=0.02)
    bn, diff = pilot.parts(by_id()["init_insensitivity"].versions[7], tuning, {})
    assert bn.part.startswith("BN's kept share") and bn.seeds == 2 and bn.mean == pytest.approx(0.943, abs=0.01)
    assert diff.part.endswith("BN - plain") and diff.decides_at == 8 and diff.holds
