"""Where a claim that cannot show at one profile could: the other profiles' verdicts and the cost
of the larger ones.

A claim whose guards fail at a profile reads "untestable at this scale". What a reader needs next is
the scale that could show it and what it would cost. The verdicts at the other profiles come from
their committed claims.json; the cost of a profile not yet run comes from `results/cost/<profile>.json`,
the table `scripts/cost.py --json` writes from a few timed steps of every sweep. That table is a
measurement of one machine at one commit: it is checked against what made it (its profile, its
sweeps, its sums) and refused in one line if it is not, and a profile whose budget for the claim has
changed since it was timed is said to be costed for an earlier budget, never quoted silently.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from bnexp.config import CONFIGS, calibrations, drafts, experiments, pilots
from bnexp.files import InputError
from bnexp.profile import budget_hash

LADDER = ("smoke", "quick", "long", "full")  # profiles by scale; one of a user's own comes after them
COSTS = "cost"  # results/cost/<profile>.json
_SWEEP_KEYS = {"claim": str, "budget": str, "runs": int, "train_images": int, "hours": float}
_KEYS = {"profile": str, "device": str, "cpu": str, "threads": int, "jobs": int, "git_commit": str,
         "git_dirty": bool, "date": str, "sweeps": dict, "total_hours": float}


def order(profiles) -> list[str]:
    """`profiles` from the smallest scale to the largest: the ladder's, then any others by name."""
    return sorted(profiles, key=lambda p: (LADDER.index(p) if p in LADDER else len(LADDER), p))


@dataclass(frozen=True)
class Cost:
    """One claim's sweeps at one profile, as a committed cost table estimates them."""

    profile: str
    sweeps: dict[str, int]  # sweep -> runs
    hours: float  # on the table's device, with its jobs in parallel
    train_images: int
    device: str  # the CPU's name, or the GPU's
    jobs: int
    threads: int
    commit: str
    date: str
    dirty: bool
    stale: bool  # the profile's budget for the claim, or its sweeps, changed since it was timed

    def __str__(self) -> str:
        sweeps = ", ".join(f"`{s}` ({n} runs)" for s, n in self.sweeps.items())
        flags = (" Timed on a dirty tree." if self.dirty else "") + (
            f" Costed for an earlier budget or sweeps: configs/profile/{self.profile}.yaml or the claim's sweeps "
            "have changed since, so rerun the cost." if self.stale else "")
        return (f"{sweeps} at the budget in `configs/profile/{self.profile}.yaml`: about {_hours(self.hours)} on "
                f"{self.device} ({self.jobs} job(s) at once, {self.threads} thread(s) each), "
                f"{self.train_images / 1e6:.3g} million training images (`results/{COSTS}/{self.profile}.json`, "
                f"timed at {self.commit[:10]} on {self.date}).{flags}")


def _hours(h: float) -> str:
    return f"{60 * h:.0f} min" if h < 1 else f"{h:.3g} h" if h < 48 else f"{h:.3g} h ({h / 24:.3g} days)"


def load(path: Path) -> dict:
    """A cost table as scripts/cost.py wrote it; InputError naming the file and what is wrong otherwise
    (unreadable, a missing or mistyped field, hours that do not add up). A sweep that no longer exists
    is the code moving on, not a spoilt file: `cost_of` flags it as stale."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not readable as scripts/cost.py's JSON ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not scripts/cost.py's JSON (not an object)")
    for key, kind in _KEYS.items():
        if not _is(data.get(key), kind):
            raise InputError(f"{path}: `{key}` missing or not a {kind.__name__}")
    if data["profile"] != path.stem:
        raise InputError(f"{path}: costs profile {data['profile']!r}, not the {path.stem!r} its name says")
    for sweep, row in data["sweeps"].items():
        for key, kind in _SWEEP_KEYS.items():
            if not isinstance(row, dict) or not _is(row.get(key), kind):
                raise InputError(f"{path}: sweep {sweep!r}: `{key}` missing or not a {kind.__name__}")
        if row["claim"] != sweep.split("/")[0] or row["runs"] <= 0 or row["hours"] < 0 or row["train_images"] < 0:
            raise InputError(f"{path}: sweep {sweep!r}: its claim, runs, hours or images are not what cost.py writes")
    total = sum(row["hours"] for row in data["sweeps"].values())
    if not math.isclose(total, data["total_hours"], rel_tol=1e-6, abs_tol=1e-9):
        raise InputError(f"{path}: its sweeps' hours add up to {total:.6g}, not the total_hours "
                         f"{data['total_hours']:.6g} it records (edited by hand?)")
    return data


def _is(value, kind) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def costs(results: Path) -> dict[str, dict]:
    """Every committed cost table under `results/cost/`, by profile, checked."""
    return {p.stem: load(p) for p in sorted((Path(results) / COSTS).glob("*.json"))}


def cost_of(claim: str, table: dict) -> Cost | None:
    """The claim's sweeps in one profile's cost table, summed; None if the table has none of them."""
    rows = {s: r for s, r in table["sweeps"].items() if r["claim"] == claim}
    if not rows:
        return None
    profile = table["profile"]
    stale = (CONFIGS / "profile" / f"{profile}.yaml").is_file() and any(
        r["budget"] != budget_hash(CONFIGS, profile, claim) for r in rows.values())
    # a sweep renamed since (a draft's `v<n>_draft` registered as the claim's own sweep): costed code that is gone
    known = set(calibrations() + pilots() + experiments() + drafts())
    stale = stale or any(s not in known for s in rows)
    return Cost(profile, {s: r["runs"] for s, r in rows.items()}, sum(r["hours"] for r in rows.values()),
                sum(r["train_images"] for r in rows.values()),
                table["cpu"] if table["device"] == "cpu" else table["device"], table["jobs"], table["threads"],
                table["git_commit"], table["date"], table["git_dirty"], stale)


def elsewhere(claim: str, profile: str, verdicts: dict[str, list[dict]], tables: dict[str, dict]) -> list[str]:
    """For a claim that cannot show at `profile`: one line per larger profile (configs/profile/, or one with
    committed verdicts or costs), its committed verdict there, else what running the claim there would
    cost, else the command that costs it."""
    there = {p.stem for p in (CONFIGS / "profile").glob("*.yaml")} | set(verdicts) | set(tables) | {profile}
    larger = [p for p in order(there) if order([p, profile])[0] == profile and p != profile]
    lines = []
    for p in larger:
        c = next((x for x in verdicts.get(p, []) if x["id"] == claim and x.get("n_runs_used")), None)
        if c is not None:
            lines.append(f"`{p}`: {c['verdict']} (v{c['version']}, {c['n_seeds'] or '-'} seeds)")
        elif p in tables and (cost := cost_of(claim, tables[p])) is not None:
            lines.append(f"`{p}`: not run yet; {cost}")
        else:
            lines.append(f"`{p}`: not run yet, not costed (`python scripts/cost.py --profile {p} --only {claim} "
                         f"--json results/{COSTS}/{p}.json` times it)")
    return lines
