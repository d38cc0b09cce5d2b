"""The ledger's command line.

    python -m bnexp.method.ledger check
    python -m bnexp.method.ledger hashes
    python -m bnexp.method.ledger register <claim> <version> --seeds 5 --reason "why this version"
    python -m bnexp.method.ledger pilot <claim> <version> --profile long    (v4 on: its guards on tuning seeds)
    python -m bnexp.method.ledger register <claim> <version> --pilot long ... (refused if a pilot fails)
    python -m bnexp.method.ledger add-pilot <claim> <version> --profile long --reason "..."
                                  (a registered version piloted at another profile, before its runs there)
    python -m bnexp.method.ledger recertify [<claim> <version>] --reason "what changed, and why nothing moved"
"""

from __future__ import annotations

import argparse
import sys

from bnexp.files import InputError
from bnexp.method.ledger.book import AddedPilot, append_added_pilot, load, register
from bnexp.method.ledger.hashing import version_hash
from bnexp.method.ledger.recertify import ROOT, hand_made_tables, recertify
from bnexp.method.ledger.rules import check


def main() -> None:
    try:
        _main()
    except InputError as e:  # a ledger.yaml that is not the book: one line, no traceback
        sys.exit(f"ledger: {e}")


def _main() -> None:
    p = argparse.ArgumentParser(prog="python -m bnexp.method.ledger", description="the pre-registration ledger")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="every version in the code is registered with its hash")
    sub.add_parser("hashes", help="print each version's current hash")
    r = sub.add_parser("register", help="register a new version of a claim")
    r.add_argument("claim")
    r.add_argument("version", type=int)
    r.add_argument("--seeds", type=int, default=5, help="verdict seeds to reserve")
    r.add_argument("--reuses", type=int, default=None, help="an analysis-only revision on another version's runs")
    r.add_argument("--reason", required=True)
    r.add_argument("--exploratory", default=None, help="a reason that makes every verdict of it exploratory")
    r.add_argument("--pilot", action="append", default=[], metavar="PROFILE",
                   help="a profile whose calibration runs pilot its guards (repeatable); needed from v4 on")
    r.add_argument("--results", default="results", help="the folder holding <profile>/runs.csv and tuned.json")
    pi = sub.add_parser("pilot", help="a version's guards on the tuning seeds of a calibrated profile")
    pi.add_argument("claim")
    pi.add_argument("version", type=int)
    pi.add_argument("--profile", required=True)
    pi.add_argument("--results", default="results")
    ad = sub.add_parser("add-pilot", help="pilot a registered version at another profile, before that profile's "
                                          "verdict runs; its verdicts there count from the next commit on")
    ad.add_argument("claim")
    ad.add_argument("version", type=int)
    ad.add_argument("--profile", required=True)
    ad.add_argument("--reason", required=True)
    ad.add_argument("--results", default="results")
    c = sub.add_parser("recertify", help="accept a changed hash whose verdicts stay identical (every changed "
                                         "version, or the one named)")
    c.add_argument("claim", nargs="?")
    c.add_argument("version", nargs="?", type=int)
    c.add_argument("--reason", required=True)
    a = p.parse_args()
    from bnexp.claims import all_claims

    if a.command == "check":
        problems = check(all_claims(), load())
        print("\n".join(problems) or "ledger: every version registered and unchanged")
        sys.exit(1 if problems else 0)
    if a.command == "recertify":
        root = ROOT
        hand_made = hand_made_tables(root)
        book = load()
        changed = [(c.id, n) for c in all_claims() for n, v in c.versions.items()
                   if book.get(c.id, n) and version_hash(v) not in book.get(c.id, n).hashes]
        todo = [(a.claim, a.version)] if a.claim else changed
        if not todo:
            print("ledger: every registered version has a certified hash; nothing to re-certify")
        for claim_id, number in todo:
            r = recertify(claim_id, number, a.reason, hand_made, root)
            print(f"re-certified {r.claim} v{r.version}: {r.replaces} -> {r.hash} at {r.commit[:10]}, "
                  f"verdicts identical on {r.tables} tables")
        return
    if a.command == "hashes":
        for c in all_claims():
            for n, v in c.versions.items():
                print(f"{c.id} v{n} {version_hash(v)}")
        return
    if a.command == "pilot":
        version, rows, tuned = _pilot_inputs(a.claim, a.version, a.profile, a.results)
        from bnexp.method import pilot

        pilots = pilot.run(version, rows, tuned)
        print("\n".join(str(g) for g in pilots) or f"{a.claim} v{a.version} has no guards")
        for p in pilot.parts(version, rows, tuned):  # what the plan can expect: nothing is judged on it
            print(f"plan: {p}")
        sys.exit(0 if all(g.holds for g in pilots) else 1)
    if a.command == "add-pilot":
        added = _add_pilot(a.claim, a.version, a.profile, a.reason, a.results)
        print(f"piloted {added.claim} v{added.version} at {added.profile} (budget {added.budget}): "
              + "; ".join(f"{g['guard']} {g['value']:.4g}" for g in added.guards)
              + "; commit the ledger before that profile's verdict runs")
        return
    from bnexp.claims import by_id

    if a.claim in by_id() and a.version in by_id()[a.claim].drafts:
        raise SystemExit(f"ledger: {a.claim} v{a.version} is a draft: once its pilot passes, move it from the "
                         "claim's `drafts` into its `versions`, then register it")
    piloted = {}
    for profile in a.pilot:
        pilots = _pilot(a.claim, a.version, profile, a.results)
        failed = [str(g) for g in pilots if not g.holds]
        if failed:
            sys.exit(f"ledger: {a.claim} v{a.version} is not registered: its pilot at {profile} fails: {failed[0]}")
        piloted[profile] = {"budget": _budget(profile, a.claim), "guards": [g.as_dict() for g in pilots]}
    e = register(a.claim, a.version, a.seeds, a.reason, a.reuses, a.exploratory, piloted or None)
    seeds = f"verdict seeds {e.verdict_seeds[0]}-{e.verdict_seeds[1]}" if e.verdict_seeds else "no runs"
    print(f"registered {e.claim} v{e.version}: hash {e.hash}, {seeds}")


