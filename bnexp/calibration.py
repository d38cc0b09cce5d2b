"""Calibration: every profile tunes the constants its protocols need, at its own scale, before
its verdict runs; the choices are derived from the committed endpoints table, never typed in.

    python -m bnexp.calibration results/quick     # -> results/quick/tuned.json

A claim declares each constant it needs as a tuning question (`Claim.tuning`,
bnexp/method/contract.py: Question): the knob (a column of the table: lr, dropout), the arms that
each get it, the selection rule and, for a target, the fraction of a reference accuracy. The
tuning sweep is the experiment `<claim>/tune` (configs/experiment/<claim>/tune.yaml): the same
grid and the same tuning seeds for every arm, so each arm gets the same budget and the
comparison is between tuned arms (AlgoPerf's rule), scored on the validation split. Tuning runs
are ordinary runs with rows in the endpoints table, so `tuned.json` is a deterministic function
of that table, and a test recomputes it.

Rules:
- a run's score is its final validation accuracy (chance for a diverged run, which never
  reached a validation); a grid value's score is the mean over the tuning seeds;
- `best`: each arm gets the grid value of its highest score; `shared`: one value for all arms,
  the one whose worst arm's score is highest (a value every arm trains at);
- ties go to the smaller value (the more conservative lr or dropout rate);
- a choice at either end of its grid is listed under `at_grid_edge`: the grid should be widened;
- `target`: `fraction` x the reference arm's score at its chosen value (a target relative to
  the tuned reference, so that it means the same at every scale).
Refused, naming the question: rows on a seed outside the ledger's tuning range, rows without a
validation split, or a grid that is not complete (every arm at every value on the same seeds).

Only the runs of the regime the profile describes now take part (bnexp/regime.py): when a profile's
budget for a sweep changes (a failed pilot's regime changed), the earlier regime's runs stay in the
table, and are counted under `left_out` as "earlier regime" rather than averaged in.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from bnexp import endpoints, regime
from bnexp import table as schema
from bnexp.claims import all_claims
from bnexp.files import InputError, WriteError, write_atomic
from bnexp.method import ledger
from bnexp.method.contract import Question

TUNED = "tuned.json"


class CalibrationError(InputError):
    """A tuning table that cannot give a choice; the message names the question."""


def questions() -> list[Question]:
    """Every tuning question of every claim, in the claims' order."""
    return [q for c in all_claims() for q in c.tuning]


def waves(claims: list[str] | None = None) -> list[list[Question]]:
    """The questions in the order their sweeps can run: each wave's sweeps read only answers of
    earlier waves (a question `after` another, a target after its reference)."""
    todo = [q for q in questions() if claims is None or q.claim in claims]
    done: set[str] = set()
    out = []
    while todo:
        ready = [q for q in todo if (q.after or "") in done | {""} and (q.rule != "target" or q.reference in done)]
        if not ready:
            raise CalibrationError(f"questions that wait on each other: {[q.id for q in todo]}")
        out.append(ready)
        done |= {q.id for q in ready}
        todo = [q for q in todo if q.id not in done]
    return out


def _scores(rows: pd.DataFrame, q: Question) -> pd.DataFrame:
    """Mean validation accuracy over the tuning seeds: one row per arm, one column per grid value."""
    chance = 1 / 10  # the data sets of the claims are CIFAR-10
    score = rows["val_acc"].astype(float).where(rows["status"] != "diverged", chance)
    table = rows.assign(score=score.fillna(chance), knob=rows[q.knob].astype(float),
                        arm_=rows[q.arm_column].map(_short))
    counts = table.groupby(["arm_", "knob"])["seed"].apply(lambda s: tuple(sorted(s)))
    if counts.nunique() != 1 or len(counts) != len(q.arms) * table["knob"].nunique():
        raise CalibrationError(f"{q.id}: the grid is not complete (every arm at every value on the same tuning "
                               f"seeds): {dict(counts.map(len))}")
    return table.pivot_table(index="arm_", columns="knob", values="score", aggfunc="mean").loc[list(q.arms)]


def _pick(scores: pd.Series) -> float:
    """The grid value of the highest score; ties to the smaller value."""
    best = scores.max()
    return float(min(v for v, s in scores.items() if s == best))


