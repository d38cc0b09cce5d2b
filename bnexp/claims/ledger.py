"""The pre-registration ledger (`ledger.yaml` beside this file) and the rules it enforces.

Each entry registers one version of one claim's criterion: a hash of its code, the seeds its
verdict runs on, and why the version exists. A registered version never changes: `check` (run
by the test suite) fails when the code of a registered version no longer has its hash. The
commit that registered a version is the first commit whose ledger holds its hash (git log -S),
so the date of a registration is git's, not something typed into the file.

A verdict is `confirmatory` when every run it uses was produced by clean code that contains its
registration (the registering commit is an ancestor of the run's commit); otherwise it is
`exploratory`, with the reasons listed. Dirty runs and runs of unknown commits never enter a
verdict; they are counted.

    python -m bnexp.claims.ledger check
    python -m bnexp.claims.ledger register <claim> <version> --seeds 5 --reason "why this version"
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import inspect
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd
import yaml

LEDGER = Path(__file__).with_name("ledger.yaml")
# The code a version's hash covers: what it calls inside these modules, transitively. Library
# code and the harness that produced the runs are outside it (the runs record their own commit).
SCOPE = ("bnexp.claims", "bnexp.exact")
CONFIRMATORY, EXPLORATORY = "confirmatory", "exploratory"


@dataclass
class Entry:
    claim: str
    version: int
    hash: str
    verdict_seeds: tuple[int, int] | None  # inclusive range; None for a version that reads no runs
    reason: str
    reuses: int | None = None  # a version that changes only the analysis, on the runs of another
    exploratory: str | None = None  # a reason that makes every verdict of it exploratory
    registered: str = ""  # the date it was written down (git has the commit)

    def seeds(self) -> range:
        return range(self.verdict_seeds[0], self.verdict_seeds[1] + 1) if self.verdict_seeds else range(0)


@dataclass
class Deviation:
    """A departure from the protocol, recorded so the report can show it: what happened, where,
    and which versions' verdicts to show side by side."""

    text: str
    claim: str | None = None
    versions: list[int] = field(default_factory=list)
    commit: str | None = None


@dataclass
class Ledger:
    tuning_seeds: tuple[int, int]
    entries: list[Entry] = field(default_factory=list)
    deviations: list[Deviation] = field(default_factory=list)

    def get(self, claim: str, version: int) -> Entry | None:
        return next((e for e in self.entries if e.claim == claim and e.version == version), None)


def load(path: Path = LEDGER) -> Ledger:
    raw = yaml.safe_load(path.read_text()) or {}
    entries = [Entry(**{**e, "verdict_seeds": tuple(e["verdict_seeds"]) if e.get("verdict_seeds") else None})
               for e in raw.get("versions") or []]
    deviations = [Deviation(**d) for d in raw.get("deviations") or []]
    return Ledger(tuple(raw["tuning_seeds"]), entries, deviations)


def seeds_for(spec, claim: str, path: Path = LEDGER) -> str:
    """The seeds a profile asks for, in Hydra's sweep syntax ("3,4,5"): `spec` is a list as it
    stands ("0,1,2"), `verdict` (every verdict seed of the claim's newest registered version
    that has runs), `verdict:N` (the first N of them) or `tuning:N` (the first N tuning seeds).
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
        if not count.isdigit() or not 0 < int(count) <= len(seeds):
            raise ValueError(f"profile.seeds={spec}: {kind} has {len(seeds)} seeds for {claim}; "
                             f"N must be in 1..{len(seeds)}")
        seeds = seeds[:int(count)]
    return ",".join(map(str, seeds))


# --- code hashes ------------------------------------------------------------------------------

def _normalised(obj) -> str:
    """Source without comments, docstrings or formatting (ast round trip), so that only a change
    of what the code does changes the hash."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _in_scope(module: str | None) -> bool:
    return bool(module) and module.startswith(SCOPE)


def _own_methods(cls: type) -> list[types.CodeType]:
    """The code of the methods written in the class body (not those a dataclass generates)."""
    source = inspect.getsourcefile(cls)
    codes = []
    for member in vars(cls).values():
        member = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        if isinstance(member, types.FunctionType) and member.__code__.co_filename == source:
            codes.append(member.__code__)
    return codes


def closure(*roots) -> dict[str, str]:
    """Normalised source of every function and class in SCOPE that `roots` reach, and the repr
    of every module-level constant they read, keyed by qualified name."""
    out: dict[str, str] = {}

    def visit(obj) -> None:
        if isinstance(obj, types.FunctionType | type) and _in_scope(obj.__module__):
            key = f"{obj.__module__}.{obj.__qualname__}"
            if key in out:
                return
            codes = [obj.__code__] if isinstance(obj, types.FunctionType) else _own_methods(obj)
            if isinstance(obj, type) and not codes:
                return  # a plain record (a dataclass without methods of its own) computes nothing
            out[key] = _normalised(obj)
            glb = obj.__globals__ if isinstance(obj, types.FunctionType) else vars(sys.modules[obj.__module__])
            for code in codes:
                names = _names(code)
                for name in names:
                    if name in glb:
                        visit_value(f"{obj.__module__}.{name}", glb[name], names)

    def visit_value(key: str, value, names: set[str]) -> None:
        if isinstance(value, types.ModuleType):
            if _in_scope(value.__name__):
                for name in names:
                    if hasattr(value, name):
                        visit_value(f"{value.__name__}.{name}", getattr(value, name), set())
        elif isinstance(value, types.FunctionType | type):
            visit(value)
        elif isinstance(value, int | float | str | bool | tuple | frozenset | type(None)):
            out[key] = repr(value)

    for root in roots:
        visit(root)
    return out


