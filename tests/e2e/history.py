"""A model of one's own, with its data: a reference file and a year of history with a known shift.

The model (a compressor's fault classifier run anywhere, not in our runtime) sees four inputs:
``temperature`` and ``vibration`` (numbers), ``machine_type`` (text) and ``error_code`` (an
integer code, a category, with more than ten values). From ``SHIFT_FROM`` on, ``temperature``
reads ``SHIFT`` degrees hotter on every node (a recalibrated sensor); nothing else moves. Every
row has a label, and the prediction is right about four times in five.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

YEAR = 2025
SHIFT_FROM = datetime(YEAR, 7, 1, tzinfo=UTC)
#: Degrees: far past the drift threshold (the reference's spread is ~4 degrees).
SHIFT = 9.0
NODES = ("press-01", "press-02", "press-03")
MACHINES = ("compressor", "fan", "pump")


@dataclass(frozen=True)
class History:
    """The files written, and the history as a frame (for computing what to expect)."""

    reference: Path
    history: Path
    frame: pd.DataFrame


def rows(rng: np.random.Generator, n: int, shifted: np.ndarray | bool) -> pd.DataFrame:
    temperature = rng.normal(60.0, 4.0, n) + np.where(shifted, SHIFT, 0.0)
    vibration = rng.gamma(4.0, 0.5, n)
    machine = rng.choice(MACHINES, n, p=[0.5, 0.3, 0.2])
    error_code = rng.integers(0, 24, n)
    truth = np.where(rng.random(n) < 0.2, "fail", "ok")
    right = rng.random(n) < 0.8
    prediction = np.where(right, truth, np.where(truth == "ok", "fail", "ok"))
    return pd.DataFrame(
        {
            "temperature": temperature.round(2),
            "vibration": vibration.round(3),
            "machine_type": machine,
            "error_code": error_code,
            "prediction": prediction,
            "label": truth,
        }
    )


def write(directory: Path, *, rows_per_month: int = 900, seed: int = 7) -> History:
    """``reference.csv`` (2,000 rows as the model was trained on) and ``history.parquet`` (a
    year, ``rows_per_month`` per month spread over the nodes, with node, ts and request id)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    reference = rows(rng, 2000, False)
    reference_path = directory / "reference.csv"
    reference.to_csv(reference_path, index=False)
    months = []
    for month in range(1, 13):
        start = pd.Timestamp(datetime(YEAR, month, 1, tzinfo=UTC))
        end = start + pd.offsets.MonthBegin(1)
        seconds = np.sort(rng.uniform(0, (end - start).total_seconds(), rows_per_month))
        ts = start + pd.to_timedelta(seconds, unit="s")
        part = rows(rng, rows_per_month, bool(start >= pd.Timestamp(SHIFT_FROM)))
        part.insert(0, "ts", ts.floor("ms"))
        part.insert(1, "node", rng.choice(NODES, rows_per_month))
        months.append(part)
    frame = pd.concat(months, ignore_index=True)
    frame.insert(2, "request_id", [f"r{i:06d}" for i in range(len(frame))])
    history_path = directory / "history.parquet"
    frame.to_parquet(history_path, index=False)
    return History(reference_path, history_path, frame)
