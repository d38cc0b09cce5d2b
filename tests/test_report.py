"""The report is a function of the committed endpoints table: recomputing it from the committed
files gives the committed claims.json and REPORT.md exactly; a profile that runs some experiments
reports those. Each claim's rule on hand-made tables is in tests/claims/."""

import json
import shutil

import pytest

from bnexp import calibration, endpoints, report
from bnexp.claims import all_claims, by_id
from bnexp.evaluation import evaluate_profile
from bnexp.files import InputError
from tests.conftest import ROOT

COMMITTED = ROOT / "results" / "quick"


@pytest.mark.parametrize("profile", sorted(p.parent.name for p in COMMITTED.parent.glob("*/REPORT.md")))
def test_every_committed_report_regenerates_exactly_from_its_table(tmp_path, profile):
    committed = COMMITTED.parent / profile
    for other in COMMITTED.parent.glob("*/claims.json"):  # the cross-scale table reads the other profiles'
        if other.parent != committed:
            (tmp_path / other.parent.name).mkdir()
            shutil.copy(other, tmp_path / other.parent.name / "claims.json")
    for kept in ("scouting", "cost"):  # drafts' scouted regimes and larger profiles' costs, named in the report
        if (COMMITTED.parent / kept).is_dir():
            shutil.copytree(COMMITTED.parent / kept, tmp_path / kept)
    tmp_path = tmp_path / profile
    tmp_path.mkdir()
    for name in (endpoints.RUNS, endpoints.CURVES, endpoints.EXACT, calibration.TUNED):
        shutil.copy(committed / name, tmp_path / name)
    report.write_report(tmp_path, profile)
    assert json.loads((tmp_path / "claims.json").read_text()) == json.loads((committed / "claims.json").read_text())
    assert (tmp_path / "claims.json").read_text() == (committed / "claims.json").read_text()
    assert (tmp_path / "REPORT.md").read_text() == (committed / "REPORT.md").read_text()
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == \
        sorted(p.name for p in (committed / "figures").glob("*.png"))


def test_a_profile_that_runs_some_experiments_reports_those_and_names_the_others(tmp_path, monkeypatch):
    """A profile whose `only` names some experiments (long's, less init_insensitivity's): its report keeps
    their claims and the exact checks, says which claims it does not run, and its cross-scale table still
    shows those at the other profiles."""
    from bnexp import evaluation
    from bnexp.config import profile_only

    only = [e for e in profile_only("long") if e != "init_insensitivity"]
    assert "lr_tolerance" in only and len(only) > 5
    monkeypatch.setattr(evaluation, "profile_only",
                        lambda profile: only if profile == "long" else profile_only(profile))
    (tmp_path / "quick").mkdir()
    shutil.copy(COMMITTED / "claims.json", tmp_path / "quick" / "claims.json")
    out = tmp_path / "long"
    out.mkdir()
    for name in (endpoints.RUNS, endpoints.CURVES, endpoints.EXACT, calibration.TUNED):
        shutil.copy(COMMITTED / name, out / name)  # quick's rows stand in for long's: only the claims differ
    report.write_report(out, "long")
    ids = [c["id"] for c in json.loads((out / "claims.json").read_text())]
    ran = ["lr_tolerance", "convergence", "small_batch", "dropout_redundancy", "landscape", "sigmoid", "gradient_flow"]
    skipped = ["init_insensitivity"]
    assert ids == [c.id for c in all_claims() if c.id not in skipped]
    assert set(ran) < set(ids)
    text = (out / "REPORT.md").read_text()
    assert (f"Not run at this profile (`only` in `configs/profile/long.yaml`): {', '.join(skipped)};" in text)
    at_quick = next(c["version"] for c in json.loads((COMMITTED / "claims.json").read_text())
                    if c["id"] == "init_insensitivity")
    assert f"| init_insensitivity | quick | v{at_quick} |" in text and "| small_batch | long | v4 |" in text
    assert "## init_insensitivity" not in text and "## small_batch" in text and "## lr_tolerance" in text


def test_claims_json_names_every_claim_with_version_status_and_counts():
    claims = json.loads((COMMITTED / "claims.json").read_text())
    assert [c["id"] for c in claims] == [c.id for c in all_claims()]
    for c in claims:
        assert {"version", "status", "n_runs_used", "n_runs_excluded", "method", "history"} <= set(c)
        assert c["status"] in ("confirmatory", "exploratory")
        assert [h["version"] for h in c["history"]] == sorted(by_id()[c["id"]].versions)


def test_the_report_opens_with_a_plain_line_per_claim_and_labels_what_each_status_is():
    """Read in a minute: holds / fails / undecided / cannot show here, with the deciding number and
    the paper's; an untestable verdict shows the failed guard's value; exact checks say so."""
    text = (ROOT / "results" / "long" / "REPORT.md").read_text()
    lines: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("- **") and line.split("**")[1] in by_id():
            lines.setdefault(line.split("**")[1], line)  # the first: the line at the top
    assert lines["convergence"].count("**holds**") == 1 and "0.263 [0.189, 0.366] against <= 0.5" in \
        lines["convergence"]
    assert "**fails**" in lines["small_batch"] and "0.0385 [0.0295, 0.0475] against >= 0.05" in lines["small_batch"]
    assert "**fails**" in lines["landscape"] and "1.11 [0.928, 1.32] against <= 0.5" in lines["landscape"] \
        and "Paper: " in lines["landscape"]
    table = [row for row in text.splitlines() if row.startswith("| [")]
    quick = (ROOT / "results" / "quick" / "REPORT.md").read_text().splitlines()
    dropout = next(r for r in quick if r.startswith("- **dropout_redundancy**"))
    assert "**cannot show here**" in dropout and "-0.00651 (needs >= 0)" in dropout
    untestable = next(r for r in quick if r.startswith("| [dropout_redundancy]"))
    assert "guard -0.00651 (needs >= 0); deciding part 0.00322" in untestable  # the effect column says why
    # an inconclusive verdict after its plan's last look says how far from a decision it is
    convergence = next(r for r in quick if r.startswith("- **convergence**"))
    assert "**undecided**" in convergence and "at the plan's last look" in convergence \
        and "would need about 87 seeds" in convergence
    # an exact check with runs only for its descriptive part (none at long) reads its measured error
    assert "**holds**: 7.15e-07 (max error" in lines["eval_semantics"] and "no runs" not in lines["eval_semantics"]
    exact = next(r for r in table if r.startswith("| [scale_invariance]"))
    assert "| exact check |" in exact and "exploratory" not in exact


