"""What git knows of a run's code and of a registration: the commit that registered a hash,
whether a commit is this repository's, whether one contains another, whether the package is
committed as it stands."""

from __future__ import annotations

import subprocess
from functools import cache

from bnexp.method.ledger.book import LEDGER


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(LEDGER.parent), *args], capture_output=True, text=True, timeout=30)


@cache
def registration_commit(hash_: str) -> str | None:
    """The first commit whose ledger file holds `hash_`; None while it is not committed."""
    out = git("log", "--format=%H", "--reverse", "-S", hash_, "--", LEDGER.name)
    first = out.stdout.split()[:1] if out.returncode == 0 else []
    return first[0] if first else None


@cache
def contains(commit: str, registration: str) -> bool:
    """Whether `commit`'s code contains `registration` (it is an ancestor or the commit itself)."""
    return git("merge-base", "--is-ancestor", registration, commit).returncode == 0


def uncommitted_package() -> str:
    """What of bnexp/ differs from HEAD (the ledger file apart), as `git status --porcelain` says it."""
    return git("status", "--porcelain", "--", ":(top)bnexp", ":(top,exclude)bnexp/claims/ledger.yaml").stdout.strip()
