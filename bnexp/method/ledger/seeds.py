"""The seeds a profile asks for, read from the ledger: a verdict sweep cannot run on seeds its
version did not register."""

from __future__ import annotations

from pathlib import Path

from bnexp.method.ledger.book import LEDGER, load


def seeds_for(spec, claim: str, path: Path = LEDGER) -> str:
    """The seeds a profile asks for, in Hydra's sweep syntax ("3,4,5"): `spec` is a list as it
    stands ("0,1,2"), `verdict` (every verdict seed of the claim's newest registered version
    that has runs), `verdict:N` (the first N of them), `verdict:M-N` (the M-th to the N-th: the
    seeds a sequential plan's later look adds) or `tuning:N` (the first N tuning seeds).
    Sweeps read their seeds here, so a verdict sweep cannot run on seeds its version did not register."""
    spec = str(spec)
    kind, _, count = spec.partition(":")
    if kind not in ("verdict", "tuning"):
        return spec
    book = load(path)
    if kind == "tuning":
        seeds = list(range(book.tuning_seeds[0], book.tuning_seeds[1] + 1))
    else:
        own = [e for e in book.entries if e.claim == claim and e.verdict_seeds]
        if not own:
            raise ValueError(f"profile.seeds={spec}: claim {claim} has no registered verdict seeds (ledger.yaml)")
        seeds = list(max(own, key=lambda e: e.version).seeds())
    if count:
        first, _, last = count.rpartition("-")
        first = first or "1"
        if not (first.isdigit() and last.isdigit() and 0 < int(first) <= int(last) <= len(seeds)):
            raise ValueError(f"profile.seeds={spec}: {kind} has {len(seeds)} seeds for {claim}; "
                             f"N (or M-N) must be in 1..{len(seeds)}")
        seeds = seeds[int(first) - 1:int(last)]
    return ",".join(map(str, seeds))
