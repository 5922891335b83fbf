"""Reference datasets: a version's data schema, inferred from its reference data, overridden
by what a person says about it, or given whole (``monitor.dataschema``).

Inference, column by column (every rule can be overridden, and the result is shown to the
person registering, so that a wrong guess is seen and fixed at once):

* ``prediction`` and ``label`` are the prediction and the label, when present; ``proba:<class>``
  and ``probability_<class>`` are class probabilities.
* A record's identity and the window's own columns (``ts``, ``node_id``, ``request_id``,
  ``record_id``, ``latency_ms``, ...) are not features.
* Text, booleans and pandas categoricals are categorical features; floats are numerical.
* An integer column is categorical when it holds at most ``CODE_LIMIT`` distinct values, all
  of them non-negative (codes such as an error code, a shift number, a product class), and
  numerical otherwise (counts, ids and measurements with many values, negative values).
  Evidently's own rule stops at 10 distinct values, which is what turned 12 error codes into a
  number; 20 covers most code lists, and ``--categorical`` covers the rest. A CSV integer
  column with a gap reads as floats: it is numerical unless declared categorical.
* The task is classification when there are class probabilities, or the prediction (else the
  label) is text, boolean, or an integer with at most ``CODE_LIMIT`` distinct values;
  regression when it is another number; classification when there is neither.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from monitor import wire
from monitor.dataschema import (
    CATEGORICAL,
    CLASSIFICATION,
    NUMERICAL,
    REGRESSION,
    TASKS,
    DataSchema,
    SchemaError,
)
from monitor.errors import ValidationFailed

#: An integer column with at most this many distinct non-negative values is inferred as a
#: categorical code; so is an integer prediction (a class) for the task.
CODE_LIMIT = 20
#: Classes are listed from the reference's predictions and labels up to this many.
MAX_CLASSES = 100
#: Columns that are never features unless a person says so: a window's own columns, a
#: record's identity as a data export names it.
META_COLUMNS = frozenset(
    {"ts", "node_id", "row_key", "model_version_id", "latency_ms", "record_id", "request_id"}
)
_PROBA_PREFIXES = ("proba:", "probability_")
_FEATURE_PREFIX = "feature:"


class UnknownColumn(ValidationFailed):
    """An override names a column the reference does not have."""


@dataclass(frozen=True)
class SchemaChoice:
    """What a person said about a reference's schema; anything unsaid is inferred.

    ``schema`` is a whole schema (its JSON form), used instead of inference: it excludes the
    other choices. ``field_names`` names each choice as the caller's input does (a CLI flag,
    an API body field), for error messages."""

    categorical: tuple[str, ...] = ()
    numerical: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    prediction: str | None = None
    label: str | None = None
    probabilities: Mapping[str, str] = field(default_factory=dict)
    task: str | None = None
    positive_class: str | None = None
    schema: Any = None
    field_names: Mapping[str, str] = field(default_factory=dict)

    def name_of(self, choice: str) -> str:
        return self.field_names.get(choice, choice)

    @property
    def overrides(self) -> list[str]:
        """The choices made besides a whole schema."""
        given = {
            "categorical": self.categorical,
            "numerical": self.numerical,
            "ignore": self.ignore,
            "prediction": self.prediction,
            "label": self.label,
            "probabilities": self.probabilities,
            "task": self.task,
            "positive_class": self.positive_class,
        }
        return [name for name, value in given.items() if value]


@dataclass(frozen=True)
class Inferred:
    """A reference's schema and the reference columns it leaves out."""

    schema: DataSchema
    ignored: tuple[str, ...]


def read_reference(parquet: bytes) -> pd.DataFrame:
    """Reference data (Parquet bytes, as stored) as a frame with text column names."""
    frame = pd.read_parquet(io.BytesIO(parquet))
    frame.columns = [str(c) for c in frame.columns]
    return frame