def version_hash(version) -> str:
    """16 hex digits of sha256 over the criterion, method, experiment and code closure."""
    parts = closure(*(f for f in (version.endpoints, version.verdict, version.measure) if f is not None))
    blob = "\n".join([f"criterion: {version.criterion}", f"method: {version.method}",
                      f"experiment: {version.experiment}", *(f"{k}\n{v}" for k, v in sorted(parts.items()))])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- the rules --------------------------------------------------------------------------------

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
                problems.append(f"{claim.id} v{number}: not registered (python -m bnexp.claims.ledger register "
                                f"{claim.id} {number} ...)")
            elif entry.hash != version_hash(version):
                problems.append(f"{claim.id} v{number}: its code changed since registration (hash "
                                f"{version_hash(version)}, registered {entry.hash}); register a new version instead")
    tuning = range(ledger.tuning_seeds[0], ledger.tuning_seeds[1] + 1)
    seen: set[tuple[str, int]] = set()
    for e in ledger.entries:
        where = f"{e.claim} v{e.version}"
        if (e.claim, e.version) in seen:
            problems.append(f"{where}: registered twice")
        seen.add((e.claim, e.version))
        if (e.claim, e.version) not in in_code:
            problems.append(f"{where}: registered but its code is gone (registered versions stay)")
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
    for d in ledger.deviations:
        for number in d.versions:
            if ledger.get(d.claim or "", number) is None:
                problems.append(f"deviation '{d.text[:40]}...': {d.claim} v{number} is not registered")
    return problems


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(LEDGER.parent), *args], capture_output=True, text=True, timeout=30)


@cache
def registration_commit(hash_: str) -> str | None:
    """The first commit whose ledger file holds `hash_`; None while it is not committed."""
    out = _git("log", "--format=%H", "--reverse", "-S", hash_, "--", LEDGER.name)
    first = out.stdout.split()[:1] if out.returncode == 0 else []
    return first[0] if first else None


@cache
def known_commit(commit: str) -> bool:
    return _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0


@cache
def contains(commit: str, registration: str) -> bool:
    """Whether `commit`'s code contains `registration` (it is an ancestor or the commit itself)."""
    return _git("merge-base", "--is-ancestor", registration, commit).returncode == 0


def usable(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The runs a verdict may use, and the counts of those left out, by reason."""
    failed = rows["status"] == "failed"
    dirty = rows["git_dirty"].astype(str).str.lower() == "true"
    foreign = pd.Series([not (isinstance(c, str) and c and known_commit(c)) for c in rows["git_commit"]],
                        index=rows.index, dtype=bool)
    out = {"failed": int(failed.sum()), "dirty": int((dirty & ~failed).sum()),
           "unknown commit": int((foreign & ~dirty & ~failed).sum())}
    return rows[~(failed | dirty | foreign)], {k: v for k, v in out.items() if v}


def status(entry: Entry | None, current_hash: str, used: pd.DataFrame) -> tuple[str, list[str]]:
    """Confirmatory or exploratory, with the reasons for exploratory."""
    if entry is None:
        return EXPLORATORY, ["not registered"]
    reasons = []
    if entry.hash != current_hash:
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


# --- registering ------------------------------------------------------------------------------

def register(claim_id: str, number: int, n_seeds: int, reason: str, reuses: int | None = None,
             exploratory: str | None = None) -> Entry:
    """Append a version to the ledger, with the next free block of verdict seeds for the claim."""
    from bnexp.claims import by_id

    claim = by_id()[claim_id]
    ledger = load()
    if ledger.get(claim_id, number):
        raise SystemExit(f"ledger: {claim_id} v{number} is registered already; a revision is a new version")
    if number not in claim.versions:
        raise SystemExit(f"ledger: {claim_id} has no version {number} in its module")
    if claim.versions[number].experiment is None:
        seeds = None
    elif reuses is not None:
        source = ledger.get(claim_id, reuses)
        if source is None:
            raise SystemExit(f"ledger: {claim_id} v{reuses} is not registered")
        seeds = source.verdict_seeds
    else:
        taken = [e.verdict_seeds[1] for e in ledger.entries if e.claim == claim_id and e.verdict_seeds]
        start = max(taken, default=-1) + 1
        seeds = (start, start + n_seeds - 1)
        if seeds[1] >= ledger.tuning_seeds[0] and start <= ledger.tuning_seeds[1]:
            raise SystemExit("ledger: verdict seeds would reach the tuning range")
    entry = Entry(claim_id, number, version_hash(claim.versions[number]), seeds, reason, reuses, exploratory,
                  registered=datetime.date.today().isoformat())
    fields = {"claim": entry.claim, "version": entry.version, "hash": entry.hash,
              "verdict_seeds": list(seeds) if seeds else None, "registered": entry.registered}
    if reuses is not None:
        fields["reuses"] = reuses
    if exploratory:
        fields["exploratory"] = exploratory
    fields["reason"] = reason
    text = yaml.safe_dump([fields], sort_keys=False, width=100, allow_unicode=True)
    with LEDGER.open("a") as f:
        f.write(textwrap.indent(text, "  "))
    return entry


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bnexp.claims.ledger", description="the pre-registration ledger")
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
    a = p.parse_args()
    from bnexp.claims import all_claims

    if a.command == "check":
        problems = check(all_claims(), load())
        print("\n".join(problems) or "ledger: every version registered and unchanged")
        sys.exit(1 if problems else 0)
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
