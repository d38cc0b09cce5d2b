"""The rules the ledger enforces: the book against the code (`check`), the runs a verdict may use
(`usable`), and the one confirmatory rule (`standing`).

A verdict is `confirmatory` when every run it uses was produced by clean code that contains its
registration (the registering commit is an ancestor of the run's commit), and, for a version that
uses tuned constants, was made with the profile's tuned values; otherwise it is `exploratory`,
with the reasons listed. Dirty runs and runs of unknown commits never enter a verdict; they are
counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from bnexp import table
from bnexp.method.contract import Question, Use
from bnexp.method.ledger.book import Entry, Ledger
from bnexp.method.ledger.git import contains, registration_commit
from bnexp.method.ledger.hashing import version_hash

CONFIRMATORY, EXPLORATORY = "confirmatory", "exploratory"


def check(claims: Iterable, ledger: Ledger) -> list[str]:
    """Every problem with the ledger against the code: unregistered or changed versions,
    registered versions that are gone, overlapping or tuning seeds. Empty when all is well."""
    problems = []
    in_code = set()
    for claim in claims:
        for number, version in claim.versions.items():
            in_code.add((claim.id, number))
            entry = ledger.get(claim.id, number)
            if entry is None:
                problems.append(f"{claim.id} v{number}: not registered (python -m bnexp.method.ledger register "
                                f"{claim.id} {number} ...)")
            elif version_hash(version) not in entry.hashes:
                problems.append(f"{claim.id} v{number}: its code changed since registration (hash "
                                f"{version_hash(version)}, registered {entry.hashes[-1]}); register a new version, "
                                "or recertify it if every number stays the same")
    tuning = range(ledger.tuning_seeds[0], ledger.tuning_seeds[1] + 1)
    seen: set[tuple[str, int]] = set()
    for e in ledger.entries:
        where = f"{e.claim} v{e.version}"
        if (e.claim, e.version) in seen:
            problems.append(f"{where}: registered twice")
        seen.add((e.claim, e.version))
        if (e.claim, e.version) not in in_code:
            problems.append(f"{where}: registered but its code is gone (registered versions stay)")
        if e.verdict_seeds and not (len(e.verdict_seeds) == 2 and 0 <= e.verdict_seeds[0] <= e.verdict_seeds[1]):
            problems.append(f"{where}: verdict seeds {list(e.verdict_seeds)} are not a range of at least one seed")
        if set(e.seeds()) & set(tuning):
            problems.append(f"{where}: verdict seeds {e.verdict_seeds} overlap the tuning seeds {ledger.tuning_seeds}")
        if e.reuses is not None:
            source = ledger.get(e.claim, e.reuses)
            if source is None or source.verdict_seeds != e.verdict_seeds:
                problems.append(f"{where}: reuses v{e.reuses}, whose seeds are not {e.verdict_seeds}")
            continue
        for other in ledger.entries:
            if (other.claim == e.claim and other.version < e.version and other.reuses is None
                    and set(other.seeds()) & set(e.seeds())):
                problems.append(f"{where}: verdict seeds {e.verdict_seeds} overlap v{other.version}'s")
    for e in ledger.entries:
        # A re-certification accepts a hash only in place of the one before it: the chain of
        # `replaces` leads back to the registered hash, or a hash was swapped in by hand.
        previous = e.hash
        for r in (r for r in ledger.recertifications if (r.claim, r.version) == (e.claim, e.version)):
            if r.replaces != previous:
                problems.append(f"{e.claim} v{e.version}: the re-certification to {r.hash} replaces {r.replaces}, "
                                f"but the hash before it is {previous}: its chain does not lead back to the "
                                "registered hash (edited by hand?)")
            previous = r.hash
    seen_pilots: set[tuple[str, int, str]] = set()
    for a in ledger.added_pilots:
        entry = ledger.get(a.claim, a.version)
        where = f"{a.claim} v{a.version}'s added pilot at {a.profile}"
        if entry is None:
            problems.append(f"{where}: the version is not registered")
        elif a.profile in (entry.pilots or {}) or (a.claim, a.version, a.profile) in seen_pilots:
            problems.append(f"{where}: piloted there already")
        seen_pilots.add((a.claim, a.version, a.profile))
    for r in ledger.recertifications:
        if ledger.get(r.claim, r.version) is None:
            problems.append(f"re-certification of {r.claim} v{r.version}: that version is not registered")
    for d in ledger.deviations:
        for number in d.versions:
            if ledger.get(d.claim or "", number) is None:
                problems.append(f"deviation '{d.text[:40]}...': {d.claim} v{number} is not registered")
    return problems


def usable(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The runs a verdict may use, and the counts of those left out, by reason."""
    failed = rows["status"] == "failed"
    dirty, foreign = table.dirty(rows), table.foreign(rows)
    out = {"failed": int(failed.sum()), "dirty": int((dirty & ~failed).sum()),
           "unknown commit": int((foreign & ~dirty & ~failed).sum())}
    return rows[~(failed | dirty | foreign)], {k: v for k, v in out.items() if v}


