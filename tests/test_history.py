"""`python -m bnexp.history`: each claim's versions at each profile side by side, recomputed from the
committed tables as the report is; bad input is refused in one line with nothing printed."""

import shutil

import pandas as pd
import pytest

from bnexp import calibration, endpoints, history
from tests.conftest import ROOT

COMMITTED = ROOT / "results" / "quick"


def _copy(tmp_path, spoil=None):
    out = tmp_path / "quick"
    out.mkdir()
    for name in (endpoints.RUNS, endpoints.CURVES, endpoints.EXACT, calibration.TUNED):
        shutil.copy(COMMITTED / name, out / name)
    if spoil:
        (out / endpoints.RUNS).write_text(spoil((out / endpoints.RUNS).read_text()))
    return out


def test_each_version_since_v3_is_a_row_with_its_verdict_guards_pilot_and_training_time(tmp_path, capsys):
    out = _copy(tmp_path)
    assert history.main([str(out), "--claims", "convergence,init_insensitivity,dropout_redundancy,"
                                               "bn_gradient_explosion"]) == 0
    text = capsys.readouterr().out
    rows = [r for r in text.splitlines() if r.startswith("| ") and not r.startswith("| claim")]
    by = {(r.split(" | ")[0][2:], r.split(" | ")[2]): r for r in rows}
    assert [v for c, v in by if c == "convergence"] == ["v3", "v4", "v5"]  # v0-v2 are before --since
    assert "| inconclusive | confirmatory | 0.446 [0.363, 0.548] | 40 (20, 30, 40) |" in by["convergence", "v5"]
    assert "(>= 0.2, holds)" in by["convergence", "v5"] and "at registration: " in by["convergence", "v5"]
    # a guard that failed shows its value against its bar; the pilot that expected it to hold beside it
    dropout = by["dropout_redundancy", "v5"]
    assert "untestable at this scale" in dropout and "-0.00651 (>= 0, fails)" in dropout \
        and "projected 0.00486 (>= 0, expected to hold)" in dropout
    # registered with no runs here and piloted elsewhere only: a row that says so
    assert "| no runs yet | - | - | - | - | not piloted here | 0.0 |" in by["init_insensitivity", "v7"]
    # a claim with only a v1 shows its headline
    assert "| reproduced | confirmatory | 1.16 [1.13, 1.18] | 5 (5) |" in by["bn_gradient_explosion", "v1"]
    table = pd.read_csv(out / endpoints.RUNS)
    minutes = (table["train_s"] * table["threads"]).sum() / 60
    assert f"`quick`: {len(table)} runs in runs.csv, {minutes:.0f} core-minutes" in text
    assert f"at least {minutes / 4 / 60:.1f} h of wall time at 4 runs at once" in \
        (history.main([str(out), "--claims", "sigmoid", "--jobs", "4"]) == 0 and capsys.readouterr().out)
    tuning = table[table["seed"].between(9000, 9999)]
    assert f"the tuning seeds' (calibration and pilots, every regime tried) " \
           f"{(tuning['train_s'] * tuning['threads']).sum() / 60:.0f}:" in text


@pytest.mark.parametrize("argv, why", [
    (lambda out: [str(out.parent)], "has no runs.csv"),
    (lambda out: [str(out), "--claims", "nope"], "no claim nope at quick"),
    (lambda out: [str(out), "--jobs", "0"], "--jobs must be at least 1"),
])
def test_bad_arguments_are_refused_in_one_line(tmp_path, capsys, argv, why):
    out = _copy(tmp_path)
    with pytest.raises(SystemExit) as stop:
        code = history.main(argv(out))
        raise SystemExit(code)
    assert stop.value.code == 2
    said = capsys.readouterr()
    assert said.out == "" and why in said.err and len(said.err.strip().splitlines()) == 1


def _conflicting_repeat(text: str) -> str:
    header, first = text.splitlines()[:2]
    cells = first.split(",")
    at = header.split(",").index("train_s")
    cells[at] = str(float(cells[at]) + 1)  # the same run key twice, with a different value
    return text + ",".join(cells) + "\n"


@pytest.mark.parametrize("spoil, why", [
    (_conflicting_repeat, "with different values"),
    (lambda text: text[: len(text) // 2], "cut short"),
])
def test_a_hand_edited_table_is_refused_not_tabulated(tmp_path, capsys, spoil, why):
    out = _copy(tmp_path, spoil)
    assert history.main([str(out)]) == 2
    said = capsys.readouterr()
    assert said.out == "" and said.err.startswith("history: ") and why in said.err
    assert len(said.err.strip().splitlines()) == 1
