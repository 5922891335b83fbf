"""The model card: a JSON file beside an ONNX model saying how to feed it and read its answer.

Format (``"format": 1``; every key shown is required unless marked optional, unknown keys are
errors so that a typo such as ``"treshold"`` cannot silently fall back to a default)::

    {
      "format": 1,
      "name": "pump-failure",              # model name: 1..128 of A-Z a-z 0-9 _ . - : @
      "version": "1",                      # model version, same alphabet
      "task": "classification",            # the only task so far
      "description": "...",                # optional, free text
      "features": [                        # the request's features, in input order
        {"name": "machine_type", "type": "categorical", "unit": null,
         "categories": ["compressor", "fan", "lathe", "press", "pump"]},
        {"name": "temperature_c", "type": "numeric", "unit": "degC",
         "range": [-40.0, 200.0],          # allowed [min, max]; null: unbounded
         "fill": 48.2}                     # value used for null; null: null is an error
      ],
      "input": {"name": "input",           # the ONNX graph's float32 input, shape [N, C]
                "columns": ["temperature_c", "machine_type=compressor", ...]},
      "outputs": {"probabilities": "probabilities",   # float [N, len(classes)]
                  "label": "label"},       # optional: the graph's own label output (unused)
      "classes": ["fail", "ok"],           # strings or integers, in probability-column order
      "positive_class": "fail",            # optional (null: the label is the arg-max class)
      "threshold": 0.5,                    # P(positive_class) >= threshold -> positive_class
      "metrics": {"roc_auc": 0.95}         # optional, free-form JSON (training metrics)
    }

Preprocessing that is *not* in the ONNX graph, done by the runtime (``monitor.runtime.
preprocess``) exactly as during training:

* A numeric feature ``x`` is the column named ``x``, as float32. ``null`` (or NaN) is
  replaced by the feature's ``fill`` (the training median for the demo model) and counted; a
  feature without ``fill`` rejects ``null``.
* A categorical feature ``c`` is one-hot encoded into the columns ``c=<category>``, one per
  category. An unknown category, or ``null``, gives all zeros and is counted.
* ``input.columns`` lists every column exactly once, in the order of the tensor. The
  canonical order (``canonical_columns``, written by the demo builder) is: the numeric
  features in feature order, then, per categorical feature in feature order, its categories in
  the card's order. Any permutation of that set is accepted.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from monitor.wire import MAX_ID_CHARS

FORMAT = 1
TASKS = ("classification",)
_NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]+")


class CardError(ValueError):
    """A card that cannot be used; ``errors`` lists ``(field path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors))


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature of the model card."""

    name: str
    type: Literal["numeric", "categorical"]
    unit: str | None = None
    range: tuple[float, float] | None = None  # numeric only
    fill: float | None = None  # numeric only
    categories: tuple[str, ...] = ()  # categorical only

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "unit": self.unit}
        if self.type == "numeric":
            out["range"] = list(self.range) if self.range is not None else None
            out["fill"] = self.fill
        else:
            out["categories"] = list(self.categories)
        return out


@dataclass(frozen=True)
class ModelCard:
    """A parsed, validated model card (see the module docstring for the JSON format)."""

    name: str
    version: str
    features: tuple[FeatureSpec, ...]
    input_name: str
    columns: tuple[str, ...]
    probabilities_output: str
    classes: tuple[str | int, ...]
    positive_class: str | int | None = None
    threshold: float = 0.5
    label_output: str | None = None
    task: str = "classification"
    description: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Constructed directly or from JSON, a card is checked the same way.
        errors = _check_card(self)
        if errors:
            raise CardError(errors)

    # -- (de)serialisation -------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelCard:
        """Read and validate a card file; unreadable JSON is a CardError too."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CardError([("card", f"cannot read {path}: {exc}")]) from exc
        except json.JSONDecodeError as exc:
            raise CardError([("card", f"{path} is not JSON: {exc}")]) from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> ModelCard:
        """Validate a decoded card; every problem is reported with its field path."""
        errors: list[tuple[str, str]] = []
        if not isinstance(data, dict):
            raise CardError([("card", "must be a JSON object")])
        known = {
            "format",
            "name",
            "version",
            "task",
            "description",
            "features",
            "input",
            "outputs",
            "classes",
            "positive_class",
            "threshold",
            "metrics",
        }
        optional = {"description", "positive_class", "threshold", "metrics"}
        for key in sorted(set(data) - known):
            errors.append((f"card.{key}", "unknown key"))
        for key in sorted(known - optional - set(data)):
            errors.append((f"card.{key}", "required"))
        if errors:
            raise CardError(errors)
        if data["format"] != FORMAT or isinstance(data["format"], bool):
            raise CardError([("card.format", f"must be {FORMAT}, got {data['format']!r}")])

        features: list[FeatureSpec] = []
        raw_features = data["features"]
        if not isinstance(raw_features, list):
            errors.append(("card.features", "must be a list"))
            raw_features = []
        for i, raw in enumerate(raw_features):
            feature = _feature_from_dict(raw, f"card.features[{i}]", errors)
            if feature is not None:
                features.append(feature)

        input_name, columns = "", ()
        raw_input = data["input"]
        if isinstance(raw_input, dict):
            for key in sorted(set(raw_input) - {"name", "columns"}):
                errors.append((f"card.input.{key}", "unknown key"))
            input_name = _str(raw_input.get("name"), "card.input.name", errors)
            raw_columns = raw_input.get("columns")
            if isinstance(raw_columns, list) and all(isinstance(c, str) for c in raw_columns):
                columns = tuple(raw_columns)
            else:
                errors.append(("card.input.columns", "must be a list of strings"))
        else:
            errors.append(("card.input", "must be an object with name and columns"))

        probabilities, label = "", None
        raw_outputs = data["outputs"]
        if isinstance(raw_outputs, dict):
            for key in sorted(set(raw_outputs) - {"probabilities", "label"}):
                errors.append((f"card.outputs.{key}", "unknown key"))
            probabilities = _str(
                raw_outputs.get("probabilities"), "card.outputs.probabilities", errors
            )
            if raw_outputs.get("label") is not None:
                label = _str(raw_outputs["label"], "card.outputs.label", errors)
        else:
            errors.append(("card.outputs", "must be an object with probabilities (and label)"))

        classes = data["classes"]
        if not isinstance(classes, list):
            errors.append(("card.classes", "must be a list"))
            classes = []
        metrics = data.get("metrics", {})
        if not isinstance(metrics, dict):
            errors.append(("card.metrics", "must be an object"))
            metrics = {}
        description = data.get("description", "")
        if not isinstance(description, str):
            errors.append(("card.description", "must be a string"))
            description = ""
        threshold = data.get("threshold", 0.5)
        if errors:
            raise CardError(errors)
        return cls(
            name=data["name"],
            version=data["version"],
            task=data["task"],
            description=description,
            features=tuple(features),
            input_name=input_name,
            columns=columns,
            probabilities_output=probabilities,
            label_output=label,
            classes=tuple(classes),
            positive_class=data.get("positive_class"),
            threshold=threshold,
            metrics=dict(metrics),
        )

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-able data, keys in the documented order."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "task": self.task,
        }
        if self.description:
            out["description"] = self.description
        out["features"] = [f.to_dict() for f in self.features]
        out["input"] = {"name": self.input_name, "columns": list(self.columns)}
        outputs: dict[str, Any] = {"probabilities": self.probabilities_output}
        if self.label_output is not None:
            outputs["label"] = self.label_output
        out["outputs"] = outputs
        out["classes"] = list(self.classes)
        out["positive_class"] = self.positive_class
        out["threshold"] = self.threshold
        out["metrics"] = self.metrics
        return out

    def dumps(self) -> str:
        """Canonical JSON text (2-space indent, trailing newline): same card, same bytes."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(self.dumps(), encoding="utf-8")

    def with_version(self, version: str) -> ModelCard:
        """The same card for another version (e.g. a retrained model with the same inputs)."""
        return replace(self, version=version)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


def canonical_columns(features: tuple[FeatureSpec, ...] | list[FeatureSpec]) -> tuple[str, ...]:
    """The documented column order: numeric features, then each categorical's one-hot columns."""
    numeric = [f.name for f in features if f.type == "numeric"]
    onehot = [f"{f.name}={c}" for f in features if f.type == "categorical" for c in f.categories]
    return (*numeric, *onehot)


