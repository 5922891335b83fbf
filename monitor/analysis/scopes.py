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
class ScopeSet:
    """All scopes of one window; the fleet first, then each kind's keys in sorted order.

    ``offsets[i]`` is where kind ``i``'s scopes start in the flat scope numbering."""

    n_rows: int
    kinds: tuple[ScopeKind, ...]
    offsets: tuple[int, ...]

    @classmethod
    def build(cls, n_rows: int, scopes: Mapping[str, Any] | None) -> ScopeSet:
        kinds = [ScopeKind.of(FLEET, np.zeros(n_rows, np.int64), (FLEET_KEY,))]
        for name, keys in (scopes or {}).items():
            if name == FLEET:
                raise ValueError("'fleet' is always analysed; do not pass it as a scope")
            array = np.asarray(keys)
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
        return cls(n_rows, tuple(kinds), tuple(int(o) for o in offsets))

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


def _key(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)
