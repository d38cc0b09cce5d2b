"""Each claim's versions at every profile, side by side: the table a protocol revision is judged by.

    python -m bnexp.history results/quick results/long [--since 3] [--claims a,b] [--jobs 2]

Every profile named is evaluated from its committed tables, as its report is (runs.csv, tuned.json,
the ledger: each checked against what made it, and a bad one refused in one line). For each
experimental claim and profile it prints every version from `--since` on that has runs there, the
report's headline version, and the newest version where that has none yet: the verdict, effect and
95% interval, the seeds and looks, each fidelity guard's measured value against its bar, the pilot
the ledger holds for that profile (each guard's projected interval end at the first look), and the
training time of the runs the verdict used. Under the table, each profile's training time in all
(every run in runs.csv), summed over runs and as wall time at `--jobs` runs at once, and the part of
it a fresh reproduction of the headline verdicts needs: their runs and the tuning seeds' (calibration
and pilots).

Training time is what the runs recorded (train_s: the steps, not data loading or evaluation outside
them), so the wall time shown is a lower bound of a sweep's; nothing here is a verdict of its own.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from bnexp.evaluation import Outcome, evaluate_profile, headline
from bnexp.files import InputError, WriteError
from bnexp.scales import order


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3g}"


def _minutes(rows: pd.DataFrame) -> float:
    """Training core-minutes of `rows`: each run's train_s times the threads it trained on."""
    if not len(rows) or "train_s" not in rows:
        return 0.0
    threads = pd.to_numeric(rows.get("threads", 1), errors="coerce").fillna(1).clip(lower=1)
    return float((pd.to_numeric(rows["train_s"], errors="coerce").fillna(0) * threads).sum() / 60)


def _guards(o: Outcome) -> str:
    """Each guard's measured value against its bar, as the verdict judged it."""
    specs = {g.name: g for g in o.version.protocol().guards} if o.version.protocol is not None else {}
    out = []
    for name, g in o.result.derived.get("guards", {}).items():
        spec = specs.get(name)
        bar = f"{'>=' if spec.at_least else '<='} {spec.threshold:g}" if spec else "?"
        out.append(f"{name}: {_fmt(g['value'])} ({bar}, {'holds' if g['holds'] else 'fails'})")
    return "; ".join(out) or "-"


def _pilot(o: Outcome, profile: str) -> str:
    """The pilot the ledger holds for this version at `profile`: registered with it or added after."""
    if o.entry is None:
        return "-"
    guards = (o.entry.pilots or {}).get(profile, {}).get("guards")
    when = "at registration"
    if guards is None and profile in o.entry.added_pilots:
        guards, when = o.entry.added_pilots[profile].guards, "added after registration"
    if guards is None:
        return "not piloted here" if getattr(o.version, "pilot", None) is not None else "-"
    said = "; ".join(f"{g['guard']}: {_fmt(g['value'])}"
                     + (f", projected {_fmt(g['projected'])}" if g.get("projected") is not None else "")
                     + f" ({'>=' if g['at_least'] else '<='} {g['threshold']:g}, "
                       f"{'expected to hold' if g['holds'] else 'expected to fail'})" for g in guards)
    return f"{when}: {said}" if said else when


def rows(outcomes: list[Outcome], profile: str, since: int) -> list[str]:
    """One markdown row per version shown for one claim at one profile."""
    shown = [o for o in outcomes if o.number >= since and len(o.used)]
    for o in (headline(outcomes), max(outcomes, key=lambda o: o.number)):
        if o not in shown:  # the report's headline (a claim with versions older than `since` only), or
            shown.append(o)  # the newest, registered with no runs here yet: say so rather than leave it out
    shown.sort(key=lambda o: o.number)
    out = []
    for o in shown:
        r = o.result
        looks = ", ".join(str(lk["n"]) for lk in r.derived.get("looks", []))
        ci = f" [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if r.ci_low is not None and len(o.used) else ""
        seeds = f"{r.n_seeds or '-'}" + (f" ({looks})" if looks else "")
        verdict = r.verdict if len(o.used) else "no runs yet"
        out.append(f"| {o.claim.id} | {profile} | v{o.number} | {verdict} | {o.status if len(o.used) else '-'} | "
                   f"{_fmt(r.effect) if len(o.used) else '-'}{ci} | {seeds} | {_guards(o) if len(o.used) else '-'} | "
                   f"{_pilot(o, profile)} | {_minutes(o.used):.1f} |")
    return out


def table(folders: list[Path], since: int = 3, claims: list[str] | None = None, jobs: int = 2) -> str:
    """The markdown of every claim's versions at every profile in `folders`."""
    evaluations = {f.name: evaluate_profile(f) for f in folders}
    profiles = order(evaluations)
    lines = ["| claim | profile | version | verdict | status | effect [95% CI] | seeds (looks) | guards | "
             "pilot at this profile | training core-min |", "|---|---|---|---|---|---|---|---|---|---|"]
    ids = dict.fromkeys(per[0].claim.id for p in profiles for per in evaluations[p].claims)
    unknown = sorted(set(claims or ()) - set(ids))
    if unknown:
        raise InputError(f"no claim {', '.join(unknown)} at {', '.join(profiles)} (claims: {', '.join(ids)})")
    for claim in claims or ids:
        for p in profiles:
            per = next((oc for oc in evaluations[p].claims if oc[0].claim.id == claim), None)
            if per is not None and headline(per).version.measure is None:  # an exact check has no seeds
                lines += rows(per, p, since)
    lines.append("")
    for p in profiles:
        ev = evaluations[p]
        t, (low, high) = ev.table, ev.book.tuning_seeds
        total = _minutes(t)
        heads = [headline(per).used for per in ev.claims if headline(per).version.measure is None]
        used = _minutes(pd.concat(heads)) if heads else 0.0
        seeds = pd.to_numeric(t["seed"], errors="coerce") if len(t) else pd.Series(dtype=float)
        tuning = _minutes(t[seeds.between(low, high)])
        lines.append(f"- `{p}`: {len(t)} runs in runs.csv, {total:.0f} core-minutes of training summed over runs, "
                     f"at least {total / jobs / 60:.1f} h of wall time at {jobs} runs at once; of them the headline "
                     f"verdicts' runs {used:.0f} and the tuning seeds' (calibration and pilots, every regime tried) "
                     f"{tuning:.0f}: reproducing the headlines afresh takes at least "
                     f"{(used + tuning) / jobs / 60:.1f} h")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bnexp.history", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", type=Path, nargs="+", help="profiles' results folders (results/<profile>)")
    p.add_argument("--since", type=int, default=3, help="the first version shown (default 3)")
    p.add_argument("--claims", default="", help="comma-separated claims (default: every experimental claim)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once, for the wall time (default 2)")
    a = p.parse_args(argv)
    for f in a.folders:
        if not (f / "runs.csv").is_file():
            p.exit(2, f"history: {f} has no runs.csv: give profiles' results folders (results/<profile>)\n")
    if a.jobs < 1:
        p.exit(2, f"history: --jobs must be at least 1, not {a.jobs}\n")
    try:
        print(table(a.folders, a.since, [c for c in a.claims.split(",") if c] or None, a.jobs), end="")
    except (InputError, WriteError) as e:  # a table, tuned.json or ledger that is not what made it: one line
        print(f"history: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
