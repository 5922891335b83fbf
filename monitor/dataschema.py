"""A model version's data schema: which reference columns are features (and of which kind),
which hold the prediction, the class probabilities and the label, and the model's task.

It is stored with each version (``model_versions.schema``) and read by the worker, which
analyses exactly these features with exactly these kinds. It comes from the model card when a
version is registered with one, else it is inferred from the reference data (overridable), or
given as a JSON file (``edge-monitor models register NAME --version V --reference FILE
--schema FILE``). Standard library only.

JSON format (unknown keys are errors, so that a typo cannot silently fall back to a default)::

    {
      "format": 1,                              # optional; 1 is the only format
      "features": [                             # required, at least one; in any order
        {"name": "machine_type", "kind": "categorical"},
        {"name": "error_code", "kind": "categorical"},   # an integer code: a category
        {"name": "temperature_c", "kind": "numerical"}
      ],
      "prediction": "prediction",               # optional: the prediction's column, or null
      "label": "label",                         # optional: the label's column, or null
      "probabilities": {"fail": "proba:fail",   # optional: class -> its probability's column
                        "ok": "proba:ok"},
      "task": "classification",                 # optional: "classification" (default) or
                                                # "regression"
      "classes": ["fail", "ok"],                # optional: strings or integers
      "positive_class": "fail"                  # optional: one of classes (binary metrics)
    }

Names are the reference file's column names (a feature's column may also be named
``feature:<name>``); columns the schema does not name are not analysed. A feature's kind is
``numerical`` or ``categorical``: a categorical feature is compared category by category,
whatever its values look like (an integer code sent by nodes as a number stays a category).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

FORMAT = 1
NUMERICAL = "numerical"
CATEGORICAL = "categorical"
KINDS = (NUMERICAL, CATEGORICAL)
CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)

#: A column's part in the schema, as ``DataSchema.columns`` lists them.
FEATURE = "feature"
PREDICTION = "prediction"
PROBABILITY = "probability"
LABEL = "label"

_KEYS = {
    "format",
    "features",
    "prediction",
    "label",
    "probabilities",
    "task",
    "classes",
    "positive_class",
}
#: The card's feature types and the schema's kinds.
_CARD_KINDS = {"numeric": NUMERICAL, "categorical": CATEGORICAL}


class SchemaError(ValueError):
    """A schema that cannot be used; ``errors`` lists ``(field path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors))


@dataclass(frozen=True, eq=True)
class DataSchema:
    """What a version's data holds: features with their kinds, the prediction, probability and
    label columns, the task and its classes."""

    #: ``(name, kind)`` pairs, kind ``numerical`` or ``categorical``.
    features: tuple[tuple[str, str], ...]
    prediction: str | None = None
    label: str | None = None
    #: Class -> the column of its probability.
    probabilities: Mapping[str, str] = field(default_factory=dict)
    task: str = CLASSIFICATION
    classes: tuple[str | int, ...] = ()
    positive_class: str | int | None = None

    def __post_init__(self) -> None:
        # Frozen means frozen: the mapping cannot change under a cached reference.
        object.__setattr__(self, "probabilities", MappingProxyType(dict(self.probabilities)))
        errors = _check(self)
        if errors:
            raise SchemaError(errors)

    @property
    def kinds(self) -> dict[str, str]:
        """Feature name -> kind."""
        return dict(self.features)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.features)

    def columns(self) -> list[tuple[str, str, str | None]]:
        """Every column the schema names: ``(column, role, kind)``, features first; kind is
        None for the prediction, probabilities and label."""
        out: list[tuple[str, str, str | None]] = [(n, FEATURE, k) for n, k in self.features]
        if self.prediction is not None:
            out.append((self.prediction, PREDICTION, None))
        out += [(column, PROBABILITY, None) for column in self.probabilities.values()]
        if self.label is not None:
            out.append((self.label, LABEL, None))
        return out

    def to_json(self) -> dict[str, Any]:
        """The schema as JSON (the format in this module's docstring)."""
        return {
            "format": FORMAT,
            "features": [{"name": n, "kind": k} for n, k in self.features],
            "prediction": self.prediction,
            "label": self.label,
            "probabilities": dict(self.probabilities),
            "task": self.task,
            "classes": list(self.classes),
            "positive_class": self.positive_class,
        }

    @classmethod
    def from_json(cls, data: Any, path: str = "schema") -> DataSchema:
        """A schema from its JSON form; every problem is listed with its field path (``path``
        names the whole, e.g. ``schema``)."""
        if not isinstance(data, dict):
            raise SchemaError([(path, "must be an object")])
        errors = [(f"{path}.{key}", "unknown key") for key in sorted(set(data) - _KEYS, key=str)]
        if data.get("format", FORMAT) != FORMAT:
            errors.append((f"{path}.format", f"must be {FORMAT}"))
        features: list[tuple[str, str]] = []
        raw_features = data.get("features")
        if not isinstance(raw_features, list):
            errors.append((f"{path}.features", "must be a list of {name, kind} objects"))
            raw_features = []
        for i, raw in enumerate(raw_features):
            where = f"{path}.features[{i}]"
            if not isinstance(raw, dict):
                errors.append((where, "must be an object with name and kind"))
                continue
            errors += [(f"{where}.{k}", "unknown key") for k in sorted(set(raw) - {"name", "kind"})]
            name, kind = raw.get("name"), raw.get("kind")
            if not isinstance(name, str):
                errors.append((f"{where}.name", "must be a string"))
            if kind not in KINDS:
                errors.append((f"{where}.kind", f"must be one of {', '.join(KINDS)}"))
            if isinstance(name, str) and kind in KINDS:
                features.append((name, kind))
        probabilities = data.get("probabilities") or {}
        if not isinstance(probabilities, dict):
            errors.append((f"{path}.probabilities", "must map each class to a column"))
            probabilities = {}
        classes = data.get("classes") or []
        if not isinstance(classes, list):
            errors.append((f"{path}.classes", "must be a list"))
            classes = []
        task = data.get("task", CLASSIFICATION)
        values = {"prediction": data.get("prediction"), "label": data.get("label")}
        for key, value in values.items():
            if value is not None and not isinstance(value, str):
                errors.append((f"{path}.{key}", "must be a column name or null"))
                values[key] = None
        if errors:
            raise SchemaError(errors)
        try:
            return cls(
                features=tuple(features),
                prediction=values["prediction"],
                label=values["label"],
                probabilities=probabilities,
                task=task,
                classes=tuple(classes),
                positive_class=data.get("positive_class"),
            )
        except SchemaError as exc:
            raise SchemaError([(f"{path}.{p}", m) for p, m in exc.errors]) from exc

    @classmethod
    def from_card(cls, card: Mapping[str, Any], columns: Any = ()) -> DataSchema:
        """The schema a model card implies. ``columns`` are the reference's columns, if any:
        they tell which names its prediction, probabilities and label have (``proba:<class>``
        or ``probability_<class>``); without them the window's own names are used."""
        present = set(columns)
        features = tuple(
            (str(f["name"]), _CARD_KINDS.get(str(f.get("type")), NUMERICAL))
            for f in card.get("features", [])
            if isinstance(f, dict) and "name" in f
        )
        classes = tuple(card.get("classes") or ())
        probabilities = {}
        for c in classes:
            long = f"probability_{c}"
            probabilities[str(c)] = long if long in present else f"proba:{c}"
        return cls(
            features=features,
            prediction="prediction" if not present or "prediction" in present else None,
            label="label" if not present or "label" in present else None,
            probabilities=probabilities,
            task=card.get("task", CLASSIFICATION),
            classes=classes,
            positive_class=card.get("positive_class"),
        )