# -- validation helpers -------------------------------------------------------------------------


def _str(value: Any, path: str, errors: list[tuple[str, str]]) -> str:
    if not isinstance(value, str) or not value:
        errors.append((path, "must be a non-empty string"))
        return ""
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _feature_from_dict(raw: Any, path: str, errors: list[tuple[str, str]]) -> FeatureSpec | None:
    if not isinstance(raw, dict):
        errors.append((path, "must be an object"))
        return None
    kind = raw.get("type")
    if kind not in ("numeric", "categorical"):
        errors.append((f"{path}.type", "must be 'numeric' or 'categorical'"))
        return None
    allowed = {"name", "type", "unit"} | (
        {"range", "fill"} if kind == "numeric" else {"categories"}
    )
    bad = sorted(set(raw) - allowed)
    for key in bad:
        errors.append((f"{path}.{key}", f"unknown key for a {kind} feature"))
    name = raw.get("name")
    unit = raw.get("unit")
    if unit is not None and not isinstance(unit, str):
        errors.append((f"{path}.unit", "must be a string or null"))
        return None
    if bad or not isinstance(name, str):
        if not isinstance(name, str):
            errors.append((f"{path}.name", "must be a string"))
        return None
    if kind == "numeric":
        range_ = raw.get("range")
        if range_ is not None:
            if not (isinstance(range_, list) and len(range_) == 2 and all(map(_number, range_))):
                errors.append((f"{path}.range", "must be [min, max] numbers, or null"))
                return None
            range_ = (float(range_[0]), float(range_[1]))
        fill = raw.get("fill")
        if fill is not None and not _number(fill):
            errors.append((f"{path}.fill", "must be a finite number or null"))
            return None
        return FeatureSpec(name, "numeric", unit, range_, None if fill is None else float(fill))
    categories = raw.get("categories")
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        errors.append((f"{path}.categories", "must be a list of strings"))
        return None
    return FeatureSpec(name, "categorical", unit, categories=tuple(categories))


