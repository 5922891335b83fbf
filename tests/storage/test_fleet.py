"""Fleet-wide figures: records received per node over a recent span (from the accepted
batches, by the collector's clock), each checked node's runtime figures, and the counts the
worker's gauges show. On both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update

from monitor.storage import fleet, health, models, nodes, readout
from monitor.storage.engine import begin_write
from monitor.storage.records import insert_batch, prepare_batch
from monitor.storage.tables import batches
from monitor.storage.types import utcnow
from monitor.wire import DROP_REASONS

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def records(prefix: str, n: int) -> list[dict[str, Any]]:
    """``n`` wire records with ids ``prefix-0`` ... (times an hour apart from T0: the device's
    clock, which records received per hour must not read)."""
    return [
        {
            "id": f"{prefix}-{i}",
            "ts": (T0 - timedelta(days=3) + timedelta(hours=i)).timestamp(),
            "features": {"x": float(i)},
            "prediction": "ok",
        }
        for i in range(n)
    ]


def store(engine: Engine, model: str, node: str, rows: list[dict[str, Any]]) -> int | None:
    """Store one batch of ``rows`` from ``node`` for ``model`` (both registered on first use);
    the batch row's id, None when every record was a duplicate."""
    with begin_write(engine) as conn:
        found = models.find_model(conn, model) or models.add_model(conn, model)
        node_id = next((n.id for n in nodes.list_nodes(conn) if n.name == node), None)
        if node_id is None:
            node_id = nodes.add_node(conn, node, site="north")[0].id
        version_id = models.version_id(conn, found.id, "1")
        return insert_batch(
            conn,
            node_id=node_id,
            model_id=found.id,
            model_version_id=version_id,
            batch_uid=None,
            batch=prepare_batch(rows),
        ).batch_id


def received(engine: Engine, batch_id: int | None, when: datetime) -> None:
    assert batch_id is not None
    with begin_write(engine) as conn:
        conn.execute(update(batches).where(batches.c.id == batch_id).values(received_at=when))


def model_id(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return models.get_model(conn, name).id


def test_records_received_since_a_time_are_summed_per_node_from_the_batches(
    engine: Engine,
) -> None:
    now = utcnow()
    store(engine, "pump", "edge-1", records("a", 30))
    store(engine, "pump", "edge-1", records("b", 20))
    received(engine, store(engine, "pump", "edge-1", records("old", 500)), now - timedelta(hours=2))
    store(engine, "pump", "edge-2", records("c", 7))
    store(engine, "press", "edge-2", records("d", 1000))  # another model's
    received(engine, store(engine, "pump", "edge-3", records("e", 9)), now - timedelta(hours=3))

    with engine.connect() as conn:
        found = fleet.records_received_by_node(
            conn, model_id(engine, "pump"), now - timedelta(hours=1)
        )

    # edge-3 sent nothing in the hour: absent, not zero.
    assert found == {"edge-1": 50, "edge-2": 7}


def test_a_retried_batch_adds_only_the_records_it_had_not_sent_before(engine: Engine) -> None:
    first = records("r", 10)
    store(engine, "pump", "edge-1", first)
    assert store(engine, "pump", "edge-1", first) is None  # the same batch again: nothing new
    store(engine, "pump", "edge-1", [*first[:5], *records("s", 3)])  # 5 seen, 3 new

    with engine.connect() as conn:
        found = fleet.records_received_by_node(
            conn, model_id(engine, "pump"), utcnow() - timedelta(hours=1)
        )

    assert found == {"edge-1": 13}


def test_a_model_without_records_received_has_no_node_figures(engine: Engine) -> None:
    with begin_write(engine) as conn:
        found_id = models.add_model(conn, "pump").id
        nodes.add_node(conn, "edge-1")

    with engine.connect() as conn:
        assert fleet.records_received_by_node(conn, found_id, T0) == {}


def test_runtime_figures_are_the_health_rows_figures_by_node_name(engine: Engine) -> None:
    dropped = dict.fromkeys(DROP_REASONS, 0) | {"queue_full": 12, "sampled_out": 400}
    with begin_write(engine) as conn:
        ids = {name: nodes.add_node(conn, name)[0].id for name in ("edge-1", "edge-2", "edge-3")}
        health.save_health(
            conn,
            [
                _health(ids["edge-1"], "online", "3", dropped, 250, 7.5),
                _health(ids["edge-2"], "silent", None, {}, None, None),
            ],
        )

    with engine.connect() as conn:
        found = fleet.runtime_figures(conn)
        rows = health.health_by_node(conn)

    assert set(found) == {"edge-1", "edge-2"}  # edge-3 was never checked
    for name, figures in found.items():
        row = rows[name]
        assert (figures.model_version, figures.latency_p95_ms, figures.spool_records) == (
            row.model_version,
            row.latency_p95_ms,
            row.spool_records,
        )
        assert figures.dropped == row.dropped
    assert found["edge-1"].dropped == dropped
    assert found["edge-2"] == fleet.RuntimeFigures(None, None, {}, None)


def test_nodes_by_status_counts_what_node_states_say(engine: Engine) -> None:
    with begin_write(engine) as conn:
        ids = {name: nodes.add_node(conn, name)[0].id for name in ("a", "b", "c", "d")}
        nodes.add_node(conn, "erp", role="labeller")
        for name in ("a", "b"):
            nodes.touch_node(conn, ids[name], heartbeat=True)
        health.save_health(conn, [_health(ids["b"], "degraded", "1", {}, 0, 1.0)])
        nodes.revoke_node(conn, "d")
    offline_before = utcnow() - timedelta(minutes=2)

    with engine.connect() as conn:
        counts = fleet.nodes_by_status(conn, offline_before)
        states = readout.node_states(conn, offline_before)

    assert counts == {"online": 1, "degraded": 1, "offline": 0, "silent": 1}
    assert {s: n for s, n in counts.items() if n} == {
        status: sum(1 for s in states if s.status == status)
        for status in ("online", "degraded", "silent")
    }


def _health(
    node_id: int,
    status: str,
    version: str | None,
    dropped: dict[str, int],
    spool: int | None,
    p95: float | None,
) -> health.NodeHealth:
    return health.NodeHealth(
        node_id=node_id,
        status=status,
        checked_at=utcnow(),
        last_heartbeat_at=utcnow() if status != "silent" else None,
        model_version=version,
        dropped=dropped,
        spool_records=spool,
        queue_depth=0,
        latency_p95_ms=p95,
        errors=0,
        details={"problems": []},
    )
