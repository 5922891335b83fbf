"""The contract between storage and analysis: window-frame names and every result's schema.

As ``monitor.wire`` declares what the SDK and the collector exchange, this module declares what
storage hands analysis (a window frame) and what analysis hands storage (results), so that
neither imports the other. Standard library only.

A result kind (drift, quality, performance, estimation, multivariate) is one or two tables of
rows: one row per scope of a window (``DriftScope``, ``QualityScope``, ``PerformanceScope``,
``EstimationScope``, ``MultivariateScope``) and, for drift and quality, one row per (scope,
feature) (``DriftFeature``, ``QualityFeature``). The row dataclasses ARE the
schema: analysis produces their fields as columns (``ResultTable``), ``monitor.storage.tables``
builds its columns from their fields, and ``monitor.storage.results`` reads rows back as them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

# --- The window frame -------------------------------------------------------------------------

#: A storage-internal integer that identifies one stored record within its window (not the
#: wire's record id, a UUID string): labels join the frame through it.
ROW_KEY = "row_key"
TS = "ts"
NODE_ID = "node_id"
MODEL_VERSION_ID = "model_version_id"
LATENCY_MS = "latency_ms"
PREDICTION = "prediction"
#: Frame columns of features and class probabilities are named ``feature:<name>`` and
#: ``proba:<class>``; results name features without the prefix and probabilities with it.
FEATURE_PREFIX = "feature:"
PROBA_PREFIX = "proba:"


def feature_column(name: str) -> str:
    """The window-frame column of a feature."""
    return FEATURE_PREFIX + name


def feature_name(column: str) -> str | None:
    """The feature a window-frame column holds, or None when it holds no feature."""
    return column[len(FEATURE_PREFIX) :] if column.startswith(FEATURE_PREFIX) else None


def proba_column(label: str) -> str:
    """The window-frame column of one class's probability."""
    return PROBA_PREFIX + label


# --- Kinds, scopes, statuses ------------------------------------------------------------------

DRIFT = "drift"
QUALITY = "quality"
PERFORMANCE = "performance"
#: Performance estimated without labels, from the model's calibrated confidence.
ESTIMATION = "estimation"
#: Drift no single feature shows: the reference's PCA reconstruction error of the window's rows.
MULTIVARIATE = "multivariate"
KINDS = (DRIFT, QUALITY, PERFORMANCE, ESTIMATION, MULTIVARIATE)

FLEET = "fleet"
SITE = "site"
GROUP = "group"
NODE = "node"
SCOPE_KINDS = (FLEET, SITE, GROUP, NODE)
#: The fleet's scope key: the fleet is one scope.
FLEET_KEY = ""

#: Feature roles: the model's inputs, its prediction, or one class's probability.
FEATURE = "feature"
PREDICTION_ROLE = "prediction"
PROBABILITY = "probability"

OK = "ok"
#: Too few rows (drift) or labels (performance) for a verdict; the figures are still reported.
INSUFFICIENT_DATA = "insufficient_data"
INSUFFICIENT_LABELS = "insufficient_labels"
MISSING_COLUMN = "missing_column"
UNEXPECTED_COLUMN = "unexpected_column"
TYPE_MISMATCH = "type_mismatch"
EMPTY_REFERENCE = "empty_reference"
#: A window of a model whose version has no reference data (only the fleet row is stored).
NO_REFERENCE = "no_reference"
#: Estimation only: why a model's performance cannot be estimated (only the fleet row is
#: stored): it is not a classifier, its records carry no class probabilities, or its reference
#: data has no labels (or probabilities) to calibrate on.
NOT_CLASSIFICATION = "not_classification"
NO_PROBABILITIES = "no_probabilities"
NO_REFERENCE_LABELS = "no_reference_labels"


# --- Result rows: the schema ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DriftScope:
    """One scope's drift in one window."""

    scope_kind: str
    scope_key: str
    status: str
    n_rows: int
    #: Features with a verdict, and how many of them drifted.
    n_features: int
    n_drifted: int
    #: The share of drifted features, ``n_drifted / n_features`` (None without any verdict).
    #: A measured figure: a threshold on it is an alert rule, not a verdict.
    share_drifted: float | None
    #: The scope's verdict: at least one feature drifted after false-discovery control.
    drifted: bool | None
    #: The prediction or a class probability drifted (None: no verdict on any).
    prediction_drifted: bool | None
    #: The share Evidently's own per-column verdicts would give, for comparison.
    evidently_share_drifted: float | None


