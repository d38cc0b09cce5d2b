"""A registered version's code hash: sha256 over its criterion, method, experiment, the tuned
constants it uses and the normalised source of every function and class in SCOPE that its
endpoints, verdict, measure and protocol reach (transitively), with the module-level constants
they read. Comments, docstrings and formatting do not count; a change of what the code does does."""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
import textwrap
import types

# The code a version's hash covers: what it calls inside these modules, transitively. Library
# code and the harness that produced the runs are outside it (the runs record their own commit).
SCOPE = ("bnexp.claims", "bnexp.method", "bnexp.exact")


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
    pilot = getattr(version, "pilot", None)  # from v4 on: what its pilot reads is registered too
    roots = (version.endpoints, version.verdict, version.measure, getattr(version, "protocol", None),
             pilot.rows if pilot is not None else None)
    parts = closure(*(f for f in roots if f is not None))
    uses = [f"uses: {u.question} for {u.column}={u.value} ({u.arm})" for u in getattr(version, "uses", ())]
    blob = "\n".join([f"criterion: {version.criterion}", f"method: {version.method}",
                      f"experiment: {version.experiment}", *uses, *(f"{k}\n{v}" for k, v in sorted(parts.items()))])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
