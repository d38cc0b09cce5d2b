"""What adding a claim takes, checked: one module (bnexp/claims/<id>.py), one experiment config
(configs/experiment/<id>.yaml), a budget line in each profile (configs/profile/*.yaml) and the
ledger registration. Nothing lists claims or experiments by hand, so this is what tells a
developer which part is missing: `python -m bnexp.inventory` prints one line per missing part.
"""

from __future__ import annotations

import sys

import yaml

from bnexp.claims import all_claims
from bnexp.config import CONFIGS
from bnexp.method import ledger
from bnexp.profile import BUDGET_KEY, experiment_files


def missing() -> list[str]:
    """One line per missing part, naming the file to add or edit and what goes in it."""
    out = []
    experiments = experiment_files(CONFIGS)
    read = {v.experiment: c.id for c in all_claims() for v in c.versions.values() if v.experiment}
    for c in all_claims():
        for n, v in c.versions.items():
            if v.experiment and v.experiment not in experiments:
                out.append(f"claim {c.id} v{n} reads experiment '{v.experiment}': add "
                           f"configs/experiment/{v.experiment}.yaml (its overrides and sweep grid)")
    for name, files in experiments.items():
        if name not in read:
            out.append(f"experiment {name}: no claim version reads it: add bnexp/claims/{name}.py with a "
                       f"Version(experiment='{name}', ...)")
        keys = sorted({m.group(2) for f in files for m in BUDGET_KEY.finditer(f.read_text())
                       if m.group(1) == name})
        for profile in sorted((CONFIGS / "profile").glob("*.yaml")):
            if name not in (yaml.safe_load(profile.read_text()) or {}):
                out.append(f"configs/profile/{profile.name}: no budget for experiment {name}: add a line "
                           f"`{name}: {{{', '.join(f'{k}: ...' for k in keys)}}}`")
    out += [f"bnexp/claims/ledger.yaml: {p}" for p in ledger.check(all_claims(), ledger.load())]
    return out


if __name__ == "__main__":
    lines = missing()
    print("\n".join(lines) or "inventory: every claim has its module, experiment, budgets and registration")
    sys.exit(1 if lines else 0)