def choose(table: pd.DataFrame, q: Question, chosen: dict[str, Any], profile: str | None = None) -> dict[str, Any]:
    """The answer to `q` from the table's tuning rows (`chosen`: the answers so far, for targets;
    `profile`: read only the runs of its current regime, counting the others as left out)."""
    if q.rule == "target":
        ref = chosen.get(q.reference or "")
        if ref is None:
            raise CalibrationError(f"{q.id}: its reference {q.reference} has no answer yet")
        arm = q.arms[0]
        accuracy = ref["scores"][arm][_key(ref["values"][arm])]
        return {"rule": "target", "reference": q.reference, "arm": arm, "fraction": q.fraction,
                "reference_val_acc": accuracy, "value": q.fraction * accuracy}
    # Dirty, unknown-commit and failed runs are out of a choice as they are out of a verdict: counted.
    rows, left_out = ledger.usable(table[table["experiment"] == q.experiment])
    if profile is not None and not rows.empty:
        rows, stale = regime.current(rows, profile)
        left_out = left_out | ({"earlier regime": stale} if stale else {})
    if rows.empty:
        raise CalibrationError(f"{q.id}: no usable runs of experiment {q.experiment} in the table"
                               + (f" ({_counts(left_out)} left out: runs of a dirty tree or an unknown commit never "
                                  "inform a choice; commit, then rerun)" if left_out else "; run its sweep first"))
    rows = rows[rows[q.arm_column].map(_short).isin(q.arms)]
    low, high = ledger.load().tuning_seeds
    outside = sorted({int(s) for s in rows["seed"] if not low <= int(s) <= high})
    if outside:
        raise CalibrationError(f"{q.id}: runs on seeds {outside}, outside the ledger's tuning seeds {low}-{high}")
    if "val_acc" not in rows or rows.loc[rows["status"] != "diverged", "val_acc"].isna().any():
        raise CalibrationError(f"{q.id}: runs without a validation split (dataset.val_size = 0): a choice is made "
                               "on validation images only")
    scores = _scores(rows, q)
    if q.rule == "shared":
        value = _pick(scores.min(axis=0))
        values = {arm: value for arm in q.arms}
    else:
        values = {arm: _pick(scores.loc[arm]) for arm in q.arms}
    grid = list(scores.columns)
    # A choice at the end of its grid may be short of the best: flagged, so that the grid is widened.
    # An arm whose score is the same at every value (a net that learns nothing anywhere, at chance)
    # has no best to lie beyond the grid: its choice (the smallest value) is flagged `flat` instead.
    flat = sorted(arm for arm in values if len(grid) > 1 and scores.loc[arm].nunique() == 1)
    edge = sorted(arm for arm, v in values.items()
                  if len(grid) > 1 and v in (min(grid), max(grid)) and arm not in flat)
    return {"rule": q.rule, "knob": q.knob, "values": values, "at_grid_edge": edge, **({"flat": flat} if flat else {}),
            "scores": {arm: {_key(v): float(s) for v, s in scores.loc[arm].items()} for arm in q.arms},
            "seeds": sorted(int(s) for s in rows["seed"].unique()), "runs": sorted(rows["key"])} | (
        {"left_out": left_out} if left_out else {})


def _counts(left_out: dict[str, int]) -> str:
    return ", ".join(f"{n} {why}" for why, n in left_out.items())


def _key(v: float) -> str:
    return f"{v:g}"


def _short(arm: str) -> str:
    """`convergence/plain` -> `plain`: arms by their own name."""
    return str(arm).split("/")[-1]


def of_profile(profile: str | None) -> list[Question]:
    """The questions of the claims a profile is for (its `only`; every claim where it names none,
    or for a folder that is not a profile's): a claim the profile leaves out has no tuning rows there."""
    from bnexp.config import profile_only

    claims = profile_only(profile) if profile else []
    return [q for q in questions() if not claims or q.claim in claims]


def tuned(table: pd.DataFrame, profile: str | None = None) -> dict[str, dict[str, Any]]:
    """Every answer of the profile's questions, in order (targets after the questions they refer to)."""
    out: dict[str, dict[str, Any]] = {}
    for q in of_profile(profile):
        out[q.id] = choose(table, q, out, profile)
    return out


def write(results: Path | str, only: list[str] | None = None) -> Path:
    """results/<profile>/tuned.json from the endpoints table there (`only`: these questions; by
    default the questions of the claims the profile is for; the others kept as they are)."""
    results = Path(results)
    table = endpoints.read(results)[0]
    path = results / TUNED
    out = json.loads(path.read_text()) if path.is_file() else {}
    profile = profile_of(results)
    asked = {q.id for q in of_profile(profile)} if only is None else set(only)
    for q in questions():
        if q.id in asked:
            out[q.id] = choose(table, q, out, profile)
    write_atomic(path, json.dumps(out, indent=2, sort_keys=True) + "\n")
    return path


