"""Window columns as the analysis sees them: which columns it analyses, their kinds, encodings."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from monitor.schema import PREDICTION, PROBA_PREFIX, feature_name

Kind = Literal["numerical", "categorical"]
Role = Literal["feature", "prediction", "probability"]
NUMERICAL: Kind = "numerical"
CATEGORICAL: Kind = "categorical"

#: Evidently infers an integer column with this many distinct values or fewer as categorical.
INTEGER_CARDINALITY_LIMIT = 10


@dataclass(frozen=True, slots=True)
class ColumnRef:
    """A window column the analysis looks at: its frame name, result name and role."""

    column: str
    name: str
    role: Role


def analysed_columns(
    frame: pd.DataFrame, *, prediction: bool = True, probabilities: bool = True
) -> list[ColumnRef]:
    """The feature columns of a window-shaped frame, then its prediction and probability ones.

    Result names are the feature name without its prefix, ``prediction`` and ``proba:<class>``.
    """
    refs = [ColumnRef(c, name, "feature") for c in frame.columns if (name := feature_name(c))]
    if prediction and PREDICTION in frame.columns:
        refs.append(ColumnRef(PREDICTION, PREDICTION, "prediction"))
    if probabilities:
        refs.extend(
            ColumnRef(c, c, "probability") for c in frame.columns if c.startswith(PROBA_PREFIX)
        )
    return refs


def infer_kind(series: pd.Series) -> Kind | None:
    """Evidently 0.7's column type inference, except that text is never inferred (it would get
    Evidently's model-based text drift, which this engine does not do): text is categorical.

    None for columns Evidently would not analyse for drift (dates, all-missing objects)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return CATEGORICAL
    if pd.api.types.is_float_dtype(dtype):
        return NUMERICAL
    if pd.api.types.is_integer_dtype(dtype):
        return CATEGORICAL if series.nunique() <= INTEGER_CARDINALITY_LIMIT else NUMERICAL
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return CATEGORICAL if series.notna().any() else None
    return None


def numeric_values(series: pd.Series) -> tuple[np.ndarray, int]:
    """The column as float64 and how many present values were not numbers (text where numbers
    were expected: a node that sent text turns the whole window column into text)."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64), 0
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), 0
    if isinstance(series.dtype, pd.CategoricalDtype):
        # Parse each distinct category once, not each row.
        parsed = pd.to_numeric(pd.Series(series.cat.categories), errors="coerce").to_numpy(
            dtype=np.float64
        )
        codes = series.cat.codes.to_numpy()
        values = np.where(codes >= 0, parsed[np.maximum(codes, 0)], np.nan)
    else:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    unparsed = int(np.count_nonzero(np.isnan(values) & series.notna().to_numpy()))
    return values, unparsed


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The categories of a reference column, each with an index and its reference count."""

    values: tuple[Hashable, ...]
    counts: np.ndarray
    index: Mapping[Hashable, int]

    @classmethod
    def of(cls, series: pd.Series) -> Vocabulary:
        counts = series.value_counts(dropna=True, sort=False)
        counts = counts[counts > 0]
        values = tuple(_plain(v) for v in counts.index.tolist())
        return cls(values, counts.to_numpy(dtype=np.int64), {v: i for i, v in enumerate(values)})

    def encode(self, series: pd.Series) -> tuple[np.ndarray, tuple[Hashable, ...]]:
        """Codes per row (-1 when missing) into this vocabulary extended by the window's new
        categories, and those new categories (only ones that occur)."""
        if isinstance(series.dtype, pd.CategoricalDtype):
            codes = series.cat.codes.to_numpy().astype(np.int64)
            uniques = series.cat.categories.tolist()
            present = np.bincount(codes[codes >= 0], minlength=len(uniques)) > 0
        else:
            codes_raw, unique_index = pd.factorize(series, use_na_sentinel=True)
            codes = codes_raw.astype(np.int64)
            uniques = list(unique_index)
            present = np.ones(len(uniques), dtype=bool)
        lookup = np.full(len(uniques) + 1, -1, dtype=np.int64)
        new: list[Hashable] = []
        for i, value in enumerate(uniques):
            if not present[i]:
                continue
            value = _plain(value)
            found = self.index.get(value)
            if found is None:
                found = len(self.values) + len(new)
                new.append(value)
            lookup[i] = found
        # Missing rows have code -1, which reads lookup's last slot: -1.
        return lookup[codes], tuple(new)


def _plain(value: Any) -> Hashable:
    # numpy scalars to Python ones, so 1, 1.0 and np.int64(1) meet as one key.
    return value.item() if isinstance(value, np.generic) else value
