"""The claims of CLAIMS.md, one module each in this folder, found by looking at what is here.

A claim module defines
    STATEMENT, SOURCE, PUBLISHED, UNIT   what is claimed, by whom, the published numbers, the effect's unit
    ORDER                                its place in the report
    NOTES = ("...", ...)                 optional: what a reader needs to read its numbers (in the report)
    VERSIONS = {1: Version(...), ...}    every version of its criterion, each registered in ledger.yaml
    figure(table, curves, result)        optional: its figure, from the endpoints table and the curves
    curves(record)                       optional: the series (name, step, value) its figure draws
The module's name is the claim's id. Adding a claim is adding a module (and its experiment
config and profile budget); nothing else lists the claims.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from types import ModuleType

from bnexp.claims.common import Version

SUPPORT = {"common", "ledger", "protocol", "sequential", "stats"}  # modules here that are not claims


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    source: str
    published: str
    unit: str
    order: int
    versions: dict[int, Version]
    figure: Callable | None
    curves: Callable | None
    module: ModuleType
    notes: tuple[str, ...] = ()

    @property
    def latest(self) -> int:
        return max(self.versions)

    @property
    def exact(self) -> bool:
        """An exact property, measured afresh rather than read off runs."""
        return self.versions[self.latest].measure is not None


def _claim(module: ModuleType) -> Claim:
    m = module
    return Claim(m.__name__.rsplit(".", 1)[1], m.STATEMENT, m.SOURCE, m.PUBLISHED, m.UNIT, m.ORDER, dict(m.VERSIONS),
                 getattr(m, "figure", None), getattr(m, "curves", None), m, tuple(getattr(m, "NOTES", ())))


@cache
def all_claims() -> tuple[Claim, ...]:
    found = [_claim(importlib.import_module(f"{__name__}.{info.name}"))
             for info in pkgutil.iter_modules(__path__) if info.name not in SUPPORT]
    return tuple(sorted(found, key=lambda c: (c.order, c.id)))


def by_id() -> dict[str, Claim]:
    return {c.id: c for c in all_claims()}
