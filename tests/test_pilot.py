"""From v4 on: guards judged by their interval, piloted on tuning seeds before registration, and a
registration that holds the profile values its experiment reads."""

import dataclasses
import shutil
import sys

import pandas as pd
import pytest
import yaml

from bnexp.claims import by_id
from bnexp.method import ledger, pilot
from bnexp.method import protocol as pr
from bnexp.method.contract import Claim, Context, Pilot, Version
from bnexp.method.ledger import Entry, book
from bnexp.method.ledger import __main__ as cli
from bnexp.method.sequential import Plan
from bnexp.method.stats import REPRODUCED
from bnexp.profile import budget_hash
from tests.conftest import ROOT


def _gap(rows: pd.DataFrame, ctx: Context) -> list[float]:
    """Per seed: arm b's error minus arm a's."""
    a = rows[rows["arm"] == "a"].set_index("seed")["final_acc"]
    b = rows[rows["arm"] == "b"].set_index("seed")["final_acc"]
    return list((a - b).dropna())


def _rows(gaps: list[float]) -> pd.DataFrame:
    return pd.DataFrame([{"seed": s, "arm": "a", "final_acc": 0.8} for s in range(len(gaps))]
                        + [{"seed": s, "arm": "b", "final_acc": 0.8 - g} for s, g in enumerate(gaps)])


PAR = pr.interval_guard("b's error minus a's", _gap, 0.03, False, why="b trails a")


def _protocol() -> pr.Protocol:
    part = pr.Part("b's error minus a's, again", _gap, 0.10, False)
    return pr.Protocol((part,), Plan(looks=(5, 8, 12)), guards=(PAR,))


def test_an_interval_guard_fails_where_its_mean_passes_but_its_interval_does_not():
    tight, loose = _rows([0.010, 0.012, 0.011, 0.009, 0.010]), _rows([0.01, -0.02, 0.05, -0.01, 0.02])
    assert PAR.holds(PAR.measure(tight, Context()))  # upper end ~0.012
    value = PAR.measure(loose, Context())
    assert sum(_gap(loose, Context())) / 5 < 0.03 < value and not PAR.holds(value)
    look = pr.look(_protocol(), loose, Context(), 0, list(range(5)))
    assert look.failed == [PAR.name] and look.verdict == "untestable at this scale"


def _version(rows_fn) -> Version:
    return Version("criterion", "method", None, lambda t, c: None, "x", protocol=_protocol, pilot=Pilot(rows_fn))


def test_a_pilot_projects_the_tuning_seeds_spread_to_the_first_look():
    steady = pilot.run(_version(lambda t, tuned: _rows([0.010, 0.014])), pd.DataFrame(), {})
    (g,) = steady
    assert g.seeds == 2 and g.first_look == 5 and g.holds
    assert g.value == pytest.approx(0.012)
    assert g.projected == pytest.approx(0.012 + 2.776 * 0.002828 / 5 ** 0.5, rel=1e-3)
    noisy = pilot.run(_version(lambda t, tuned: _rows([0.0, 0.05])), pd.DataFrame(), {})
    assert noisy[0].value == pytest.approx(0.025) and not noisy[0].holds  # the mean passes, the projection does not
    alone = pilot.run(_version(lambda t, tuned: _rows([0.0])), pd.DataFrame(), {})
    assert not alone[0].holds and "expected to fail" in str(alone[0])


def test_a_pilot_projects_each_part_over_the_plans_looks_to_size_it():
    """The part (b's error minus a's, <= 0.10) on the pilot rows: at 0.02 +- 0.01 the expected interval
    clears the bar at the first look; at 0.08 with a spread of 0.02 only at the 12-seed look; at 0.099 no
    look does, and the fixed-n seeds say how many would. A part whose rows it cannot read is left out."""
    (clear,) = pilot.parts(_version(lambda t, tuned: _rows([0.01, 0.03])), pd.DataFrame(), {})
    assert clear.seeds == 2 and clear.mean == pytest.approx(0.02) and clear.decides_at == 5 and clear.holds
    assert "clear of it at the 5-seed look, the part expected to hold" in str(clear)
    plan = _protocol().plan
    (late,) = pilot.parts(_version(lambda t, tuned: _rows([0.06, 0.10, 0.06, 0.10])), pd.DataFrame(), {})
    sd = late.sd
    assert [0.08 + plan.multiplier(k, n) * sd / n ** 0.5 < 0.10 for k, n in enumerate(plan.looks)] == \
        [False, False, True] and late.decides_at == 12
    (near,) = pilot.parts(_version(lambda t, tuned: _rows([0.089, 0.109])), pd.DataFrame(), {})
    assert near.decides_at is None and near.holds is None and near.seeds_needed > 12
    assert "across it at every look" in str(near) and f"about {near.seeds_needed} seeds" in str(near)
    (fails,) = pilot.parts(_version(lambda t, tuned: _rows([0.2, 0.21])), pd.DataFrame(), {})
    assert fails.decides_at == 5 and fails.holds is False and "expected to fail" in str(fails)
    assert pilot.parts(_version(lambda t, tuned: pd.DataFrame({"seed": [1]})), pd.DataFrame(), {}) == []


