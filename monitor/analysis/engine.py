"""Two-sample statistics against a reference for every scope of a window at once, in numpy.

Numerical columns are sorted once by value, then stably by scope code (a radix sort of small
integers), which leaves each scope's values sorted in one contiguous segment. Every statistic
is then a sum or maximum over segments of terms that need only the position within the segment
and the value's rank in the reference:

- Wasserstein-1 is the integral of ``|Q_R(u) - Q_C(u)|`` over quantile levels ``u``. On the
  interval ``(j/m, (j+1)/m]`` the scope's quantile is its ``j``-th value ``c``; the reference's
  quantile function is a step function whose integral ``P(u)`` has a closed form from prefix
  sums, and it crosses ``c`` at ``u = #(reference < c) / n``. So each value contributes an exact
  O(1) term and no merge of the two samples is ever materialised.
- The Kolmogorov-Smirnov distance is attained at a value of the scope, from the left or the
  right, so ranks of the scope's values (with ties) and their counts in the reference suffice;
  it is kept as the integer ``max |a*m - b*n|`` so p-values can be computed exactly.

Categorical columns (and numerical ones Evidently tests on value counts) become a scope x
category count matrix (one ``bincount``), from which Jensen-Shannon, chi-square and z follow.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from monitor.analysis.profile import NumericReference
from monitor.analysis.scopes import FLEET, ScopeSet

#: Values worked through at a time: small enough that the temporaries stay in cache.
CHUNK = 1 << 15
#: Scope x category cells materialised at a time; more categories are processed in slices of
#: scopes, so memory stays bounded whatever a column's cardinality.
DENSE_CELLS = 4_000_000
#: scipy's ``ks_2samp(method="auto")`` computes exact p-values up to this sample size.
KS_EXACT_MAX_N = 10_000
#: Expected count below which a category joins the pooled "rare" cell of the noise test.
MIN_EXPECTED = 5.0


@dataclass(frozen=True, eq=False, slots=True)
class NumericScopeStats:
    """Per flat scope: present values, normed Wasserstein (NaN where empty, None when not asked
    for) and the integer Kolmogorov-Smirnov numerator ``D * n * m``."""

    m: np.ndarray
    wasserstein: np.ndarray | None
    ks_num: np.ndarray


@dataclass(frozen=True, eq=False, slots=True)
class CountScopeStats:
    """Per flat scope, from value counts: present values and each statistic (NaN where empty)."""

    m: np.ndarray
    jensenshannon: np.ndarray
    #: Evidently's chi-square: goodness of fit of the current counts to the reference shares.
    chisquare_p: np.ndarray
    #: Evidently's two-proportion z-test (meaningful with at most two categories).
    z_p: np.ndarray
    #: Pearson's two-sample chi-square test of homogeneity, rare categories pooled.
    homogeneity_p: np.ndarray


# --- numerical columns ------------------------------------------------------------------------


def numeric_stats(
    values: np.ndarray, ref: NumericReference, scopes: ScopeSet, *, wasserstein: bool = True
) -> NumericScopeStats:
    """Wasserstein and KS numerators of every scope's finite values against the reference."""
    valid = np.isfinite(values)
    everything = bool(valid.all())
    present = values if everything else values[valid]
    order = np.argsort(present)
    ordered = present[order]
    below, upto = _reference_ranks(ordered, ref.sorted)

    total = scopes.total
    m_out = np.zeros(total, np.int64)
    w_out = np.full(total, np.nan) if wasserstein else None
    ks_out = np.zeros(total, np.int64)
    for kind, offset in zip(scopes.kinds, scopes.offsets, strict=False):
        if kind.size == 0:
            continue
        if kind.name == FLEET and scopes.whole_fleet:  # one segment, already in order
            counts = np.array([present.size], np.int64)
            perm = codes = None
        else:
            # Rows in no scope of this kind sit in one extra segment at the end, dropped.
            unsorted = (kind.sort_codes if everything else kind.sort_codes[valid])[order]
            # Stable, so each scope's segment stays sorted by value.
            perm = np.argsort(unsorted, kind="stable")
            counts = np.bincount(unsorted, minlength=kind.size + 1).astype(np.int64)
            codes = unsorted[perm]
        w, ks = _segments(ordered, below, upto, perm, codes, counts, ref, wasserstein)
        size = kind.size
        m_out[offset : offset + size] = counts[:size]
        ks_out[offset : offset + size] = ks[:size]
        if w_out is not None and w is not None:
            w_out[offset : offset + size] = np.where(counts[:size] > 0, w[:size], np.nan)
    return NumericScopeStats(m_out, w_out, ks_out)


