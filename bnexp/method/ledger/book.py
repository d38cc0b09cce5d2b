"""The book: ledger.yaml's registered versions, deviations and re-certifications, read and appended to.

The file stays at bnexp/claims/ledger.yaml, beside the claims it registers: the commit that
registered a version is found in that file's git history (bnexp/method/ledger/git.py).
"""

from __future__ import annotations

import datetime
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bnexp.files import InputError, write_atomic
from bnexp.method.ledger.hashing import version_hash

LEDGER = Path(__file__).resolve().parents[2] / "claims" / "ledger.yaml"


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
    # From v4 on: the profiles its guards were piloted at before registration, each with the hash of
    # the profile values its experiment reads (profile.budget_hash) and every guard's pilot.
    pilots: dict[str, dict[str, Any]] | None = None
    added_pilots: dict[str, AddedPilot] = field(default_factory=dict)  # profile -> a pilot added after registration

    @property
    def piloted(self) -> list[str]:
        """Every profile it may decide at: piloted at registration or added after (add-pilot)."""
        return sorted({*(self.pilots or {}), *self.added_pilots})

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
class AddedPilot:
    """A profile a registered version was piloted at after its registration, before that profile's
    verdict runs (python -m bnexp.method.ledger add-pilot): the version's criterion, seeds and code
    stay as registered; only the profiles it may decide at grow. Its verdicts at that profile are
    confirmatory only from runs made by code that already contained this record (`key`, found in the
    ledger's git history like a registration's hash)."""

    claim: str
    version: int
    profile: str
    budget: str  # profile.budget_hash of the claim's values at that profile when it was piloted
    guards: list[dict[str, Any]]
    reason: str
    date: str = ""

    @property
    def key(self) -> str:
        return f"{self.claim} v{self.version} piloted at {self.profile} ({self.budget})"


@dataclass
class Ledger:
    tuning_seeds: tuple[int, int]
    entries: list[Entry] = field(default_factory=list)
    deviations: list[Deviation] = field(default_factory=list)
    recertifications: list[Recertification] = field(default_factory=list)
    added_pilots: list[AddedPilot] = field(default_factory=list)

    def get(self, claim: str, version: int) -> Entry | None:
        return next((e for e in self.entries if e.claim == claim and e.version == version), None)


class LedgerError(InputError):
    """A ledger.yaml that is not the book the ledger writes (broken YAML, a field it does not know)."""


def load(path: Path | None = None) -> Ledger:
    """The book (bnexp/claims/ledger.yaml unless `path`); LedgerError, naming the file and what is
    wrong, for anything else."""
    path = path or LEDGER
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise LedgerError(f"{path}: not readable as the ledger{at} ({getattr(e, 'problem', None) or e}); "
                          f"restore it, e.g. git checkout -- {path}") from None
    try:
        entries = [Entry(**{**e, "verdict_seeds": tuple(e["verdict_seeds"]) if e.get("verdict_seeds") else None})
                   for e in raw.get("versions") or []]
        deviations = [Deviation(**d) for d in raw.get("deviations") or []]
        recertified = [Recertification(**r) for r in raw.get("recertifications") or []]
        added = [AddedPilot(**{k: v for k, v in a.items() if k != "key"}) for a in raw.get("added_pilots") or []]
        for a, r in zip(added, raw.get("added_pilots") or [], strict=True):
            if r.get("key") != a.key:
                raise ValueError(f"added pilot {r.get('key')!r} does not match its fields ({a.key!r})")
        tuning = tuple(raw["tuning_seeds"])
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise LedgerError(f"{path}: not the ledger's layout ({type(e).__name__}: {e}); "
                          f"restore it, e.g. git checkout -- {path}") from None
    for e in entries:
        e.recertified = tuple(r.hash for r in recertified if (r.claim, r.version) == (e.claim, e.version))
        e.added_pilots = {a.profile: a for a in added if (a.claim, a.version) == (e.claim, e.version)}
    return Ledger(tuning, entries, deviations, recertified, added)