def test_a_version_with_no_runs_is_not_called_confirmatory(tmp_path):
    from bnexp.evaluation import evaluate_profile

    out = tmp_path / "quick"
    out.mkdir()
    for name in (endpoints.RUNS, endpoints.CURVES, endpoints.EXACT, calibration.TUNED):
        shutil.copy(COMMITTED / name, out / name)
    ev = evaluate_profile(out, "quick")
    newest = ev.claims[0][-1]
    newest.used = newest.used.iloc[0:0]  # as before any of its runs
    assert report._standing(newest, "quick") == "no runs yet (confirmatory once run)"  # piloted at quick
    assert "no runs at this profile yet" in report._in_words(newest)
    # a version piloted elsewhere only would be exploratory here: its status says so before any run
    init = next(per for per in ev.claims if per[0].claim.id == "init_insensitivity")
    v7 = next(o for o in init if o.number == 7)
    assert "quick" not in v7.entry.piloted and not len(v7.used)
    assert report._standing(v7, "quick") == "no runs yet (not piloted here: exploratory once run)"


def test_drafts_are_listed_with_their_pilot_at_the_profile_and_the_regimes_scouted_for_them(tmp_path, monkeypatch):
    """A draft is piloted on the profile's committed tuning rows of its current regime when the report is
    written. small_batch v4's definition as a draft v5 at quick: GN+WS 0.32 points behind BN at 128 on the
    tuning seeds, projected to 0.71 at the first look, against <= 3 (it passed there before v4 was
    registered); the 24 tuning runs of the regime tried before are left out and counted, and the committed
    table of the regimes scouted for it is named."""
    from bnexp.evaluation import draft_pilots

    claim = by_id()["small_batch"]
    monkeypatch.setitem(claim.drafts, 5, claim.versions[4])
    table = endpoints.read(COMMITTED)[0]
    drafts = {(d.claim.id, d.number): d for d in draft_pilots(table, calibration.read(COMMITTED), "quick", [])}
    draft = drafts[("small_batch", 5)]
    [guard] = draft.guards
    assert guard.holds and guard.value == pytest.approx(0.0032) and guard.projected == pytest.approx(0.00706, abs=1e-5)
    assert draft.stale == 24
    (tmp_path / "scouting" / "small_batch_v5_quick").mkdir(parents=True)
    shutil.copy(ROOT / "results" / "scouting" / "small_batch_v4_quick" / "runs.csv",
                tmp_path / "scouting" / "small_batch_v5_quick" / "runs.csv")
    lines = report._drafts(list(drafts.values()), "quick", report._scouting(tmp_path, "quick"))
    line = next(i for i, x in enumerate(lines)
                if x.startswith("- **small_batch** v5 (draft): its pilot passes: it can be registered"))
    assert "(24 tuning runs of an earlier regime left out)" in lines[line]
    assert "pilot mean 0.0032 on 2 tuning seeds" in lines[line] and "needs <= 0.03" in lines[line]
    assert "results/scouting/small_batch_v5_quick/runs.csv" in lines[line + 1]


@pytest.mark.parametrize("spoil, why", [
    (lambda text: text + text.splitlines()[1] + "\n", "appears twice"),  # a duplicated row
    (lambda text: text[: len(text) // 2], "cut short|not readable"),  # a truncation
    (lambda text: "nonsense,columns\n1,2\n", "no key"),  # a hand-made file that is not the table
])
def test_a_spoilt_scouting_table_is_refused_in_one_line(tmp_path, spoil, why):
    folder = tmp_path / "scouting" / "small_batch_v4_quick"
    folder.mkdir(parents=True)
    text = (ROOT / "results" / "scouting" / "small_batch_v4_quick" / "runs.csv").read_text()
    (folder / "runs.csv").write_text(spoil(text))
    with pytest.raises(InputError, match=why):
        report._scouting(tmp_path, "quick")


def test_an_untestable_claim_whose_newer_version_is_not_piloted_here_names_the_add_pilot_command():
    """dropout_redundancy's newest version is registered with pilots at quick and long: at a profile where
    it has no runs and no pilot, the report's first step toward showing the claim is piloting it there."""
    import dataclasses

    ev = evaluate_profile(COMMITTED, "quick")
    per_claim = next(pc for pc in ev.claims if pc[0].claim.id == "dropout_redundancy")
    newest = max(per_claim, key=lambda o: o.number)
    assert newest.number >= 5 and report._unpiloted(per_claim, "quick") == []  # piloted here
    bare = [dataclasses.replace(o, used=o.used.iloc[:0]) if o is newest else o for o in per_claim]
    [line] = report._unpiloted(bare, "mine")
    assert line.startswith(f"`mine` itself: dropout_redundancy v{newest.number} is registered (piloted at long, quick) "
                           "but not piloted at mine")
    assert f"add-pilot dropout_redundancy {newest.number} --profile mine" in line
    assert report._unpiloted(bare, "quick") == [] and report._unpiloted(bare, "long") == []  # piloted there
