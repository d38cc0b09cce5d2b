"""The ledger's command line.

    python -m bnexp.method.ledger check
    python -m bnexp.method.ledger hashes
    python -m bnexp.method.ledger register <claim> <version> --seeds 5 --reason "why this version"
    python -m bnexp.method.ledger recertify [<claim> <version>] --reason "what changed, and why nothing moved"
"""

from __future__ import annotations

import argparse
import sys

from bnexp.files import InputError
from bnexp.method.ledger.book import load, register
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
    e = register(a.claim, a.version, a.seeds, a.reason, a.reuses, a.exploratory)
    seeds = f"verdict seeds {e.verdict_seeds[0]}-{e.verdict_seeds[1]}" if e.verdict_seeds else "no runs"
    print(f"registered {e.claim} v{e.version}: hash {e.hash}, {seeds}")


if __name__ == "__main__":
    main()
