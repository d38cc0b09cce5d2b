"""The claims of CLAIMS.md, one module each in this folder and nothing else.

Each module ends with one declaration, `CLAIM = Claim(...)` (bnexp/method/contract.py): its
statement, source, published numbers and unit, its place in the report, its tuning questions,
every version of its criterion (each registered in ledger.yaml beside this file), and optionally
its figure and the curves the figure draws. The module's name is the claim's id. Adding a claim
is adding a module, its experiment config, its budget lines and its registration; nothing else
lists the claims.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from bnexp.method.contract import Claim


class ClaimError(TypeError):
    """A module in bnexp/claims/ that does not declare its claim as the contract asks."""


def _claim(name: str) -> Claim:
    module = importlib.import_module(f"{__name__}.{name}")
    claim = getattr(module, "CLAIM", None)
    if not isinstance(claim, Claim):
        raise ClaimError(f"bnexp/claims/{name}.py: a claim module ends with `CLAIM = Claim(...)` "
                         "(bnexp/method/contract.py); it has none")
    if claim.id != name:
        raise ClaimError(f"bnexp/claims/{name}.py: its CLAIM has id {claim.id!r}; a claim's id is its module's name")
    return claim


@cache
def all_claims() -> tuple[Claim, ...]:
    found = [_claim(info.name) for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]
    return tuple(sorted(found, key=lambda c: (c.order, c.id)))


def by_id() -> dict[str, Claim]:
    return {c.id: c for c in all_claims()}
