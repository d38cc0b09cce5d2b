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

A change to shared code that computes exactly what it computed before (a rename, a refactor)
changes the hashes of the versions that reach it. `recertify` accepts such a change: it recomputes
the version's verdict with the code of its last certified hash and with the committed code now,
on every committed endpoints table and on the hand-made tables of the tests, and records the new
hash beside the old one (with the commit and the reason) only if every number of every result is
identical. A change of any number is refused, naming the first one that moved.

    python -m bnexp.claims.ledger check
    python -m bnexp.claims.ledger register <claim> <version> --seeds 5 --reason "why this version"
    python -m bnexp.claims.ledger recertify [<claim> <version>] --reason "what changed, and why nothing moved"
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import importlib.util
import inspect
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
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
    recertified: tuple[str, ...] = ()  # later hashes accepted for it (Recertification), oldest first

    @property
    def hashes(self) -> tuple[str, ...]:
        """Every hash its code may have: the registered one, then each re-certified one."""
        return (self.hash, *self.recertified)

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
class Recertification:
    """A new code hash accepted for a registered version: the code changed (`commit`), but every
    number of its verdicts on every committed and hand-made table stayed the same."""

    claim: str
    version: int
    hash: str  # the hash accepted from now on
    replaces: str  # the hash it was compared with (the registered one, or the previous re-certified one)
    commit: str  # the commit whose code has `hash`
    reason: str
    tables: int = 0  # how many tables its verdicts were recomputed on
    date: str = ""


@dataclass
class Ledger:
    tuning_seeds: tuple[int, int]
    entries: list[Entry] = field(default_factory=list)
    deviations: list[Deviation] = field(default_factory=list)
    recertifications: list[Recertification] = field(default_factory=list)

    def get(self, claim: str, version: int) -> Entry | None:
        return next((e for e in self.entries if e.claim == claim and e.version == version), None)


def load(path: Path = LEDGER) -> Ledger:
    raw = yaml.safe_load(path.read_text()) or {}
    entries = [Entry(**{**e, "verdict_seeds": tuple(e["verdict_seeds"]) if e.get("verdict_seeds") else None})
               for e in raw.get("versions") or []]
    deviations = [Deviation(**d) for d in raw.get("deviations") or []]
    recertified = [Recertification(**r) for r in raw.get("recertifications") or []]
    for e in entries:
        e.recertified = tuple(r.hash for r in recertified if (r.claim, r.version) == (e.claim, e.version))
    return Ledger(tuple(raw["tuning_seeds"]), entries, deviations, recertified)


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
    uses = [f"uses: {u.question} for {u.column}={u.value} ({u.arm})" for u in getattr(version, "uses", ())]
    blob = "\n".join([f"criterion: {version.criterion}", f"method: {version.method}",
                      f"experiment: {version.experiment}", *uses, *(f"{k}\n{v}" for k, v in sorted(parts.items()))])
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


# --- re-certifying ------------------------------------------------------------------------------

# What each side of a re-certification runs, in a checkout of one commit: the version's verdict on
# every table, as exact JSON. The same text runs on both sides, so only their code differs.
_VERDICTS = r"""
import json, pickle, sys
from bnexp.claims import by_id, ledger
claim, number, expect, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
version = by_id()[claim].versions[number]
if ledger.version_hash(version) != expect:
    sys.exit(f"the code of this commit has hash {ledger.version_hash(version)}, not {expect}")
def plain(v):
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return v.item()
    if hasattr(v, "to_dict"):
        return plain(v.to_dict())
    return v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
import inspect
takes_ctx = "ctx" in inspect.signature(version.verdict).parameters
out = []
for rows, measured, ctx in pickle.load(open(path, "rb")):
    try:
        if measured is not None:
            r = version.verdict(rows, measured)
        else:
            r = version.verdict(rows, ctx) if takes_ctx else version.verdict(rows)
        out.append(plain([r.verdict, r.effect, r.ci_low, r.ci_high, r.n_seeds, r.detail, r.derived]))
    except Exception as e:
        out.append(["raised", type(e).__name__, str(e)])
print(json.dumps(out))
"""
_FIELDS = ("verdict", "effect", "ci_low", "ci_high", "n_seeds", "detail", "derived")


