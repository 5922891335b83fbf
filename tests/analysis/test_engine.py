"""The per-scope engine equals Evidently's own per-column functions on every scope's rows."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from evidently.legacy.calculations.stattests.chisquare_stattest import _chi_stat_test
from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
from evidently.legacy.calculations.stattests.ks_stattest import _ks_stat_test
from evidently.legacy.calculations.stattests.wasserstein_distance_norm import (
    _wasserstein_distance_norm,
)
from evidently.legacy.calculations.stattests.z_stattest import _z_stat_test
from evidently.legacy.core import ColumnType
from scipy import stats

from monitor.analysis import engine
from monitor.analysis.columns import Vocabulary
from monitor.analysis.multiplicity import bh_adjust
from monitor.analysis.profile import NumericReference
from monitor.analysis.scopes import ScopeSet

NUM, CAT = ColumnType.Numerical, ColumnType.Categorical
ROWS = 6_000


@pytest.fixture(scope="module")
def scopes() -> tuple[ScopeSet, list[np.ndarray]]:
    """40 nodes of uneven sizes (one empty of values), 3 groups, rows in no group."""
    rng = np.random.default_rng(5)
    node = rng.choice(40, ROWS, p=np.arange(1, 41) / np.arange(1, 41).sum())
    group = np.where(node < 10, "g1", np.where(node < 30, "g2", None)).astype(object)
    group[node == 39] = "g3"
    scope_set = ScopeSet.build(ROWS, {"node": node, "group": group})
    masks = []
    for kind in scope_set.kinds:
        masks.extend(kind.codes == code for code in range(kind.size))
    return scope_set, masks


def clean(series: pd.Series) -> pd.Series:
    # What Evidently does to a column before any test.
    return series.replace([-np.inf, np.inf], np.nan).dropna()


def numeric_current(rng: np.random.Generator) -> np.ndarray:
    values = rng.normal(0.3, 1.2, ROWS)
    values[::9] = np.round(values[::9], 1)  # ties, inside the window and with the reference
    values[::31] = np.nan
    values[5] = np.inf
    return values


@pytest.mark.parametrize("chunk", [engine.CHUNK, 97])
def test_wasserstein_and_ks_per_scope(scopes, chunk: int, monkeypatch) -> None:
    monkeypatch.setattr(engine, "CHUNK", chunk)  # also across chunk boundaries
    scope_set, masks = scopes
    rng = np.random.default_rng(1)
    reference = rng.normal(0.0, 1.0, 3_000)
    reference[::7] = np.round(reference[::7], 1)
    current = numeric_current(rng)
    ref = NumericReference.of(reference)
    found = engine.numeric_stats(current, ref, scope_set)
    ks_p = engine.ks_pvalues_exact(found.ks_num, ref.n, found.m)
    ref_series = pd.Series(reference)
    checked = 0
    for i, mask in enumerate(masks):
        cur = clean(pd.Series(current[mask]))
        assert found.m[i] == len(cur)
        if cur.empty:
            assert np.isnan(found.wasserstein[i]) and np.isnan(ks_p[i])
            continue
        assert found.wasserstein[i] == pytest.approx(
            _wasserstein_distance_norm(ref_series, cur, NUM, 0.1)[0], abs=1e-9
        )
        assert ks_p[i] == pytest.approx(_ks_stat_test(ref_series, cur, NUM, 0.05)[0], abs=1e-12)
        d = engine.ks_distance(found.ks_num[i : i + 1], ref.n, found.m[i : i + 1])[0]
        assert d == pytest.approx(stats.ks_2samp(reference, cur).statistic, abs=1e-15)
        checked += 1
    assert checked >= 40


def test_large_scopes_use_the_asymptotic_ks_like_scipy() -> None:
    rng = np.random.default_rng(2)
    reference, current = rng.normal(size=900), rng.normal(0.05, 1, 12_000)
    ref = NumericReference.of(reference)
    found = engine.numeric_stats(current, ref, ScopeSet.build(current.size, None))
    p = engine.ks_pvalues_exact(found.ks_num, ref.n, found.m)[0]
    assert p == pytest.approx(stats.ks_2samp(reference, current).pvalue, rel=1e-9)


def test_the_noise_test_p_value_is_close_to_the_exact_ks(scopes) -> None:
    scope_set, _ = scopes
    rng = np.random.default_rng(3)
    ref = NumericReference.of(rng.normal(size=5_000))
    found = engine.numeric_stats(rng.normal(0.1, 1, ROWS), ref, scope_set)
    exact = engine.ks_pvalues_exact(found.ks_num, ref.n, found.m)
    approx = engine.ks_pvalues_asymptotic(found.ks_num, ref.n, found.m)
    enough = found.m >= 30
    assert np.allclose(approx[enough], exact[enough], rtol=0.1, atol=0.01)


def counted(reference: pd.Series, current: pd.Series, scope_set: ScopeSet):
    vocabulary = Vocabulary.of(reference)
    codes, new = vocabulary.encode(current)
    counts = np.concatenate([vocabulary.counts, np.zeros(len(new), np.int64)])
    return engine.count_stats(codes, counts, scope_set)


@pytest.mark.parametrize("dense_cells", [engine.DENSE_CELLS, 30])
def test_jensen_shannon_and_chi_square_per_scope(scopes, dense_cells: int, monkeypatch) -> None:
    monkeypatch.setattr(engine, "DENSE_CELLS", dense_cells)  # also in slices of scopes
    scope_set, masks = scopes
    rng = np.random.default_rng(4)
    levels = ["a", "b", "c", "d", "e", "rare"]
    reference = pd.Series(
        pd.Categorical(rng.choice(levels, 2_000, p=[0.4, 0.25, 0.15, 0.1, 0.099, 0.001]))
    )
    current = pd.Series(
        pd.Categorical(rng.choice([*levels, "new"], ROWS, p=[0.35, 0.25, 0.2, 0.1, 0.09, 0, 0.01]))
    )
    current[::17] = np.nan
    found = counted(reference, current, scope_set)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy: divide by zero -> inf
        for i, mask in enumerate(masks):
            cur = clean(current[mask])
            assert found.m[i] == len(cur)
            if cur.empty:
                continue
            js = _jensenshannon(reference, cur, CAT, 0.1)[0]
            chi = _chi_stat_test(reference, cur, CAT, 0.05)[0]
            assert found.jensenshannon[i] == pytest.approx(js, abs=1e-12)
            assert found.chisquare_p[i] == pytest.approx(chi, abs=1e-12)


def test_z_test_per_scope_on_booleans(scopes) -> None:
    scope_set, masks = scopes
    rng = np.random.default_rng(6)
    reference = pd.Series(rng.random(700) < 0.3)
    current = pd.Series(rng.random(ROWS) < 0.36)
    found = counted(reference, current, scope_set)
    for i, mask in enumerate(masks):
        cur = current[mask]
        if not cur.empty:
            assert found.z_p[i] == pytest.approx(
                _z_stat_test(reference, cur, CAT, 0.05)[0], abs=1e-12
            )
    # One value on both sides: Evidently says p = 1.
    same = counted(pd.Series([True] * 50), pd.Series([True] * 80), ScopeSet.build(80, None))
    assert same.z_p[0] == 1.0


def test_jensen_shannon_on_evidently_bins_per_scope(scopes) -> None:
    scope_set, masks = scopes
    rng = np.random.default_rng(7)
    reference = rng.gamma(2.0, 2.0, 2_500)
    current = numeric_current(rng) * 3 + 4
    found = engine.binned_stats(current, NumericReference.of(reference), scope_set)
    for i, mask in enumerate(masks):
        cur = clean(pd.Series(current[mask]))
        if cur.empty:
            continue
        js = _jensenshannon(pd.Series(reference), cur, NUM, 0.1)[0]
        assert found.jensenshannon[i] == pytest.approx(js, abs=1e-12)


def test_the_homogeneity_test_is_pearsons_two_sample_chi_square() -> None:
    rng = np.random.default_rng(8)
    reference = pd.Series(rng.choice(["a", "b", "c"], 3_000, p=[0.5, 0.3, 0.2]))
    current = pd.Series(rng.choice(["a", "b", "c"], 1_000, p=[0.45, 0.33, 0.22]))
    found = counted(reference, current, ScopeSet.build(len(current), None))
    table = np.array([reference.value_counts().sort_index(), current.value_counts().sort_index()])
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert found.homogeneity_p[0] == pytest.approx(expected, rel=1e-9)


def test_benjamini_hochberg_matches_scipy() -> None:
    p = np.random.default_rng(9).random(500) ** 3
    p[::50] = np.nan
    expected = stats.false_discovery_control(np.where(np.isnan(p), 1.0, p), method="bh")
    assert np.allclose(bh_adjust(p), expected, rtol=1e-12, atol=0)