def version_schema(
    schema: Mapping[str, Any] | None, card: Mapping[str, Any] | None, columns: Any = ()
) -> DataSchema | None:
    """A version's schema: the one it was registered with; for a version registered before
    schemas were kept, its card's (``columns``: its reference's); None without either."""
    if schema is not None:
        return DataSchema.from_json(schema)
    if card:
        try:
            return DataSchema.from_card(card, columns)
        except SchemaError:
            return None
    return None


def _check(schema: DataSchema) -> list[tuple[str, str]]:
    """Problems of a schema, with paths relative to it."""
    errors: list[tuple[str, str]] = []
    if not schema.features:
        errors.append(("features", "must name at least one feature"))
    seen: dict[str, str] = {}
    for i, (name, kind) in enumerate(schema.features):
        if not isinstance(name, str) or not name:
            errors.append((f"features[{i}].name", "must be a non-empty string"))
        elif name in seen:
            errors.append((f"features[{i}].name", f"{name!r} is listed twice"))
        if kind not in KINDS:
            errors.append((f"features[{i}].kind", f"must be one of {', '.join(KINDS)}"))
        seen[name] = FEATURE
    for key, column in (("prediction", schema.prediction), ("label", schema.label)):
        if column is None:
            continue
        if not isinstance(column, str) or not column:
            errors.append((key, "must be a column name or null"))
        elif column in seen:
            errors.append((key, f"column {column!r} is already the {seen[column]}"))
        else:
            seen[column] = key
    for cls, column in schema.probabilities.items():
        if not isinstance(cls, str) or not cls:
            errors.append(("probabilities", "classes must be non-empty strings"))
        elif not isinstance(column, str) or not column:
            errors.append((f"probabilities.{cls}", "must be a column name"))
        elif column in seen:
            errors.append(
                (f"probabilities.{cls}", f"column {column!r} is already the {seen[column]}")
            )
        else:
            seen[column] = f"probability of {cls!r}"
    if schema.task not in TASKS:
        errors.append(("task", f"must be one of {', '.join(TASKS)}"))
    bad = [
        (f"classes[{i}]", "must be a string or an integer")
        for i, c in enumerate(schema.classes)
        if isinstance(c, bool) or not isinstance(c, str | int)
    ]
    errors += bad
    if not bad and len(set(schema.classes)) != len(schema.classes):
        errors.append(("classes", "has duplicates"))
    if schema.positive_class is not None and (
        isinstance(schema.positive_class, bool) or schema.positive_class not in schema.classes
    ):
        errors.append(("positive_class", "must be one of classes, or null"))
    if schema.task == REGRESSION and (schema.probabilities or schema.classes):
        errors.append(("task", "a regression has no classes or class probabilities"))
    return errors
