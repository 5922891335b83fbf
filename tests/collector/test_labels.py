"""POST /v1/labels: late ground truth, joined to records by (model, request id)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine, select

from monitor import wire
from monitor.storage.tables import labels
from tests.collector.conftest import ADMIN_TOKEN, MODEL, auth, stored, stored_labels


def test_a_node_labels_its_requests(http: httpx.Client, token: str, engine: Engine) -> None:
    body = {"model": MODEL, "labels": [{"request_id": "r1", "label": "fail", "ts": 1.7e9}]}

    answer = http.post(wire.LABELS_PATH, json=body, headers=auth(token))

    assert answer.status_code == 200
    assert answer.json() == {"accepted": 1}
    assert stored_labels(engine) == {"r1": "fail"}


def test_a_later_label_replaces_the_earlier_one(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    for value in ("ok", "fail", "fail"):
        http.post(
            wire.LABELS_PATH,
            json={"model": MODEL, "labels": [{"request_id": "r1", "label": value}]},
            headers=auth(token),
        ).raise_for_status()

    assert stored(engine)["labels"] == 1
    assert stored_labels(engine) == {"r1": "fail"}


def test_an_operator_uploads_labels_in_bulk_with_the_admin_token(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    body = {"model": MODEL, "labels": [{"request_id": f"r{i}", "label": i % 2} for i in range(50)]}

    answer = http.post(wire.LABELS_PATH, json=body, headers=auth(ADMIN_TOKEN))

    assert answer.json() == {"accepted": 50}
    assert stored(engine)["labels"] == 50


def test_bad_labels_are_refused_with_every_field_path(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    body = {
        "model": MODEL,
        "labels": [{"request_id": "r1", "label": "ok"}, {"request_id": 5}, "x"],
    }

    answer = http.post(wire.LABELS_PATH, json=body, headers=auth(token))

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert [d["field"] for d in error["details"]] == [
        "labels[1].request_id",
        "labels[1].label",
        "labels[2]",
    ]
    assert stored(engine)["labels"] == 0


def test_labels_for_an_unknown_model_are_refused(http: httpx.Client, token: str) -> None:
    body = {"model": "nope", "labels": [{"request_id": "r1", "label": 1}]}

    answer = http.post(wire.LABELS_PATH, json=body, headers=auth(token))

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "unknown_model"


def test_labels_need_a_token(http: httpx.Client, token: str) -> None:
    body = {"model": MODEL, "labels": [{"request_id": "r1", "label": 1}]}

    assert http.post(wire.LABELS_PATH, json=body).status_code == 401
    assert http.post(wire.LABELS_PATH, json=body, headers=auth("emn_x")).status_code == 401


def test_a_label_from_a_wrong_clock_takes_the_time_it_arrived(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    before = datetime.now(UTC)
    body = {
        "model": MODEL,
        "labels": [
            {"request_id": "r1", "label": "fail", "ts": 1.0},  # a clock that was never set
            {"request_id": "r2", "label": "ok", "ts": before.timestamp() + 3 * 86_400},
            {"request_id": "r3", "label": "ok", "ts": 1.7e9},
        ],
    }

    answer = http.post(wire.LABELS_PATH, json=body, headers=auth(token))
    after = datetime.now(UTC)

    assert answer.json() == {"accepted": 3}
    with engine.connect() as conn:
        times = dict(conn.execute(select(labels.c.request_id, labels.c.ts)).all())
    assert before <= times["r1"] <= after and before <= times["r2"] <= after
    assert times["r3"] == datetime.fromtimestamp(1.7e9, UTC)


def test_a_label_time_that_is_no_number_is_refused_with_its_field(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    body = {"model": MODEL, "labels": [{"request_id": "r1", "label": "ok", "ts": "1970"}]}

    answer = http.post(wire.LABELS_PATH, json=body, headers=auth(token))

    assert answer.status_code == 422
    assert [d["field"] for d in answer.json()["error"]["details"]] == ["labels[0].ts"]
    assert stored(engine)["labels"] == 0
