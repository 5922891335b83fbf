"""Every node of a model with the version it should run (the registry's rule, for the whole fleet
at once), the version it reports and the version of its last records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, Engine

from monitor.storage import health, models, nodes, registry, rollouts
from monitor.storage.engine import begin_write
from monitor.storage.records import insert_batch, prepare_batch

CARD = {"name": "pump", "features": []}
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def conn(engine: Engine):
    with begin_write(engine) as connection:
        yield connection


@pytest.fixture
def model_id(conn: Connection) -> int:
    model_id = models.add_model(conn, "pump").id
    for version in ("1", "2", "3"):
        registry.register_version(
            conn, model_id, version, artifact=f"onnx-{version}".encode(), card=CARD
        )
    return model_id


def add(conn: Connection, name: str, model_id: int, *, group: str | None = None) -> nodes.Node:
    node = nodes.add_node(conn, name, group_name=group, site="s1")[0]
    nodes.grant_model(conn, node.id, model_id)
    return node


def report(conn: Connection, node: nodes.Node, version: str | None) -> None:
    health.save_health(
        conn,
        [
            health.NodeHealth(
                node_id=node.id,
                status="online",
                checked_at=NOW,
                last_heartbeat_at=NOW,
                model_version=version,
                dropped={},
                spool_records=None,
                queue_depth=None,
                latency_p95_ms=None,
                errors=None,
                details={},
            )
        ],
    )


def send(conn: Connection, node: nodes.Node, model_id: int, version: str) -> None:
    rows = [
        {"id": uuid.uuid4().hex, "ts": NOW.timestamp(), "features": {"x": 1.0}, "prediction": 1}
    ]
    insert_batch(
        conn,
        node_id=node.id,
        model_id=model_id,
        model_version_id=models.version_id(conn, model_id, version),
        batch_uid=None,
        batch=prepare_batch(rows),
    )


def by_node(conn: Connection, model_id: int) -> dict[str, rollouts.NodeVersion]:
    return {n.node: n for n in rollouts.node_versions(conn, model_id)}


def test_every_node_is_assigned_what_the_registry_assigns_it_one_by_one(
    conn: Connection, model_id: int
) -> None:
    fleet = [add(conn, f"edge-{i:02d}", model_id, group="a" if i < 4 else "b") for i in range(40)]
    registry.promote(conn, model_id, "1")
    registry.start_canary(conn, model_id, "2", 0.3)
    registry.pin(conn, model_id, "a", "3")

    found = by_node(conn, model_id)

    assert sorted(found) == [n.name for n in fleet]
    for node in fleet:
        expected = registry.assignment_for(conn, model_id, "pump", node)
        assert expected is not None
        assert (found[node.name].assigned, found[node.name].reason) == (
            expected.version.version,
            expected.reason,
        )
    reasons = {n.reason for n in found.values()}
    assert reasons == {"pinned", "canary", "production"}


def test_a_model_with_nothing_deployed_assigns_no_version(conn: Connection, model_id: int) -> None:
    add(conn, "edge-1", model_id)

    (only,) = rollouts.node_versions(conn, model_id)

    assert (only.assigned, only.reason, only.mismatch) == (None, None, False)


def test_reported_and_recorded_versions_are_shown_and_a_mismatch_is_flagged(
    conn: Connection, model_id: int
) -> None:
    registry.promote(conn, model_id, "2")
    behind = add(conn, "behind", model_id)
    current = add(conn, "current", model_id)
    add(conn, "quiet", model_id)
    report(conn, behind, "1")
    report(conn, current, "2")
    send(conn, behind, model_id, "2")
    send(conn, behind, model_id, "1")  # its newest batch

    found = by_node(conn, model_id)

    assert (found["behind"].reported, found["behind"].records_version) == ("1", "1")
    assert found["behind"].reported_at == NOW
    assert found["behind"].records_at is not None
    assert found["behind"].mismatch
    assert (found["current"].reported, found["current"].mismatch) == ("2", False)
    assert (found["quiet"].reported, found["quiet"].records_version) == (None, None)
    assert not found["quiet"].mismatch  # nothing reported: nothing to compare


def test_the_models_nodes_are_those_registered_pinned_or_sending_and_not_revoked(
    conn: Connection, model_id: int
) -> None:
    other = models.add_model(conn, "other").id
    registry.promote(conn, model_id, "1")
    registry.pin(conn, model_id, "line-a", "3")
    add(conn, "registered", model_id)
    nodes.add_node(conn, "pinned", group_name="line-a")
    sender = nodes.add_node(conn, "sender")[0]
    send(conn, sender, model_id, "1")
    add(conn, "elsewhere", other)
    add(conn, "revoked", model_id)
    nodes.revoke_node(conn, "revoked")
    nodes.add_node(conn, "labeller", role=nodes.LABELLER)

    found = by_node(conn, model_id)

    assert sorted(found) == ["pinned", "registered", "sender"]
    assert found["pinned"].assigned == "3"
    assert found["sender"].records_version == "1"


def test_an_unknown_model_has_no_nodes(conn: Connection) -> None:
    assert rollouts.node_versions(conn, 12345) == []
