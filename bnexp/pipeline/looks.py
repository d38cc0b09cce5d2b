"""The verdict stage, look by look: a claim whose newest version registers a sequential plan runs
its first look's seeds; after each look the verdicts are evaluated from the table (in memory) and
only the claims whose plan asks for more seeds run the next look's."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from hydra import compose, initialize_config_dir
from tqdm import tqdm

from bnexp import endpoints
from bnexp.claims import all_claims
from bnexp.config import CONFIGS
from bnexp.evaluation import evaluate_profile
from bnexp.method import pilot
from bnexp.pipeline.schedule import run_stage
from bnexp.report import write_report


def sequential_plans(names: list[str]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """experiment -> (claim, looks) for the experiments whose claim's newest version has a plan."""
    out = {}
    for c in all_claims():
        v = c.versions[c.latest]
        if v.experiment in names and v.protocol is not None:
            out[v.experiment] = (c.id, v.protocol().plan.looks)
    return out


def _verdict_experiments() -> list[str]:
    """Every claim's newest version's experiment."""
    return [e for c in all_claims() if (e := c.versions[c.latest].experiment)]


def unpiloted(names: list[str], profile: str) -> dict[str, str]:
    """experiment -> why its verdict sweep is not run at `profile`: its claim's newest version declares
    a pilot (v4 on) but was piloted there neither at registration nor later (ledger add-pilot). Its
    runs could only be exploratory, and once they exist no pilot can be added before them."""
    from bnexp.method import ledger

    book, out = ledger.load(), {}
    for c in all_claims():
        v, entry = c.versions[c.latest], book.get(c.id, c.latest)
        if v.experiment not in names or v.pilot is None or entry is None:
            continue
        piloted = entry.piloted
        if profile not in piloted:
            out[v.experiment] = pilot.advice(c.id, c.latest, profile, piloted)
    return out


def next_look(looks: tuple[int, ...], ran: int, ask: int | None) -> int | None:
    """The index of the look to run after look `ran`, when the verdict asks for `ask` seeds: the
    next look, or a later one when a table finished in parts already holds the looks between;
    None when the plan has stopped. A look that still misses runs after its own sweep (a run
    crashed) asks for itself again: it is not run twice in one call."""
    if ask in looks and looks.index(ask) > ran:
        return looks.index(ask)
    return None


def verdict_stage(names: list[str], a: argparse.Namespace, jobs: int, root: Path) -> tuple[list[str], Counter]:
    """The verdict sweeps. An experiment whose claim registers a sequential plan runs its first
    look's seeds; after each look the verdicts are recomputed from the table, and only the claims
    whose plan asks for more seeds run the next look's. The others run once, on the profile's seeds,
    beside the first looks."""
    plans = sequential_plans(names)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        spec = str(compose("config", [f"profile={a.profile}"]).profile.seeds)
    kind, _, count = spec.partition(":")
    # A profile with fewer seeds than every registered plan's first look (smoke) runs one pass; the
    # smallest first look is over all claims, so that `--only` one claim whose first look is larger
    # than the profile's count (convergence v5: 20 seeds, quick: 5) still runs its looks.
    first = min((looks[0] for _, looks in sequential_plans(_verdict_experiments()).values()), default=1)
    if kind != "verdict" or (count and int(count) < first):
        return run_stage([(n, ()) for n in names], a, jobs, root)  # fewer seeds than a look (smoke): one pass
    skipped = unpiloted(names, a.profile)  # a profile that reaches a look decides: only where piloted
    for why in skipped.values():
        tqdm.write(f"reproduce: {why}", file=sys.stderr)
    names = [n for n in names if n not in skipped]
    failed, totals = [], Counter()
    once = [(n, ()) for n in names if n not in plans]
    at = {n: 0 for n in names if n in plans}  # experiment -> the index of the look it runs next
    while at or once:
        # a look launches only the seeds it adds: the earlier looks' are in the table (an
        # interrupted call reruns the looks in order, so each look's missing runs are made there)
        looks = [(name, (f"profile.seeds=verdict:{(plans[name][1][k - 1] if k else 0) + 1}-{plans[name][1][k]}",))
                 for name, k in at.items()]
        f, more = run_stage(once + looks, a, jobs, root)
        failed, totals, once = failed + f, totals + more, []
        endpoints.write(root)
        evaluated = evaluate_profile(root, a.profile)  # read here in memory, then rendered
        write_report(root, a.profile, evaluated)
        after = evaluated.headlines()
        nxt = {}
        for name, k in at.items():
            claim, looks_at = plans[name]
            o = after.get(claim)
            derived = o.result.derived if o is not None else {}
            ask, taken = derived.get("next_seeds"), [lk["n"] for lk in derived.get("looks", [])]
            then = next_look(looks_at, k, ask)
            if then is not None:
                nxt[name] = then
            shown = f"look at {taken[-1]} seeds" if taken else f"no look complete at {looks_at[k]} seeds"
            tqdm.write(f"{claim}: {shown}: {o.result.verdict if o is not None else None}"
                       + (f"; the plan continues to {ask} seeds" if name in nxt else ""), file=sys.stderr)
        at = nxt
    return failed, totals


