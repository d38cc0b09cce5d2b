"""results/<profile>/{REPORT.md, claims.json, figures/*.png} from the runs under results/<profile>/runs.

    python -m bnexp.report results/quick
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from bnexp.analysis import load_runs
from bnexp.claims import CLAIMS, Claim, Result
from bnexp.figures import FIGURES


def _num(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.3g}"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def evaluate(runs: pd.DataFrame) -> list[tuple[Claim, Result]]:
    return [(c, c.evaluate(runs)) for c in CLAIMS]


def draw(runs: pd.DataFrame, figures: Path) -> dict[str, str]:
    """Draw every experiment's figure that has runs; returns claim id -> file name."""
    figures.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for name, draw_one in FIGURES.items():
        r = runs[runs["experiment"] == name] if len(runs) else runs
        if r.empty:
            continue
        fig = draw_one(r)
        fig.savefig(figures / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        drawn[name] = f"figures/{name}.png"
    return drawn


def write_report(out: Path | str, profile: str | None = None) -> Path:
    out = Path(out)
    profile = profile or out.name
    runs = load_runs(out)
    results = evaluate(runs)
    figures = draw(runs, out / "figures")
    claims_json = [{"id": c.id, "verdict": r.verdict, "effect": _num(r.effect), "ci_low": _num(r.ci_low),
                    "ci_high": _num(r.ci_high), "n_seeds": r.n_seeds, "unit": c.unit, "criterion": c.criterion,
                    "experiment": c.experiment, "published": c.published, "detail": r.detail}
                   for c, r in results]
    _write(out / "claims.json", json.dumps(claims_json, indent=2) + "\n")
    _write(out / "REPORT.md", _markdown(profile, runs, results, figures))
    return out / "REPORT.md"


def _markdown(profile: str, runs: pd.DataFrame, results: list[tuple[Claim, Result]], figures: dict[str, str]) -> str:
    n = len(runs)
    status = runs["status"].value_counts().to_dict() if n else {}
    commits = sorted(set(runs["git_commit"].dropna())) if n else []
    data = sorted(set(runs["data_source"].dropna())) if n else []
    lines = [f"# bnexp report: `{profile}` profile", "",
             f"{n} runs ({', '.join(f'{v} {k}' for k, v in status.items()) or 'none'}), "
             f"{runs['train_s'].sum() / 60:.0f} min of training summed over runs"
             + (f" on {runs['device'].iloc[0]}" if n else "")
             + f". Code: {', '.join(c[:10] for c in commits) or 'unknown'}. Data: {'; '.join(data) or 'unknown'}.",
             "", "Effects are means over seeds with 95% t-intervals (geometric for ratios). Criteria were fixed "
             "in `bnexp/claims.py` before the runs. No sweep uses learning-rate warm-up.", "",
             "| claim | verdict | effect [95% CI] | unit | seeds | criterion | published |",
             "|---|---|---|---|---|---|---|"]
    for c, r in results:
        ci = f" [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if r.ci_low is not None else ""
        lines.append(f"| [{c.id}](#{c.id}) | **{r.verdict}** | {_fmt(r.effect)}{ci} | {c.unit} | "
                     f"{r.n_seeds or '-'} | {c.criterion} | {c.published} |")
    for c, r in results:
        lines += ["", f"## {c.id}", "", f"**{c.statement}** ({c.source})", "",
                  f"- Verdict: **{r.verdict}**", f"- Criterion: {c.criterion}",
                  f"- Published: {c.published}",
                  "- Experiment: " + (f"`bnexp-train -m experiment={c.experiment} profile={profile}`"
                                       if c.experiment else "exact check in `bnexp/exact.py` (also run by the tests)")]
        lines += [f"- {d}" for d in r.detail]
        figure = c.figure or c.experiment
        if figure in figures:
            lines += ["", f"![{c.id}]({figures[figure]})"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(write_report(sys.argv[1]))
