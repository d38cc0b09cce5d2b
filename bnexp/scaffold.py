"""A new claim from a documented template, every part of it in place:

    python -m bnexp.scaffold my_claim --statement "BN beats no norm." --source "Me 2026" \
        --arms none,batch --threshold 0.05

writes, and refuses to overwrite:

    bnexp/claims/<id>.py              the claim: v1 compares two arms' test accuracy, paired by seed
                                      (the second minus the first >= --threshold), a working verdict
                                      to edit into the claim's own criterion
    configs/experiment/<id>.yaml      its sweep: the two arms x the ledger's verdict seeds, the
                                      profile's net, a budget of `subset` images and `epochs`
    configs/arm/<id>/<norm>.yaml      each arm: a `model.norm` (bnexp/norm_catalogue.py)
    tests/claims/test_<id>.py         its specification: hand-made tables on which v1 holds and fails
                                      (re-certification reads them too)
    configs/profile/*.yaml            a budget line `<id>: {subset: ..., epochs: ...}` in each profile

and prints the steps that remain, in order: commit, register v1 (before any of its runs),
commit again, run it at the smoke profile, regenerate the committed reports.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = {"smoke": "{subset: 256, epochs: 1}", "quick": "{subset: 3000, epochs: 4}",
           "long": "{subset: 10000, epochs: 10}", "full": "{subset: 45000, epochs: 30}"}

CLAIM = '''"""{id}: {statement}"""

from __future__ import annotations

import pandas as pd

from bnexp.method.contract import Claim, Context, Version, from_estimate
from bnexp.method.readings import arm, final_acc
from bnexp.method.stats import decide, paired, per_seed, t_interval
from bnexp.records import Record

# --- v1 ------------------------------------------------------------------------------------------

GAIN_V1 = {threshold}  # {b}'s test accuracy minus {a}'s, at least this (a fraction: 0.01 = 1 point)


def endpoints_v1(rec: Record) -> dict:
    """What v1 reads of one run (a column each in runs.csv): its final test accuracy and its arm."""
    return {{"final_acc": final_acc(rec), "arm": arm(rec)}}


def verdict_v1(t: pd.DataFrame, ctx: Context):
    """{b} minus {a} test accuracy, paired by seed; reproduced when the whole 95% interval is at or
    above the threshold, not reproduced when it is below, inconclusive otherwise."""
    acc = {{a: per_seed(t[t["arm"] == a], "final_acc") for a in ("{a}", "{b}")}}
    gain = t_interval(paired(acc["{b}"], acc["{a}"], lambda x, y: x - y))
    detail = [f"{b} - {a} test accuracy, per seed: {{gain}} (criterion >= {{GAIN_V1:g}})"]
    return from_estimate(decide(gain, GAIN_V1, at_least=True), gain, detail)


CLAIM = Claim(
    "{id}",
    statement="{statement}",
    source="{source}",
    published="{published}",
    unit="accuracy (fraction: 0.01 = 1 point)",
    order={order},
    versions={{
        1: Version(f"{b}'s test accuracy exceeds {a}'s by >= {{GAIN_V1 * 100:g}} points",
                   "per-seed differences of test accuracy, paired by seed; 95% t-interval",
                   endpoints_v1, verdict_v1, "{id}"),
    }},
)
'''

EXPERIMENT = '''# @package _global_
# Claim {id}: {statement} The arms ({a}, {b}) x the verdict seeds the ledger registered for the
# claim's newest version; the profile's net, `subset` training images for `epochs` epochs.
hydra:
  sweeper:
    params:
      arm: {id}/{a},{id}/{b}
      seed: ${{bnexp_seeds:${{profile.seeds}},{id}}}
dataset: {{subset: "${{profile.{id}.subset}}", test_size: "${{profile.test_size}}"}}
model: {{arch: "${{profile.arch}}", width: "${{profile.width}}", depth: "${{profile.depth}}"}}
train: {{epochs: "${{profile.{id}.epochs}}", eval_every: 1000}}
'''

ARM = '''# @package _global_
# {id}: the {norm} arm.
model: {{norm: {norm}}}
'''

TEST = '''"""{id}, specified on hand-made tables: v1 holds when {b} gains at least the threshold over
{a} on every seed's pairing, and fails when it loses. `hand_made()` feeds re-certification."""

import pandas as pd

from bnexp.claims import by_id
from bnexp.method.contract import Context
from bnexp.method.stats import NOT_REPRODUCED, REPRODUCED


def cells(gain: float) -> pd.DataFrame:
    """Test accuracy per seed: {a} about 0.40, {b} `gain` above it (a little noise per arm)."""
    return pd.DataFrame([{{"seed": s, "arm": a,
                          "final_acc": 0.40 + (gain if a == "{b}" else 0.0) + 0.003 * ((s + k) % 3)}}
                         for s in range(5) for k, a in enumerate(("{a}", "{b}"))])