def by_registration(entry: Entry | None, current_hash: str, used: pd.DataFrame) -> tuple[str, list[str]]:
    """Confirmatory or exploratory by the registration alone, with the reasons for exploratory."""
    if entry is None:
        return EXPLORATORY, ["not registered"]
    reasons = []
    if current_hash not in entry.hashes:
        reasons.append("its code differs from the registered version")
    if entry.exploratory:
        reasons.append(entry.exploratory)
    if entry.reuses is not None:
        reasons.append(f"an analysis-only revision that reuses the runs of v{entry.reuses}")
    registered = registration_commit(entry.hash)
    if registered is None:
        reasons.append("its registration is not committed yet")
    elif len(used):
        early = sum(not contains(c, registered) for c in used["git_commit"])
        if early:
            reasons.append(f"{early} of {len(used)} runs were made by code older than its registration "
                           f"({registered[:10]})")
    return (EXPLORATORY, reasons) if reasons else (CONFIRMATORY, [])


def conformity(uses: tuple[Use, ...], rows: pd.DataFrame, answers: dict[str, dict[str, Any]],
               questions: dict[str, Question]) -> list[str]:
    """Why the runs of a version that `uses` tuned constants are not confirmatory: runs made with
    another value than the profile's tuned one, or constants that were never calibrated."""
    if not uses:
        return []
    if not answers:
        return ["its constants were never calibrated at this profile (no tuned.json)"]
    out = []
    for u in uses:
        answer, q = answers.get(u.question), questions.get(u.question)
        if answer is None or q is None or u.arm not in answer.get("values", {}):
            out.append(f"{u.question} ({u.arm}) was not calibrated at this profile")
            continue
        want = float(answer["values"][u.arm])
        if u.column not in rows or q.knob not in rows:
            made = pd.Series(dtype=float)  # no run of this arm was made yet: nothing is off
        else:
            made = rows[rows[u.column].astype(str) == u.value][q.knob].astype(float)
        off = sum(not math.isclose(v, want, rel_tol=1e-9, abs_tol=1e-12) for v in made)
        if off:
            out.append(f"{off} of {len(made)} runs of {u.value} were made with {q.knob} other than the tuned {want:g}")
    return out


def standing(entry: Entry | None, version, used: pd.DataFrame, tuned: dict[str, dict[str, Any]],
             questions: dict[str, Question], untrusted: dict[str, str] | None = None,
             claim: str = "", profile: str = "", budget: str | None = None) -> tuple[str, list[str]]:
    """The confirmatory rule, whole: (confirmatory or exploratory, the reasons for exploratory).
    Its registration (registered, unchanged code, committed before the runs it uses), then, for a
    version that reads tuned constants (its `uses`, or from v3 on its claim's own questions), runs
    made with the profile's tuned values and a tuned.json that its tuning rows give
    (`untrusted`: calibration.audit's reasons by question)."""
    status, reasons = by_registration(entry, version_hash(version), used)
    off = conformity(version.uses, used, tuned, questions) if len(used) else []
    reads = {u.question for u in version.uses}
    if version.protocol is not None:
        reads |= {q for q, spec in questions.items() if spec.claim == claim}
    off += [why for q, why in sorted((untrusted or {}).items()) if q in reads]
    off += (piloting(entry, version, profile, budget, used) + edge_choices(version, tuned)) if len(used) else []
    return (EXPLORATORY, reasons + off) if off else (status, reasons)


def piloting(entry: Entry | None, version, profile: str, budget: str | None,
             used: pd.DataFrame | None = None) -> list[str]:
    """From v4 on: a version that declares a pilot is confirmatory only at a profile it was piloted
    at before registration, or at one whose pilot was added to the ledger after it (add-pilot) before
    the runs it uses (`used`) were made, and only while the values its experiment reads there
    (`budget`: profile.budget_hash now) are those piloted."""
    if getattr(version, "pilot", None) is None or entry is None:
        return []
    piloted = (entry.pilots or {}).get(profile)
    out = []
    added = entry.added_pilots.get(profile)
    if piloted is None and added is not None:
        piloted = {"budget": added.budget}
        commit = registration_commit(added.key)
        if commit is None:
            out.append(f"its pilot at profile {profile!r} is not committed yet")
        elif used is not None and len(used):
            early = sum(not contains(c, commit) for c in used["git_commit"])
            if early:
                out.append(f"{early} of {len(used)} runs were made by code older than its pilot at profile "
                           f"{profile!r} ({commit[:10]})")
    if piloted is None:
        return [f"registered without a pilot at profile {profile!r} (piloted at: "
                f"{', '.join(entry.piloted) or 'none'})"]
    if budget is not None and piloted.get("budget") != budget:
        out.append(f"profile {profile!r}'s values for this experiment changed since registration "
                   f"(budget {piloted.get('budget')} registered, {budget} now)")
    return out


def edge_choices(version, tuned: dict[str, dict[str, Any]]) -> list[str]:
    """From v4 on (a version that declares a pilot): no verdict uses a tuned value at the edge of its
    grid, where the best may lie beyond it (the calibration stage widens such a grid first)."""
    if getattr(version, "pilot", None) is None:
        return []
    out = []
    for u in version.uses:
        answer = tuned.get(u.question, {})
        if u.arm in answer.get("at_grid_edge", []):
            out.append(f"tuned.json's {u.question} for {u.arm} sits at the edge of its grid "
                       f"({answer['values'][u.arm]:g}): the best value may lie beyond it")
    return list(dict.fromkeys(out))