def test_a_pilot_projects_each_part_again_at_its_spreads_upper_bound():
    """Two seeds pin a spread down poorly: 0.05 +- 0.01 clears the bar at the first look as measured, but
    at the sd's 90% upper bound (chi-square on 1 degree of freedom, about 8x) at no look of the plan, and
    the pilot says its sizing rests on luck; eight seeds of the same spread bound it within 1.6x, and
    the plan still decides, one look later."""
    from scipy import stats
    (two,) = pilot.parts(_version(lambda t, tuned: _rows([0.04, 0.06])), pd.DataFrame(), {})
    assert two.sd_upper == pytest.approx(two.sd / stats.chi2.ppf(0.10, 1) ** 0.5)
    assert 7.9 < two.sd_upper / two.sd < 8.0
    assert two.decides_at == 5 and two.decides_at_upper is None
    assert "at no look of the plan: its sizing rests on a spread these seeds cannot pin down" in str(two)
    (eight,) = pilot.parts(_version(lambda t, tuned: _rows([0.04, 0.06] * 4)), pd.DataFrame(), {})
    plan = _protocol().plan  # O'Brien-Fleming-type: the first look's interval is the widest
    assert eight.sd_upper / eight.sd < 1.6 and eight.decides_at == 5
    assert [0.05 + plan.multiplier(k, n) * eight.sd_upper / n ** 0.5 < 0.10 for k, n in enumerate(plan.looks)] == \
        [False, True, True] and eight.decides_at_upper == 8
    assert f"upper bound ({eight.sd_upper:.3g}) at the 8-seed look" in str(eight)


def test_a_pilot_reads_the_tuning_rows_and_answers_it_is_given():
    seen = {}

    def rows(tuning, tuned):
        seen.update(n=len(tuning), tuned=tuned)
        return _rows([0.01, 0.011])

    pilot.run(_version(rows), pd.DataFrame({"seed": [1, 2, 3]}), {"q": {"rule": "best"}})
    assert seen == {"n": 3, "tuned": {"q": {"rule": "best"}}}


@pytest.fixture
def scratch_ledger(tmp_path, monkeypatch):
    path = tmp_path / "ledger.yaml"
    shutil.copy(book.LEDGER, path)
    monkeypatch.setattr(book, "LEDGER", path)
    return path


def _fake_claim(monkeypatch, version: Version):
    claim = Claim("toy", "s", "src", "pub", "u", 99, {1: version})
    monkeypatch.setattr("bnexp.claims.by_id", lambda: {**by_id(), "toy": claim})
    return claim


def _main(monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["ledger", *argv])
    cli._main()