def verdict(t: pd.DataFrame):
    return by_id()["{id}"].versions[1].verdict(t, Context())


def hand_made() -> list[pd.DataFrame]:
    return [cells(0.12), cells(-0.05)]


def test_v1_holds_when_{b}_gains_more_than_the_threshold():
    assert verdict(cells(0.12)).verdict == REPRODUCED


def test_v1_fails_when_{b}_loses():
    assert verdict(cells(-0.05)).verdict == NOT_REPRODUCED
'''


def _order(root: Path) -> int:
    orders = [int(m) for p in (root / "bnexp" / "claims").glob("*.py")
              for m in re.findall(r"^\s*order=(\d+),", p.read_text(), re.M)]
    return max(orders, default=0) + 10


def scaffold(claim: str, statement: str, source: str, published: str, arms: tuple[str, str],
             threshold: float, root: Path = ROOT) -> list[Path]:
    """Write every part of a new claim under `root`; nothing if any of them exists already."""
    from bnexp.norm_catalogue import NORMS

    if not re.fullmatch(r"[a-z][a-z0-9_]*", claim):
        raise ValueError(f"claim id {claim!r}: lower-case letters, digits and _ (it is a module's name)")
    for norm in arms:
        if norm not in NORMS:
            raise ValueError(f"--arms: {norm!r} is not a norm (bnexp/norm_catalogue.py has {', '.join(NORMS)})")
    if arms[0] == arms[1]:
        raise ValueError("--arms: two different norms")
    a, b = arms
    files = {root / "bnexp" / "claims" / f"{claim}.py": CLAIM, root / "configs" / "experiment" / f"{claim}.yaml":
             EXPERIMENT, root / "tests" / "claims" / f"test_{claim}.py": TEST,
             **{root / "configs" / "arm" / claim / f"{n}.yaml": ARM.replace("{norm}", n) for n in arms}}
    there = [p for p in files if p.exists()]
    profiles = sorted((root / "configs" / "profile").glob("*.yaml"))
    there += [p for p in profiles if re.search(rf"^{claim}:", p.read_text(), re.M)]
    if there:
        raise ValueError(f"{there[0].relative_to(root)} already has claim {claim}: nothing written")
    values = {"id": claim, "statement": statement, "source": source, "published": published, "a": a, "b": b,
              "threshold": repr(float(threshold)), "order": _order(root)}
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values))
    for p in profiles:
        text = p.read_text()
        p.write_text(text + ("" if text.endswith("\n") else "\n")
                     + f"{claim}: {BUDGETS.get(p.stem, BUDGETS['quick'])}  # added by bnexp.scaffold\n")
    return [*files, *profiles]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bnexp.scaffold", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("claim", help="the claim's id: its module's name (lower case, digits, _)")
    p.add_argument("--statement", required=True, help="the claim in one sentence, as CLAIMS.md states it")
    p.add_argument("--source", required=True, help="who claims it (paper, year)")
    p.add_argument("--published", default="(the published numbers)", help="the numbers it is compared with")
    p.add_argument("--arms", default="none,batch", help="two norms, the baseline first (default: none,batch)")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="the second arm's test accuracy gain over the first, at least (default 0.05)")
    a = p.parse_args(argv)
    arms = tuple(x.strip() for x in a.arms.split(","))
    if len(arms) != 2:
        p.exit(2, f"scaffold: --arms takes two norms, got {a.arms!r}\n")
    try:
        written = scaffold(a.claim, a.statement, a.source, a.published, arms, a.threshold)  # type: ignore[arg-type]
    except ValueError as e:
        p.exit(2, f"scaffold: {e}\n")
    print("wrote " + ", ".join(str(w.relative_to(ROOT)) for w in written), file=sys.stderr)
    c = a.claim
    print(f"""next, in order (runs count for a verdict only after the registration is committed):
  1. edit bnexp/claims/{c}.py (the criterion) and tests/claims/test_{c}.py (its specification) as the claim needs;
     .venv/bin/python -m pytest -q tests/claims/test_{c}.py
  2. git add bnexp/claims/{c}.py configs/experiment/{c}.yaml configs/arm/{c} tests/claims/test_{c}.py configs/profile
     git commit -m "claim {c}"
  3. python -m bnexp.method.ledger register {c} 1 --seeds 5 --reason "its first criterion"
     git commit -am "register {c} v1"
  4. python scripts/reproduce.py --profile smoke --only {c}     (the smoke report: results/smoke/REPORT.md)
  5. python -m bnexp.report results/quick && python -m bnexp.report results/long
     git commit -am "reports with {c}"    (the committed reports list every claim; the test suite checks them)""")


if __name__ == "__main__":
    main()