@dataclass(frozen=True, slots=True)
class DriftFeature:
    """One column at one scope: Evidently's statistic and the product's verdict."""

    scope_kind: str
    scope_key: str
    #: Feature name, ``prediction`` or ``proba:<class>``.
    feature: str
    role: str
    #: "numerical" or "categorical".
    column_kind: str
    #: Evidently's drift method (None only when the column is missing from the window).
    method: str | None
    #: The two-sample test behind the p-value: "ks", "ks-asymptotic", "z", "chi2-homogeneity".
    test: str | None
    #: Evidently's value for this scope's rows, and its method's threshold.
    statistic: float | None
    threshold: float | None
    #: The raw p-value of the test, and after Benjamini-Hochberg across the window.
    p_value: float | None
    adjusted_p_value: float | None
    #: The verdict after false-discovery control (None: too little data).
    drifted: bool | None
    #: Evidently's own verdict on ``statistic``, for comparison.
    evidently_drifted: bool | None
    n_current: int
    n_reference: int
    status: str


@dataclass(frozen=True, slots=True)
class QualityScope:
    """One scope's data quality in one window."""

    scope_kind: str
    scope_key: str
    status: str
    n_rows: int
    n_features: int
    #: Features whose figures break a quality threshold.
    n_issues: int
    #: The scope's verdict: any feature has a quality issue.
    has_issues: bool
    #: The largest missing and out-of-range shares of its features.
    max_missing_share: float | None
    max_out_of_range_share: float | None


@dataclass(frozen=True, slots=True)
class QualityFeature:
    """One column's data quality at one scope."""

    scope_kind: str
    scope_key: str
    feature: str
    role: str
    column_kind: str
    n_rows: int
    n_missing: int
    missing_share: float | None
    #: Present values of the wrong type (text in a numerical column).
    n_invalid: int
    #: Numerical: present values outside the reference's [min, max].
    n_out_of_range: int | None
    out_of_range_share: float | None
    #: Categorical: rows whose category the reference never had, and how many such categories.
    n_new_category_rows: int | None
    n_new_categories: int | None
    #: The most frequent new categories and their row counts.
    new_categories: dict[str, int] | None
    #: At most one distinct present value (None when no value is present).
    constant: bool | None
    #: The verdict: a figure breaks a quality threshold.
    issue: bool | None
    #: ok, or a schema problem: missing_column, unexpected_column, type_mismatch.
    status: str


@dataclass(frozen=True, slots=True)
class PerformanceScope:
    """One scope's realised performance (None where undefined or too few labels)."""

    scope_kind: str
    scope_key: str
    status: str
    task: str
    n_rows: int
    n_labelled: int
    label_coverage: float | None
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    roc_auc: float | None
    mae: float | None
    rmse: float | None


@dataclass(frozen=True, slots=True)
class EstimationScope:
    """One scope's performance estimated without labels, as NannyML's CBPE estimates it (the
    expected confusion matrix of the window's calibrated probabilities), with a band and a
    verdict on whether the estimate can be trusted.

    Each figure has a band ``[<figure>_lower, <figure>_upper]``: three sampling errors either
    side (NannyML's band) plus three of the calibration's own (the figure's sampling error at
    the reference's size: a scope's estimate is no more certain than the reference it was
    calibrated on), widened by ``shift_allowance`` where the window's predicted classes
    moved away from the reference's mix beyond noise (the calibration was measured on the
    reference's mix; rows that moved are where it may not hold). Figures are None where
    undefined or the scope has too few scored rows."""

    scope_kind: str
    scope_key: str
    status: str
    task: str
    n_rows: int
    #: Rows with a prediction and the probabilities the estimate needs.
    n_scored: int
    accuracy: float | None
    accuracy_lower: float | None
    accuracy_upper: float | None
    precision: float | None
    precision_lower: float | None
    precision_upper: float | None
    recall: float | None
    recall_lower: float | None
    recall_upper: float | None
    f1: float | None
    f1_lower: float | None
    f1_upper: float | None
    roc_auc: float | None
    roc_auc_lower: float | None
    roc_auc_upper: float | None
    #: The accuracy's sampling error (one standard error) and the band's widening for shift.
    sampling_error: float | None
    shift_allowance: float | None
    #: The window's labelled rows of this scope so far: how many, the accuracy realised on
    #: them, the accuracy the estimate promised for those same rows, and the expected
    #: calibration error of the calibrated probabilities on them (10 bins).
    n_labelled: int
    realised_accuracy: float | None
    expected_accuracy: float | None
    calibration_error: float | None
    #: The trust verdict: False when the evidence says the reference's calibration no longer
    #: describes this scope (an untrusted estimate never reassures); None without an estimate.
    trusted: bool | None
    #: The evidence that decided, one of ``TRUST_EVIDENCE``.
    trust_evidence: str | None
    #: The verdict in one sentence a person reads, naming the evidence and its figures.
    trust_reason: str | None