def test_a_version_with_a_pilot_is_registered_only_with_a_passing_pilot(scratch_ledger, monkeypatch, capsys):
    version = _version(lambda t, tuned: _rows([0.0, 0.05]))
    _fake_claim(monkeypatch, version)
    before = scratch_ledger.read_text()
    with pytest.raises(SystemExit, match="declares a pilot: register it with --pilot"):
        _main(monkeypatch, "register", "toy", "1", "--reason", "r")
    monkeypatch.setattr(cli, "_pilot", lambda c, n, p, r: pilot.run(version, pd.DataFrame(), {}))
    with pytest.raises(SystemExit, match="toy v1 is not registered: its pilot at long fails: b's error minus a's"):
        _main(monkeypatch, "register", "toy", "1", "--reason", "r", "--pilot", "long")
    assert scratch_ledger.read_text() == before  # nothing half-written

    steady = _version(lambda t, tuned: _rows([0.010, 0.014]))
    _fake_claim(monkeypatch, steady)
    monkeypatch.setattr(cli, "_pilot", lambda c, n, p, r: pilot.run(steady, pd.DataFrame(), {}))
    _main(monkeypatch, "register", "toy", "1", "--reason", "r", "--pilot", "long", "--seeds", "12")
    entry = book.load().get("toy", 1)
    assert set(entry.pilots) == {"long"}
    assert entry.pilots["long"]["budget"] == budget_hash(ROOT / "configs", "long", "toy")
    (g,) = entry.pilots["long"]["guards"]
    assert g["holds"] and g["seeds"] == 2 and g["first_look"] == 5
    assert yaml.safe_load(scratch_ledger.read_text())  # still a readable book


def test_a_piloted_version_is_confirmatory_only_where_it_was_piloted_with_the_same_budget():
    version = _version(lambda t, tuned: _rows([0.01, 0.011]))
    entry = Entry("toy", 1, "h", (0, 11), "r", pilots={"long": {"budget": "abc123", "guards": []}})
    assert ledger.piloting(entry, version, "long", "abc123") == []
    assert "changed since registration" in ledger.piloting(entry, version, "long", "fff000")[0]
    assert "without a pilot at profile 'quick'" in ledger.piloting(entry, version, "quick", "abc123")[0]
    plain = dataclasses.replace(version, pilot=None)
    assert ledger.piloting(entry, plain, "quick", "x") == []  # versions before v4 declare none


def test_a_registered_version_is_piloted_at_another_profile_before_its_runs_there(scratch_ledger, monkeypatch):
    """add-pilot: a registered version gains a profile it may decide at, only with a passing pilot and
    no verdict runs there yet; its runs there count only if made by code holding the record."""
    from bnexp import endpoints
    from bnexp.method.ledger import rules

    steady = _version(lambda t, tuned: _rows([0.010, 0.014]))
    _fake_claim(monkeypatch, steady)
    monkeypatch.setattr(cli, "_pilot", lambda c, n, p, r: pilot.run(steady, pd.DataFrame(), {}))
    _main(monkeypatch, "register", "toy", "1", "--reason", "r", "--pilot", "long", "--seeds", "12")
    seeds = book.load().get("toy", 1).seeds()
    made = pd.DataFrame({"experiment": ["x"], "seed": [seeds[0]]})  # one verdict run of toy's sweep `x`
    monkeypatch.setattr(endpoints, "read", lambda folder: (made.iloc[:0], None, None))
    with pytest.raises(SystemExit, match="piloted at long already"):
        _main(monkeypatch, "add-pilot", "toy", "1", "--profile", "long", "--reason", "r")
    before = scratch_ledger.read_text()
    monkeypatch.setattr(endpoints, "read", lambda folder: (made, None, None))
    with pytest.raises(SystemExit, match="has 1 runs on its verdict seeds at quick already"):
        _main(monkeypatch, "add-pilot", "toy", "1", "--profile", "quick", "--reason", "r")
    monkeypatch.setattr(endpoints, "read", lambda folder: (made.iloc[:0], None, None))
    monkeypatch.setattr(cli, "_pilot", lambda c, n, p, r: pilot.run(_version(lambda t, tuned: _rows([0.0, 0.05])),
                                                                    pd.DataFrame(), {}))
    with pytest.raises(SystemExit, match="pilot at quick fails, nothing added"):
        _main(monkeypatch, "add-pilot", "toy", "1", "--profile", "quick", "--reason", "r")
    assert scratch_ledger.read_text() == before  # nothing half-written
    monkeypatch.setattr(cli, "_pilot", lambda c, n, p, r: pilot.run(steady, pd.DataFrame(), {}))
    _main(monkeypatch, "add-pilot", "toy", "1", "--profile", "quick", "--reason", "quick's regime piloted")
    entry = book.load().get("toy", 1)
    assert set(entry.pilots) == {"long"} and set(entry.added_pilots) == {"quick"}  # the registration unchanged
    added = entry.added_pilots["quick"]
    assert added.budget == budget_hash(ROOT / "configs", "quick", "toy") and added.guards[0]["holds"]
    _main(monkeypatch, "add-pilot", "toy", "1", "--profile", "smoke", "--reason", "a second one")
    assert set(book.load().get("toy", 1).added_pilots) == {"quick", "smoke"}
    assert book.load().recertifications == book.load(ROOT / "bnexp" / "claims" / "ledger.yaml").recertifications

    runs = pd.DataFrame({"git_commit": ["old", "new"]})
    monkeypatch.setattr(rules, "registration_commit", lambda key: None)
    assert ledger.piloting(entry, steady, "quick", added.budget, runs) == [
        "its pilot at profile 'quick' is not committed yet"]
    monkeypatch.setattr(rules, "registration_commit", lambda key: "c" * 40 if key == added.key else None)
    monkeypatch.setattr(rules, "contains", lambda commit, registration: commit == "new")
    assert "1 of 2 runs were made by code older than its pilot at profile 'quick'" in \
        ledger.piloting(entry, steady, "quick", added.budget, runs)[0]
    assert ledger.piloting(entry, steady, "quick", added.budget, runs.iloc[1:]) == []
    assert "changed since registration" in ledger.piloting(entry, steady, "quick", "fff000", runs.iloc[1:])[0]


