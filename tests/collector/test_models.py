"""Registry routes: nodes learn their assignment (with ETag) and download verified artifacts;
operators register and roll out versions through the admin API."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import httpx
import pandas as pd
from sqlalchemy import Engine

from monitor import wire
from monitor.demo_model import paths
from monitor.storage import models, nodes, registry
from monitor.storage.engine import begin_write
from tests.collector.conftest import ADMIN_TOKEN, MODEL, auth

ADMIN = auth(ADMIN_TOKEN)
CARD = json.loads(paths().card.read_text())


def register(http: httpx.Client, version: str, artifact: bytes, reference: bytes | None = None):
    body = {
        "version": version,
        "artifact_base64": base64.b64encode(artifact).decode(),
        "card": {**CARD, "version": version},
    }
    if reference is not None:
        body["reference_base64"] = base64.b64encode(reference).decode()
    return http.post(f"/v1/admin/models/{MODEL}/versions", json=body, headers=ADMIN)


def parquet(rows: int) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame({"temperature": [70.0 + i for i in range(rows)]}).to_parquet(buffer)
    return buffer.getvalue()


def test_register_promote_and_the_node_gets_its_assignment(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    created = register(http, "1", b"onnx-bytes-1", parquet(30))
    assert created.status_code == 201, created.text
    assert created.json()["sha256"] == hashlib.sha256(b"onnx-bytes-1").hexdigest()
    assert created.json()["reference_rows"] == 30
    http.post(f"/v1/admin/models/{MODEL}/promote/1", headers=ADMIN).raise_for_status()

    answer = http.get(wire.assignment_path(MODEL), headers=auth(token))

    assert answer.status_code == 200
    assignment = answer.json()
    assert assignment["version"] == "1"
    assert assignment["reason"] == "production"
    assert assignment["card"]["version"] == "1"
    artifact = http.get(assignment["artifact_url"], headers=auth(token))
    assert artifact.content == b"onnx-bytes-1"
    assert hashlib.sha256(artifact.content).hexdigest() == assignment["sha256"]


def test_an_unchanged_assignment_answers_304_and_a_change_a_new_etag(
    http: httpx.Client, token: str
) -> None:
    register(http, "1", b"one")
    register(http, "2", b"two")
    http.post(f"/v1/admin/models/{MODEL}/promote/1", headers=ADMIN).raise_for_status()
    first = http.get(wire.assignment_path(MODEL), headers=auth(token))
    etag = first.headers["ETag"]

    same = http.get(wire.assignment_path(MODEL), headers={**auth(token), "If-None-Match": etag})
    http.post(
        f"/v1/admin/models/{MODEL}/canary", json={"version": "2", "share": 1.0}, headers=ADMIN
    ).raise_for_status()
    changed = http.get(wire.assignment_path(MODEL), headers={**auth(token), "If-None-Match": etag})

    assert same.status_code == 304
    assert changed.status_code == 200
    assert changed.json()["version"] == "2"
    assert changed.json()["reason"] == "canary"
    assert changed.headers["ETag"] != etag


def test_pins_and_rollback_through_the_admin_api(http: httpx.Client, token: str) -> None:
    for version in ("1", "2", "3"):
        register(http, version, version.encode())
    http.post(f"/v1/admin/models/{MODEL}/promote/1", headers=ADMIN).raise_for_status()
    http.post(f"/v1/admin/models/{MODEL}/promote/2", headers=ADMIN).raise_for_status()
    pinned = http.post(
        f"/v1/admin/models/{MODEL}/pins", json={"version": "3", "group": "line-a"}, headers=ADMIN
    )
    assert pinned.json()["deployment"]["pins"] == {"line-a": "3"}
    assert http.get(wire.assignment_path(MODEL), headers=auth(token)).json()["reason"] == "pinned"

    http.delete(f"/v1/admin/models/{MODEL}/pins/line-a", headers=ADMIN).raise_for_status()
    rolled = http.post(f"/v1/admin/models/{MODEL}/rollback", headers=ADMIN)

    assert rolled.json()["deployment"]["production"] == "1"
    assert http.get(wire.assignment_path(MODEL), headers=auth(token)).json()["version"] == "1"
    listed = http.get(f"/v1/admin/models/{MODEL}/versions", headers=ADMIN).json()
    assert [v["stage"] for v in listed["versions"]] == ["production", "archived", "candidate"]


def test_no_deployed_version_is_a_clear_404(http: httpx.Client, token: str) -> None:
    answer = http.get(wire.assignment_path(MODEL), headers=auth(token))

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "no_assignment"


def test_the_registry_routes_need_a_node_token(http: httpx.Client, token: str) -> None:
    assert http.get(wire.assignment_path(MODEL)).status_code == 401
    assert http.get(wire.artifact_path(MODEL, "1"), headers=auth("emn_x")).status_code == 401


def test_bad_registrations_name_the_field(http: httpx.Client, token: str, engine: Engine) -> None:
    not_base64 = http.post(
        f"/v1/admin/models/{MODEL}/versions",
        json={"version": "1", "artifact_base64": "***", "card": CARD},
        headers=ADMIN,
    )
    not_parquet = register(http, "1", b"x", b"not parquet")
    conflict = [register(http, "2", b"x"), register(http, "2", b"y")][1]

    assert (not_base64.status_code, not_base64.json()["error"]["details"][0]["field"]) == (
        422,
        "artifact_base64",
    )
    assert not_parquet.json()["error"]["details"][0]["field"] == "reference_base64"
    assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "version_exists")
    with engine.connect() as conn:
        model_id = models.get_model(conn, MODEL).id
        assert [v.version for v in registry.versions(conn, model_id)] == ["2"]


def test_a_card_that_does_not_fit_the_model_is_refused_with_its_field(
    http: httpx.Client, token: str
) -> None:
    body = {"version": "1", "artifact_base64": "AAAA", "card": {**CARD, "treshold": 0.5}}
    typo = http.post(f"/v1/admin/models/{MODEL}/versions", json=body, headers=ADMIN)
    body = {"version": "1", "artifact_base64": "AAAA", "card": {**CARD, "name": "other"}}
    other = http.post(f"/v1/admin/models/{MODEL}/versions", json=body, headers=ADMIN)

    assert typo.status_code == 422
    assert [d["field"] for d in typo.json()["error"]["details"]] == ["card.treshold"]
    assert other.json()["error"]["details"][0]["field"] == "card.name"


def test_a_share_outside_zero_to_one_is_refused(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    with begin_write(engine) as conn:
        registry.register_version(
            conn, models.get_model(conn, MODEL).id, "1", artifact=b"1", card={}
        )

    answer = http.post(
        f"/v1/admin/models/{MODEL}/canary", json={"version": "1", "share": 2}, headers=ADMIN
    )

    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "share"


def test_a_node_reads_only_the_models_it_is_registered_for(
    http: httpx.Client, engine: Engine, token: str
) -> None:
    register(http, "1", b"secret weights")
    http.post(f"/v1/admin/models/{MODEL}/promote/1", headers=ADMIN).raise_for_status()
    with begin_write(engine) as conn:
        _, stranger = nodes.add_node(conn, "stranger", group_name="line-b")

    for path in (wire.assignment_path(MODEL), wire.artifact_path(MODEL, "1")):
        refused = http.get(path, headers=auth(stranger))
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["code"] == "model_not_granted"
        assert "edge-monitor nodes grant stranger pump-failure" in error["message"]
        assert http.get(path, headers=auth(token)).status_code == 200


def test_a_group_pin_lets_the_groups_nodes_read_the_model(
    http: httpx.Client, engine: Engine, token: str
) -> None:
    register(http, "1", b"weights")
    with begin_write(engine) as conn:
        _, pinned_node = nodes.add_node(conn, "pinned", group_name="line-b")
    assert http.get(wire.assignment_path(MODEL), headers=auth(pinned_node)).status_code == 403

    http.post(
        f"/v1/admin/models/{MODEL}/pins", json={"version": "1", "group": "line-b"}, headers=ADMIN
    ).raise_for_status()

    assert http.get(wire.assignment_path(MODEL), headers=auth(pinned_node)).json()["version"] == "1"
    assert http.get(wire.artifact_path(MODEL, "1"), headers=auth(pinned_node)).content == b"weights"


def test_a_labeller_token_fetches_no_model(http: httpx.Client, engine: Engine, token: str) -> None:
    register(http, "1", b"weights")
    http.post(f"/v1/admin/models/{MODEL}/promote/1", headers=ADMIN).raise_for_status()
    with begin_write(engine) as conn:
        _, labeller = nodes.add_node(conn, "erp", role=nodes.LABELLER)

    answer = http.get(wire.assignment_path(MODEL), headers=auth(labeller))

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "wrong_role"
