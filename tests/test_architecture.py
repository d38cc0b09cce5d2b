"""The folder layout is the data flow (config -> run -> record -> endpoints -> verdict -> report):
every module-level import inside bnexp points upstream, so the import graph has no circle and
nothing reaches back up. A new module or package must be given its place here."""

import ast
from pathlib import Path

from tests.conftest import ROOT

# Upstream first. A module may import only modules of a smaller rank (a lazy import inside a
# function is outside this rule: resolvers read the ledger's seeds when a sweep composes).
RANK = {
    "files": 0, "profile": 0,  # atomic writes and the one-line input error; profile schemas
    "norm_catalogue": 0,  # every norm's entry (torch-free: the configs derive from it)
    "table": 1,  # the table's schema and its checked reader
    "config": 1, "records": 1,  # typed configs; the run record's layout
    "validation": 2,  # the values a composed config may take
    "regime": 2,  # which rows of a sweep were made in the regime its profile describes now
    "resolvers": 2, "norms": 2, "init": 2, "optim": 2, "data": 2, "probes": 2,
    "models": 3, "exact": 3,
    "run": 4,  # the step, the loop, one run's lifecycle, ranks
    "sweep": 5, "method": 5,  # a sweep's jobs; the method that judges claims (reads records, never runs)
    "cli": 6, "claims": 6,
    "endpoints": 7,  # records -> the table, with every claim version's endpoints
    "calibration": 8, "tabulate": 8,  # the choices; any folder of records -> a table and figures
    "evaluation": 9, "inventory": 9, "scaffold": 9,
    "scales": 9,  # the committed cost tables of other profiles, for claims that cannot show at one
    "report": 10, "history": 10,  # one profile's verdicts -> its report; several profiles' versions side by side
    "pipeline": 11,
}


def _unit(dotted: str) -> str | None:
    """`bnexp.method.ledger.rules` -> `method`; the package itself -> None."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "bnexp" and parts[1] != "__init__" else None


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.parse(path.read_text()).body:  # module level only
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bnexp":
            out |= {node.module} if node.module != "bnexp" else {f"bnexp.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "bnexp"}
    return {u for u in map(_unit, out) if u}


def test_every_import_points_upstream():
    package = ROOT / "bnexp"
    units = {p.stem if p.is_file() else p.name for p in package.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").is_file())}
    assert units == set(RANK), f"give each module of bnexp/ its place in RANK: {sorted(units ^ set(RANK))}"
    back = []
    for path in sorted(package.rglob("*.py")):
        here = _unit(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if here is None:
            continue
        back += [f"{path.relative_to(ROOT)} imports bnexp.{u}" for u in _imports(path)
                 if u != here and RANK[u] >= RANK[here]]
    assert not back, "imports that reach back up (or sideways) the data flow:\n" + "\n".join(back)


def test_the_method_never_imports_a_claim_and_claims_never_import_the_run():
    for path in (ROOT / "bnexp" / "method").rglob("*.py"):
        assert "claims" not in _imports(path), path
    for path in (ROOT / "bnexp" / "claims").rglob("*.py"):
        assert not _imports(path) & {"run", "sweep", "cli", "data", "endpoints", "report", "pipeline"}, path
