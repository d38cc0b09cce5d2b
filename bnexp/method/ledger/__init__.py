"""The pre-registration ledger (bnexp/claims/ledger.yaml) and the rules it enforces.

Each entry registers one version of one claim's criterion: a hash of its code, the seeds its
verdict runs on, and why the version exists. A registered version never changes: `check` (run
by the test suite) fails when the code of a registered version no longer has its hash. The
commit that registered a version is the first commit whose ledger holds its hash (git log -S),
so the date of a registration is git's, not something typed into the file.

    book.py       the file: entries, deviations, re-certifications; load and append
    seeds.py      the seeds a profile asks for (`verdict:N`, `tuning:N`), read from the book
    hashing.py    a version's code hash
    git.py        what git knows of commits and registrations
    rules.py      check, the runs a verdict may use, the confirmatory rule (`standing`)
    recertify.py  accepting a new hash for code whose every number stayed the same
    __main__.py   python -m bnexp.method.ledger check | hashes | pilot | register | recertify

The names the rest of bnexp uses are importable from here.
"""

from bnexp.method.ledger.book import LEDGER, Deviation, Entry, Ledger, LedgerError, Recertification, load, register
from bnexp.method.ledger.git import contains, registration_commit
from bnexp.method.ledger.hashing import closure, version_hash
from bnexp.method.ledger.rules import CONFIRMATORY, EXPLORATORY, check, edge_choices, piloting, standing, usable
from bnexp.method.ledger.seeds import seeds_for

__all__ = [
           "CONFIRMATORY",
           "EXPLORATORY",
           "LEDGER",
           "Deviation",
           "Entry",
           "Ledger",
           "LedgerError",
           "Recertification",
           "check",
           "closure",
           "contains",
           "edge_choices",
           "load",
           "piloting",
           "register",
           "registration_commit",
           "seeds_for",
           "standing",
           "usable",
           "version_hash",
]
