"""Drift methods and thresholds: Evidently's defaults per column, and a model's overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from monitor.analysis.columns import CATEGORICAL, NUMERICAL, Kind

WASSERSTEIN = "wasserstein"
JENSEN_SHANNON = "jensenshannon"
KS = "ks"
CHI_SQUARE = "chisquare"
Z = "z"


@dataclass(frozen=True, slots=True)
class Method:
    """One of Evidently's per-column drift methods, by its registered name."""

    name: str
    #: How Evidently's reports show it.
    display_name: str
    kinds: frozenset[str]
    default_threshold: float
    #: A distance drifts at ``statistic >= threshold``; a test's p-value at ``p < threshold``
    #: (``p <= threshold`` for KS, as Evidently has it).
    is_distance: bool

    def evidently_verdicts(self, statistic: Any, threshold: float) -> Any:
        """Evidently's own verdict on its statistic (scalars or arrays; NaN is never drift)."""
        with np.errstate(invalid="ignore"):
            if self.is_distance:
                return np.asarray(statistic) >= threshold
            if self.name == KS:
                return np.asarray(statistic) <= threshold
            return np.asarray(statistic) < threshold


METHODS: Mapping[str, Method] = MappingProxyType(
    {
        m.name: m
        for m in (
            Method(WASSERSTEIN, "Wasserstein distance (normed)", frozenset({NUMERICAL}), 0.1, True),
            Method(
                JENSEN_SHANNON,
                "Jensen-Shannon distance",
                frozenset({NUMERICAL, CATEGORICAL}),
                0.1,
                True,
            ),
            Method(KS, "K-S p_value", frozenset({NUMERICAL}), 0.05, False),
            Method(CHI_SQUARE, "chi-square p_value", frozenset({CATEGORICAL}), 0.05, False),
            Method(Z, "Z-test p_value", frozenset({CATEGORICAL}), 0.05, False),
        )
    }
)


def default_method(kind: Kind, n_reference: int, n_values: int) -> str:
    """The method Evidently 0.7 picks for a column (``_get_default_stattest`` in
    ``evidently/legacy/calculations/stattests/registry.py``).

    ``n_reference`` counts the reference's present values; ``n_values`` the distinct values of
    reference and current together (missing and infinite values dropped first, as Evidently
    does)."""
    if n_reference <= 1000:
        if kind == NUMERICAL and n_values > 5:
            return KS
        return CHI_SQUARE if n_values > 2 else Z
    if kind == NUMERICAL and n_values > 5:
        return WASSERSTEIN
    return JENSEN_SHANNON


@dataclass(frozen=True)
class DriftSpec:
    """A model's drift settings: per-column method, threshold and kind overrides.

    Keys are result names: the feature name (without ``feature:``), ``prediction`` or
    ``proba:<class>``. A column without an override gets Evidently's default method and that
    method's default threshold; its kind is inferred as Evidently would (text as categorical).
    """

    methods: Mapping[str, str] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    kinds: Mapping[str, Kind] = field(default_factory=dict)
    #: Analyse the ``prediction`` column and the ``proba:<class>`` columns too.
    prediction: bool = True
    probabilities: bool = True

    def __post_init__(self) -> None:
        for name, method in self.methods.items():
            if method not in METHODS:
                raise ValueError(
                    f"unknown drift method {method!r} for {name!r}; known: {sorted(METHODS)}"
                )
        for name, kind in self.kinds.items():
            if kind not in (NUMERICAL, CATEGORICAL):
                raise ValueError(f"unknown kind {kind!r} for {name!r}")
        for name, threshold in self.thresholds.items():
            if not threshold > 0:
                raise ValueError(f"threshold for {name!r} must be positive, got {threshold}")

    def method_for(self, name: str, kind: Kind) -> str | None:
        """The overriding method of a column, checked against its kind, or None."""
        method = self.methods.get(name)
        if method is not None and kind not in METHODS[method].kinds:
            raise ValueError(f"drift method {method!r} does not apply to {kind} column {name!r}")
        return method