#: What decided a trust verdict. Not trusted: the labelled rows of this window contradict the
#: estimate (``calibration``); the latest labelled window of this scope did (``history``); the
#: model's outputs drifted while none of its inputs did (``outputs_without_inputs``). Trusted:
#: labelled rows agree with it (``labels_agree``), or nothing contradicts it
#: (``no_contrary_evidence``, which says whether labels were ever there to check it).
CALIBRATION = "calibration"
HISTORY = "history"
OUTPUTS_WITHOUT_INPUTS = "outputs_without_inputs"
LABELS_AGREE = "labels_agree"
NO_CONTRARY_EVIDENCE = "no_contrary_evidence"
TRUST_EVIDENCE = (CALIBRATION, HISTORY, OUTPUTS_WITHOUT_INPUTS, LABELS_AGREE, NO_CONTRARY_EVIDENCE)


@dataclass(frozen=True, slots=True)
class MultivariateScope:
    """One scope's multivariate drift: the mean error with which the reference's principal
    components reconstruct the window's rows (NannyML's data reconstruction drift).

    A change in how features move together (a correlation reversed) raises it while every
    feature's own distribution stays put. The verdict compares the scope's mean with the
    reference's, in units of the spread that means of this many reference rows show (measured
    on the reference's own chunks), under Benjamini-Hochberg across the window's scopes."""

    scope_kind: str
    scope_key: str
    status: str
    n_rows: int
    #: "pca-reconstruction".
    method: str
    #: Principal components kept (enough for 65% of the reference's variance, as NannyML).
    n_components: int
    #: The scope's mean reconstruction error, and the reference's.
    reconstruction_error: float | None
    reference_error: float | None
    #: The spread (standard deviation) of the mean error over reference chunks of this
    #: scope's size.
    sampling_error: float | None
    #: NannyML's thresholds scaled to this scope's size: the reference mean +/- 3 spreads.
    lower_threshold: float | None
    upper_threshold: float | None
    p_value: float | None
    adjusted_p_value: float | None
    #: The verdict after false-discovery control (None: too few rows).
    drifted: bool | None
    #: NannyML's own verdict: the error outside its thresholds, for comparison.
    nannyml_drifted: bool | None


#: Per kind, its scope row type and its (scope, feature) row type.
SCOPE_ROWS: Mapping[str, type] = types.MappingProxyType(
    {
        DRIFT: DriftScope,
        QUALITY: QualityScope,
        PERFORMANCE: PerformanceScope,
        ESTIMATION: EstimationScope,
        MULTIVARIATE: MultivariateScope,
    }
)
FEATURE_ROWS: Mapping[str, type] = types.MappingProxyType(
    {DRIFT: DriftFeature, QUALITY: QualityFeature}
)


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a result schema: name, Python type, whether it may be None."""

    name: str
    type: type
    nullable: bool


_FIELDS: dict[type, tuple[Field, ...]] = {}


def fields_of(row_type: type[Any]) -> tuple[Field, ...]:
    """The declared columns of a result row type, in order."""
    found = _FIELDS.get(row_type)
    if found is None:
        found = _FIELDS[row_type] = _declared(row_type)
    return found


def _declared(row_type: type[Any]) -> tuple[Field, ...]:
    hints = typing.get_type_hints(row_type)
    out = []
    for f in dataclasses.fields(row_type):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = type(None) in typing.get_args(hint)
        base = args[0] if nullable and args else hint
        out.append(Field(f.name, typing.get_origin(base) or base, nullable))
    return tuple(out)


Row = TypeVar("Row")
#: One column of a result table: a list, or a one-dimensional numpy array.
Values = Collection[Any]


class ResultTable(Generic[Row]):
    """Rows of one result type held as columns: one sequence per declared field, equal lengths.

    Analysis builds these from arrays (numpy arrays are sequences too); storage writes the
    columns as they are and hands rows back one by one as ``row_type`` objects."""

    __slots__ = ("columns", "row_type")

    def __init__(self, row_type: type[Row], columns: Mapping[str, Values]) -> None:
        names = [f.name for f in fields_of(row_type)]
        if list(columns) != names:
            raise ValueError(f"{row_type.__name__} columns must be {names}, got {list(columns)}")
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"{row_type.__name__} columns differ in length: {sorted(lengths)}")
        self.row_type = row_type
        self.columns: Mapping[str, Values] = columns

    @classmethod
    def from_rows(cls, row_type: type[Row], rows: Sequence[Row]) -> ResultTable[Row]:
        names = [f.name for f in fields_of(row_type)]
        return cls(row_type, {name: [getattr(r, name) for r in rows] for name in names})

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), ()))

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows())

    def rows(self) -> list[Row]:
        """Every row as a typed object, with plain Python values (no NaN: None)."""
        lists = [plain_values(values) for values in self.columns.values()]
        return [self.row_type(*values) for values in zip(*lists, strict=True)]


def plain_values(values: Values) -> list[Any]:
    """A column as a list of plain Python values: numpy scalars unwrapped, NaN as None."""
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    return [None if isinstance(v, float) and v != v else v for v in items]
