"""Who may do what: a node's token labels only that node's records; a labeller's token labels
any node's records and may do nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine

from monitor import wire
from monitor.storage import models, nodes
from monitor.storage.engine import begin_write
from monitor.storage.labels import window_labels
from monitor.storage.payload import row_key
from monitor.storage.tables import records
from tests.collector.conftest import MODEL, auth, batch, record


@pytest.fixture
def second(engine: Engine, token: str) -> str:
    """The token of a second node, ``node-2``, of the same model."""
    with begin_write(engine) as conn:
        return nodes.add_node(conn, "node-2", group_name="line-a", site="plant-1")[1]


@pytest.fixture
def labeller(engine: Engine, token: str) -> str:
    """The token of a back-office labeller."""
    with begin_write(engine) as conn:
        return nodes.add_node(conn, "erp", role=nodes.LABELLER)[1]


def labels_by_node(engine: Engine) -> dict[str, object]:
    """The label the analysis sees for each node's record, by node name."""
    now = datetime.now(UTC)
    with engine.connect() as conn:
        model_id = models.get_model(conn, MODEL).id
        found = window_labels(conn, model_id, now - timedelta(days=1), now + timedelta(days=1))
        owners = {
            row_key(r.batch_id, r.pos): r.node_id for r in conn.execute(records.select()).all()
        }
        names = {n.id: n.name for n in nodes.list_nodes(conn)}
    return {names[owners[key]]: label for key, label in found.items()}


def send_shared_request(http: httpx.Client, *tokens: str) -> None:
    """Each node sends a record with the request id ``order-7``."""
    for node_token in tokens:
        answer = http.post(
            wire.RECORDS_PATH, json=batch([record(request_id="order-7")]), headers=auth(node_token)
        )
        assert answer.json()["accepted"] == 1


def label(http: httpx.Client, sender: str, value: str) -> httpx.Response:
    body = {"model": MODEL, "labels": [{"request_id": "order-7", "label": value}]}
    return http.post(wire.LABELS_PATH, json=body, headers=auth(sender))


def test_a_node_cannot_overwrite_another_nodes_label(
    http: httpx.Client, engine: Engine, token: str, second: str
) -> None:
    send_shared_request(http, token, second)

    assert label(http, token, "ok").status_code == 200
    assert label(http, second, "fail").status_code == 200

    assert labels_by_node(engine) == {"node-1": "ok", "node-2": "fail"}


def test_a_labellers_label_names_every_nodes_record_of_that_request(
    http: httpx.Client, engine: Engine, token: str, second: str, labeller: str
) -> None:
    send_shared_request(http, token, second)
    label(http, token, "ok")

    answer = label(http, labeller, "fail")

    assert answer.json() == {"accepted": 1}
    assert labels_by_node(engine) == {"node-1": "fail", "node-2": "fail"}


def test_a_labeller_token_sends_nothing_but_labels(http: httpx.Client, labeller: str) -> None:
    refusals = [
        http.post(wire.RECORDS_PATH, json=batch([record()]), headers=auth(labeller)),
        http.post(wire.HEARTBEATS_PATH, json={"sdk": {}}, headers=auth(labeller)),
        http.get(wire.assignment_path(MODEL), headers=auth(labeller)),
    ]

    for answer in refusals:
        assert answer.status_code == 403
        error = answer.json()["error"]
        assert error["code"] == "wrong_role"
        assert "labeller token, which may only send labels" in error["message"]
