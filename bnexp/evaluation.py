"""The endpoints table -> every registered version's verdict, in memory: the evaluation that the
report renders (bnexp/report.py) and the sequential plans read to choose their next look
(bnexp/pipeline/looks.py). Reads only what bnexp.endpoints wrote and the profile's tuned.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bnexp import calibration, endpoints, regime
from bnexp.claims import Claim, all_claims
from bnexp.config import CONFIGS, profile_only
from bnexp.method import ledger
from bnexp.method.contract import Context, Result, Version, missing
from bnexp.method.stats import INCONCLUSIVE
from bnexp.profile import budget_hash


@dataclass
class Outcome:
    """One version's verdict on this table, with how it was reached."""

    claim: Claim
    number: int
    result: Result
    status: str
    reasons: list[str]
    used: pd.DataFrame
    excluded: dict[str, int]
    entry: ledger.Entry | None
    registered: str | None = None  # the commit that registered it

    @property
    def version(self) -> Version:
        return self.claim.versions[self.number]


@dataclass
class DraftPilot:
    """A version written to be piloted before registration, and its pilot on this profile's committed
    tuning rows (those of the regime the profile describes now): why it is still a draft, in numbers."""

    claim: Claim
    number: int
    guards: list  # bnexp.method.pilot.GuardPilot, one per guard; empty when it could not be piloted here
    why_not: str = ""  # what kept the pilot from running at this profile (no calibration of it, say)
    stale: int = 0  # tuning runs of an earlier regime of the profile, left out of the pilot
    parts: list = field(default_factory=list)  # bnexp.method.pilot.PartPilot: the parts projected over the plan


@dataclass
class Evaluation:
    """A profile's table, what it was evaluated with, and every claim's outcomes (oldest version first)."""

    profile: str
    table: pd.DataFrame
    curves: pd.DataFrame
    book: ledger.Ledger
    tuned: dict
    claims: list[list[Outcome]]  # the claims this profile is for
    not_run: list[str]  # the claims its `only` leaves out
    drafts: list[DraftPilot] = field(default_factory=list)  # drafts' pilots at this profile

    def headlines(self) -> dict[str, Outcome]:
        return {per_claim[0].claim.id: headline(per_claim) for per_claim in self.claims}


def rows_for(table: pd.DataFrame, experiment: str | None, entry: ledger.Entry | None) -> pd.DataFrame:
    if experiment is None or table.empty:
        return table.iloc[:0]
    rows = table[table["experiment"] == experiment]
    return rows[rows["seed"].isin(list(entry.seeds()))] if entry else rows