def test_an_added_pilot_whose_fields_were_edited_is_refused(scratch_ledger, monkeypatch):
    record = ("\nadded_pilots:\n  - key: toy v1 piloted at quick (abc)\n"
              "    claim: toy\n    version: 1\n    profile: quick\n    budget: abd\n"
              "    guards: []\n    reason: r\n\nversions:\n")
    text = scratch_ledger.read_text().replace("\nversions:\n", record, 1)
    scratch_ledger.write_text(text)
    with pytest.raises(book.LedgerError, match="does not match its fields"):
        book.load()
    scratch_ledger.write_text(text.replace("budget: abd", "budget: abc"))
    assert book.load().added_pilots[0].key == "toy v1 piloted at quick (abc)"
    from bnexp.claims import all_claims

    assert "toy v1's added pilot at quick: the version is not registered" in ledger.check(all_claims(), book.load())


def test_the_budget_hash_follows_the_claims_own_budget_line_only(tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "configs" / "profile", configs / "profile")
    path = configs / "profile" / "long.yaml"
    base = budget_hash(configs, "long", "small_batch")
    text = path.read_text()
    path.write_text(text.replace("landscape: {subset: 10000", "landscape: {subset: 9000"))
    assert budget_hash(configs, "long", "small_batch") == base  # another claim's line
    path.write_text(text.replace("v4_epochs: 60", "v4_epochs: 65"))
    assert budget_hash(configs, "long", "small_batch") != base
    path.write_text(text.replace("val_size: 2000", "val_size: 1000"))
    assert budget_hash(configs, "long", "small_batch") != base  # a general value it reads


def test_a_choice_at_a_grid_edge_widens_the_grid_by_one_geometric_step_on_that_side():
    from bnexp import calibration

    answer = {"rule": "best", "values": {"bn": 0.8, "gn": 0.05}, "at_grid_edge": ["bn", "gn"],
              "scores": {"bn": {"0.05": 0.5, "0.1": 0.6, "0.2": 0.7, "0.4": 0.75, "0.8": 0.8},
                         "gn": {"0.05": 0.7, "0.1": 0.6, "0.2": 0.5, "0.4": 0.4, "0.8": 0.3}}}
    assert calibration.widening(answer) == [0.025, 1.6]
    assert calibration.widening({**answer, "at_grid_edge": ["bn"]}) == [1.6]
    assert calibration.widening({**answer, "at_grid_edge": []}) == []
    assert calibration.widening({"rule": "target", "value": 0.3}) == []


def test_the_widened_sweep_overrides_the_profile_grid_it_reads_with_every_value_it_has_run(tmp_path):
    import json

    from bnexp import calibration

    (tmp_path / "long").mkdir()
    answer = {"rule": "best", "values": {"v4_bn": 0.2, "v4_gnws": 0.8}, "at_grid_edge": ["v4_gnws"],
              "scores": {a: {"0.05": 0.5, "0.1": 0.6, "0.2": 0.7, "0.4": 0.75, "0.8": 0.8}
                         for a in ("v4_bn", "v4_gnws")}}
    (tmp_path / "long" / "tuned.json").write_text(json.dumps({"small_batch/lr_v4": answer}))
    wider = calibration.widened_sweeps(tmp_path / "long", "long", ["small_batch/lr_v4"])
    assert wider == [("small_batch/tune_v4", ("profile.small_batch.v4_lr_grid='0.05,0.1,0.2,0.4,0.8,1.6'",))]
    assert calibration.widened_sweeps(tmp_path / "long", "long", ["small_batch/lr"]) == []  # not asked


