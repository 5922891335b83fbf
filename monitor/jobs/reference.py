"""Each model version's reference data, read from the registry once and kept profiled.

A reference dataset is a Parquet file with one column per feature (named as the features),
optionally ``prediction``, class probabilities (``proba:<class>`` or ``probability_<class>``)
and ``label``. It is turned into the shape of a window (``feature:<name>`` columns) so that
the analysis compares like with like.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from monitor.analysis import DriftSpec, ReferenceProfile
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
    """A version's reference rows in window shape, their profile, and its model card."""

    version_id: int
    frame: pd.DataFrame
    profile: ReferenceProfile
    card: dict[str, Any]


def window_shaped(reference: pd.DataFrame, card: dict[str, Any] | None = None) -> pd.DataFrame:
    """A reference frame renamed like a window: features prefixed, probabilities as
    ``proba:<class>``; text columns become categoricals, as in windows."""
    features = [f["name"] for f in (card or {}).get("features", []) if isinstance(f, dict)]
    renamed: dict[str, str] = {}
    for column in reference.columns:
        name = str(column)
        if name.startswith((FEATURE_PREFIX, PROBA_PREFIX)) or name in _META:
            continue
        if name.startswith("probability_"):
            renamed[name] = proba_column(name.removeprefix("probability_"))
        elif not features or name in features:
            renamed[name] = feature_column(name)
    frame = reference.rename(columns=renamed)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].astype("category")
    return frame


class ReferenceCache:
    """The last few versions' references, loaded once per process."""

    def __init__(self, size: int = 8, spec: DriftSpec | None = None) -> None:
        self._size = size
        self._spec = spec
        self._items: OrderedDict[int, Reference | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conn: Connection, version: registry.Version) -> Reference | None:
        """The version's reference, or None when it was registered without one."""
        with self._lock:
            if version.id in self._items:
                self._items.move_to_end(version.id)
                return self._items[version.id]
        blob = registry.reference(conn, version.id)
        loaded = None
        if blob is not None:
            frame = window_shaped(pd.read_parquet(io.BytesIO(blob)), version.card)
            loaded = Reference(
                version.id, frame, ReferenceProfile.build(frame, self._spec), version.card or {}
            )
        with self._lock:
            self._items[version.id] = loaded
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return loaded
