"""The pre-registration ledger: a registered version's code cannot change unnoticed, seeds never
overlap, and a verdict is confirmatory only on runs made after its registration."""

import importlib.util
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from bnexp.claims import all_claims, by_id
from bnexp.method import ledger
from bnexp.method.contract import Context
from bnexp.method.ledger import Entry, Ledger
from tests.conftest import ROOT


def test_every_version_in_the_code_is_registered_and_unchanged():
    assert ledger.check(all_claims(), ledger.load()) == []


def _edited_claim(tmp_path, name: str, old: str, new: str):
    """The claim `name` loaded from an edited copy of its module, under the module's own name but
    outside sys.modules (the real module and file are untouched)."""
    source = (ROOT / "bnexp" / "claims" / f"{name}.py").read_text()
    assert old in source
    path = tmp_path / f"{name}_edited.py"
    path.write_text(source.replace(old, new))
    spec = importlib.util.spec_from_file_location(f"bnexp.claims.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CLAIM


def test_changing_a_registered_verdict_fails_the_check(tmp_path):
    edited = _edited_claim(tmp_path, "lr_tolerance", "THRESHOLD_V1 = 4.0", "THRESHOLD_V1 = 3.0")
    problems = ledger.check([edited], ledger.load())
    assert any("lr_tolerance v1: its code changed" in p for p in problems), problems
    edited = _edited_claim(tmp_path, "convergence", "float(s) for s, v in json.loads(curve) if v >= target",
                           "float(s) for s, v in json.loads(curve) if v > target")
    assert any("convergence v1: its code changed" in p for p in ledger.check([edited], ledger.load()))


def test_comments_and_docstrings_are_not_changes(tmp_path):
    signature = "def verdict_v1(t: pd.DataFrame, ctx: Context):"
    edited = _edited_claim(tmp_path, "lr_tolerance", signature,
                           signature + "  # a new comment\n    \"\"\"A new docstring.\"\"\"")
    assert not [p for p in ledger.check([edited], ledger.load()) if "lr_tolerance" in p]


def test_seed_rules():
    def entry(version, seeds, **kw):
        return Entry("c", version, "h", seeds, "why", **kw)

    class Fake:
        id, versions = "c", {1: None, 2: None, 3: None}

    book = Ledger((100, 199), [entry(1, (0, 4)), entry(2, (3, 7)), entry(3, (150, 152))])
    problems = " | ".join(p for p in ledger.check([], book))
    assert "c v2: verdict seeds (3, 7) overlap v1's" in problems
    assert "c v3: verdict seeds (150, 152) overlap the tuning seeds" in problems
    ok = Ledger((100, 199), [entry(1, (0, 4)), entry(2, (0, 4), reuses=1), entry(3, (5, 9))])
    assert [p for p in ledger.check([], ok) if "overlap" in p or "reuses" in p] == []
    bad = Ledger((100, 199), [entry(1, (0, 4)), entry(2, (0, 3), reuses=1)])
    assert any("reuses v1" in p for p in ledger.check([], bad))


def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()


def test_confirmatory_only_on_clean_runs_made_after_the_registration(monkeypatch):
    head, parent = _git("rev-parse", "HEAD"), _git("rev-parse", "HEAD~1")
    from bnexp.method.ledger import rules

    monkeypatch.setattr(rules, "registration_commit", lambda h: parent)
    entry = Entry("c", 2, "h", (10, 14), "why")
    after = pd.DataFrame({"git_commit": [head, parent], "git_dirty": [False, False], "status": "completed"})
    assert rules.by_registration(entry, "h", after) == (ledger.CONFIRMATORY, [])
    monkeypatch.setattr(rules, "registration_commit", lambda h: head)
    state, reasons = rules.by_registration(entry, "h", after)
    assert state == ledger.EXPLORATORY and "1 of 2 runs were made by code older than its registration" in reasons[0]
    assert rules.by_registration(entry, "changed", after)[0] == ledger.EXPLORATORY  # code differs from the hash
    reused = Entry("c", 2, "h", (0, 2), "why", reuses=1)
    assert rules.by_registration(reused, "h", after.iloc[:1])[0] == ledger.EXPLORATORY


def test_dirty_failed_and_foreign_runs_are_counted_and_left_out():
    head = _git("rev-parse", "HEAD")
    rows = pd.DataFrame({"git_commit": [head, head, head, "0" * 40, None],
                         "git_dirty": [False, True, False, False, False],
                         "status": ["completed", "completed", "failed", "diverged", "completed"]})
    used, excluded = ledger.usable(rows)
    assert list(used.index) == [0]
    assert excluded == {"failed": 1, "dirty": 1, "unknown commit": 2}


@pytest.mark.parametrize("claim", [c.id for c in all_claims()])
def test_every_registered_version_names_its_seeds_and_reason(claim):
    for number, version in by_id()[claim].versions.items():
        e = ledger.load().get(claim, number)
        assert e is not None and e.reason
        assert (e.verdict_seeds is None) == (version.experiment is None)


def test_sweeps_take_their_seeds_from_the_ledger(tmp_path):
    from bnexp.method.ledger import seeds_for

    path = tmp_path / "ledger.yaml"
    path.write_text("tuning_seeds: [9000, 9999]\nversions:\n"
                    "  - {claim: c, version: 1, hash: h1, verdict_seeds: [0, 2], reason: r}\n"
                    "  - {claim: c, version: 2, hash: h2, verdict_seeds: [3, 10], reason: r}\n"
                    "  - {claim: e, version: 1, hash: h3, verdict_seeds: null, reason: r}\n")
    assert seeds_for("verdict", "c", path) == "3,4,5,6,7,8,9,10"  # the newest version's
    assert seeds_for("verdict:5", "c", path) == "3,4,5,6,7"
    assert seeds_for("verdict:4-5", "c", path) == "6,7"  # the seeds a sequential plan's second look adds
    assert seeds_for("tuning:2", "c", path) == "9000,9001"
    assert seeds_for("0,1", "c", path) == "0,1"
    for spec, claim, message in (("verdict", "e", "no registered verdict seeds"), ("verdict:9", "c", "must be in 1..8"),
                                 ("verdict:x", "c", "must be in 1..8"), ("verdict:3-2", "c", "must be in 1..8"),
                                 ("verdict:0-2", "c", "must be in 1..8")):
        with pytest.raises(ValueError, match=message):
            seeds_for(spec, claim, path)


def _clone_with(tmp_path, edit: tuple[str, str], name: str):
    """A clone of this checkout's HEAD with `edit` (old, new: every occurrence) made to stats.py and
    committed; returns the clone."""
    repo = tmp_path / name
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    stats = repo / "bnexp" / "method" / "stats.py"
    assert edit[0] in stats.read_text()
    stats.write_text(stats.read_text().replace(*edit))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-qam", "edit stats.py"], check=True)
    return repo


def _committed_ledger(repo) -> str:
    return subprocess.run(["git", "-C", str(repo), "show", "HEAD:bnexp/claims/ledger.yaml"], capture_output=True,
                          text=True, check=True).stdout


def _recertify(repo, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(repo)}
    return subprocess.run([sys.executable, "-m", "bnexp.method.ledger", "recertify", *args],
                          capture_output=True, text=True, cwd=repo, env=env, timeout=600)


@pytest.mark.slow  # two clones, four verdict recomputations in fresh interpreters: about 25 s
def test_a_pure_rename_in_shared_code_is_recertified_and_a_changed_rounding_is_refused(tmp_path):
    renamed = _clone_with(tmp_path, ("_clean(", "_present_values("), "renamed")
    r = _recertify(renamed, "lr_tolerance", "2", "--reason", "stats._clean renamed")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "re-certified lr_tolerance v2" in r.stdout and "verdicts identical on" in r.stdout
    before = yaml.safe_load(_committed_ledger(renamed)).get("recertifications") or []
    book = yaml.safe_load((renamed / "bnexp" / "claims" / "ledger.yaml").read_text())
    assert book["recertifications"][:len(before)] == before and len(book["recertifications"]) == len(before) + 1
    rec = book["recertifications"][-1]
    head = subprocess.run(["git", "-C", str(renamed), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert rec["commit"] == head.strip() and rec["reason"] == "stats._clean renamed" and rec["tables"] >= 3
    check = subprocess.run([sys.executable, "-m", "bnexp.method.ledger", "check"], capture_output=True, text=True,
                           cwd=renamed, env={**os.environ, "PYTHONPATH": str(renamed)})
    problems = check.stdout.splitlines()
    assert problems and not any(p.startswith("lr_tolerance v2:") for p in problems)  # accepted; the rest not yet
    assert any(p.startswith("lr_tolerance v1:") or p.startswith("small_batch v2:") for p in problems)

    rounded = _clone_with(tmp_path, ("    mean = float(v.mean())\n", "    mean = round(float(v.mean()), 2)\n"),
                          "rounded")
    r = _recertify(rounded, "lr_tolerance", "2", "--reason", "rounding")
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1, r.stderr[-2000:]
    assert re.match(r"ledger: lr_tolerance v2 not re-certified: on results/(quick|long)/runs\.csv", lines[0]), lines[0]
    assert "->" in lines[0]
    assert (rounded / "bnexp" / "claims" / "ledger.yaml").read_text() == _committed_ledger(rounded)  # nothing added


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_every_version_of_every_claim_is_specified_by_hand_made_tables_that_recertification_reads():
    """tests/claims/test_<id>.py exists for every claim; re-certification reads its `hand_made()`
    tables (after the committed ones), and every registered version computes a verdict on at least
    one of them without raising (a table per version, so a refactor that changes any version's arithmetic on it
    is refused)."""
    from bnexp.method.ledger.recertify import hand_made_tables

    hand = hand_made_tables(ROOT)
    assert sorted(hand) == sorted(c.id for c in all_claims())
    for claim in all_claims():
        assert (ROOT / "tests" / "claims" / f"test_{claim.id}.py").is_file()
        for number, version in claim.versions.items():
            decided = []
            for case in hand[claim.id]:
                rows, ctx = case if isinstance(case, tuple) else (case, Context())
                try:
                    decided.append(version.verdict(rows, ctx).verdict)
                except Exception:  # a table made for another version's columns
                    continue
            assert decided, f"{claim.id} v{number}: no hand-made table it can read"
            if claim.versions[number].protocol is not None or number == max(claim.versions):
                assert len(set(decided)) >= 2, f"{claim.id} v{number}: every table gives {decided[0]}"