# --- appending ----------------------------------------------------------------------------------

def register(claim_id: str, number: int, n_seeds: int, reason: str, reuses: int | None = None,
             exploratory: str | None = None, pilots: dict[str, dict[str, Any]] | None = None) -> Entry:
    """Append a version to the ledger, with the next free block of verdict seeds for the claim."""
    from bnexp.claims import by_id

    claim = by_id().get(claim_id)
    if claim is None:
        raise SystemExit(f"ledger: no claim {claim_id!r} (bnexp/claims/ has {', '.join(sorted(by_id()))})")
    if n_seeds < 1:
        raise SystemExit(f"ledger: --seeds must be at least 1, got {n_seeds}")
    ledger = load()
    if ledger.get(claim_id, number):
        raise SystemExit(f"ledger: {claim_id} v{number} is registered already; a revision is a new version")
    if number in claim.drafts:
        raise SystemExit(f"ledger: {claim_id} v{number} is a draft: once its pilot passes, move it from the claim's "
                         "`drafts` into its `versions`, then register it")
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
    if claim.versions[number].pilot is not None and not pilots:
        raise SystemExit(f"ledger: {claim_id} v{number} declares a pilot: register it with --pilot <profile> for "
                         "each profile it is to decide at (after that profile's calibration)")
    entry = Entry(claim_id, number, version_hash(claim.versions[number]), seeds, reason, reuses, exploratory,
                  registered=datetime.date.today().isoformat(), pilots=pilots)
    fields = {"claim": entry.claim, "version": entry.version, "hash": entry.hash,
              "verdict_seeds": list(seeds) if seeds else None, "registered": entry.registered}
    if reuses is not None:
        fields["reuses"] = reuses
    if exploratory:
        fields["exploratory"] = exploratory
    if pilots:
        fields["pilots"] = pilots
    fields["reason"] = reason
    text = yaml.safe_dump([fields], sort_keys=False, width=100, allow_unicode=True)
    write_atomic(LEDGER, LEDGER.read_text() + textwrap.indent(text, "  "))
    return entry


def append_recertification(r: Recertification) -> None:
    """Insert the record at the end of the ledger's `recertifications:` list (made if missing)."""
    _insert("recertifications", "# Registered versions whose code changed without changing any number of any verdict\n"
                                "# (python -m bnexp.method.ledger recertify), oldest first.", vars(r))


def append_added_pilot(a: AddedPilot) -> None:
    """Insert the record at the end of the ledger's `added_pilots:` list (made if missing)."""
    _insert("added_pilots", "# Profiles a registered version was piloted at after its registration, before their\n"
                            "# verdict runs (python -m bnexp.method.ledger add-pilot), oldest first.",
            {"key": a.key, **vars(a)})


def _insert(section: str, header: str, record: dict) -> None:
    """Append `record` to the ledger's list `section` (made with `header` if missing); the lists stand
    before `versions:`, so that `register` can keep appending versions at the end of the file."""
    text = LEDGER.read_text()
    item = textwrap.indent(yaml.safe_dump([record], sort_keys=False, width=100, allow_unicode=True), "  ")
    if f"\n{section}:\n" not in text:
        at = text.index("\nversions:\n") + 1
        write_atomic(LEDGER, text[:at].rstrip("\n") + "\n\n" + header + f"\n{section}:\n" + item + "\n" + text[at:])
        return
    start = text.index(f"\n{section}:\n") + len(f"\n{section}:\n")
    # the list ends at the first line after it that is neither an item nor indented (a comment, the next key)
    end = start
    for line in text[start:].splitlines(keepends=True):
        if line.strip() and not line.startswith(" "):
            break
        end += len(line)
    body = text[start:end].rstrip("\n") + "\n"
    write_atomic(LEDGER, text[:start] + body + item + "\n" + text[end:].lstrip("\n"))


