"""The evaluation (bnexp/evaluation.py) -> REPORT.md, claims.json, figures: rendering only.

    python -m bnexp.report results/quick

Reads only what bnexp.endpoints wrote (runs.csv, curves.parquet, exact.csv) and tuned.json, so
the committed report regenerates exactly from committed files, without the raw runs.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bnexp import scales as scale_costs
from bnexp.evaluation import Evaluation, Outcome, evaluate_profile, headline
from bnexp.files import InputError, WriteError, write_atomic
from bnexp.method import ledger, pilot
from bnexp.method.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, UNTESTABLE, Estimate, seeds_to_decide

sns.set_theme(style="whitegrid", context="notebook")


def _as_json(o: Outcome) -> dict:
    r = o.result
    return {"version": o.number, "verdict": r.verdict, "status": o.status, "status_reasons": o.reasons,
            "effect": _num(r.effect), "ci_low": _num(r.ci_low), "ci_high": _num(r.ci_high),
            "n_seeds": r.n_seeds, "n_runs_used": len(o.used), "n_runs_excluded": sum(o.excluded.values()),
            "excluded": o.excluded, "method": o.version.method, "criterion": o.version.criterion,
            "experiment": o.version.experiment, "registered_commit": o.registered,
            "verdict_seeds": list(o.entry.verdict_seeds) if o.entry and o.entry.verdict_seeds else None,
            "version_reason": o.entry.reason if o.entry else None, "detail": r.detail,
            **({"sequential": _sequential_json(r.derived)} if "looks" in r.derived else {})}



def _sequential_json(d: dict) -> dict:
    """What a v3 verdict adds: the looks taken, the seeds used, each part with its margin, the guards,
    the neighbouring choices and the reference arm's accuracy (for the cross-scale table)."""
    return {"looks": [{"n": lk["n"], "verdict": lk["verdict"]} for lk in d["looks"]], "seeds": d.get("seeds", []),
            "next_seeds": d.get("next_seeds"), "deciding": d.get("deciding"),
            "parts": [{k: _num(v) if isinstance(v, float) else v for k, v in p.items()} for p in d.get("parts", [])],
            "guards": {k: {"value": _num(g["value"]), "holds": g["holds"]} for k, g in d.get("guards", {}).items()},
            "sensitivity": [{**x, "effect": _num(x["effect"])} for x in d.get("sensitivity", [])],
            "reference_acc": _num(d.get("reference_acc")), "reference_arm": d.get("reference_arm")}


def _num(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.3g}"