def reference_columns(parquet: bytes) -> list[str]:
    """The column names of reference data (Parquet bytes), without reading its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return [str(name) for name in pq.ParquetFile(pa.BufferReader(parquet)).schema_arrow.names]


def infer_schema(frame: pd.DataFrame, choice: SchemaChoice | None = None) -> Inferred:
    """The schema of a reference frame: inferred, with ``choice`` applied."""
    choice = choice or SchemaChoice()
    columns = [str(c) for c in frame.columns]
    for column in columns:
        # The schema is stored as JSON: PostgreSQL stores no NUL, UTF-8 no lone surrogate.
        if not wire.text_ok(column):
            raise _invalid(
                "reference", f"the reference has a column name that is not text: {column!r}"
            )
    if choice.schema is not None:
        if choice.overrides:
            raise _invalid(
                choice.name_of("schema"),
                f"{choice.name_of('schema')} gives the whole schema: it excludes "
                + ", ".join(choice.name_of(name) for name in choice.overrides),
            )
        try:
            schema = DataSchema.from_json(choice.schema, choice.name_of("schema"))
        except SchemaError as exc:
            raise ValidationFailed(
                f"invalid schema: {exc}",
                details=[
                    {"code": "invalid_field", "field": p, "message": m} for p, m in exc.errors
                ],
            ) from exc
        for column, role, _ in schema.columns():
            if _column_of(column, columns, role) is None:
                raise _unknown(choice.name_of("schema"), column, columns)
    else:
        schema = _inferred(frame, columns, choice)
    _check_kinds(frame, columns, schema, choice)
    named = {_column_of(column, columns, role) for column, role, _ in schema.columns()}
    return Inferred(schema, tuple(c for c in columns if c not in named))


def _inferred(frame: pd.DataFrame, columns: list[str], choice: SchemaChoice) -> DataSchema:
    for name, given in (
        ("categorical", choice.categorical),
        ("numerical", choice.numerical),
        ("ignore", choice.ignore),
        ("prediction", [choice.prediction] if choice.prediction else []),
        ("label", [choice.label] if choice.label else []),
        ("probabilities", list(choice.probabilities.values())),
    ):
        for column in given:
            if column not in columns:
                raise _unknown(choice.name_of(name), column, columns)
    both = sorted(set(choice.categorical) & set(choice.numerical))
    if both:
        raise _invalid(
            choice.name_of("categorical"),
            f"column {both[0]!r} is declared both {choice.name_of('categorical')} and "
            f"{choice.name_of('numerical')}",
        )
    declared = {c: CATEGORICAL for c in choice.categorical} | {
        c: NUMERICAL for c in choice.numerical
    }
    # A column declared a feature is not also the default prediction or label.
    prediction = choice.prediction or _default("prediction", columns, declared, choice.ignore)
    label = choice.label or _default("label", columns, declared, choice.ignore)
    probabilities = dict(choice.probabilities) or {
        column.removeprefix(prefix): column
        for column in columns
        for prefix in _PROBA_PREFIXES
        if column.startswith(prefix) and column not in declared and column not in choice.ignore
    }
    roles = {prediction, label, *probabilities.values()}
    features: list[tuple[str, str]] = []
    for column in columns:
        if column in choice.ignore or (column in roles and column not in declared):
            continue
        kind = declared.get(column)
        if kind is None and column not in META_COLUMNS:
            kind = infer_kind(frame[column])
        if kind is not None:
            features.append((column.removeprefix(_FEATURE_PREFIX), kind))
    if not features:
        raise _invalid(
            "reference",
            f"the reference has no feature column (its columns: {', '.join(columns)}); "
            f"name one with {choice.name_of('categorical')} or {choice.name_of('numerical')}",
        )
    task = choice.task or _infer_task(frame, prediction, label, probabilities)
    if task not in TASKS:
        raise _invalid(choice.name_of("task"), f"the task must be one of {', '.join(TASKS)}")
    classes: tuple[str | int, ...] = ()
    if task == CLASSIFICATION:
        classes = tuple(probabilities) or _classes(frame, prediction, label)
    positive: str | int | None = None
    if choice.positive_class is not None:
        positive = next((c for c in classes if str(c) == choice.positive_class), None)
        if positive is None:
            raise _invalid(
                choice.name_of("positive_class"),
                f"the positive class {choice.positive_class!r} is not one of the classes "
                f"({', '.join(map(str, classes)) or 'none found'})",
            )
    try:
        return DataSchema(
            features=tuple(features),
            prediction=prediction,
            label=label,
            probabilities=probabilities if task == CLASSIFICATION else {},
            task=task,
            classes=classes,
            positive_class=positive,
        )
    except SchemaError as exc:
        raise ValidationFailed(
            f"cannot use this reference: {exc}",
            details=[{"code": "invalid_field", "field": "reference", "message": str(exc)}],
        ) from exc


def infer_kind(series: pd.Series) -> str | None:
    """A reference column's kind (the rules in this module's docstring); None for a column
    that is no feature (dates, all missing)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return CATEGORICAL
    if pd.api.types.is_integer_dtype(dtype):
        return CATEGORICAL if _is_code(series) else NUMERICAL
    if pd.api.types.is_float_dtype(dtype):
        return NUMERICAL
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return CATEGORICAL if series.notna().any() else None
    return None