def whole_seeds(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows of the seeds whose every run is in the table, and how many runs were left out.
    Every seed of a version's sweep runs every arm, so a seed with fewer runs (of any status) than
    the most complete one is a look still under way, as a table committed in parts can hold: its
    runs wait until the seed is whole, and a sequential plan reads only looks whose seeds are."""
    if rows.empty:
        return rows, 0
    per_seed = rows.groupby("seed")["seed"].transform("size")
    whole = per_seed == per_seed.max()
    return rows[whole], int((~whole).sum())


def tuning_rows(claim: Claim, table: pd.DataFrame) -> pd.DataFrame:
    """The usable rows of the claim's tuning sweeps (`<claim>/tune...`)."""
    tuning = table[table["experiment"].astype(str).str.startswith(f"{claim.id}/")] if len(table) else table
    return ledger.usable(tuning)[0] if len(tuning) else tuning


def profile_budget(profile: str, claim_id: str) -> str | None:
    """The hash of what the claim's experiment reads of the profile now (None: no such profile file)."""
    return budget_hash(CONFIGS, profile, claim_id) if (CONFIGS / "profile" / f"{profile}.yaml").is_file() else None


def measured(claim: Claim, exact: pd.DataFrame, number: int) -> dict[str, float]:
    """An exact check's errors, as measured when the table was built."""
    own = exact[(exact["claim"] == claim.id) & (exact["version"] == number)] if len(exact) else exact
    return dict(zip(own["quantity"], own["value"], strict=True)) if len(own) else {}


def evaluate(table: pd.DataFrame, exact: pd.DataFrame, book: ledger.Ledger, tuned: dict | None = None,
             profile: str = "") -> list[list[Outcome]]:
    """Every version of every claim on this table: a list of outcomes per claim, oldest first;
    `tuned`: the profile's calibrated constants (tuned.json), which the runs of versions that use
    them must have been made with, and which the table's tuning rows must give, to be confirmatory."""
    tuned = tuned or {}
    questions = {q.id: q for q in calibration.questions()}
    untrusted = calibration.audit(table, tuned, calibration.profile_of(profile) if profile else None) if tuned else {}
    out = []
    for claim in all_claims():
        outcomes, tuning = [], tuning_rows(claim, table)  # what every version of the claim reads beside its rows
        for number, version in sorted(claim.versions.items()):
            entry = book.get(claim.id, number)
            rows, partial = whole_seeds(rows_for(table, version.experiment, entry))
            used, excluded = ledger.usable(rows)
            excluded |= {"seed not yet complete": partial} if partial else {}
            try:
                if used.empty and not version.measure:
                    result = missing(version.experiment)
                else:
                    result = version.verdict(used, Context(tuned, tuning, measured(claim, exact, number)))
            except Exception as e:  # a partial table (a smoke run, a sweep under way) is a result too
                result = Result(INCONCLUSIVE, detail=[f"not computable from this table: {type(e).__name__}: {e}"])
            budget = profile_budget(profile, claim.id) if version.pilot is not None and profile else None
            status, reasons = ledger.standing(entry, version, used, tuned, questions, untrusted, claim.id,
                                              profile, budget)
            registered = ledger.registration_commit(entry.hash) if entry else None
            outcomes.append(Outcome(claim, number, result, status, reasons, used, excluded, entry, registered))
        out.append(outcomes)
    return out


def headline(outcomes: list[Outcome]) -> Outcome:
    """The newest version that has runs to decide it (or is exact); else the newest."""
    with_runs = [o for o in outcomes if len(o.used) or o.version.measure]
    return (with_runs or outcomes)[-1]


def at_profile(outcomes: list[Outcome], only: list[str]) -> bool:
    """Whether a claim belongs in a profile's report: every claim, unless the profile names its
    experiments (`only`); then those whose sweeps it runs, and the exact checks."""
    return not only or any(o.version.measure or o.version.experiment in only for o in outcomes)


def draft_pilots(table: pd.DataFrame, tuned: dict, profile: str, only: list[str]) -> list[DraftPilot]:
    """Every draft with a pilot, of the claims this profile is for, piloted on the profile's tuning rows
    of its current regime at its tuned answers, as `python -m bnexp.method.ledger pilot` does."""
    from bnexp.method import pilot

    out = []
    for claim in all_claims():
        for number, version in sorted(claim.drafts.items()):
            if version.pilot is None or (only and version.experiment not in only):
                continue
            rows, stale = regime.current(tuning_rows(claim, table), profile)
            try:
                if version.pilot.rows(rows, tuned).empty:
                    out.append(DraftPilot(claim, number, [], "no pilot runs at this profile yet (its calibration "
                                          "stage runs them)", stale))
                    continue
                out.append(DraftPilot(claim, number, pilot.run(version, rows, tuned), stale=stale,
                                      parts=pilot.parts(version, rows, tuned)))
            except KeyError as e:  # a tuning question it reads has no answer in tuned.json
                out.append(DraftPilot(claim, number, [], f"{e.args[0]} is not calibrated at this profile yet", stale))
            except Exception as e:  # no tuning runs of this regime yet, say
                out.append(DraftPilot(claim, number, [], f"{type(e).__name__}: {e}", stale))
    return out


def evaluate_profile(results: Path | str, profile: str | None = None) -> Evaluation:
    """Every claim's outcomes at the profile whose committed files are in `results`."""
    results = Path(results)
    profile = profile or results.name
    table, curves, exact = endpoints.read(results)
    book, tuned = ledger.load(), calibration.read(results)
    only = profile_only(profile)
    evaluated = evaluate(table, exact, book, tuned, profile)
    drafts = draft_pilots(table, tuned, profile, only) if calibration.profile_of(profile) else []
    return Evaluation(profile, table, curves, book, tuned, [oc for oc in evaluated if at_profile(oc, only)],
                      [oc[0].claim.id for oc in evaluated if not at_profile(oc, only)], drafts)
