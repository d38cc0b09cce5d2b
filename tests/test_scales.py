"""Where an untestable claim could show: the committed cost tables the report reads are checked
against what scripts/cost.py writes, and each larger profile is named with its verdict, its cost or
the command that costs it."""

from __future__ import annotations

import json

import pytest

from bnexp import scales
from bnexp.config import CONFIGS
from bnexp.files import InputError
from bnexp.profile import budget_hash


def _table(profile: str = "full", **edits) -> dict:
    """A cost table shaped like scripts/cost.py's --json, with this checkout's budget hashes."""
    sweeps = {"small_batch/tune_v4": {"claim": "small_batch", "budget": budget_hash(CONFIGS, profile, "small_batch"),
                                      "runs": 20, "steps_per_run": 10530, "train_images": 26_956_800,
                                      "eval_images": 3_000_000, "s_per_step": 0.3, "s_per_eval": 11.0,
                                      "hours": 9.5},
              "small_batch": {"claim": "small_batch", "budget": budget_hash(CONFIGS, profile, "small_batch"),
                                       "runs": 32, "steps_per_run": 176648, "train_images": 43_000_000,
                                       "eval_images": 4_800_000, "s_per_step": 0.3, "s_per_eval": 11.0,
                                       "hours": 26.4}}
    return {"profile": profile, "device": "cpu", "cpu": "Some CPU (AVX2)", "threads": 1, "jobs": 2, "steps": 5,
            "settings": [], "git_commit": "c" * 40, "git_dirty": False, "date": "2026-12-05", "sweeps": sweeps,
            "total_hours": 35.9, **edits}


def _write(tmp_path, table: dict, name: str = "full") -> object:
    (tmp_path / "cost").mkdir(exist_ok=True)
    path = tmp_path / "cost" / f"{name}.json"
    path.write_text(json.dumps(table))
    return path


def test_a_cost_table_is_read_and_its_claims_sweeps_summed(tmp_path):
    _write(tmp_path, _table())
    tables = scales.costs(tmp_path)
    cost = scales.cost_of("small_batch", tables["full"])
    assert cost.sweeps == {"small_batch/tune_v4": 20, "small_batch": 32}
    assert cost.hours == pytest.approx(35.9) and cost.train_images == 69_956_800 and not cost.stale
    assert "35.9 h" in str(cost) and "Some CPU (AVX2)" in str(cost) and "earlier budget" not in str(cost)
    assert scales.cost_of("dropout_redundancy", tables["full"]) is None


@pytest.mark.parametrize("edit, says", [
    (lambda t: t.update(total_hours=12.0), "add up to"),
    (lambda t: t["sweeps"]["small_batch/tune_v4"].update(hours=1.0), "add up to"),
    (lambda t: t.update(profile="long"), "not the 'full'"),
    (lambda t: t["sweeps"].update({"small_batch/v9": t["sweeps"]["small_batch/tune_v4"]}), "add up to"),
    (lambda t: t["sweeps"]["small_batch"].pop("runs"), "`runs` missing"),
    (lambda t: t["sweeps"]["small_batch"].update(claim="landscape"), "not what cost.py writes"),
    (lambda t: t.pop("git_commit"), "`git_commit` missing"),
])
def test_a_hand_edited_cost_table_is_refused_in_one_line_naming_the_file(tmp_path, edit, says):
    table = _table()
    edit(table)
    path = _write(tmp_path, table)
    with pytest.raises(InputError, match=says) as e:
        scales.costs(tmp_path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_truncated_cost_table_is_refused(tmp_path):
    path = _write(tmp_path, _table())
    path.write_text(path.read_text()[:-40])
    with pytest.raises(InputError, match="not readable"):
        scales.costs(tmp_path)


def test_a_profile_or_sweep_changed_since_it_was_costed_is_said_to_be_costed_for_an_earlier_one(tmp_path):
    table = _table()
    table["sweeps"]["small_batch"]["budget"] = "0" * 12
    cost = scales.cost_of("small_batch", table)
    assert cost.stale and "Costed for an earlier budget" in str(cost)
    table = _table()  # a draft registered since: its sweep `v9_draft` is gone, the table is still read
    table["sweeps"]["small_batch/v9_draft"] = table["sweeps"].pop("small_batch")
    path = _write(tmp_path, table)
    cost = scales.cost_of("small_batch", scales.load(path))
    assert cost.stale and "rerun the cost" in str(cost)
    assert not scales.cost_of("small_batch", _table()).stale


def test_each_larger_profile_is_named_with_its_verdict_its_cost_or_the_command_that_costs_it():
    verdicts = {"long": [{"id": "small_batch", "verdict": "untestable at this scale", "version": 3, "n_seeds": 5,
                          "n_runs_used": 15}]}
    said = scales.elsewhere("small_batch", "quick", verdicts, {"full": _table()})
    assert [line.split(":")[0] for line in said] == ["`long`", "`full`"]  # by scale; smoke and quick left out
    assert said[0].startswith("`long`: untestable at this scale (v3, 5 seeds)")
    assert "`small_batch` (32 runs)" in said[1] and "35.9 h" in said[1]
    said = scales.elsewhere("dropout_redundancy", "long", verdicts, {"full": _table()})
    assert said == ["`full`: not run yet, not costed (`python scripts/cost.py --profile full --only "
                    "dropout_redundancy --json results/cost/full.json` times it)"]
    assert scales.order(["mine", "full", "quick", "smoke"]) == ["smoke", "quick", "full", "mine"]