def _is_code(series: pd.Series) -> bool:
    present = series.dropna()
    return bool(present.nunique() <= CODE_LIMIT and (present >= 0).all())


def _default(
    name: str, columns: Sequence[str], declared: Mapping[str, str], ignored: Sequence[str]
) -> str | None:
    return name if name in columns and name not in declared and name not in ignored else None


def _infer_task(
    frame: pd.DataFrame, prediction: str | None, label: str | None, probabilities: Mapping[str, str]
) -> str:
    if probabilities:
        return CLASSIFICATION
    for column in (prediction, label):
        if column is None:
            continue
        series = frame[column]
        if pd.api.types.is_integer_dtype(series.dtype):
            return CLASSIFICATION if series.nunique() <= CODE_LIMIT else REGRESSION
        if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
            series.dtype
        ):
            return REGRESSION
        return CLASSIFICATION
    return CLASSIFICATION


def _classes(frame: pd.DataFrame, *columns: str | None) -> tuple[str | int, ...]:
    """The classes the reference's predictions and labels hold, when few: ints stay ints."""
    values: set[str | int] = set()
    for column in columns:
        if column is None:
            continue
        for value in frame[column].dropna().unique().tolist():
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            values.add(
                value if isinstance(value, int) and not isinstance(value, bool) else str(value)
            )
            if len(values) > MAX_CLASSES:
                return ()
    # Numbers first, then texts: each compared only with its own kind.
    return tuple(sorted(values, key=lambda v: (isinstance(v, str), v)))


def _column_of(column: str, columns: Sequence[str], role: str) -> str | None:
    """The reference column a schema name refers to (a feature may be ``feature:<name>``)."""
    if column in columns:
        return column
    prefixed = _FEATURE_PREFIX + column
    return prefixed if role == "feature" and prefixed in columns else None


def _check_kinds(
    frame: pd.DataFrame, columns: Sequence[str], schema: DataSchema, choice: SchemaChoice
) -> None:
    """A numerical feature must hold numbers: text would be counted as invalid in every
    window, not measured."""
    for name, kind in schema.features:
        column = _column_of(name, columns, "feature")
        if kind != NUMERICAL or column is None:
            continue
        series = frame[column]
        numeric = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
            series.dtype
        )
        if not numeric:
            where = choice.name_of("schema" if choice.schema is not None else "numerical")
            raise _invalid(
                where,
                f"column {column!r} holds {series.dtype} values, not numbers: "
                "it cannot be numerical",
            )


def _invalid(field_name: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        message, details=[{"code": "invalid_field", "field": field_name, "message": message}]
    )


def _unknown(field_name: str, column: str, columns: Sequence[str]) -> UnknownColumn:
    message = (
        f"{field_name}: the reference has no column {column!r} (its columns: {', '.join(columns)})"
    )
    return UnknownColumn(
        message, details=[{"code": "unknown_column", "field": field_name, "message": message}]
    )
