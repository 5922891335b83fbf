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
from monitor.storage import registry
from monitor.storage.payload import FEATURE_PREFIX, PROBA_PREFIX

_META = {"prediction", "label", "ts", "node_id", "record_id", "request_id", "latency_ms"}


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
            renamed[name] = PROBA_PREFIX + name.removeprefix("probability_")
        elif not features or name in features:
            renamed[name] = FEATURE_PREFIX + name
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