def _check_card(card: ModelCard) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for key in ("name", "version"):
        value = getattr(card, key)
        if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
            errors.append((f"card.{key}", f"must be a string of 1..{MAX_ID_CHARS} characters"))
        elif not _NAME_RE.fullmatch(value):
            errors.append((f"card.{key}", "may hold only letters, digits and _ . - : @"))
    if card.task not in TASKS:
        errors.append(("card.task", f"must be one of {', '.join(TASKS)}"))
    if not card.features:
        errors.append(("card.features", "must list at least one feature"))
    seen: set[str] = set()
    for i, f in enumerate(card.features):
        path = f"card.features[{i}]"
        if not f.name or "=" in f.name:
            errors.append((f"{path}.name", "must be non-empty and without '='"))
        elif f.name in seen:
            errors.append((f"{path}.name", f"duplicate feature {f.name!r}"))
        seen.add(f.name)
        if f.type == "numeric":
            if f.range is not None and not f.range[0] <= f.range[1]:
                errors.append((f"{path}.range", "min must be <= max"))
        elif f.type == "categorical":
            if not f.categories:
                errors.append((f"{path}.categories", "must list at least one category"))
            if len(set(f.categories)) != len(f.categories):
                errors.append((f"{path}.categories", "has duplicates"))
        else:
            errors.append((f"{path}.type", "must be 'numeric' or 'categorical'"))
    if not errors:
        expected = canonical_columns(card.features)
        if sorted(card.columns) != sorted(expected):
            missing = sorted(set(expected) - set(card.columns))
            extra = sorted(set(card.columns) - set(expected))
            duplicated = len(card.columns) != len(set(card.columns))
            problem = "; ".join(
                p
                for p in (
                    f"missing {missing}" if missing else "",
                    f"unknown {extra}" if extra else "",
                    "duplicates" if duplicated else "",
                )
                if p
            )
            errors.append(("card.input.columns", f"must list each feature column once: {problem}"))
    if not isinstance(card.input_name, str) or not card.input_name:
        errors.append(("card.input.name", "must be a non-empty string"))
    if len(card.classes) < 2:
        errors.append(("card.classes", "must list at least two classes"))
    bad_classes = [
        (f"card.classes[{i}]", "must be a string or an integer")
        for i, c in enumerate(card.classes)
        if isinstance(c, bool) or not isinstance(c, (str, int))
    ]
    errors += bad_classes
    if not bad_classes and len(set(card.classes)) != len(card.classes):
        errors.append(("card.classes", "has duplicates"))
    if card.positive_class is not None and (
        isinstance(card.positive_class, bool) or card.positive_class not in card.classes
    ):
        errors.append(("card.positive_class", "must be one of classes, or null"))
    if not _number(card.threshold) or not 0.0 <= card.threshold <= 1.0:
        errors.append(("card.threshold", "must be a number in [0, 1]"))
    try:
        json.dumps(card.metrics, allow_nan=False)
    except (TypeError, ValueError):
        errors.append(("card.metrics", "must be JSON (finite numbers)"))
    return errors


def check_card(data: Any, model: str) -> ModelCard:
    """A card fit for registering under ``model``: valid, and naming that model. The version
    it names may differ: the registry's version is the one nodes are assigned."""
    card = ModelCard.from_dict(data)
    if card.name != model:
        raise CardError([("card.name", f"names model {card.name!r}, not {model!r}")])
    return card