def tables_for(claim_id: str, number: int, root: Path, hand_made: dict[str, list[pd.DataFrame]]
               ) -> list[tuple[str, pd.DataFrame, dict | None, dict]]:
    """(label, rows, measured values or None, context) for every table a re-certification
    recomputes: each committed endpoints table under `root`/results (the rows the report reads,
    and every row of the experiment, with that profile's tuned constants and tuning runs as the
    report passes them), then the claim's hand-made tables (no context)."""
    from bnexp.claims import by_id

    version, entry = by_id()[claim_id].versions[number], load().get(claim_id, number)
    out: list[tuple[str, pd.DataFrame, dict | None, dict]] = []
    for path in sorted((root / "results").glob("*/runs.csv")):
        table = pd.read_csv(path, low_memory=False)
        label = str(path.relative_to(root))
        tuned = path.with_name("tuned.json")
        tuning = table[table["experiment"].astype(str).str.startswith(f"{claim_id}/")]
        ctx = {"tuned": json.loads(tuned.read_text()) if tuned.is_file() else {}, "tuning": usable(tuning)[0]}
        measured = None
        if version.measure is not None:
            exact = path.with_name("exact.csv")
            if not exact.is_file():
                continue
            own = pd.read_csv(exact)
            own = own[(own["claim"] == claim_id) & (own["version"] == number)]
            measured = dict(zip(own["quantity"], own["value"], strict=True))
        rows = table[table["experiment"] == version.experiment] if version.experiment else table.iloc[:0]
        if entry is not None and entry.verdict_seeds:
            out.append((f"{label} (its verdict seeds)", usable(rows[rows["seed"].isin(list(entry.seeds()))])[0],
                        measured, ctx))
        out.append((f"{label} (every seed)", usable(rows)[0], measured, ctx))
    out += [(f"hand-made table {k + 1} of {claim_id}", t, None, {}) for k, t in enumerate(hand_made.get(claim_id, []))]
    return out


