"""Benjamini-Hochberg: false discovery rate control over many tests of one window."""

from __future__ import annotations

import numpy as np


def bh_adjust(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values): rejecting every test with
    ``q <= alpha`` keeps the expected share of false discoveries at most ``alpha``.

    NaN p-values (a test that could not be computed) count as 1: they stay in the family, so
    they cannot make the others look more significant."""
    p = np.where(np.isnan(p_values), 1.0, np.asarray(p_values, dtype=np.float64))
    count = p.size
    if count == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * count / np.arange(1, count + 1)
    # Step-up: each q is the smallest ranked value at or above its rank.
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty(count)
    adjusted[order] = np.minimum(ranked, 1.0)
    return adjusted
