"""Run records -> the endpoints table, the seam between training (hours) and verdicts (seconds).

    python -m bnexp.endpoints results/quick

writes, beside the report,
    runs.csv        one row per run: identity (experiment, run key, seed, status, code commit, dirty
                    flag, data source), the config values claims group by, every endpoint a claim
                    version reads (its `endpoints(record)`). Small and committed: every verdict
                    can be recomputed from it.
    curves.parquet  the series the figures draw (a claim's `curves(record)`), long form.
    exact.csv       the exact claims' errors, measured when the table is built.
Rows already in runs.csv whose run is not on this machine are kept: the committed table is the
evidence, and a sweep only adds runs to it or replaces a run by its own re-run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bnexp import records
from bnexp.claims import all_claims
from bnexp.config import pilots
from bnexp.files import InputError, WriteError, write_atomic
from bnexp.run import committed
from bnexp.table import CONFIG_COLUMNS, CURVES, EXACT, ID, RUNS, SUMMARY_COLUMNS, empty, read_runs


def _versions_by_experiment() -> dict[str, list]:
    """experiment -> the versions whose endpoints its rows carry: a version's own experiment, and
    its claim's pilot sweeps for a version that declares a pilot (its pilot rows are shaped like
    its verdict's rows)."""
    out: dict[str, list] = {}
    piloted = pilots()
    for claim in all_claims():
        for version in claim.versions.values():
            if version.experiment and version.endpoints:
                out.setdefault(version.experiment, []).append(version)
                if version.pilot is not None:
                    for sweep in (s for s in piloted if s.split("/")[0] == claim.id):
                        out.setdefault(sweep, []).append(version)
    return out


def row(rec: records.Record, versions: list) -> dict:
    """One run's row: identity, config values, and the endpoints of every version reading it."""
    r = {"experiment": rec.experiment, "key": rec.key} | {c: rec.summary.get(c) for c in SUMMARY_COLUMNS}
    try:
        r["config_key"] = records.config_key(records.read_config(rec.dir), rec.summary.get("data_source"))
    except Exception:  # the config of a run refused before it started may not resolve
        r["config_key"] = None
    r |= {f"choice_{k}": v for k, v in sorted(rec.summary.get("choices", {}).items()) if not k.startswith("hydra")}
    r |= {column: rec.value(dotted) for dotted, column in CONFIG_COLUMNS.items()}
    if r["status"] == "failed":
        return r  # a crash has no endpoints; it is counted, never used
    for version in versions:
        try:
            values = version.endpoints(rec)
        except Exception as e:
            raise RuntimeError(f"{rec.dir}: endpoints failed: {type(e).__name__}: {e}") from e
        for name, value in values.items():
            if name in r and r[name] != value and not (pd.isna(r[name]) and pd.isna(value)):
                raise RuntimeError(f"{rec.dir}: two claim versions disagree on endpoint `{name}`")
            r[name] = value
    return r


def _curves(rec: records.Record) -> list[pd.DataFrame]:
    parts = []
    for claim in all_claims():
        if claim.curves and any(v.experiment == rec.experiment for v in claim.versions.values()):
            parts.append(claim.curves(rec).assign(experiment=rec.experiment, key=rec.key))
    return parts


def measure_exact() -> pd.DataFrame:
    rows = [{"claim": c.id, "version": n, "quantity": k, "value": float(v)}
            for c in all_claims() for n, version in c.versions.items() if version.measure
            for k, v in version.measure().items()]
    return pd.DataFrame(rows, columns=["claim", "version", "quantity", "value"])


def build(results: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table and the curves of every complete run under results/runs/<experiment>/."""
    by_experiment = _versions_by_experiment()
    rows, curves = [], []
    for run_dir in records.find_runs(Path(results) / "runs"):
        rec = records.Record(run_dir)
        rows.append(row(rec, by_experiment.get(rec.experiment, [])))
        if rec.summary["status"] != "failed":
            curves += _curves(rec)
    table = pd.DataFrame(rows)
    curve_table = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(
        columns=["name", "step", "value", "experiment", "key"])
    return table, curve_table[["experiment", "key", "name", "step", "value"]]


def _merge(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    """New rows, and old rows of runs the new table does not have."""
    if old.empty:
        return new
    if new.empty:
        return old
    kept = old[~old.set_index(ID).index.isin(new.set_index(ID).index)]
    return pd.concat([new, kept], ignore_index=True)


def _adopt(table: pd.DataFrame, runs: Path) -> pd.DataFrame:
    """Rows written before the table had config keys, found since by a job's config values
    (bnexp.run.committed.find), get that job's config key: a later job finds them by it."""
    marks = [m for m in map(committed.marked, sorted(p.parent for p in runs.rglob(committed.MARK)))
             if m and m.get("config_key")]
    if not marks or table.empty:
        return table
    table = table.copy()
    if "config_key" not in table:
        table["config_key"] = None
    table["config_key"] = table["config_key"].astype(object)
    for m in marks:
        at = (table["experiment"] == m["experiment"]) & (table["key"] == m["key"]) & table["config_key"].isna()
        table.loc[at, "config_key"] = m["config_key"]
    return table


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in (*ID, *SUMMARY_COLUMNS) if c in table]
    choices = sorted(c for c in table if c.startswith("choice_"))
    config = [c for c in CONFIG_COLUMNS.values() if c in table]
    rest = sorted(set(table) - set(first) - set(choices) - set(config))
    return table[first + choices + config + rest].sort_values(ID, kind="stable").reset_index(drop=True)


def write(results: Path | str) -> Path:
    """Build from the runs on disk, merge with the committed table, write all three files."""
    results = Path(results)
    table, curves = build(results)
    if (results / RUNS).is_file():
        old_table, old_curves = read(results)[:2]
        table = _merge(table, old_table)
        curves = _merge(curves, old_curves)
    table = _adopt(table, results / "runs")
    results.mkdir(parents=True, exist_ok=True)
    write_atomic(results / RUNS, lambda p: _ordered(table).to_csv(p, index=False))
    write_atomic(results / CURVES, lambda p: curves.sort_values([*ID, "name", "step"], kind="stable")
                 .reset_index(drop=True).to_parquet(p, index=False))
    write_atomic(results / EXACT, lambda p: measure_exact().to_csv(p, index=False))
    return results / RUNS


def read(results: Path | str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(table, curves, exact) as committed; empty frames where a file is absent."""
    results = Path(results)
    table = read_runs(results / RUNS) if (results / RUNS).is_file() else empty()
    curves = pd.read_parquet(results / CURVES) if (results / CURVES).is_file() else pd.DataFrame(
        columns=[*ID, "name", "step", "value"])
    exact = pd.read_csv(results / EXACT) if (results / EXACT).is_file() else pd.DataFrame(
        columns=["claim", "version", "quantity", "value"])
    return table, curves, exact


if __name__ == "__main__":
    from bnexp.files import results_folder

    folder = results_folder("bnexp.endpoints", __doc__, "runs")
    try:
        print(write(folder))
    except (InputError, WriteError) as e:
        sys.exit(f"endpoints: {e}")
