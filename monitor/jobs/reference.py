"""Each model version's reference data, read from the registry once and kept profiled.

A reference dataset is a Parquet file; the version's data schema (``monitor.dataschema``)
says which of its columns are features, of which kind, and which hold the prediction, the
class probabilities and the label. It is turned into the shape of a window (``feature:<name>``,
``prediction``, ``proba:<class>``, ``label``) so that the analysis compares like with like, and
profiled with the schema's kinds, so that every window is read with the same kinds (an integer
code declared categorical stays a category when nodes send it as a number).

A version registered before schemas were kept uses its card's; without either, every column
but the window's own is a feature with the kind the analysis infers.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from monitor.analysis import DriftSpec, ReferenceProfile
from monitor.analysis.estimation import Estimator
from monitor.analysis.multivariate import Reconstruction
from monitor.dataschema import CATEGORICAL, CLASSIFICATION, NUMERICAL, DataSchema, version_schema
from monitor.schema import (
    FEATURE_PREFIX,
    LATENCY_MS,
    MODEL_VERSION_ID,
    NODE_ID,
    PREDICTION,
    PROBA_PREFIX,
    ROW_KEY,
    TS,
    feature_column,
    proba_column,
)
from monitor.storage import registry

#: Columns a reference file may carry beside its features (a window frame's own, or a record's
#: identity as a data export names it): never features.
_META = {
    PREDICTION,
    "label",
    TS,
    NODE_ID,
    ROW_KEY,
    MODEL_VERSION_ID,
    LATENCY_MS,
    "record_id",
    "request_id",
}


@dataclass(frozen=True, eq=False)
class Reference:
    """A version's reference rows in window shape, their profile, its data schema (task,
    classes, positive class) and its model card (empty without one)."""

    version_id: int
    frame: pd.DataFrame
    profile: ReferenceProfile
    card: dict[str, Any]
    schema: DataSchema | None = field(default=None)

    def task(self) -> tuple[str, Sequence[Any] | None, Any]:
        """The model's task, classes (None: as seen) and positive class: from the version's
        data schema, which knows them for a model without a card (reference-only), else its
        card."""
        if self.schema is not None:
            return self.schema.task, self.schema.classes or None, self.schema.positive_class
        card = self.card
        return card.get("task", "classification"), card.get("classes"), card.get("positive_class")

    # Fitted on first use and kept with the reference (the cache holds a few versions): a
    # calibration and a PCA per model version, never per window.
    @cached_property
    def estimator(self) -> Estimator:
        """The reference's calibration, for estimating performance without labels."""
        task, classes, positive = self.task()
        return Estimator.fit(self.frame, task=task, classes=classes, positive_class=positive)

    @cached_property
    def reconstruction(self) -> Reconstruction:
        """The reference's principal components, for multivariate drift."""
        return Reconstruction.fit(self.frame, self.profile)


def window_shaped(reference: pd.DataFrame, schema: DataSchema | None = None) -> pd.DataFrame:
    """A reference frame renamed like a window: the schema's features prefixed, its prediction,
    probability and label columns named as a window names them, its other columns left out;
    text columns become categoricals, as in windows. Without a schema, every column but a
    window's own is a feature."""
    if schema is None:
        frame = _all_features(reference)
    else:
        columns = {str(c): c for c in reference.columns}
        renamed: dict[str, str] = {}
        for name in schema.feature_names:
            for column in (name, feature_column(name)):
                if column in columns:
                    renamed[column] = feature_column(name)
                    break
        if schema.prediction is not None:
            renamed[schema.prediction] = PREDICTION
        for cls, column in schema.probabilities.items():
            renamed[column] = proba_column(cls)
        if schema.label is not None:
            renamed[schema.label] = "label"
        # Built anew, so that a left-out column named like a window's cannot collide.
        frame = pd.DataFrame(
            {new: reference[columns[old]] for old, new in renamed.items() if old in columns},
            index=reference.index,
        )
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].astype("category")
    return frame


def _all_features(reference: pd.DataFrame) -> pd.DataFrame:
    renamed: dict[str, str] = {}
    for column in reference.columns:
        name = str(column)
        if name.startswith((FEATURE_PREFIX, PROBA_PREFIX)) or name in _META:
            continue
        if name.startswith("probability_"):
            renamed[name] = proba_column(name.removeprefix("probability_"))
        else:
            renamed[name] = feature_column(name)
    return reference.rename(columns=renamed)


def drift_spec(
    frame: pd.DataFrame, schema: DataSchema | None, base: DriftSpec | None = None
) -> DriftSpec:
    """The drift settings of a window-shaped reference: ``base``'s, with the schema's kinds for
    its features (and its prediction: a class is a category, a regression's value a number)
    where ``base`` does not set one."""
    base = base or DriftSpec()
    if schema is None:
        return base
    kinds = {name: kind for name, kind in schema.features if feature_column(name) in frame.columns}
    if PREDICTION in frame.columns:
        if schema.task == CLASSIFICATION:
            kinds[PREDICTION] = CATEGORICAL
        elif pd.api.types.is_numeric_dtype(frame[PREDICTION].dtype):
            kinds[PREDICTION] = NUMERICAL
    return DriftSpec(
        methods=base.methods,
        thresholds=base.thresholds,
        kinds={**kinds, **base.kinds},  # type: ignore[dict-item]
        prediction=base.prediction,
        probabilities=base.probabilities,
    )


class ReferenceCache:
    """The last few versions' references, loaded once per process (again when a version gets
    its reference after it was first looked at)."""

    def __init__(self, size: int = 8, spec: DriftSpec | None = None) -> None:
        self._size = size
        self._spec = spec
        self._items: OrderedDict[int, tuple[datetime | None, Reference | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conn: Connection, version: registry.Version) -> Reference | None:
        """The version's reference, or None when it was registered without one."""
        with self._lock:
            cached = self._items.get(version.id)
            # A version nodes reported is registered later: its registration time tells.
            if cached is not None and cached[0] == version.registered_at:
                self._items.move_to_end(version.id)
                return cached[1]
        blob = registry.reference(conn, version.id)
        loaded = None
        if blob is not None:
            raw = pd.read_parquet(io.BytesIO(blob))
            schema = version_schema(version.schema, version.card, [str(c) for c in raw.columns])
            frame = window_shaped(raw, schema)
            profile = ReferenceProfile.build(frame, drift_spec(frame, schema, self._spec))
            loaded = Reference(version.id, frame, profile, version.card or {}, schema)
        with self._lock:
            self._items[version.id] = (version.registered_at, loaded)
            self._items.move_to_end(version.id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return loaded
