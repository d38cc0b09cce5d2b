"""Re-certification: a change to shared code that computes exactly what it computed before (a
rename, a refactor) changes the hashes of the versions that reach it. `recertify` accepts such a
change: it recomputes the version's verdict with the code of its last certified hash and with the
committed code now (each in a checkout of its commit, by verdicts_at.py), on every committed
endpoints table and on the claims' hand-made tables (tests/claims/), and records the new hash
beside the old one (with the commit and the reason) only if every number of every result is
identical. A change of any number is refused, naming the first one that moved.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bnexp import table as schema
from bnexp.method.contract import Context
from bnexp.method.ledger.book import Recertification, append_recertification, load
from bnexp.method.ledger.git import git, registration_commit, uncommitted_package
from bnexp.method.ledger.hashing import version_hash
from bnexp.method.ledger.rules import usable

HandMade = pd.DataFrame | tuple[pd.DataFrame, Context]  # a hand-made table, alone or with its context

ROOT = Path(__file__).resolve().parents[3]  # the checkout: results/ and tests/ beside bnexp/
FIELDS = ("verdict", "effect", "ci_low", "ci_high", "n_seeds", "detail", "derived")


def tables_for(claim_id: str, number: int, root: Path, hand_made: dict[str, list[HandMade]]
               ) -> list[tuple[str, pd.DataFrame, dict | None, dict]]:
    """(label, rows, measured values or None, context) for every table a re-certification
    recomputes: each committed endpoints table under `root`/results (the rows the report reads,
    and every row of the experiment, with that profile's tuned constants and tuning runs as the
    report passes them), then the claim's hand-made tables (no context)."""
    from bnexp.claims import by_id

    version, entry = by_id()[claim_id].versions[number], load().get(claim_id, number)
    out: list[tuple[str, pd.DataFrame, dict | None, dict]] = []
    for path in sorted((root / "results").glob(f"*/{schema.RUNS}")):
        table = schema.read_runs(path)
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
    for k, case in enumerate(hand_made.get(claim_id, [])):
        rows, ctx = case if isinstance(case, tuple) else (case, Context())
        out.append((f"hand-made table {k + 1} of {claim_id} (tests/claims/test_{claim_id}.py)", rows,
                    ctx.measured or None, {"tuned": ctx.tuned, "tuning": ctx.tuning}))
    return out


def _verdicts_at(commit: str, claim_id: str, number: int, hash_: str, tables: Path) -> list:
    """The version's results on the pickled tables, computed by the code of `commit`."""
    with tempfile.TemporaryDirectory(prefix="bnexp-recertify-") as tree:
        top = git("rev-parse", "--show-toplevel").stdout.strip()
        archive = subprocess.run(["git", "-C", top, "archive", commit, "--", "bnexp"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        script = Path(tree) / "_verdicts_at.py"  # this checkout's script, beside that commit's bnexp/
        shutil.copyfile(Path(__file__).with_name("verdicts_at.py"), script)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": tree}
        r = subprocess.run([sys.executable, str(script), claim_id, str(number), hash_, str(tables)],
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


def recertify(claim_id: str, number: int, reason: str, hand_made: dict[str, list[HandMade]],
              root: Path | None = None) -> Recertification:
    """Accept the committed code's new hash for a registered version if its verdicts are identical,
    number for number, to those of its last certified code on every table; SystemExit otherwise."""
    from bnexp.claims import by_id

    root = root or ROOT
    name = f"{claim_id} v{number}"
    book, claim = load(), by_id().get(claim_id)
    entry = book.get(claim_id, number)
    if entry is None or claim is None or number not in claim.versions:
        raise SystemExit(f"ledger: {name} is not a registered version in the code")
    new_hash = version_hash(claim.versions[number])
    if new_hash in entry.hashes:
        raise SystemExit(f"ledger: {name}: its code has a certified hash ({new_hash}); nothing to re-certify")
    if uncommitted_package():
        raise SystemExit("ledger: recertify compares committed code: commit the change to bnexp/ first")
    head = git("rev-parse", "HEAD").stdout.strip()
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
        named = dict(zip(FIELDS, a, strict=False)) if a[:1] != ["raised"] else a
        moved = first_difference(named, dict(zip(FIELDS, b, strict=False)) if b[:1] != ["raised"] else b)
        if moved:
            raise SystemExit(f"ledger: {name} not re-certified: on {label}, {moved.lstrip('.')} "
                             f"(code {old_commit[:10]} -> {head[:10]})")
    record = Recertification(claim_id, number, new_hash, old_hash, head, reason, len(tables),
                             datetime.date.today().isoformat())
    append_recertification(record)
    return record


def hand_made_tables(root: Path) -> dict[str, list[HandMade]]:
    """Every claim's hand-made tables: `hand_made()` of tests/claims/test_<claim>.py in the checkout
    (each a table, or a table with the context its verdicts read), or none outside a checkout."""
    out: dict[str, list[HandMade]] = {}
    for path in sorted((root / "tests" / "claims").glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"bnexp_hand_made_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if hasattr(module, "hand_made"):
            out[path.stem.removeprefix("test_")] = list(module.hand_made())
    return out
