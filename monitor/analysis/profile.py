"""Reference profiles: what every window of a model version is compared with, computed once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitor.analysis.columns import (
    NUMERICAL,
    ColumnRef,
    Kind,
    Role,
    Vocabulary,
    analysed_columns,
    infer_kind,
    numeric_values,
)
from monitor.analysis.spec import DriftSpec

#: Numerical columns with at most this many distinct reference values keep their value counts:
#: Evidently's Jensen-Shannon counts values instead of binning them below this cardinality.
DISCRETE_LIMIT = 20


@dataclass(frozen=True, eq=False, slots=True)
class NumericReference:
    """A numerical reference column: sorted present values and what the statistics reuse."""

    #: Finite values, ascending (Evidently drops missing and infinite values before testing).
    sorted: np.ndarray
    mean: float
    #: Evidently's Wasserstein norm: ``max(std(reference), 0.001)`` (population std).
    norm: float
    #: ``(sorted - mean) / norm`` with a trailing 0, and its prefix sums from 0: the integral of
    #: the reference quantile function at any point is O(1) from these.
    scaled: np.ndarray
    prefix: np.ndarray
    n_unique: int
    #: Distinct values and counts when ``n_unique <= DISCRETE_LIMIT``, else None.
    uniques: np.ndarray | None
    unique_counts: np.ndarray | None

    @classmethod
    def of(cls, values: np.ndarray) -> NumericReference:
        data = np.sort(values[np.isfinite(values)])
        n = data.size
        mean = float(data.mean()) if n else 0.0
        norm = max(float(np.std(data)), 0.001) if n else 1.0
        scaled = np.empty(n + 1)
        np.subtract(data, mean, out=scaled[:n])
        scaled[:n] /= norm
        scaled[n] = 0.0
        prefix = np.zeros(n + 1)
        np.cumsum(scaled[:n], out=prefix[1:])
        change = np.flatnonzero(np.diff(data)) + 1
        n_unique = int(change.size + 1) if n else 0
        uniques = counts = None
        if n_unique <= DISCRETE_LIMIT:
            starts = np.concatenate([[0], change]).astype(np.int64)
            uniques = data[starts] if n else np.empty(0)
            counts = np.diff(np.append(starts, n)) if n else np.empty(0, np.int64)
        return cls(data, mean, norm, scaled, prefix, n_unique, uniques, counts)

    @property
    def n(self) -> int:
        return int(self.sorted.size)


@dataclass(frozen=True, eq=False, slots=True)
class ColumnProfile:
    """One analysed column of the reference: kind, overrides and precomputed distribution."""

    column: str
    name: str
    role: Role
    kind: Kind
    #: The spec's method and threshold for this column, or None for Evidently's defaults.
    method: str | None
    threshold: float | None
    #: Present (non-missing, finite) reference values.
    n: int
    n_missing: int
    numeric: NumericReference | None
    vocabulary: Vocabulary | None


@dataclass(frozen=True, eq=False, slots=True)
class ReferenceProfile:
    """The reference data of a model version reduced to what drift and quality need.

    Build it once per model version (``ReferenceProfile.build``) and pass it to every window's
    analysis; it holds no reference rows beyond one sorted array per numerical column."""

    columns: tuple[ColumnProfile, ...]
    n_rows: int
    spec: DriftSpec
    #: Columns left out and why (a type Evidently does not analyse for drift).
    skipped: tuple[tuple[str, str], ...]

    @classmethod
    def build(cls, reference: pd.DataFrame, spec: DriftSpec | None = None) -> ReferenceProfile:
        """Profile a reference frame shaped like a window (``feature:<name>`` columns,
        ``prediction``, ``proba:<class>``)."""
        spec = spec or DriftSpec()
        refs = analysed_columns(
            reference, prediction=spec.prediction, probabilities=spec.probabilities
        )
        columns: list[ColumnProfile] = []
        skipped: list[tuple[str, str]] = []
        for ref in refs:
            series = reference[ref.column]
            kind = spec.kinds.get(ref.name) or infer_kind(series)
            if kind is None:
                skipped.append((ref.name, f"unsupported type {series.dtype}"))
                continue
            columns.append(_column_profile(ref, series, kind, spec))
        unknown = set(spec.methods) | set(spec.thresholds) | set(spec.kinds)
        unknown -= {c.name for c in columns} | {name for name, _ in skipped}
        if unknown:
            raise ValueError(f"the drift spec names columns the reference lacks: {sorted(unknown)}")
        return cls(tuple(columns), len(reference), spec, tuple(skipped))

    @property
    def nbytes(self) -> int:
        """Memory held by the profile's arrays (about 24 bytes per numerical reference value)."""
        total = 0
        for column in self.columns:
            if column.numeric is not None:
                numeric = column.numeric
                total += numeric.sorted.nbytes + numeric.scaled.nbytes + numeric.prefix.nbytes
            if column.vocabulary is not None:
                total += column.vocabulary.counts.nbytes
        return total

    def column(self, name: str) -> ColumnProfile:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


def _column_profile(
    ref: ColumnRef, series: pd.Series, kind: Kind, spec: DriftSpec
) -> ColumnProfile:
    method = spec.method_for(ref.name, kind)
    threshold = spec.thresholds.get(ref.name)
    if kind == NUMERICAL:
        values, _ = numeric_values(series)
        numeric = NumericReference.of(values)
        return ColumnProfile(
            ref.column,
            ref.name,
            ref.role,
            kind,
            method,
            threshold,
            numeric.n,
            len(series) - numeric.n,
            numeric,
            None,
        )
    vocabulary = Vocabulary.of(series)
    n = int(vocabulary.counts.sum())
    return ColumnProfile(
        ref.column,
        ref.name,
        ref.role,
        kind,
        method,
        threshold,
        n,
        len(series) - n,
        None,
        vocabulary,
    )