def test_only_the_grids_a_v4_version_reads_are_widened_so_an_earlier_versions_choice_is_never_re_tuned():
    from bnexp import calibration

    refused = calibration.edge_refused()
    assert {"dropout_redundancy/lr_v4", "dropout_redundancy/p_v4", "small_batch/lr_v4"} <= refused
    assert not {"dropout_redundancy/lr", "dropout_redundancy/p", "small_batch/lr", "landscape/lr"} & refused
    piloted = [v for c in by_id().values() for v in (*c.versions.values(), *c.drafts.values()) if v.pilot is not None]
    assert piloted and all({u.question for u in v.uses} <= refused for v in piloted)


def test_from_v4_a_verdict_using_a_grid_edge_choice_is_exploratory():
    claim = by_id()["small_batch"]
    version = claim.versions[4]
    edge = {"small_batch/lr_v4": {"rule": "best", "values": {"v4_bn": 0.2, "v4_gnws": 0.8},
                                  "at_grid_edge": ["v4_gnws"]}}
    reasons = ledger.edge_choices(version, edge)
    assert len(reasons) == 1 and "small_batch/lr_v4 for v4_gnws sits at the edge of its grid (0.8)" in reasons[0]
    assert ledger.edge_choices(version, {"small_batch/lr_v4": {**edge["small_batch/lr_v4"], "at_grid_edge": []}}) == []
    v3 = by_id()["small_batch"].versions[3]
    assert ledger.edge_choices(v3, {"small_batch/lr": {"values": {"bn": 0.8}, "at_grid_edge": ["bn"]}}) == []


def test_a_draft_is_piloted_but_neither_judged_nor_registered(scratch_ledger, monkeypatch):
    """A version written to be piloted sits in the claim's drafts (here small_batch v4's definition as a
    draft v5): `ledger check` does not ask for its registration, and `register` says how to promote it."""
    claim = by_id()["small_batch"]
    monkeypatch.setitem(claim.drafts, 5, claim.versions[4])
    assert 5 not in claim.versions
    assert not [p for p in ledger.check(list(by_id().values()), book.load()) if "small_batch v5" in p]
    with pytest.raises(SystemExit, match="small_batch v5 is a draft: once its pilot passes, move it"):
        _main(monkeypatch, "register", "small_batch", "5", "--reason", "r", "--pilot", "long")


def test_from_v5_an_interval_guard_still_open_keeps_the_plan_going_and_a_clear_failure_stops_it():
    """Gaps averaging 0.025 with a spread that puts the upper end past 0.03 at 5 seeds: v4's rule reads
    the claim untestable at its first look; with `open_guards` the claim stays undecided and the plan asks
    for 8 seeds, where the guard's interval has closed under 0.03 and the part decides. A guard whose
    mean is past its threshold (0.05) stops the plan as before, and at the last look an open guard
    still fails."""
    wobble = [0.015, 0.035, 0.02, 0.03, 0.025]
    five, eight = _rows(wobble), _rows([*wobble, 0.02, 0.021, 0.019])
    v4, v5 = _protocol(), dataclasses.replace(_protocol(), open_guards=True)
    assert pr.verdict(v4, five, Context()).verdict == pr.UNTESTABLE
    res = pr.verdict(v5, five, Context())
    assert res.verdict == pr.INCONCLUSIVE and res.derived["next_seeds"] == 8, res.detail
    res = pr.verdict(v5, eight, Context())
    assert res.verdict == REPRODUCED and res.n_seeds == 8, res.detail
    clear = _rows([0.05, 0.06, 0.04, 0.05, 0.055])
    res = pr.verdict(v5, clear, Context())
    assert res.verdict == pr.UNTESTABLE and res.derived["next_seeds"] is None
    last = dataclasses.replace(v5, plan=Plan(looks=(5,)))
    assert pr.verdict(last, five, Context()).verdict == pr.UNTESTABLE
