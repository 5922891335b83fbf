"""Imported history: batches of records read from a file, stored through the collector's path
(``records.insert_batch``) with their labels in the same transaction, and the nodes that
history names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from sqlalchemy import Connection, delete, select

from monitor.errors import Conflict
from monitor.schema import feature_column, proba_column
from monitor.storage import labels, nodes
from monitor.storage.records import (
    IngestResult,
    PreparedBatch,
    insert_batch,
    insert_batch_row,
    insert_index_counted,
)
from monitor.storage.tables import batches, records
from monitor.storage.tables import nodes as nodes_table


@dataclass(frozen=True, slots=True)
class StoredImport:
    """What became of one imported batch: its records, and the labels stored with them."""

    result: IngestResult
    labels: int


def payload_table(
    ts: pa.Array,
    latency_ms: pa.Array,
    prediction: pa.Array,
    features: Mapping[str, pa.Array],
    probabilities: Mapping[str, pa.Array],
) -> pa.Table:
    """Imported rows in the payload's layout (``monitor.storage.payload``): ``ts`` (UTC
    microseconds), ``latency_ms``, ``prediction``, a column per feature and per class."""
    return pa.table(
        {
            "ts": ts,
            "latency_ms": latency_ms,
            "prediction": prediction,
            **{feature_column(name): values for name, values in features.items()},
            **{proba_column(label): values for label, values in probabilities.items()},
        }
    )


def store_batch(
    conn: Connection,
    *,
    node_id: int,
    model_id: int,
    model_version_id: int,
    batch_uid: str | None,
    batch: PreparedBatch,
    batch_labels: Sequence[tuple[str, Any]] = (),
    compression: str = "lz4",
) -> StoredImport:
    """Store a batch as the collector does and, in the same transaction, the labels of the
    records it stored (``(request id, label)`` pairs, bound to the node as a node's own labels
    are). Labels of records stored before are not written again, so a re-import stores nothing.
    """
    result = _insert_new(
        conn,
        node_id=node_id,
        model_id=model_id,
        model_version_id=model_version_id,
        batch_uid=batch_uid,
        batch=batch,
        compression=compression,
    )
    if not batch_labels or not result.accepted:
        return StoredImport(result, 0)
    wanted = list(batch_labels)
    if result.accepted < len(batch.uids):
        # Part of the batch was stored before (an import interrupted under other batch sizes):
        # label only the records this batch stored.
        stored = set(
            conn.execute(
                select(records.c.request_id).where(records.c.batch_id == result.batch_id)
            ).scalars()
        )
        wanted = [pair for pair in wanted if pair[0] in stored]
    rows = [{"request_id": rid, "label": value, "ts": None} for rid, value in wanted]
    labels.upsert_labels(conn, model_id=model_id, node_id=node_id, rows=rows)
    return StoredImport(result, len({rid for rid, _ in wanted}))


def _insert_new(
    conn: Connection,
    *,
    node_id: int,
    model_id: int,
    model_version_id: int,
    batch_uid: str | None,
    batch: PreparedBatch,
    compression: str,
) -> IngestResult:
    """``records.insert_batch``, with a faster path for what an import mostly holds: batches
    whose records are all new, or all stored before (a re-run). The index rows go in without
    RETURNING (the new record ids come back one Python object each: a fifth of an import's
    time), counted instead; a batch that is partly new is undone here and stored by
    ``insert_batch``, which finds out which of its records are new."""
    if not batch.uids:
        return IngestResult(0, batch.in_batch_duplicates, None)
    batch_id = insert_batch_row(
        conn,
        node_id=node_id,
        model_id=model_id,
        model_version_id=model_version_id,
        batch_uid=batch_uid,
        batch=batch,
        compression=compression,
    )
    new = insert_index_counted(conn, batch_id, node_id, model_id, batch)
    if new == len(batch.uids):
        return IngestResult(new, batch.in_batch_duplicates, batch_id)
    conn.execute(delete(records).where(records.c.batch_id == batch_id))
    conn.execute(delete(batches).where(batches.c.id == batch_id))
    if new == 0:
        return IngestResult(0, batch.in_batch_duplicates + len(batch.uids), None)
    return insert_batch(
        conn,
        node_id=node_id,
        model_id=model_id,
        model_version_id=model_version_id,
        batch_uid=batch_uid,
        batch=batch,
        compression=compression,
    )


def node_ids(conn: Connection, names: Iterable[str]) -> dict[str, int]:
    """The ids of the registered nodes among ``names``."""
    wanted = list(set(names))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 1000):
        query = select(nodes_table.c.name, nodes_table.c.id).where(
            nodes_table.c.name.in_(wanted[start : start + 1000])
        )
        found.update({name: int(id_) for name, id_ in conn.execute(query)})
    return found


def add_history_node(conn: Connection, name: str) -> tuple[int, bool]:
    """The id of a node that history names, registering it when it is new (whether it was).

    A node created for history has no usable token: its token is never shown, and it is
    revoked at once, so that it can never send, health checks do not count it as a silent
    device, and `nodes list` shows it as revoked."""
    found = node_ids(conn, [name]).get(name)
    if found is not None:
        return found, False
    try:
        node, _token = nodes.add_node(conn, name)
    except Conflict:  # another import registered it meanwhile
        return node_ids(conn, [name])[name], False
    nodes.revoke_node(conn, name)
    return node.id, True