def _reference_ranks(ordered: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``#(reference < x)`` and ``#(reference <= x)`` for every x of sorted ``ordered``."""
    if ordered.size < 4 * reference.size:
        return (
            np.searchsorted(reference, ordered, side="left"),
            np.searchsorted(reference, ordered, side="right"),
        )
    # Many more values than reference points: place the reference among the values instead
    # (x > r exactly from position searchsorted(ordered, r, "right") on) and count up.
    size = ordered.size
    above = np.searchsorted(ordered, reference, side="right")
    at_or_above = np.searchsorted(ordered, reference, side="left")
    below = np.cumsum(np.bincount(above, minlength=size + 1)[:size])
    upto = np.cumsum(np.bincount(at_or_above, minlength=size + 1)[:size])
    return below, upto


def _segments(
    ordered: np.ndarray,
    below: np.ndarray,
    upto: np.ndarray,
    perm: np.ndarray | None,
    codes: np.ndarray | None,
    counts: np.ndarray,
    ref: NumericReference,
    wasserstein: bool,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Per segment: normed Wasserstein-1 to the reference and the KS numerator.

    Position ``i`` of the segmented order holds ``ordered[perm[i]]`` (``perm`` None: the
    identity, one segment) and belongs to segment ``codes[i]``; segments are contiguous, each
    sorted by value. Worked through in chunks that stay in cache: every term needs only its
    position, its segment and its two neighbours."""
    n_segments = counts.size
    n = ref.n
    ks = np.zeros(n_segments, np.int64)
    w = np.zeros(n_segments) if wasserstein else None
    size = ordered.size
    if size == 0 or n == 0:
        return w, ks
    starts = np.zeros(n_segments + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    for lo in range(0, size, CHUNK):
        hi = min(size, lo + CHUNK)
        # One neighbour either side, to see where runs of equal values and segments end.
        a, b = max(lo - 1, 0), min(hi + 1, size)
        around = ordered[a:b] if perm is None else ordered[perm[a:b]]
        inner = slice(lo - a, hi - a)
        values = around[inner]
        if codes is None:
            segment = np.zeros(hi - lo, np.intp)
            differs = around[1:] != around[:-1]
        else:
            seg_around = codes[a:b]
            segment = seg_around[inner]
            differs = (around[1:] != around[:-1]) | (seg_around[1:] != seg_around[:-1])
        where = slice(lo, hi) if perm is None else perm[lo:hi]
        left_rank = below[where]
        right_rank = upto[where]
        # Positions from the left neighbour on (``before`` of them precede the chunk): the
        # Wasserstein terms reuse the neighbour's level.
        before = lo - a  # 1 when the chunk has a left neighbour
        segment_ext = np.zeros(hi - a, np.intp) if codes is None else codes[a:hi]
        segment = segment_ext[before:]
        m_ext = counts[segment_ext]
        jn_ext = (np.arange(a, hi, dtype=np.int64) - starts[segment_ext]) * n
        m = m_ext[before:]
        jn = jn_ext[before:]

        # The scope's CDF is a real CDF value only at the last of equal values (from the
        # right) and the first (from the left); D is the largest gap at those points.
        right_gap = np.abs(right_rank * m - (jn + n))
        left_gap = np.abs(left_rank * m - jn)
        if not differs.all():
            start_of_run = np.ones(hi - lo, bool)
            end_of_run = np.ones(hi - lo, bool)
            start_of_run[1 - before :] = differs[: hi - lo - 1 + before]
            inside = hi - lo - (b == hi)  # positions with a right neighbour
            end_of_run[:inside] = differs[before : before + inside]
            right_gap[~end_of_run] = 0
            left_gap[~start_of_run] = 0
        gap = np.maximum(right_gap, left_gap)
        heads = np.flatnonzero(np.diff(segment, prepend=-1))
        ids = segment[heads]
        ks[ids] = np.maximum(ks[ids], np.maximum.reduceat(gap, heads))

        if w is not None:
            # Centred and scaled like the reference's prefix sums, so sums stay small numbers.
            scaled = (values - ref.mean) / ref.norm
            w += np.bincount(
                segment,
                weights=_wasserstein_terms(scaled, left_rank, jn_ext, m_ext, before, ref),
                minlength=n_segments,
            )
    return w, ks


def _wasserstein_terms(
    c: np.ndarray,
    below: np.ndarray,
    jn_ext: np.ndarray,
    m_ext: np.ndarray,
    before: int,
    ref: NumericReference,
) -> np.ndarray:
    """``integral over (j/m, (j+1)/m] of |Q_R(u) - c| du`` for each value ``c``, the ``j``-th
    of a scope of ``m`` (``jn = j * n``); their sum over a scope is its Wasserstein-1 distance.
    ``jn_ext`` and ``m_ext`` start ``before`` (0 or 1) positions ahead of ``c``.

    ``P(u) = integral_0^u Q_R`` is ``(S[f] + (u*n - f) * R[f]) / n`` with ``f = floor(u*n)``
    (``S`` the prefix sums of the sorted, scaled reference ``R``); ``Q_R(u) < c`` exactly for
    ``u <= k/n``, ``k = #(R < c)``. Levels are compared in integers, never in floats. Each
    position's interval starts where the previous one's ends, so ``P`` is evaluated once per
    position, at the end of its interval."""
    n = ref.n
    prefix, scaled_ref = ref.prefix, ref.scaled
    ends_ext = jn_ext + n
    floor_b = ends_ext // m_ext
    p_b_ext = (prefix[floor_b] + ((ends_ext - floor_b * m_ext) / m_ext) * scaled_ref[floor_b]) / n
    jn, jn_next, m = jn_ext[before:], ends_ext[before:], m_ext[before:]
    p_b = p_b_ext[before:]
    # The level where an interval starts is where the previous position's ends, except at a
    # scope's first value (level 0, where P is 0).
    p_a = np.empty_like(p_b)
    p_a[0] = p_b_ext[0] if before else 0.0
    p_a[1:] = p_b[:-1]
    p_a[jn == 0] = 0.0
    rise = p_b - p_a
    km = below * m
    per_value = c / m
    # Q_R below c on the whole interval: integral of (c - Q_R); above: of (Q_R - c).
    term = np.where(km >= jn_next, per_value - rise, 0.0)
    inside = (km > jn) & (km < jn_next)
    if inside.any():
        k = below[inside]
        term[inside] = c[inside] * ((km[inside] - jn[inside]) / (n * m[inside])) - (
            prefix[k] / n - p_a[inside]
        )
    return rise - per_value + 2.0 * term


def ks_distance(ks_num: np.ndarray, n: int, m: np.ndarray) -> np.ndarray:
    """The KS statistic ``D`` from its integer numerator (NaN where a sample is empty)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((m > 0) & (n > 0), ks_num / (float(n) * m), np.nan)


def _private_exact_2kssamp() -> Callable[..., Any] | None:
    """scipy's private exact two-sample KS routine, or None where this scipy has none."""
    try:
        module = importlib.import_module("scipy.stats._stats_py")
    except ImportError:
        return None
    return getattr(module, "_attempt_exact_2kssamp", None)


#: Resolved once: ``ks_2samp`` itself calls it with ``(n1, n2, gcd, d, alternative)`` and gets
#: ``(success, d, p)``. It is private, so a scipy without it (or with another signature) is met
#: by ``_ks_2samp_pvalue``, which asks the public ``ks_2samp`` for the same number.
_EXACT_2KSSAMP = _private_exact_2kssamp()


def ks_pvalues_exact(ks_num: np.ndarray, n: int, m: np.ndarray) -> np.ndarray:
    """``scipy.stats.ks_2samp(reference, current).pvalue`` (method "auto") for every scope, from
    the integer numerator: exact lattice-path probabilities up to 10,000 values, Smirnov's
    asymptotic distribution above, as scipy does."""
    out = np.full(m.shape, np.nan)
    if n == 0:
        return out
    for i in np.flatnonzero(m > 0):
        mi = int(m[i])
        g = math.gcd(n, mi)
        h = int(ks_num[i]) // g
        lcm = (n // g) * mi
        d = h / lcm
        if max(n, mi) <= KS_EXACT_MAX_N:
            p = _ks_exact_pvalue(n, mi, g, d)
            if p is None:
                p = _ks_2samp_pvalue(n, mi, h * g)
            out[i] = p
            continue
        en = n * mi / (n + mi)
        out[i] = stats.kstwo.sf(d, np.round(en))
    return np.clip(out, 0.0, 1.0)


def _ks_exact_pvalue(n: int, m: int, g: int, d: float) -> float | None:
    """The exact p-value by scipy's own routine (the p-value shown must equal Evidently's), the
    asymptotic one where that routine fails as ``ks_2samp`` does; None if it is unusable."""
    if _EXACT_2KSSAMP is None:
        return None
    try:
        # Its failure warning is noise: ks_2samp's own fallback follows.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ok, _, p = _EXACT_2KSSAMP(n, m, g, d, "two-sided")
    except (TypeError, ValueError):  # another signature, or result shape, in a newer scipy
        return None
    if ok:
        return float(p)
    return float(stats.kstwo.sf(d, np.round(n * m / (n + m))))


def _ks_2samp_pvalue(n: int, m: int, ks_num: int) -> float:
    """The public ``ks_2samp`` p-value for sizes ``n`` and ``m`` and the statistic
    ``ks_num / (n * m)``, from two samples of zeros and ones that attain it.

    ``ks_2samp``'s p-value depends on the samples only through ``n``, ``m`` and the statistic.
    The statistic of any samples is ``|a*m - b*n| / (n*m)`` at some ``a`` values of the first
    and ``b`` of the second, so ``a`` zeros then ones against ``b`` zeros then ones have it too:
    the two ECDFs differ only between 0 and 1, by exactly that much.
    """
    a, b = _lattice_point(n, m, ks_num)
    first = np.repeat([0.0, 1.0], [a, n - a])
    second = np.repeat([0.0, 1.0], [b, m - b])
    with warnings.catch_warnings():
        # "Exact calculation unsuccessful. Switching to method=asymp": the same as above.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ks_2samp(first, second).pvalue)


def _lattice_point(n: int, m: int, ks_num: int) -> tuple[int, int]:
    """Some ``0 <= a <= n``, ``0 <= b <= m`` with ``|a*m - b*n| == ks_num``."""
    a = np.arange(n + 1, dtype=np.int64)
    for target in (ks_num, -ks_num):
        rest = a * m - target
        b = rest // n
        hit = np.flatnonzero((rest % n == 0) & (b >= 0) & (b <= m))
        if hit.size:
            return int(a[hit[0]]), int(b[hit[0]])
    raise ValueError(f"no two samples of sizes {n} and {m} have the KS numerator {ks_num}")


def ks_pvalues_asymptotic(ks_num: np.ndarray, n: int, m: np.ndarray) -> np.ndarray:
    """Two-sample KS p-values from the Kolmogorov distribution with Stephens' small-sample
    correction, vectorised (scipy's exact and finite-n routines cost ~0.5 ms per test)."""
    d = ks_distance(ks_num, n, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        en = np.sqrt(n * m / (n + m.astype(np.float64)))
        lam = (en + 0.12 + 0.11 / en) * d
    return np.where(np.isnan(d), np.nan, stats.kstwobign.sf(lam))


# --- counted columns ----------------------------------------------------------------------------


def count_stats(
    codes: np.ndarray, reference_counts: np.ndarray, scopes: ScopeSet
) -> CountScopeStats:
    """Every statistic of every scope from category codes (-1: missing) and the reference's
    count per category (0 for categories only the window has)."""
    k = reference_counts.size
    out = _empty_counts(scopes.total)
    present = codes >= 0
    if scopes.n_cells * k <= DENSE_CELLS:
        # One pass over the rows: counts per (cell, category), then each kind's as sums.
        keep = present
        per_cell = np.bincount(
            scopes.cells[keep] * k + codes[keep], minlength=scopes.n_cells * k
        ).reshape(scopes.n_cells, k)
        for cell_map, offset in zip(scopes.cell_maps, scopes.offsets, strict=False):
            block = cell_map.sum(per_cell)
            rows = slice(offset, offset + block.shape[0])
            _fill(out, rows, block, reference_counts[None, :])
        return out
    for kind, offset in zip(scopes.kinds, scopes.offsets, strict=False):
        keep = present & (kind.codes >= 0)
        key = kind.codes[keep] * k + codes[keep]
        for first, block in _blocks(key, kind.size, k):
            rows = slice(offset + first, offset + first + block.shape[0])
            _fill(out, rows, block, reference_counts[None, :])
    return out


def binned_stats(values: np.ndarray, ref: NumericReference, scopes: ScopeSet) -> CountScopeStats:
    """Jensen-Shannon (and the noise test) on Evidently's bins for numerical columns with more
    than 20 distinct reference values: per scope, Sturges' rule on reference and current
    together, as ``np.histogram_bin_edges(concat, bins="sturges")`` draws them."""
    valid = np.isfinite(values)
    present = values[valid]
    out = _empty_counts(scopes.total)
    for kind, offset in zip(scopes.kinds, scopes.offsets, strict=False):
        if kind.size == 0:
            continue
        codes = kind.codes[valid]
        inside = codes >= 0
        x, codes = present[inside], codes[inside]
        m = np.bincount(codes, minlength=kind.size)
        lows = np.full(kind.size, np.inf)
        highs = np.full(kind.size, -np.inf)
        np.minimum.at(lows, codes, x)
        np.maximum.at(highs, codes, x)
        edges, ref_counts = [], []
        for s in range(kind.size):
            if m[s] == 0 or ref.n == 0:
                edges.append(np.array([0.0, 1.0]))
                ref_counts.append(np.zeros(1))
                continue
            low, high = min(ref.sorted[0], lows[s]), max(ref.sorted[-1], highs[s])
            e = _sturges_edges(low, high, ref.n + int(m[s]))
            edges.append(e)
            ref_counts.append(_histogram_sorted(ref.sorted, e))
        width = max(e.size - 1 for e in edges)
        flat_edges = np.concatenate(edges)
        starts = np.cumsum([0] + [e.size for e in edges[:-1]])
        n_bins = np.array([e.size - 1 for e in edges])
        bins = _bin_index(x, codes, flat_edges, starts, n_bins)
        reference = np.zeros((kind.size, width))
        for s, counts in enumerate(ref_counts):
            reference[s, : counts.size] = counts
        current = np.bincount(codes * width + bins, minlength=kind.size * width)
        _fill(out, slice(offset, offset + kind.size), current.reshape(kind.size, width), reference)
    return out


def _sturges_edges(low: float, high: float, count: int) -> np.ndarray:
    # numpy's _get_outer_edges + _hist_bin_sturges + linspace, scalar by scalar as numpy does.
    if low == high:
        return np.linspace(low - 0.5, high + 0.5, 2)
    width = (high - low) / (np.log2(count) + 1.0)
    return np.linspace(low, high, int(np.ceil((high - low) / width)) + 1)


def _histogram_sorted(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # np.histogram with explicit edges: [e_i, e_i+1) and the last bin closed.
    cum = np.searchsorted(sorted_values, edges, side="left")
    cum[-1] = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.diff(cum).astype(np.float64)


def _bin_index(
    x: np.ndarray, codes: np.ndarray, edges: np.ndarray, starts: np.ndarray, n_bins: np.ndarray
) -> np.ndarray:
    # The arithmetic guess is off by at most one; compare with the actual edges as np.histogram
    # does, so values on an edge land where numpy puts them.
    lo = edges[starts[codes]]
    nb = n_bins[codes]
    hi = edges[starts[codes] + nb]
    guess = np.floor((x - lo) / (hi - lo) * nb).astype(np.int64)
    guess = np.clip(guess, 0, nb - 1)
    base = starts[codes]
    guess -= x < edges[base + guess]
    guess = np.clip(guess, 0, nb - 1)
    guess += (x >= edges[base + guess + 1]) & (guess < nb - 1)
    return guess


def _blocks(key: np.ndarray, n_scopes: int, k: int) -> Iterator[tuple[int, np.ndarray]]:
    """Dense scope x category count blocks: ``(first scope, counts)``."""
    if n_scopes == 0:
        return
    if n_scopes * k <= DENSE_CELLS:
        yield 0, np.bincount(key, minlength=n_scopes * k).reshape(n_scopes, k)
        return
    cells, counts = np.unique(key, return_counts=True)
    step = max(1, DENSE_CELLS // max(k, 1))
    for first in range(0, n_scopes, step):
        last = min(n_scopes, first + step)
        lo, hi = np.searchsorted(cells, [first * k, last * k])
        block = np.zeros((last - first) * k, np.int64)
        block[cells[lo:hi] - first * k] = counts[lo:hi]
        yield first, block.reshape(last - first, k)


def _empty_counts(total: int) -> CountScopeStats:
    return CountScopeStats(
        np.zeros(total, np.int64),
        np.full(total, np.nan),
        np.full(total, np.nan),
        np.full(total, np.nan),
        np.full(total, np.nan),
    )


def _fill(out: CountScopeStats, rows: slice, current: np.ndarray, reference: np.ndarray) -> None:
    """Statistics of a block of scopes: ``current`` (scopes x categories) against
    ``reference`` (1 or scopes x categories) counts."""
    cur = current.astype(np.float64)
    ref = np.broadcast_to(reference.astype(np.float64), cur.shape)
    m = cur.sum(axis=1)
    n = ref.sum(axis=1)
    out.m[rows] = m.astype(np.int64)
    ok = (m > 0) & (n > 0)
    if not ok.any():
        return
    cur, ref, m, n = cur[ok], ref[ok], m[ok], n[ok]
    idx = np.arange(rows.start, rows.stop)[ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        # Jensen-Shannon as scipy.spatial.distance.jensenshannon(ref / n, cur / m), natural log.
        p = ref / n[:, None]
        q = cur / m[:, None]
        p = p / p.sum(axis=1, keepdims=True)
        q = q / q.sum(axis=1, keepdims=True)
        mid = (p + q) / 2.0
        js = special.rel_entr(p, mid).sum(axis=1) + special.rel_entr(q, mid).sum(axis=1)
        out.jensenshannon[idx] = np.sqrt(js / 2.0)

        # Evidently's chi-square: scipy.stats.chisquare(current, reference * m / n) over the
        # categories either side has; a category new to the window has expectation 0 -> inf.
        expected = ref * (m / n)[:, None]
        seen = ref > 0
        terms = np.where(seen, (cur - expected) ** 2 / np.where(seen, expected, 1.0), 0.0)
        terms = np.where(~seen & (cur > 0), np.inf, terms)
        keys = (seen | (cur > 0)).sum(axis=1)
        out.chisquare_p[idx] = special.chdtrc(keys - 1, terms.sum(axis=1))

        out.z_p[idx] = _z_pvalues(ref, cur, n, m)
        out.homogeneity_p[idx] = _homogeneity_pvalues(ref, cur, n, m)


def _z_pvalues(ref: np.ndarray, cur: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    # Evidently's z-test: the share of rows that are not the first category, pooled two-sample
    # z, p = 2 * (1 - Phi(|z|)) (written as Evidently writes it, not with the survival function).
    first = int(np.argmax((ref + cur).sum(axis=0) > 0))
    p1 = (n - ref[:, first]) / n
    p2 = (m - cur[:, first]) / m
    pooled = (p1 * n + p2 * m) / (n + m)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n + 1.0 / m))
    p = 2 * (1 - stats.norm.cdf(np.abs(z)))
    one_each = ((ref > 0).sum(axis=1) == 1) & ((cur > 0).sum(axis=1) == 1)
    same = one_each & ((ref > 0) == (cur > 0)).all(axis=1)
    return np.where(same, 1.0, p)


def _homogeneity_pvalues(
    ref: np.ndarray, cur: np.ndarray, n: np.ndarray, m: np.ndarray
) -> np.ndarray:
    """Pearson's chi-square test that reference and current share one distribution, treating
    both as samples (Evidently's goodness of fit treats the reference as exact, which flags
    clean large windows). Categories expected fewer than 5 times in the current sample (under
    the reference's shares) are pooled into one cell, as the test's approximation needs."""
    rare = (ref * (m / n)[:, None]) < MIN_EXPECTED
    pooled_ref = np.where(rare, ref, 0.0).sum(axis=1)
    pooled_cur = np.where(rare, cur, 0.0).sum(axis=1)
    nm = n * m
    with np.errstate(divide="ignore", invalid="ignore"):
        total = ref + cur
        cells = np.where(
            ~rare & (total > 0), (ref * m[:, None] - cur * n[:, None]) ** 2 / total, 0.0
        ).sum(axis=1)
        pooled_total = pooled_ref + pooled_cur
        pooled = np.where(
            pooled_total > 0, (pooled_ref * m - pooled_cur * n) ** 2 / pooled_total, 0.0
        )
    stat = (cells + pooled) / nm
    df = (~rare & (total > 0)).sum(axis=1) + (pooled_total > 0) - 1
    return np.where(df > 0, special.chdtrc(np.maximum(df, 1), stat), 1.0)
