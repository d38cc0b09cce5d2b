"""Any folder of run records -> a table, a pivot and figures: a researcher's own runs and sweeps,
with no claim, profile or experiment needed.

    bnexp-table results/runs/multirun/sweep-842e13b1            # -> <folder>/table/
    bnexp-table <folder> --metric val_acc --x optim.lr --hue model.norm
    bnexp-table <folder> --run <one run's folder>                # that run's curves too

Writes, in `--out` (default <folder>/table/):

    runs.csv    one row per record (failed ones included, with their reason): the endpoints table's
                columns (bnexp/table.py: identity, status, seed, final accuracies, speed, provenance)
                and every config value that differs between the records (the swept keys), by its
                dotted name (`optim.lr`)
    pivot.csv   the swept keys (the seed apart) against the metric: runs, mean, sd and the 95%
                t-interval over seeds (completed and diverged runs; a failed run is no result)
    sweep.png   the metric against `--x` (default: the swept key with the most values), one line
                per value of `--hue` (default: the next swept key), seeds aggregated with 95% intervals
    run-<key>.png  with `--run`: accuracy (train, validation, test) and loss by epoch, the global
                gradient norm and every layer's, the layers coloured in depth order

A folder with no record is refused in one line (exit 2); nothing is written then.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bnexp import endpoints, records
from bnexp.method.stats import t_interval
from bnexp.table import RESULTS

# Config entries that never tell two runs' computations apart (records.KEY_EXCLUDES) or are the seed.
IDLE = ("hydra", "profile", "dataset.root", "results", "threads", "train.progress", "logger", "name", "seed",
        "device", "train.cudnn_benchmark", "train.jobs_per_device")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out |= _flat(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: str(node) if isinstance(node, list) else node}


def table(folder: Path) -> pd.DataFrame:
    """One row per record under `folder`: the endpoints table's columns, then the swept keys."""
    rows, configs = [], []
    for d in sorted({s.parent for s in Path(folder).rglob(records.SUMMARY)}):
        if not records.is_complete(d):
            continue
        rec = records.Record(d)
        rows.append(endpoints.row(rec, []) | {"folder": str(d.relative_to(folder)) if d != folder else "."})
        configs.append({k: v for k, v in _flat(rec.config).items() if not k.startswith(IDLE)})
    if not rows:
        return pd.DataFrame()
    flat = pd.DataFrame(configs)
    swept = [c for c in flat.columns if flat[c].astype(str).nunique() > 1]
    return pd.concat([pd.DataFrame(rows), flat[swept]], axis=1)


def swept(t: pd.DataFrame) -> list[str]:
    """What differs between the records: the config-group choices (`choice_arm`, `choice_model`) and
    the config keys (dotted names, in config order)."""
    choices = [c for c in t.columns if c.startswith("choice_") and c not in ("choice_experiment", "choice_profile",
                                                                             "choice_logger")
               and t[c].astype(str).nunique() > 1]
    return choices + [c for c in t.columns if "." in c]


