"""What several claims read off a run record or the table: final accuracy, the arm, the images
behind each BN statistic, rows by value."""

from __future__ import annotations

import pandas as pd

from bnexp.config import num_classes
from bnexp.records import Record


def final_acc(rec: Record) -> float:
    """Final test accuracy; a diverged run ends where it was (at chance if never evaluated)."""
    acc = rec.summary.get("test_acc")
    return float(acc) if acc is not None else 1 / num_classes(rec.config["dataset"])


def arm(rec: Record) -> str | None:
    """The arm's short name (`small_batch/gn` -> `gn`), for experiments with arms."""
    choice = rec.summary.get("choices", {}).get("arm")
    return choice.split("/")[-1] if choice else None


def images_per_statistic(rec: Record) -> int:
    """Images behind each BN statistic: the batch size, or ghost BN's virtual batch."""
    m = rec.config["model"]
    return int(m["virtual_batch"] if m["norm"] == "ghost_batch" else rec.config["train"]["batch_size"])


def rows(table: pd.DataFrame, **where) -> pd.DataFrame:
    """The rows whose columns equal the given values (floats compared with a tolerance)."""
    mask = pd.Series(True, index=table.index)
    for column, value in where.items():
        col = table[column]
        mask &= (col - value).abs() <= 1e-12 * max(abs(value), 1) if isinstance(value, float) else col == value
    return table[mask]
