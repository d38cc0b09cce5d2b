"""One side of a re-certification, run as a script inside a checkout of one commit's bnexp/
(bnexp/method/ledger/recertify.py copies this file there): a version's verdict on every pickled
table, printed as exact JSON. The same file runs on both sides, so only their code differs.

    python verdicts_at.py <claim> <version> <expected hash> <tables.pkl>

Commits from before the method had a package of its own (bnexp/claims/ledger.py, verdicts called
as `verdict(rows)`, `verdict(rows, ctx)` or `verdict(rows, measured)`) are read the way their
own report called them, so that a version's code from then can still be compared with today's.
"""

import inspect
import json
import pickle
import sys
from pathlib import Path


def plain(v):
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return v.item()
    if hasattr(v, "to_dict"):
        return plain(v.to_dict())
    return v if isinstance(v, str | int | float | bool | type(None)) else repr(v)


def main() -> None:
    claim, number, expect, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    # The layout of this commit, read off its files beside this script (an editable install's
    # import hook could otherwise find today's bnexp/method/ for a commit that has none; some
    # commits' bnexp/ has no __init__.py, so the package's own __file__ cannot tell).
    if (Path(__file__).resolve().parent / "bnexp" / "method" / "contract.py").is_file():
        from bnexp.method.contract import Context
        from bnexp.method.ledger.hashing import version_hash
    else:  # a commit from before bnexp/method/
        Context = None
        from bnexp.claims.ledger import version_hash
    from bnexp.claims import by_id

    version = by_id()[claim].versions[number]
    if version_hash(version) != expect:
        sys.exit(f"the code of this commit has hash {version_hash(version)}, not {expect}")
    out = []
    with open(path, "rb") as f:
        tables = pickle.load(f)
    for rows, measured, ctx in tables:
        try:
            if Context is not None:
                r = version.verdict(rows, Context(ctx.get("tuned", {}), ctx.get("tuning"), measured or {}))
            elif measured is not None:
                r = version.verdict(rows, measured)
            elif "ctx" in inspect.signature(version.verdict).parameters:
                r = version.verdict(rows, ctx)
            else:
                r = version.verdict(rows)
            out.append(plain([r.verdict, r.effect, r.ci_low, r.ci_high, r.n_seeds, r.detail, r.derived]))
        except Exception as e:
            out.append(["raised", type(e).__name__, str(e)])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