def draw(outcomes: list[list[Outcome]], curves: pd.DataFrame, figures: Path) -> dict[str, str]:
    figures.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for per_claim in outcomes:
        o = headline(per_claim)
        if o.claim.figure is None or o.used.empty:
            continue
        own = curves[curves["experiment"] == o.version.experiment]
        fig = o.claim.figure(o.used, own[own["key"].isin(o.used["key"])], o.result)
        r = o.result
        ci = f" [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if r.ci_low is not None else ""
        fig.suptitle(f"{o.claim.id} v{o.number}: {r.verdict} ({o.status}); effect {_fmt(r.effect)}{ci}, "
                     f"{r.n_seeds} seeds", fontsize=9, y=1.02)  # every figure says what it decides
        _threshold_strip(fig, r)
        fig.savefig(figures / f"{o.claim.id}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        drawn[o.claim.id] = f"figures/{o.claim.id}.png"
    return drawn


def _threshold_strip(fig: plt.Figure, r) -> None:
    """Under the claim's own figure: each part's interval (the look's repeated interval) against its
    threshold, the deciding part in black, so that every figure draws what decides it."""
    parts = r.derived.get("parts") or []
    finite = [p for p in parts if all(map(math.isfinite, (p["effect"], p["ci_low"], p["ci_high"])))]
    if not finite:
        return
    ax = fig.add_axes((0.12, -0.06 - 0.045 * len(finite), 0.78, 0.045 * len(finite)))
    for i, p in enumerate(finite):
        colour = "black" if p["name"] == r.derived.get("deciding") else "grey"
        ax.plot([p["ci_low"], p["ci_high"]], [i, i], color=colour, lw=2)
        ax.plot([p["effect"]], [i], "o", color=colour, ms=4)
        ax.plot([p["threshold"]] * 2, [i - 0.4, i + 0.4], color="tab:red", ls="--", lw=1)
    if all(p["log"] for p in finite) and all(min(p["ci_low"], p["threshold"]) > 0 for p in finite):
        ax.set_xscale("log")
    ax.set_yticks(range(len(finite)), [p["name"][:60] for p in finite], fontsize=6)
    ax.set_ylim(-0.6, len(finite) - 0.4)
    ax.tick_params(axis="x", labelsize=6)
    ax.set_title("each part's interval (black: the deciding one) against its threshold (red)", fontsize=7)


def write_report(out: Path | str, profile: str | None = None, evaluated: Evaluation | None = None) -> Path:
    """REPORT.md, claims.json and the figures of the profile whose committed files are in `out`
    (`evaluated`: its evaluation, when the caller has it in memory already)."""
    out = Path(out)
    ev = evaluated or evaluate_profile(out, profile)
    figures = draw(ev.claims, ev.curves, out / "figures")
    claims_json = []
    for per_claim in ev.claims:
        h = headline(per_claim)
        c = h.claim
        claims_json.append({"id": c.id, **_as_json(h), "unit": c.unit, "published": c.published,
                            "statement": c.statement, "source": c.source,
                            "history": [_as_json(o) for o in per_claim]})
    write_atomic(out / "claims.json", json.dumps(claims_json, indent=2) + "\n")
    others = {d.name: json.loads((d / "claims.json").read_text()) for d in sorted(out.parent.iterdir())
              if d != out and (d / "claims.json").is_file()}  # the other profiles' committed verdicts
    scales = {**others, ev.profile: claims_json}
    write_atomic(out / "REPORT.md", _markdown(ev.profile, ev.table, ev.claims, ev.book, figures, ev.tuned, scales,
                                              ev.not_run, ev.drafts, _scouting(out.parent, ev.profile),
                                              scale_costs.costs(out.parent)))
    return out / "REPORT.md"


# --- the markdown ----------------------------------------------------------------------------

def _effect(o: Outcome) -> str:
    r = o.result
    ci = f" [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if r.ci_low is not None else ""
    failed = _failed_guards(o)
    if r.verdict == UNTESTABLE and failed:  # what made it untestable comes first
        return "; ".join(failed) + f"; deciding part {_fmt(r.effect)}{ci}"
    return f"{_fmt(r.effect)}{ci}"


def _failed_guards(o: Outcome, named: bool = False) -> list[str]:
    """Each failed guard as its measured value against what it needs (`named`: with its name)."""
    return [f"{name + ': ' if named else 'guard '}{_fmt(g['value'])} (needs {'>=' if spec.at_least else '<='} "
            f"{spec.threshold:g})"
            for name, g in o.result.derived.get("guards", {}).items() if not g["holds"]
            for spec in _guard_specs(o) if spec.name == name]


def _guard_specs(o: Outcome) -> list:
    return list(o.version.protocol().guards) if o.version.protocol is not None else []


def _standing(o: Outcome, profile: str) -> str:
    """The status as a reader needs it: an exact check is measured, not confirmed by runs; a
    version with no runs yet has nothing to confirm, and one not piloted at this profile would be
    exploratory here (ledger.piloting reads the pilots before the budget, which runs would add)."""
    if o.version.measure is not None:
        return "exact check"
    if o.version.experiment is not None and not len(o.used):
        if ledger.piloting(o.entry, o.version, profile, None):
            return "no runs yet (not piloted here: exploratory once run)"
        return f"no runs yet ({o.status} once run)"
    return o.status


def _in_words(o: Outcome) -> str:
    """One plain line: whether the claim holds, fails, is undecided or cannot show here, and the
    number that decides it beside the paper's."""
    r, d = o.result, o.result.derived
    parts = {p["name"]: p for p in d.get("parts", [])}
    head = parts.get(d.get("deciding", ""))
    said = {REPRODUCED: "holds", NOT_REPRODUCED: "fails", INCONCLUSIVE: "undecided", UNTESTABLE: "cannot show here"}
    line = f"- **{o.claim.id}** ({o.claim.statement}) **{said.get(r.verdict, r.verdict)}**"
    if o.version.measure is None and o.version.experiment is not None and not len(o.used):
        return line + ": no runs at this profile yet."  # an exact check is measured without them
    if r.verdict == UNTESTABLE and _failed_guards(o):
        line += ": the regime fails its guard " + "; ".join(_failed_guards(o, named=True))
    elif head is not None:
        side = ">=" if _at_least(o, head["name"]) else "<="
        line += (f": {head['name']} {_fmt(head['effect'])} [{_fmt(head['ci_low'])}, {_fmt(head['ci_high'])}] "
                 f"against {side} {head['threshold']:g}")
        if r.verdict == INCONCLUSIVE:
            line += (f", its interval still across the threshold at {r.n_seeds} seeds"
                     + (f" (the plan's next look: {d['next_seeds']} seeds)" if d.get("next_seeds") else
                        _would_decide(head, d, r.n_seeds)))
    elif r.effect is not None:
        line += f": {_effect(o)} ({o.claim.unit}; criterion: {o.version.criterion})"
    return line + f". Paper: {o.claim.published}"


def _would_decide(part: dict, derived: dict, n: int) -> str:
    """After a plan's last look, for a part whose interval still straddles its threshold: about how
    many seeds a new version's fixed-n interval would need at this spread (the effect taken as
    measured), so that a reader sees whether the claim is near its bar or far from any decision."""
    if not derived.get("looks"):
        return ""
    est = Estimate(part["effect"], part["ci_low"], part["ci_high"], n)
    need = seeds_to_decide(est, part["threshold"], part.get("log", False), derived["looks"][-1]["multiplier"])
    if need is None:
        return ""
    return (f" at the plan's last look; at this spread a fixed-n 95% interval would need about {need} seeds to "
            "decide it")


def _at_least(o: Outcome, part: str) -> bool:
    spec = next((p for p in o.version.protocol().parts if p.name == part), None) if o.version.protocol else None
    return bool(spec and spec.at_least)


def _runs(o: Outcome) -> str:
    if o.version.experiment is None:
        return "-"
    excluded = ", ".join(f"{n} {why}" for why, n in o.excluded.items())
    return f"{len(o.used)}" + (f" ({excluded} left out)" if excluded else "")


def _header(profile: str, table: pd.DataFrame) -> list[str]:
    n = len(table)
    status = table["status"].value_counts().to_dict() if n else {}
    commits = sorted(set(table["git_commit"].dropna())) if n else []
    dirty = int((table["git_dirty"].astype(str).str.lower() == "true").sum()) if n else 0
    data = sorted(set(table["data_source"].dropna())) if n else []
    device = ", ".join(sorted(set(table["device"].dropna()))) if n else "unknown"
    return [f"# bnexp report: `{profile}` profile", "",
            f"{n} runs in the endpoints table `runs.csv` ({', '.join(f'{v} {k}' for k, v in status.items()) or 'none'};"
            f" {dirty} from a dirty tree), {table['train_s'].sum() / 60 if n else 0:.0f} min of training summed over "
            f"runs on {device}. Code: {', '.join(c[:10] for c in commits) or 'unknown'}. "
            f"Data: {'; '.join(data) or 'unknown'}.", "",
            "Every verdict below is recomputed from `runs.csv` (`python -m bnexp.report results/" + profile + "`). "
            "Each criterion is a registered version in `bnexp/claims/ledger.yaml`: a hash of its criterion and "
            "verdict code, its verdict seeds and the reason for it; the test suite fails if a registered "
            "version's code changes. A verdict is **confirmatory** only if every run it uses was made by clean "
            "code that already contained its registration; otherwise it is **exploratory**, and says why. Runs "
            "from a dirty tree, of an unknown commit, or that crashed are left out and counted.", "",
            "Verdicts: `reproduced` when the effect is past the threshold with the whole 95% interval clear of "
            "it, `not reproduced` when the interval is clear of it on the wrong side, `inconclusive` otherwise "
            "(including intervals of zero width, which identical per-seed values of a discrete endpoint give). "
            "From v3 on, a version registers fidelity guards (measured conditions without which the claim cannot "
            "show at this scale: a failed guard gives `untestable at this scale` with the measured reason, never "
            "`not reproduced`), a claim's parts (all must hold; the headline effect is the part that decides), and "
            "a sequential plan: seeds are added in looks, each read with a repeated confidence interval whose "
            "overall error is that of one 95% interval, and a claim stops at the first look that decides it. "
            "No sweep uses learning-rate warm-up."]


def _scouted_runs(table: Path) -> pd.DataFrame:
    """A scouting table as bnexp-table wrote it; InputError, naming the file, for one that is not (unreadable,
    without its run keys, a run twice, or a row cut short)."""
    try:
        if not table.read_bytes().endswith(b"\n"):  # bnexp-table writes whole lines: a file ending mid-row
            raise InputError(f"{table}: its last row is cut short")
        runs = pd.read_csv(table)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError(f"{table}: not readable as bnexp-table's runs.csv ({type(e).__name__})") from None
    missing = [c for c in ("key", "status", "seed") if c not in runs]
    if missing:
        raise InputError(f"{table}: not bnexp-table's runs.csv (no {', '.join(missing)} column)")
    if runs["key"].duplicated().any():
        raise InputError(f"{table}: run {runs.loc[runs['key'].duplicated(), 'key'].iloc[0]} appears twice")
    if runs[["key", "status", "seed"]].isna().any().any():
        raise InputError(f"{table}: a row without its key, status or seed (cut short?)")
    return runs


def _scouting(results: Path, profile: str) -> dict[str, str]:
    """Draft -> a line on the regimes scouted for it at this profile: `results/scouting/<claim>_v<n>_<profile>/`
    holds `bnexp-table`'s runs.csv of exploratory runs on tuning seeds (validation split), committed as the
    evidence for the regime a draft was, or could not be, registered in."""
    out = {}
    for folder in sorted((results / "scouting").glob(f"*_v*_{profile}")):
        table = folder / "runs.csv"
        if not table.is_file():
            continue
        runs = _scouted_runs(table)
        swept = [c for c in runs.columns if "." in c and runs[c].nunique() > 1]
        out[folder.name.removesuffix(f"_{profile}")] = (
            f"scouted on tuning seeds before registering: {len(runs)} exploratory runs in "
            f"{runs.groupby(swept).ngroups if swept else 1} cells (arm and regime), varying "
            f"{', '.join(swept) or 'nothing'} "
            f"(`results/scouting/{folder.name}/runs.csv`, `pivot.csv`: validation accuracy by regime)")
    return out


def _drafts(drafts: list, profile: str, scouted: dict[str, str]) -> list[str]:
    """Versions written but not registered, each with its pilot at this profile: a regime whose pilot
    fails is changed before registration, never registered to fail, and this is the measured reason."""
    if not drafts:
        return []
    lines = ["", "## Drafts under their pilots", "",
             "Versions written to be registered once their fidelity guards are expected to hold: each guard "
             "measured on this profile's tuning seeds (validation accuracy standing for test accuracy) and "
             "projected to the first look (`python -m bnexp.method.ledger pilot <claim> <version> --profile "
             f"{profile}`). Nothing here is a verdict."]
    for d in drafts:
        head = f"- **{d.claim.id}** v{d.number} (draft): "
        stale = f" ({d.stale} tuning runs of an earlier regime left out)" if d.stale else ""
        if not d.guards:
            lines.append(head + f"not piloted at this profile: {d.why_not}{stale}")
            continue
        held = all(g.holds for g in d.guards)
        lines.append(head + ("its pilot passes: it can be registered" if held else "its pilot fails: it stays a draft")
                     + stale + "; " + "; ".join(str(g) for g in d.guards))
        lines += [f"  - its plan, from the pilot (mean and spread as measured): {p}" for p in d.parts]
        if f"{d.claim.id}_v{d.number}" in scouted:
            lines.append(f"  - {scouted[f'{d.claim.id}_v{d.number}']}")
    return lines


def _calibration(tuned: dict) -> list[str]:
    """The constants this profile's calibration chose (tuned.json), with what each choice rests on."""
    if not tuned:
        return []
    lines = ["", "## Calibration", "",
             "The constants this profile's protocols use, chosen at this scale before the verdict runs "
             "(`results/<profile>/tuned.json`, recomputed from the `<claim>/tune` rows of `runs.csv` by "
             "`python -m bnexp.calibration`): every arm on the same grid and tuning seeds, scored by mean final "
             "validation accuracy (never test images).", "",
             "| question | rule | chosen | mean validation accuracy over the grid | tuning seeds | runs |",
             "|---|---|---|---|---|---|"]
    for qid, a in tuned.items():
        if a.get("rule") == "target":
            lines.append(f"| {qid} | target | {a['value']:.4g} | {a['fraction']:g} x {a['arm']}'s "
                         f"{a['reference_val_acc']:.3f} ({a['reference']}) | | |")
            continue
        edge = set(a.get("at_grid_edge", ()))
        chosen = ", ".join(f"{arm} {v:g}" + (" (grid's end)" if arm in edge else "") for arm, v in a["values"].items())
        scores = "; ".join(f"{arm}: " + ", ".join(f"{v} {s:.3f}" for v, s in by.items())
                           for arm, by in a["scores"].items())
        lines.append(f"| {qid} | {a['rule']} | {chosen} | {scores} | {', '.join(map(str, a['seeds']))} | "
                     f"{len(a['runs'])} |")
    return lines


def _reference(seq: dict) -> str:
    ref = seq.get("reference_acc")
    return f"{ref:.3f} ({seq.get('reference_arm')})" if ref is not None else "-"


def _cross_scale(scales: dict[str, list[dict]]) -> list[str]:
    """Each experimental claim's headline verdict at every profile with a committed table, beside
    its reference arm's accuracy: does the verdict move toward the paper as training grows?"""
    if len(scales) < 2:
        return []
    profiles = scale_costs.order(scales)
    lines = ["", "## Verdicts across scales", "",
             "The headline verdict of each claim at every profile whose report is committed under `results/` "
             "(read from its `claims.json`), with the accuracy its reference arm reached there and the paper's "
             "numbers.",
             "", "| claim | profile | version | verdict | effect [95% CI] | seeds (looks) | reference arm accuracy | "
             "published |", "|---|---|---|---|---|---|---|---|"]
    claims = dict.fromkeys(c["id"] for p in profiles for c in scales[p])  # a profile may run only some claims
    for claim in claims:
        for p in profiles:
            c = next((x for x in scales[p] if x["id"] == claim), None)
            if c is None or c.get("experiment") is None or not c.get("n_runs_used"):
                continue
            seq = c.get("sequential") or {}
            looks = ", ".join(str(lk["n"]) for lk in seq.get("looks", []))
            ci = f" [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]" if c.get("ci_low") is not None else ""
            lines.append(f"| {claim} | {p} | v{c['version']} | {c['verdict']} | {_fmt(c['effect'])}{ci} | "
                         f"{c['n_seeds'] or '-'}" + (f" ({looks})" if looks else "") + " | "
                         f"{_reference(seq)} | "
                         f"{c['published']} |")
    return lines


def _markdown(profile: str, table: pd.DataFrame, outcomes: list[list[Outcome]], book: ledger.Ledger,
              figures: dict[str, str], tuned: dict | None = None, scales: dict[str, list[dict]] | None = None,
              not_run: list[str] | None = None, drafts: list | None = None,
              scouted: dict[str, str] | None = None, costs: dict[str, dict] | None = None) -> str:
    lines = [*_header(profile, table), "", "In one line each:", ""]
    lines += [_in_words(headline(per_claim)) for per_claim in outcomes]
    elsewhere = {o.claim.id: _unpiloted(per_claim, profile) + scale_costs.elsewhere(o.claim.id, profile, scales or {},
                                                                                  costs or {})
                 for per_claim in outcomes if (o := headline(per_claim)).result.verdict == UNTESTABLE and len(o.used)}
    lines += ["", "| claim | version | verdict | status | effect [95% CI] | unit | seeds | runs used | criterion "
             "| published |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for per_claim in outcomes:
        o = headline(per_claim)
        lines.append(f"| [{o.claim.id}](#{o.claim.id}) | v{o.number} | **{o.result.verdict}** | "
                     f"{_standing(o, profile)} | {_effect(o)} | {o.claim.unit} | {o.result.n_seeds or '-'} | "
                     f"{_runs(o)} | {o.version.criterion} | {o.claim.published} |")
    if not_run:
        lines += ["", f"Not run at this profile (`only` in `configs/profile/{profile}.yaml`): {', '.join(not_run)}; "
                      "their verdicts at the other profiles are in the table below."]
    lines += _cross_scale(scales or {})
    lines += _drafts(drafts or [], profile, scouted or {})
    lines += _calibration(tuned or {})
    lines += _deviations(outcomes, book)
    lines += _elsewhere(elsewhere)
    for per_claim in outcomes:
        lines += _section(per_claim, profile, figures, elsewhere)
    return "\n".join(lines) + "\n"


def _unpiloted(per_claim: list[Outcome], profile: str) -> list[str]:
    """A newer registered version that could decide here but was not piloted at this profile: the step
    before any larger scale."""
    newest = max(per_claim, key=lambda o: o.number)
    if newest.entry is None or newest.version.pilot is None or len(newest.used):
        return []
    piloted = newest.entry.piloted
    if profile in piloted:
        return []
    return [f"`{profile}` itself: {pilot.advice(newest.claim.id, newest.number, profile, piloted)}"]


def _elsewhere(elsewhere: dict[str, list[str]]) -> list[str]:
    """The claims that cannot show at this profile, with what the larger ones say or would cost."""
    if not elsewhere:
        return []
    lines = ["", "## Where the claims that cannot show here could", "",
             "Each claim whose guards fail at this profile, with its verdict at every larger profile that has "
             "run it and, for one not run yet, what its sweeps would cost there, estimated from a few timed "
             "steps of each (`scripts/cost.py --json results/cost/<profile>.json`, committed). An estimate says "
             "what a scale costs, not that the claim will show there: its pilot at that profile decides that.", ""]
    for claim, said in elsewhere.items():
        lines.append(f"- **{claim}**:")
        lines += [f"  - {line}" for line in said]
    return lines


def _deviations(outcomes: list[list[Outcome]], book: ledger.Ledger) -> list[str]:
    lines = ["", "## Deviations", "",
             "Departures from the protocol, oldest first, as recorded in the ledger; where versions are named, "
             "their verdicts are recomputed from this table."]
    by_claim = {per_claim[0].claim.id: {o.number: o for o in per_claim} for per_claim in outcomes}
    for i, d in enumerate(book.deviations, 1):
        where = f"**{d.claim}**" if d.claim else "**protocol**"
        lines += ["", f"{i}. {where}" + (f" (commit {d.commit})" if d.commit else "") + f": {d.text}"]
        for n in d.versions:
            o = by_claim.get(d.claim, {}).get(n)
            if o is not None:
                lines.append(f"   - v{n}: **{o.result.verdict}**, {_effect(o)} ({o.version.criterion})")
    if book.recertifications:  # changes of code that moved no number (python -m bnexp.method.ledger recertify)
        lines += ["", "## Re-certifications", "",
                  "Registered versions whose code changed at a commit without changing any number of their verdicts "
                  "on any committed or hand-made table; the new hash is accepted beside the registered one."]
        for r in book.recertifications:
            lines += ["", f"- **{r.claim}** v{r.version} (commit {r.commit[:10]}, {r.date}): hash {r.replaces} -> "
                          f"{r.hash}, verdicts identical on {r.tables} tables. {r.reason}"]
    if book.added_pilots:  # profiles piloted after registration (python -m bnexp.method.ledger add-pilot)
        lines += ["", "## Pilots added after registration", "",
                  "Registered versions piloted at a further profile after their registration, before their verdict "
                  "runs there: the criterion, seeds and code stay as registered; a verdict at that profile is "
                  "confirmatory only from runs made by code that holds the added pilot."]
        for a in book.added_pilots:
            guards = "; ".join(f"{g['guard']} {g['value']:.4g} (needs {'>=' if g['at_least'] else '<='} "
                               f"{g['threshold']:g}" + (f", projected {g['projected']:.4g}" if g.get("projected")
                                                        is not None else "") + ")" for g in a.guards)
            lines += ["", f"- **{a.claim}** v{a.version} at `{a.profile}` ({a.date}, budget {a.budget}): {guards}. "
                          f"{a.reason}"]
    return lines


def _seeds_used(o: Outcome) -> str:
    """The seeds the verdict read (a sequential verdict: those of its last look), then the registered range."""
    used = []
    if len(o.used):  # the last look's seeds where the verdict names them, else every seed of its rows
        used = o.result.derived.get("seeds") or sorted(int(x) for x in o.used["seed"].unique())
    shown = ", ".join(map(str, used)) or "none"
    if o.entry and o.entry.verdict_seeds:
        shown += f" (registered {o.entry.verdict_seeds[0]}-{o.entry.verdict_seeds[1]})"
    return shown


def _section(per_claim: list[Outcome], profile: str, figures: dict[str, str],
             elsewhere: dict[str, list[str]] | None = None) -> list[str]:
    o = headline(per_claim)
    c, v = o.claim, o.version
    evidence = []
    if v.measure:
        evidence.append("exact check in `bnexp/exact.py`, measured when the table was built (the tests assert "
                        "the same)")
    if v.experiment:
        evidence.append(f"{_runs(o)} runs of `bnexp-train -m experiment={v.experiment} profile={profile}`, "
                        f"seeds {_seeds_used(o)}")
    lines = ["", f"## {c.id}", "", f"**{c.statement}** ({c.source})", "",
             f"- Verdict (v{o.number}): **{o.result.verdict}**, {o.status}"
             + (f" ({'; '.join(o.reasons)})" if o.reasons else ""),
             f"- Criterion: {v.criterion}", f"- Method: {v.method}", f"- Published: {c.published}",
             "- Evidence: " + "; ".join(evidence)]
    lines += [f"- Note: {n}" for n in c.notes]
    lines += [f"- {d}" for d in o.result.detail]
    if c.id in (elsewhere or {}):
        lines.append("- Where it could show: " + "; ".join((elsewhere or {})[c.id]))
    lines += ["", "| version | registered | verdict | effect [95% CI] | status | runs | criterion | why this version |",
              "|---|---|---|---|---|---|---|---|"]
    for h in per_claim:
        lines.append(f"| v{h.number} | {h.registered[:10] if h.registered else 'not committed'} | "
                     f"{h.result.verdict} | {_effect(h)} | {_standing(h, profile)} | {_runs(h)} | "
                     f"{h.version.criterion} | "
                     f"{h.entry.reason if h.entry else 'not registered'} |")
    if c.id in figures:
        lines += ["", f"![{c.id}]({figures[c.id]})"]
    return lines


if __name__ == "__main__":
    from bnexp.files import results_folder

    folder = results_folder("bnexp.report", __doc__, "runs.csv")
    try:
        print(write_report(folder))
    except (InputError, WriteError) as e:  # a table, tuned.json or ledger that is not what made it: one line
        sys.exit(f"report: {e}")