def _pilot(claim_id: str, number: int, profile: str, results: str) -> list:
    """The version's guards on the profile's committed tuning rows, at its tuned answers (one line
    and exit 2 if the version declares no pilot, or the profile is not calibrated)."""
    from bnexp.method import pilot

    return pilot.run(*_pilot_inputs(claim_id, number, profile, results))


def _pilot_inputs(claim_id: str, number: int, profile: str, results: str) -> tuple:
    """(version, the profile's committed tuning rows of its claim in the current regime, tuned.json)."""
    from pathlib import Path

    from bnexp import calibration, endpoints, regime
    from bnexp.claims import by_id
    from bnexp.evaluation import tuning_rows

    claim = by_id().get(claim_id)
    version = (claim.versions.get(number) or claim.drafts.get(number)) if claim else None
    if version is None or version.pilot is None:
        raise SystemExit(f"ledger: {claim_id} v{number} declares no pilot")
    folder = Path(results) / profile
    table, _, _ = endpoints.read(folder)
    tuned = calibration.read(folder)
    untrusted = calibration.audit(table, tuned, profile)
    own = sorted(why for q, why in untrusted.items() if q.startswith(f"{claim_id}/"))
    if own:
        raise SystemExit(f"ledger: {folder}: {own[0]}")
    # Only the runs of the regime the profile describes now: a sweep rerun after its budget changed
    # (a failed pilot's regime changed) keeps the old runs beside the new ones.
    rows, stale = regime.current(tuning_rows(claim, table), profile)
    if stale:
        print(f"ledger: {stale} tuning runs of {claim_id} were made in an earlier regime of profile {profile} "
              "and are left out of its pilot", file=sys.stderr)
    if version.pilot.rows(rows, tuned).empty:
        raise SystemExit(f"ledger: {claim_id} v{number} has no pilot runs at {profile}: `python scripts/reproduce.py "
                         f"--profile {profile} --only {claim_id} --stage calibrate` runs them")
    return version, rows, tuned


def _add_pilot(claim_id: str, number: int, profile: str, reason: str, results: str) -> AddedPilot:
    """A registered version's pilot at a profile it was not registered with, appended to the ledger;
    refused (one line, nothing written) if it is not registered, already piloted there, has verdict
    runs there already, or its pilot fails."""
    import datetime
    from pathlib import Path

    from bnexp import endpoints
    from bnexp.claims import by_id
    from bnexp.evaluation import rows_for

    entry = load().get(claim_id, number)
    claim = by_id().get(claim_id)
    if entry is None or claim is None or number not in claim.versions:
        raise SystemExit(f"ledger: {claim_id} v{number} is not registered: a draft is piloted with `register --pilot`")
    if profile in entry.piloted:
        raise SystemExit(f"ledger: {claim_id} v{number} is piloted at {profile} already; a changed regime there "
                         "is a new version")
    ran = rows_for(endpoints.read(Path(results) / profile)[0], claim.versions[number].experiment, entry)
    if len(ran):
        raise SystemExit(f"ledger: {claim_id} v{number} has {len(ran)} runs on its verdict seeds at {profile} already: "
                         "a pilot comes before the runs it admits")
    pilots = _pilot(claim_id, number, profile, results)
    failed = [str(g) for g in pilots if not g.holds]
    if failed:
        raise SystemExit(f"ledger: {claim_id} v{number}'s pilot at {profile} fails, nothing added: {failed[0]}")
    added = AddedPilot(claim_id, number, profile, _budget(profile, claim_id), [g.as_dict() for g in pilots], reason,
                       datetime.date.today().isoformat())
    append_added_pilot(added)
    return added


def _budget(profile: str, claim_id: str) -> str:
    from bnexp.config import CONFIGS
    from bnexp.profile import budget_hash

    return budget_hash(CONFIGS, profile, claim_id)


if __name__ == "__main__":
    main()
