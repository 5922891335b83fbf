"""Scopes: the fleet and every group and node a window's rows belong to, as integer codes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitor.schema import FLEET, FLEET_KEY


@dataclass(frozen=True, eq=False, slots=True)
class ScopeKind:
    """One way of cutting the window: a code per row into ``keys`` (-1: in no scope)."""

    name: str
    codes: np.ndarray
    keys: tuple[str, ...]
    #: The codes with -1 replaced by ``size``, an extra scope whose figures are dropped: counts
    #: per scope are then one ``bincount`` with no masking.
    bins: np.ndarray
    #: ``bins`` as uint16 when they fit: numpy sorts 16-bit integers stably by radix sort.
    sort_codes: np.ndarray

    @classmethod
    def of(cls, name: str, codes: np.ndarray, keys: tuple[str, ...]) -> ScopeKind:
        bins = np.where(codes < 0, len(keys), codes).astype(np.intp)
        sort_codes = bins.astype(np.uint16) if len(keys) < 65_535 else bins
        return cls(name, codes, keys, bins, sort_codes)

    def count(self, weights: np.ndarray | None = None) -> np.ndarray:
        """Rows (or the sum of ``weights``) per scope."""
        return np.bincount(self.bins, weights, minlength=self.size + 1)[: self.size]

    @property
    def size(self) -> int:
        return len(self.keys)


@dataclass(frozen=True, eq=False, slots=True)
class CellMap:
    """How one scope kind is made of cells: cells sorted by their scope, where each scope's run
    starts, and which scope each run is (runs of cells in no scope of the kind are dropped)."""

    order: np.ndarray
    starts: np.ndarray
    scopes: np.ndarray
    size: int

    @classmethod
    def of(cls, cell_bins: np.ndarray, size: int) -> CellMap:
        order = np.argsort(cell_bins, kind="stable")
        ordered = cell_bins[order]
        starts = np.flatnonzero(np.diff(ordered, prepend=-1))
        return cls(order, starts, ordered[starts], size)

    def sum(self, per_cell: np.ndarray) -> np.ndarray:
        """Per-cell figures (first axis) summed per scope of the kind."""
        out = np.zeros((self.size + 1, *per_cell.shape[1:]), dtype=per_cell.dtype)
        if self.starts.size:
            out[self.scopes] = np.add.reduceat(per_cell[self.order], self.starts, axis=0)
        return out[: self.size]

    def reduce(self, ufunc: np.ufunc, per_cell: np.ndarray, empty: float) -> np.ndarray:
        """Per-cell values reduced per scope with ``ufunc`` (``empty`` where a scope has none)."""
        out = np.full(self.size + 1, empty, dtype=np.float64)
        if self.starts.size:
            out[self.scopes] = ufunc.reduceat(per_cell[self.order], self.starts)
        return out[: self.size]


@dataclass(frozen=True, eq=False, slots=True)
class ScopeSet:
    """All scopes of one window; the fleet first, then each kind's keys in sorted order.

    ``offsets[i]`` is where kind ``i``'s scopes start in the flat scope numbering.

    Rows that belong to the same scope of every kind (in a fleet: the rows of one node) form
    one *cell*. Counting per cell takes one pass over the rows; each kind's counts are then
    sums over its cells (``cell_maps``), thousands of values instead of a million rows."""

    n_rows: int
    kinds: tuple[ScopeKind, ...]
    offsets: tuple[int, ...]
    #: The cell of each row, and each kind's map from cells to its scopes.
    cells: np.ndarray
    n_cells: int
    cell_maps: tuple[CellMap, ...]
    #: Every row is in the fleet (the usual window; False when pooled rows ride along).
    whole_fleet: bool = True

    @classmethod
    def build(
        cls,
        n_rows: int,
        scopes: Mapping[str, Any] | ScopeSet | None,
        *,
        in_fleet: np.ndarray | None = None,
    ) -> ScopeSet:
        """The scopes of a window of ``n_rows``: from a scope kind -> key per row mapping, or
        one already built (so that drift, quality and performance share one).

        ``in_fleet`` (booleans, one per row; default: every row) says which rows the fleet
        holds: a small node judged on earlier windows pooled brings rows that belong to that
        node's scope only, never to the fleet's (nor to any other kind: give them no key)."""
        if isinstance(scopes, ScopeSet):
            if scopes.n_rows != n_rows:
                raise ValueError(f"the scopes are of {scopes.n_rows} rows, not {n_rows}")
            if in_fleet is not None:
                raise ValueError("in_fleet is given with the scopes, not with a built ScopeSet")
            return scopes
        fleet_codes = np.zeros(n_rows, np.int64)
        whole = True
        if in_fleet is not None:
            mask = np.asarray(in_fleet)
            if mask.dtype != np.bool_ or mask.shape != (n_rows,):
                raise ValueError(
                    f"in_fleet must be {n_rows} booleans, got {mask.dtype} {mask.shape}"
                )
            whole = bool(mask.all())
            fleet_codes[~mask] = -1
        kinds = [ScopeKind.of(FLEET, fleet_codes, (FLEET_KEY,))]
        for name, keys in (scopes or {}).items():
            if name == FLEET:
                raise ValueError("'fleet' is always analysed; do not pass it as a scope")
            # A categorical is factorised from its codes: no hashing of a million keys.
            array = keys if isinstance(keys, pd.Categorical) else np.asarray(keys)
            if array.shape != (n_rows,):
                raise ValueError(f"scope {name!r} has {array.shape} keys for {n_rows} rows")
            try:
                codes, uniques = pd.factorize(array, sort=True, use_na_sentinel=True)
            except TypeError:  # keys of mixed types do not sort: first-seen order then
                codes, uniques = pd.factorize(array, use_na_sentinel=True)
            kinds.append(
                ScopeKind.of(name, codes.astype(np.int64), tuple(_key(u) for u in uniques))
            )
        offsets = np.cumsum([0] + [k.size for k in kinds])
        cells, n_cells, maps = _cells(n_rows, kinds, whole)
        return cls(
            n_rows, tuple(kinds), tuple(int(o) for o in offsets), cells, n_cells, maps, whole
        )

    def count_cells(self, weights: np.ndarray | None = None) -> np.ndarray:
        """Rows (or the sum of ``weights``) per cell."""
        return np.bincount(self.cells, weights, minlength=self.n_cells)

    def per_scope(self, per_cell: np.ndarray) -> np.ndarray:
        """Per-cell figures summed per scope, every kind, in flat scope order."""
        return np.concatenate([m.sum(per_cell) for m in self.cell_maps])

    @property
    def total(self) -> int:
        return self.offsets[-1]

    def labels(self) -> tuple[list[str], list[str]]:
        """(scope kind, scope key) of every scope in flat order."""
        kinds: list[str] = []
        keys: list[str] = []
        for kind in self.kinds:
            kinds.extend([kind.name] * kind.size)
            keys.extend(kind.keys)
        return kinds, keys


def _cells(
    n_rows: int, kinds: list[ScopeKind], whole_fleet: bool = True
) -> tuple[np.ndarray, int, tuple[CellMap, ...]]:
    """Each row's cell (its combination of scopes) and each kind's map from cells to scopes."""
    cells = np.zeros(n_rows, np.int64)
    n_cells = 1 if n_rows else 0
    # The fleet splits cells only when some rows are outside it.
    for kind in kinds if not whole_fleet else kinds[1:]:
        # Renumbered after each kind, so the combined key never outgrows int64.
        combined = cells * (kind.size + 1) + kind.bins
        codes, uniques = pd.factorize(combined)
        cells, n_cells = codes.astype(np.intp), len(uniques)
    first = np.zeros(n_cells, np.intp)
    first[cells[::-1]] = np.arange(n_rows - 1, -1, -1)
    maps = tuple(CellMap.of(kind.bins[first], kind.size) for kind in kinds)
    return cells.astype(np.intp), n_cells, maps


def _key(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)