def pivot(t: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The swept keys against `metric`: runs, mean, sd and the 95% t-interval over seeds."""
    keys = swept(t)
    results = t[t["status"].isin(RESULTS)]
    if not keys:
        results = results.assign(all="all")
        keys = ["all"]
    out = []
    for values, group in results.groupby(keys, dropna=False, sort=True):
        est = t_interval(group[metric].astype(float))
        values = values if isinstance(values, tuple) else (values,)
        out.append(dict(zip(keys, values, strict=True)) | {
            "runs": len(group), "seeds": group["seed"].nunique(), f"{metric}_mean": est.mean,
            f"{metric}_sd": float(group[metric].astype(float).std(ddof=1)) if len(group) > 1 else math.nan,
            "ci_low": est.low, "ci_high": est.high})
    return pd.DataFrame(out)


def _numeric(s: pd.Series) -> bool:
    return pd.to_numeric(s, errors="coerce").notna().all()


def plot_sweep(t: pd.DataFrame, metric: str, x: str | None = None, hue: str | None = None) -> plt.Figure:
    """`metric` against `x`, one line per `hue`, seeds aggregated (mean and 95% interval)."""
    keys = swept(t)
    x = x or max(keys, key=lambda k: t[k].nunique(), default=None)
    hue = hue or next((k for k in keys if k != x), None)
    t = t[t["status"].isin(RESULTS)].copy()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if x is None:
        sns.pointplot(t, y=metric, errorbar=("ci", 95), seed=0, ax=ax)
        ax.set(title=f"{metric}: {len(t)} runs, nothing swept")
        return fig
    numeric = _numeric(t[x])
    if numeric:
        t[x] = pd.to_numeric(t[x])
    if hue is not None:
        t[hue] = t[hue].astype(str)
    sns.lineplot(t, x=x, y=metric, hue=hue, marker="o", errorbar=("ci", 95), seed=0, ax=ax)
    if numeric and (t[x] > 0).all() and t[x].max() / t[x].min() >= 10:
        ax.set_xscale("log")
    ax.set(xlabel=x, ylabel=metric, title=f"{metric} against {x} ({t['seed'].nunique()} seeds, 95% intervals)")
    return fig


def plot_run(run_dir: Path) -> plt.Figure:
    """One run's curves: accuracy and loss by epoch, global and per-layer gradient norms (depth order)."""
    m = records.read_metrics(run_dir)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for split, style in (("train", "-"), ("val", "--"), ("test", ":")):
        for ax, what in zip(axes[:2], ("acc", "loss"), strict=True):
            rows = m[m["name"] == f"{split}/{what}"].sort_values("step")
            if len(rows):
                ax.plot(rows["epoch"], rows["value"], style, marker="." if len(rows) < 30 else None, label=split)
    axes[0].set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    axes[1].set(xlabel="epoch", ylabel="loss", title="loss")
    layers = m[m["name"].str.startswith("grad_norm/")]
    order = list(dict.fromkeys(layers["name"]))  # as logged: the net's own order, input first
    colours = sns.color_palette("viridis", len(order)) if order else []
    for name, colour in zip(order, colours, strict=True):
        rows = layers[layers["name"] == name].sort_values("step")
        axes[2].plot(rows["epoch"], rows["value"], color=colour, lw=0.8)
    total = m[m["name"] == "grad_norm"].sort_values("step")
    if len(total):
        axes[2].plot(total["epoch"], total["value"], color="black", lw=1.5, label="global")
    if order:
        axes[2].plot([], [], color=colours[0], label=f"first layer ({order[0][10:]})")
        axes[2].plot([], [], color=colours[-1], label=f"last layer ({order[-1][10:]})")
    axes[2].set(xlabel="epoch", ylabel="gradient norm", yscale="log",
                title=f"gradient norms: global and {len(order)} layers (input dark, output light)")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    summary = records.read_summary(run_dir)
    fig.suptitle(f"{run_dir.name}: {summary.get('status')}, test accuracy {summary.get('test_acc')}", fontsize=10)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bnexp-table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="any folder holding run records (searched recursively)")
    p.add_argument("--out", type=Path, help="where the table and figures go (default: <folder>/table)")
    p.add_argument("--metric", default="test_acc", help="a column of runs.csv (default: test_acc)")
    p.add_argument("--x", help="the swept key on the sweep figure's x axis (a dotted config key)")
    p.add_argument("--hue", help="the swept key that tells its lines apart")
    p.add_argument("--run", type=Path, help="also draw this run's curves (a record's folder)")
    a = p.parse_args(argv)
    if not a.folder.is_dir():
        p.exit(2, f"bnexp-table: {a.folder} is not a folder\n")
    t = table(a.folder)
    if t.empty:
        p.exit(2, f"bnexp-table: {a.folder} holds no complete run record (a summary.json in a run's folder)\n")
    if a.metric not in t:
        p.exit(2, f"bnexp-table: --metric {a.metric} is not a column; try one of test_acc, val_acc, train_acc, "
                  "best_test_acc, train_s, images_per_s\n")
    for key in (a.x, a.hue):
        if key is not None and key not in swept(t):
            p.exit(2, f"bnexp-table: {key} does not differ between these runs; "
                      f"swept: {', '.join(swept(t)) or 'none'}\n")
    if a.run is not None and not records.is_complete(a.run):
        p.exit(2, f"bnexp-table: --run {a.run} is not a complete run record\n")
    out = a.out or a.folder / "table"
    out.mkdir(parents=True, exist_ok=True)
    t.to_csv(out / "runs.csv", index=False)
    pv = pivot(t, a.metric)
    pv.to_csv(out / "pivot.csv", index=False)
    written = [out / "runs.csv", out / "pivot.csv"]
    fig = plot_sweep(t, a.metric, a.x, a.hue)
    fig.savefig(out / "sweep.png", dpi=120, bbox_inches="tight")
    written.append(out / "sweep.png")
    if a.run is not None:
        fig = plot_run(a.run)
        fig.savefig(out / f"run-{a.run.name}.png", dpi=120, bbox_inches="tight")
        written.append(out / f"run-{a.run.name}.png")
    counts = t["status"].value_counts().to_dict()
    print(f"{len(t)} records ({', '.join(f'{n} {s}' for s, n in counts.items())}); swept: "
          f"{', '.join(swept(t)) or 'nothing'}", file=sys.stderr)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(pv.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("wrote " + ", ".join(str(w) for w in written), file=sys.stderr)


if __name__ == "__main__":
    main()
