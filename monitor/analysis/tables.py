"""Result objects of one window: columnar tables of ``monitor.schema`` rows, with row lookup."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd

from monitor.schema import FLEET, FLEET_KEY, ResultTable, fields_of

S = TypeVar("S")
F = TypeVar("F")


@dataclass(frozen=True, eq=False)
class ScopedResult(Generic[S, F]):
    """A kind's result: one row per scope (``scope_table``) and, for kinds judged per feature,
    one row per (scope, feature) (``feature_table``), both as columns."""

    scope_table: ResultTable[S]
    feature_table: ResultTable[F]

    @cached_property
    def scopes(self) -> list[S]:
        """Every scope's row, the fleet first."""
        return self.scope_table.rows()

    @cached_property
    def rows(self) -> list[F]:
        """Every (scope, feature) row."""
        return self.feature_table.rows()

    def scope(self, scope_kind: str = FLEET, scope_key: str = FLEET_KEY) -> S:
        """One scope's row (the fleet's by default)."""
        return self._scopes_by_key[(scope_kind, scope_key)]

    def feature_row(self, feature: str, scope_kind: str = FLEET, scope_key: str = FLEET_KEY) -> F:
        """One feature's row at one scope (the fleet by default)."""
        return self._rows_by_key[(feature, scope_kind, scope_key)]

    def to_frame(self) -> pd.DataFrame:
        """The (scope, feature) rows as a DataFrame, one column per schema field."""
        return table_frame(self.feature_table)

    @cached_property
    def _scopes_by_key(self) -> dict[tuple[str, str], S]:
        return {(s.scope_kind, s.scope_key): s for s in self.scopes}  # type: ignore[attr-defined]

    @cached_property
    def _rows_by_key(self) -> dict[tuple[str, str, str], F]:
        return {(r.feature, r.scope_kind, r.scope_key): r for r in self.rows}  # type: ignore[attr-defined]


def table_frame(table: ResultTable[Any]) -> pd.DataFrame:
    """A result table as a DataFrame (NaN where a float is missing, None elsewhere)."""
    return pd.DataFrame(
        {
            name: list(values) if _objects(values) else values
            for name, values in table.columns.items()
        }
    )


def _objects(values: Any) -> bool:
    return getattr(values, "dtype", None) is None


def nullable(mask: np.ndarray, values: Any) -> np.ndarray:
    """``values`` where ``mask`` holds and None elsewhere, as an object array of plain Python
    values (a verdict that was not given is None, not False)."""
    out = np.full(len(mask), None, dtype=object)
    out[mask] = np.asarray(values).astype(object)[mask]
    return out


class FeatureRows(Generic[F]):
    """(scope, feature) rows built a column at a time: each analysed column adds one array per
    field, with a value for every scope of the window."""

    def __init__(self, row_type: type[F], kinds: np.ndarray, keys: np.ndarray) -> None:
        self.row_type = row_type
        self.kinds = kinds
        self.keys = keys
        self.parts: dict[str, list[np.ndarray]] = {f.name: [] for f in fields_of(row_type)}

    def add(self, feature: str, role: str, column_kind: str, **values: Any) -> None:
        """One column's figures at every scope (arrays of one value per scope)."""
        size = len(self.kinds)
        identity = {
            "scope_kind": self.kinds,
            "scope_key": self.keys,
            "feature": np.full(size, feature, dtype=object),
            "role": np.full(size, role, dtype=object),
            "column_kind": np.full(size, column_kind, dtype=object),
        }
        for name, parts in self.parts.items():
            parts.append(identity[name] if name in identity else values[name])

    def add_row(self, **values: Any) -> None:
        """A single row (every field given)."""
        for name, parts in self.parts.items():
            parts.append(np.array([values[name]], dtype=object))

    def table(self) -> ResultTable[F]:
        return ResultTable(
            self.row_type,
            {
                name: np.concatenate(arrays) if arrays else np.empty(0, dtype=object)
                for name, arrays in self.parts.items()
            },
        )
