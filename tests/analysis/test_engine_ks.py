"""Exact KS p-values: scipy's private routine and the public fallback agree, and the engine keeps
returning ``ks_2samp``'s p-values when the private routine is gone or has another signature."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.stats import _stats_py

from monitor.analysis import engine
from monitor.analysis.profile import NumericReference
from monitor.analysis.scopes import ScopeSet

SIZES = [(1, 1), (1, 9), (2, 3), (7, 7), (10, 15), (100, 37), (999, 1000), (64, 10_000)]
SIZES += [(10_000, 1), (10_000, 10_000), (10_000, 7_500)]


def _private(n: int, m: int, ks_num: int) -> float:
    """What the engine computes through scipy's private routine."""
    g = math.gcd(n, m)
    p = engine._ks_exact_pvalue(n, m, g, (ks_num // g) / ((n // g) * m))
    assert p is not None
    return p


def _numerators(n: int, m: int, rng: np.random.Generator) -> set[int]:
    """KS numerators ``|a*m - b*n|`` of some lattice points: 0, 1, the diagonal's neighbours
    (most of them reachable only with ties), and random points, the large ones included."""
    points = [(0, 0), (n, 0), (n, m), (1, 0), (0, 1), (n // 2, m // 2), (n // 3, 2 * m // 3)]
    points += [(int(rng.integers(n + 1)), int(rng.integers(m + 1))) for _ in range(4)]
    a = int(rng.integers(n + 1))
    points += [(a, a * m // n), (a, min(m, a * m // n + 1))]
    return {abs(a * m - b * n) for a, b in points}


@pytest.mark.parametrize(("n", "m"), SIZES)
def test_the_public_fallback_equals_the_private_routine(n: int, m: int) -> None:
    assert engine._EXACT_2KSSAMP is not None, "this scipy has the private routine; test it"
    rng = np.random.default_rng(n * 100_003 + m)
    for ks_num in sorted(_numerators(n, m, rng)):
        private = _private(n, m, ks_num)
        public = engine._ks_2samp_pvalue(n, m, ks_num)
        assert public == pytest.approx(private, rel=1e-12, abs=1e-12), (n, m, ks_num)


def test_the_fallback_samples_have_the_statistic_asked_for() -> None:
    for n, m in [(3, 5), (12, 8), (1, 10_000)]:
        for a in range(0, n + 1, max(1, n // 4)):
            for b in range(0, m + 1, max(1, m // 5)):
                ks_num = abs(a * m - b * n)
                a2, b2 = engine._lattice_point(n, m, ks_num)
                assert abs(a2 * m - b2 * n) == ks_num and 0 <= a2 <= n and 0 <= b2 <= m


def _scoped(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    reference = np.round(rng.normal(0.0, 1.0, 1_500), 1)  # ties within and across the samples
    current = np.round(rng.normal(0.2, 1.1, 4_000), 1)
    node = rng.choice(12, current.size, p=np.arange(1, 13) / np.arange(1, 13).sum())
    scope_set = ScopeSet.build(current.size, {"node": node})
    found = engine.numeric_stats(current, NumericReference.of(reference), scope_set)
    p = engine.ks_pvalues_exact(found.ks_num, reference.size, found.m)
    masks = []
    for kind in scope_set.kinds:
        masks.extend(kind.codes == code for code in range(kind.size))
    return reference, p, [current[mask] for mask in masks]


def _raises_type_error(*args: object) -> tuple[bool, float, float]:
    raise TypeError("_attempt_exact_2kssamp() takes 4 positional arguments but 5 were given")


@pytest.mark.parametrize("private", [None, _raises_type_error], ids=["missing", "new-signature"])
def test_without_the_private_routine_the_engine_returns_ks_2samp_p_values(
    private, monkeypatch
) -> None:
    monkeypatch.setattr(engine, "_EXACT_2KSSAMP", private)
    reference, p, samples = _scoped(np.random.default_rng(8))
    assert len(samples) >= 12
    for i, sample in enumerate(samples):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = stats.ks_2samp(reference, sample).pvalue
        assert p[i] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_the_private_routine_is_looked_up_by_name(monkeypatch) -> None:
    assert engine._private_exact_2kssamp() is _stats_py._attempt_exact_2kssamp
    monkeypatch.delattr(_stats_py, "_attempt_exact_2kssamp")
    assert engine._private_exact_2kssamp() is None
