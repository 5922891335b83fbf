"""Labelled records: a model's stored records that got a label, with the label, for retraining.

Read through the window loader (columnar payloads) and the labels join that analysis uses, so
a record counts as labelled here exactly when its window's accuracy counts it. The span is
read newest first, one slice at a time, so that ``limit`` bounds the memory as well as the
rows: the newest labelled records are the ones a retrainer wants.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection, func, select

from monitor.schema import MODEL_VERSION_ID, NODE_ID, TS
from monitor.storage.labels import window_labels
from monitor.storage.nodes import list_nodes
from monitor.storage.registry import versions
from monitor.storage.tables import batches
from monitor.storage.types import aware
from monitor.storage.windows import load_window

#: The label column added to the window frame's columns.
LABEL = "label"
#: The node's name and the model version's name, beside their ids.
NODE = "node"
MODEL_VERSION = "model_version"
#: How much of the span one read covers (newest first).
SLICE = timedelta(hours=6)


def labelled_records(
    conn: Connection,
    model_id: int,
    start: datetime,
    end: datetime,
    *,
    limit: int | None = None,
) -> pd.DataFrame:
    """The model's records with ``start <= ts < end`` that have a label, oldest first.

    Columns: the window frame's (``row_key, ts, node_id, model_version_id, latency_ms,
    prediction``, ``feature:<name>``, ``proba:<class>``; text columns as plain objects, None
    where missing), then ``label``, ``node`` (the node's name) and ``model_version`` (the
    version's name). With ``limit``, only the newest ``limit`` such records.
    """
    frames: list[pd.DataFrame] = []
    found = 0
    upper = end
    while upper > start and (limit is None or found < limit):
        lower = max(start, upper - SLICE)
        frame = load_window(conn, model_id, lower, upper)
        if len(frame):
            labels = window_labels(conn, model_id, lower, upper)
            keys = frame["row_key"].to_numpy()
            mask = pd.Series(keys).isin(labels.keys()).to_numpy()
            if mask.any():
                kept = frame.loc[mask].reset_index(drop=True)
                kept[LABEL] = [labels[k] for k in keys[mask].tolist()]
                frames.append(_plain(kept))
                found += len(kept)
        upper = lower
    if not frames:
        return pd.DataFrame(columns=[TS, NODE_ID, MODEL_VERSION_ID, LABEL, NODE, MODEL_VERSION])
    out = pd.concat(frames[::-1], ignore_index=True)
    out = out.sort_values([TS, "row_key"], kind="stable", ignore_index=True)
    if limit is not None and len(out) > limit:
        out = out.iloc[len(out) - limit :].reset_index(drop=True)
    names = {n.id: n.name for n in list_nodes(conn)}
    out[NODE] = [names.get(int(i)) for i in out[NODE_ID].tolist()]
    version_names = {v.id: v.version for v in versions(conn, model_id)}
    out[MODEL_VERSION] = [version_names.get(int(i)) for i in out[MODEL_VERSION_ID].tolist()]
    return out


def latest_record_time(conn: Connection, model_id: int) -> datetime | None:
    """The time of the model's newest stored record (the end of "recent"), or None."""
    return aware(
        conn,
        conn.execute(
            select(func.max(batches.c.max_ts)).where(batches.c.model_id == model_id)
        ).scalar(),
    )


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as objects with None for missing: slices concatenate without
    reconciling categories, and a missing category reads as None, not NaN."""
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            column = frame[name].astype(object)
            frame[name] = column.where(column.notna(), None)
    return frame