def _verdicts_at(commit: str, claim_id: str, number: int, hash_: str, tables: Path) -> list:
    """The version's results on the pickled tables, computed by the code of `commit`."""
    with tempfile.TemporaryDirectory(prefix="bnexp-recertify-") as tree:
        top = _git("rev-parse", "--show-toplevel").stdout.strip()
        archive = subprocess.run(["git", "-C", top, "archive", commit, "--", "bnexp"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": tree}
        r = subprocess.run([sys.executable, "-c", _VERDICTS, claim_id, str(number), hash_, str(tables)],
                           capture_output=True, text=True, cwd=tree, env=env, timeout=900)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"ledger: {claim_id} v{number}: its verdicts could not be computed at {commit[:10]}: {last}")
    return json.loads(r.stdout)


def first_difference(old, new, where: str = "") -> str | None:
    """Where two results first differ, as `where: old -> new`; inside text, the first number that moved."""
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for k, (a, b) in enumerate(zip(old, new, strict=True)):
            moved = first_difference(a, b, f"{where}[{k}]")
            if moved:
                return moved
        return None
    if isinstance(old, dict) and isinstance(new, dict) and list(old) == list(new):
        for k in old:
            moved = first_difference(old[k], new[k], f"{where}.{k}")
            if moved:
                return moved
        return None
    if json.dumps(old) == json.dumps(new):
        return None
    if isinstance(old, str) and isinstance(new, str):
        number = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
        pairs = list(zip(re.findall(number, old), re.findall(number, new), strict=False))
        moved = next(((a, b) for a, b in pairs if a != b), None)
        if moved:
            return f"{where}: {moved[0]} -> {moved[1]} (in '{new[:80]}')"
    return f"{where}: {json.dumps(old)[:80]} -> {json.dumps(new)[:80]}"


def recertify(claim_id: str, number: int, reason: str, hand_made: dict[str, list[pd.DataFrame]],
              root: Path | None = None) -> Recertification:
    """Accept the committed code's new hash for a registered version if its verdicts are identical,
    number for number, to those of its last certified code on every table; SystemExit otherwise."""
    from bnexp.claims import by_id

    root = root or LEDGER.parent.parent.parent
    name = f"{claim_id} v{number}"
    book, claim = load(), by_id().get(claim_id)
    entry = book.get(claim_id, number)
    if entry is None or claim is None or number not in claim.versions:
        raise SystemExit(f"ledger: {name} is not a registered version in the code")
    new_hash = version_hash(claim.versions[number])
    if new_hash in entry.hashes:
        raise SystemExit(f"ledger: {name}: its code has a certified hash ({new_hash}); nothing to re-certify")
    dirty = _git("status", "--porcelain", "--", ":(top)bnexp", ":(top,exclude)bnexp/claims/ledger.yaml").stdout
    if dirty.strip():
        raise SystemExit("ledger: recertify compares committed code: commit the change to bnexp/ first")
    head = _git("rev-parse", "HEAD").stdout.strip()
    last = ([r for r in book.recertifications if (r.claim, r.version) == (claim_id, number)] or [None])[-1]
    old_hash, old_commit = (last.hash, last.commit) if last else (entry.hash, registration_commit(entry.hash))
    if old_commit is None:
        raise SystemExit(f"ledger: {name}: no commit holds the code of hash {old_hash}")
    tables = tables_for(claim_id, number, root, hand_made)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tables.pkl"
        path.write_bytes(pickle.dumps([(rows, measured, ctx) for _, rows, measured, ctx in tables]))
        before = _verdicts_at(old_commit, claim_id, number, old_hash, path)
        after = _verdicts_at(head, claim_id, number, new_hash, path)
    for (label, _, _, _), a, b in zip(tables, before, after, strict=True):
        named = dict(zip(_FIELDS, a, strict=False)) if a[:1] != ["raised"] else a
        moved = first_difference(named, dict(zip(_FIELDS, b, strict=False)) if b[:1] != ["raised"] else b)
        if moved:
            raise SystemExit(f"ledger: {name} not re-certified: on {label}, {moved.lstrip('.')} "
                             f"(code {old_commit[:10]} -> {head[:10]})")
    record = Recertification(claim_id, number, new_hash, old_hash, head, reason, len(tables),
                             datetime.date.today().isoformat())
    _append_recertification(record)
    return record


def _append_recertification(r: Recertification) -> None:
    """Insert the record at the end of the ledger's `recertifications:` list (made if missing),
    which stands just before `versions:` so that `register` can keep appending versions."""
    text = LEDGER.read_text()
    item = textwrap.indent(yaml.safe_dump([vars(r)], sort_keys=False, width=100, allow_unicode=True), "  ")
    if "\nrecertifications:\n" not in text:
        item = ("# Registered versions whose code changed without changing any number of any verdict\n"
                "# (python -m bnexp.claims.ledger recertify), oldest first.\nrecertifications:\n" + item + "\n")
    else:
        item = item + "\n"
    at = text.index("\nversions:\n") + 1
    LEDGER.write_text(text[:at].rstrip("\n") + "\n" + ("\n" if "\nrecertifications:\n" not in text else "")
                      + item + text[at:])


def hand_made_tables(root: Path) -> dict[str, list[pd.DataFrame]]:
    """The tests' hand-made tables (tests/tables.py in the checkout), or none outside a checkout."""
    path = root / "tests" / "tables.py"
    if not path.is_file():
        return {}
    spec = importlib.util.spec_from_file_location("bnexp_hand_made_tables", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.hand_made()


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
        root = LEDGER.parent.parent.parent
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
