"""The admin API: nodes get a token once, revocation bites at once, models are registered."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine

from monitor import wire
from tests.collector.conftest import ADMIN_TOKEN, MODEL, auth, batch, record

ADMIN = auth(ADMIN_TOKEN)


def test_a_node_added_through_the_api_can_ship_at_once(http: httpx.Client, engine: Engine) -> None:
    http.post("/v1/admin/models", json={"name": MODEL}, headers=ADMIN).raise_for_status()

    created = http.post(
        "/v1/admin/nodes",
        json={"name": "cam-7", "group": "north", "tags": {"hw": "pi5"}},
        headers=ADMIN,
    )

    assert created.status_code == 201
    node = created.json()
    assert node["token"].startswith(wire.NODE_TOKEN_PREFIX)
    assert len(node["token"]) >= len(wire.NODE_TOKEN_PREFIX) + 43  # 256 bits, base64url
    assert node["token_hint"] == node["token"][:8]
    answer = http.post(wire.RECORDS_PATH, json=batch([record()]), headers=auth(node["token"]))
    assert answer.json()["accepted"] == 1
    listed = http.get("/v1/admin/nodes", headers=ADMIN).json()["nodes"]
    assert [n["name"] for n in listed] == ["cam-7"]
    assert "token" not in listed[0]
    assert listed[0]["last_seen_at"] is not None


def test_a_duplicate_node_name_is_a_conflict(http: httpx.Client, token: str) -> None:
    answer = http.post("/v1/admin/nodes", json={"name": "node-1"}, headers=ADMIN)

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "node_exists"


def test_an_invalid_node_name_names_the_field(http: httpx.Client) -> None:
    answer = http.post("/v1/admin/nodes", json={"name": "bad name!"}, headers=ADMIN)

    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "name"


def test_revoking_an_unknown_node_is_not_found(http: httpx.Client) -> None:
    answer = http.post("/v1/admin/nodes/ghost/revoke", headers=ADMIN)

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_node"


def test_admin_routes_refuse_node_tokens_and_no_token(http: httpx.Client, token: str) -> None:
    assert http.get("/v1/admin/nodes").status_code == 401
    refused = http.get("/v1/admin/nodes", headers=auth(token))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"
