"""The registry: stages move as promised, canaries take their share, pins and rollback work."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import Connection, Engine

from monitor.errors import Conflict, NotFound, ValidationFailed
from monitor.storage import models, nodes, registry
from monitor.storage.engine import begin_write
from monitor.storage.nodes import Node

CARD = {"name": "pump", "features": []}


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


def node(conn: Connection, name: str, group: str | None = None) -> Node:
    return nodes.add_node(conn, name, group_name=group)[0]


def stages(conn: Connection, model_id: int) -> dict[str, str]:
    return {v.version: v.stage for v in registry.versions(conn, model_id)}


def test_a_registered_version_is_a_candidate_with_its_sha256(
    conn: Connection, model_id: int
) -> None:
    version = registry.get_version(conn, model_id, "1")

    assert version.stage == "candidate"
    assert version.sha256 == hashlib.sha256(b"onnx-1").hexdigest()
    assert version.size == 6
    assert registry.artifact(conn, version.id) == b"onnx-1"


def test_promotion_archives_the_version_it_replaces(conn: Connection, model_id: int) -> None:
    registry.promote(conn, model_id, "1")
    registry.promote(conn, model_id, "2")

    assert stages(conn, model_id) == {"1": "archived", "2": "production", "3": "candidate"}
    current = registry.deployment(conn, model_id)
    assert (current.production.version, current.previous.version) == ("2", "1")


def test_rollback_restores_the_previous_production(conn: Connection, model_id: int) -> None:
    registry.promote(conn, model_id, "1")
    registry.promote(conn, model_id, "2")

    restored = registry.rollback(conn, model_id)

    assert restored.version == "1"
    assert stages(conn, model_id) == {"1": "production", "2": "archived", "3": "candidate"}
    with pytest.raises(Conflict, match="no earlier production"):
        registry.rollback(conn, model_id)


def test_a_version_seen_in_traffic_gets_its_artifact_at_registration(
    conn: Connection, model_id: int
) -> None:
    models.version_id(conn, model_id, "7")
    with pytest.raises(Conflict, match="no artifact"):
        registry.promote(conn, model_id, "7")

    registry.register_version(conn, model_id, "7", artifact=b"onnx-7", card=CARD)
    registry.promote(conn, model_id, "7")

    assert stages(conn, model_id)["7"] == "production"


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda c, m: registry.register_version(c, m, "1", artifact=b"x", card=CARD), Conflict),
        (lambda c, m: registry.promote(c, m, "9"), NotFound),
        (lambda c, m: registry.start_canary(c, m, "2", 1.5), ValidationFailed),
        (lambda c, m: registry.stop_canary(c, m), Conflict),
        (lambda c, m: registry.unpin(c, m, "north"), NotFound),
    ],
)
def test_impossible_changes_are_refused(conn: Connection, model_id: int, action, error) -> None:
    with pytest.raises(error):
        action(conn, model_id)


def test_only_candidates_can_be_canaries_and_archived_versions_cannot_return(
    conn: Connection, model_id: int
) -> None:
    registry.promote(conn, model_id, "1")
    with pytest.raises(Conflict, match="not a candidate"):
        registry.start_canary(conn, model_id, "1", 0.1)
    registry.promote(conn, model_id, "2")
    with pytest.raises(Conflict, match="archived"):
        registry.promote(conn, model_id, "1")


def test_a_deployed_version_cannot_be_archived(conn: Connection, model_id: int) -> None:
    registry.promote(conn, model_id, "1")
    registry.pin(conn, model_id, "north", "2")

    for version in ("1", "2"):
        with pytest.raises(Conflict, match="is deployed"):
            registry.archive(conn, model_id, version)
    assert registry.archive(conn, model_id, "3").stage == "archived"


def test_the_canary_takes_its_share_of_a_thousand_nodes(conn: Connection, model_id: int) -> None:
    fleet = [node(conn, f"cam-{i:04d}") for i in range(1_000)]
    registry.promote(conn, model_id, "1")
    registry.start_canary(conn, model_id, "2", 0.2)

    reasons = [registry.assignment_for(conn, model_id, "pump", n).reason for n in fleet]

    assert abs(reasons.count("canary") / 1_000 - 0.2) <= 0.05
    assert set(reasons) == {"canary", "production"}


def test_a_node_stays_in_the_canary_as_the_share_grows(conn: Connection, model_id: int) -> None:
    fleet = [node(conn, f"cam-{i:03d}") for i in range(200)]
    registry.promote(conn, model_id, "1")

    def canaries() -> set[str]:
        return {
            n.name
            for n in fleet
            if registry.assignment_for(conn, model_id, "pump", n).reason == "canary"
        }

    registry.start_canary(conn, model_id, "2", 0.1)
    small = canaries()
    registry.start_canary(conn, model_id, "2", 0.5)

    assert small < canaries()


def test_promoting_the_canary_ends_it(conn: Connection, model_id: int) -> None:
    registry.promote(conn, model_id, "1")
    registry.start_canary(conn, model_id, "2", 0.3)

    registry.promote(conn, model_id, "2")

    current = registry.deployment(conn, model_id)
    assert current.canary is None
    assert current.canary_share == 0.0


def test_a_pin_wins_over_canary_and_production(conn: Connection, model_id: int) -> None:
    north = node(conn, "n-1", "north")
    south = node(conn, "s-1", "south")
    registry.promote(conn, model_id, "1")
    registry.start_canary(conn, model_id, "2", 1.0)
    registry.pin(conn, model_id, "north", "3")

    assert registry.assignment_for(conn, model_id, "pump", north).version.version == "3"
    assert registry.assignment_for(conn, model_id, "pump", north).reason == "pinned"
    assert registry.assignment_for(conn, model_id, "pump", south).reason == "canary"
    registry.unpin(conn, model_id, "north")
    assert registry.assignment_for(conn, model_id, "pump", north).reason == "canary"


def test_nothing_is_assigned_before_a_promotion(conn: Connection, model_id: int) -> None:
    assert registry.assignment_for(conn, model_id, "pump", node(conn, "n-1")) is None


def test_every_change_is_in_the_rollout_history(conn: Connection, model_id: int) -> None:
    registry.promote(conn, model_id, "1")
    registry.start_canary(conn, model_id, "2", 0.1)
    registry.stop_canary(conn, model_id)

    actions = [e["action"] for e in registry.rollout_history(conn, model_id)]

    assert actions == ["canary_stop", "canary", "promote", "register", "register", "register"]