def read(results: Path | str) -> dict[str, dict[str, Any]]:
    """The profile's tuned.json; empty when it was never calibrated. CalibrationError, naming the
    file, when it is not the JSON object calibration writes."""
    return _load(Path(results) / TUNED)


def _load(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    try:
        answers = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CalibrationError(f"{path}: not readable as calibration's JSON ({e}); recompute it with "
                               f"python -m bnexp.calibration {path.parent}") from None
    if not isinstance(answers, dict) or not all(isinstance(a, dict) for a in answers.values()):
        raise CalibrationError(f"{path}: not calibration's answers (an object of questions); recompute it with "
                               f"python -m bnexp.calibration {path.parent}")
    return answers


def profile_of(results: Path | str) -> str | None:
    """The profile a results folder holds (`results/quick` -> quick), if there is such a profile."""
    from bnexp.config import CONFIGS

    name = Path(results).name
    return name if (CONFIGS / "profile" / f"{name}.yaml").is_file() else None


def audit(table: pd.DataFrame, answers: dict[str, dict[str, Any]], profile: str | None = None) -> dict[str, str]:
    """Every answer of tuned.json that its tuning rows in `table` do not give, with why: a
    hand-edited value or score, or rows changed since. tuned.json is a function of the table, so a
    verdict that reads it is only as good as this check (bnexp/evaluation.py)."""
    out: dict[str, str] = {}
    recomputed: dict[str, dict[str, Any]] = {}
    for q in questions():
        if q.id not in answers:
            continue
        try:
            recomputed[q.id] = json.loads(json.dumps(choose(table, q, recomputed, profile)))
        except CalibrationError as e:
            out[q.id] = f"tuned.json's {q.id} cannot be recomputed from the table ({e})"
            recomputed[q.id] = answers[q.id]
            continue
        if _decision(recomputed[q.id]) != _decision(answers[q.id]):
            change = _first_change(answers[q.id], recomputed[q.id])
            out[q.id] = (f"tuned.json's {q.id} differs from what its tuning rows give ({change}): edited by hand, "
                         "or the rows changed after calibration")
    return out


def _decision(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "left_out"}


def _first_change(was: dict, now: dict, where: str = "") -> str:
    for k in sorted(set(was) | set(now), key=str):
        a, b = was.get(k), now.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _first_change(a, b, f"{where}{k}.")
            if inner:
                return inner
        elif a != b:
            return f"{where}{k}: file {json.dumps(a)[:40]}, rows {json.dumps(b)[:40]}"
    return ""


def grids(profile: str) -> dict[str, list[float]]:
    """Each question's grid at `profile`, as its tuning sweep will try it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from bnexp.config import CONFIGS

    column_key = {column: key for key, column in schema.CONFIG_COLUMNS.items()}
    out = {}
    fresh = not GlobalHydra.instance().is_initialized()
    context = initialize_config_dir(str(CONFIGS), version_base="1.3") if fresh else None
    try:
        if context:
            context.__enter__()
        for q in questions():
            if q.rule == "target":
                continue
            master = compose("config", [f"experiment={q.experiment}", f"profile={profile}"], return_hydra_config=True)
            grid = str(master.hydra.sweeper.params[column_key[q.knob]])
            out[q.id] = [float(v) for v in grid.split(",")]
    finally:
        if context:
            context.__exit__(None, None, None)
    return out


def edge_refused() -> set[str]:
    """The questions whose edge choice a verdict refuses: those a version from v4 on (registered or a
    draft: one that declares a pilot, bnexp/method/ledger/rules.py edge_choices) uses, with the
    questions their sweeps or targets depend on. Only these grids are widened: an earlier version's
    question keeps the grid it was decided with, since widening it would re-tune, and so turn
    exploratory, a verdict whose rules accepted an edge choice."""
    by_id = {q.id: q for q in questions()}
    todo = [u.question for c in all_claims() for v in (*c.versions.values(), *c.drafts.values())
            if getattr(v, "pilot", None) is not None for u in v.uses]
    out: set[str] = set()
    while todo:
        qid = todo.pop()
        if qid in out or qid not in by_id:
            continue
        out.add(qid)
        todo += [d for d in (by_id[qid].after, by_id[qid].reference) if d]
    return out


MAX_WIDENINGS = 3  # times a grid is widened by one step at an edge before its edge choice stands (flagged)


RATES = ("dropout", "head_dropout")  # knobs that are probabilities: a grid never reaches 1


def widening(answer: dict[str, Any]) -> list[float]:
    """The grid values that widen an answer's grid by one geometric step past each end where an arm's
    choice sits (`at_grid_edge`): below 0.05 < 0.1 comes 0.025, above 0.4 < 0.8 comes 1.6. A rate (a
    dropout probability, below 1) is widened upward by the same step on its distance to 1: above
    0.25 < 0.5 comes 0.667. Empty when no choice is at an edge, for a target, or for a grid of one value."""
    if answer.get("rule") == "target" or not answer.get("at_grid_edge"):
        return []
    grid = sorted({float(v) for scores in answer["scores"].values() for v in scores})
    if len(grid) < 2 or min(grid) <= 0:
        return []
    chosen = {float(answer["values"][arm]) for arm in answer["at_grid_edge"]}
    out = []
    if grid[0] in chosen:
        out.append(float(f"{grid[0] ** 2 / grid[1]:.6g}"))
    if grid[-1] in chosen:
        if answer.get("knob") in RATES:
            out.append(float(f"{1 - (1 - grid[-1]) ** 2 / (1 - grid[-2]):.6g}"))
        else:
            out.append(float(f"{grid[-1] ** 2 / grid[-2]:.6g}"))
    return out


def widened_sweeps(results: Path | str, profile: str, ids: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The tuning sweeps to run again, each with its grid widened past the edge where a choice of
    `ids` sits: (experiment, the override of its profile grid). tuned.json stays a function of the
    table: the widened grid is the runs' own values, and the choice is made again over all of them."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bnexp.config import CONFIGS
    from bnexp.profile import BUDGET_KEY

    answers = read(results)
    column_key = {column: key for key, column in schema.CONFIG_COLUMNS.items()}
    out = []
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        for q in questions():
            extra = widening(answers.get(q.id, {})) if q.id in ids else []
            if not extra:
                continue
            master = compose("config", [f"experiment={q.experiment}", f"profile={profile}"], return_hydra_config=True)
            param = OmegaConf.to_container(master.hydra.sweeper.params, resolve=False)[column_key[q.knob]]
            ref = BUDGET_KEY.fullmatch(str(param).strip())
            if ref is None:
                continue  # a grid written in the sweep itself, not in the profile: nothing to widen by name
            grid = sorted({float(v) for s in answers[q.id]["scores"].values() for v in s} | set(extra))
            values = ",".join(f"{v:g}" for v in grid)
            out.append((q.experiment, (f"profile.{ref.group(1)}.{ref.group(2)}='{values}'",)))
    return out


def planning(profile: str) -> dict[str, dict[str, Any]]:
    """Stand-in answers for planning before calibration (scripts/cost.py, the expansion tests):
    the middle of each grid, a target of half the fraction. Never read by a run: a sweep reads
    the profile's own tuned.json, and this is never written there."""
    out: dict[str, dict[str, Any]] = {}
    every = grids(profile)
    for q in questions():
        if q.rule == "target":
            out[q.id] = {"rule": "target", "value": 0.5 * (q.fraction or 0), "planning": True}
        else:
            grid = every[q.id]
            out[q.id] = {"rule": q.rule, "values": {arm: grid[len(grid) // 2] for arm in q.arms}, "planning": True}
    return out


def value(profile: str, question: str, arm: str | None = None, results: Path | str = "results") -> float:
    """A tuned constant, for `${bnexp_tuned:${profile.name},<question>,<arm>}` in the verdict configs:
    read from <results>/<profile>/tuned.json, `results` being the config's own key."""
    path = Path(results) / profile / TUNED
    answer = _load(path).get(question)
    if answer is None:
        raise CalibrationError(f"{path}: no tuned value for {question}; calibrate first "
                               f"(make calibrate PROFILE={profile})")
    v = answer["value"] if answer["rule"] == "target" else answer["values"].get(arm or "")
    if v is None or not math.isfinite(v):
        raise CalibrationError(f"{path}: {question} has no value for arm {arm!r} (arms: {list(answer['values'])})")
    return float(v)


if __name__ == "__main__":
    from bnexp.files import results_folder

    folder = results_folder("bnexp.calibration", __doc__, "runs.csv")
    try:
        print(write(folder))
    except (InputError, WriteError) as e:  # a table, tuned.json or ledger that is not what made it: one line
        sys.exit(f"calibration: {e}")
