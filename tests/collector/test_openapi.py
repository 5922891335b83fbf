"""/openapi.json is a document a client generator can use, and it says what the collector does.

It validates as OpenAPI; every route that takes a body describes it (the ingest routes read
theirs raw, on the fast path: the description is added, the parsing is not); every success has
a schema; every refusal is the error envelope, with Retry-After where the caller should wait;
the routes name their bearer schemes. The request schemas accept what our SDK sends and refuse,
like the collector, what breaks the wire's rules.
"""

from __future__ import annotations

import copy
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from monitor import wire
from monitor.collector.app import create_app
from monitor.config import Settings
from monitor.sdk.records import build_label, build_record, heartbeat_runtime, new_id
from tests.collector.conftest import MODEL, auth

ENVELOPE = "#/components/schemas/ErrorEnvelope"
#: Operations that read a body, and the schema that describes it.
BODIES = {
    ("post", "/v1/records"): "RecordsBody",
    ("post", "/v1/labels"): "LabelsBody",
    ("post", "/v1/heartbeats"): "HeartbeatBody",
    ("post", "/v1/admin/nodes"): "NodeIn",
    ("post", "/v1/admin/models"): "ModelIn",
    ("post", "/v1/admin/models/{name}/versions"): "VersionIn",
    ("post", "/v1/admin/models/{name}/canary"): "CanaryIn",
    ("post", "/v1/admin/models/{name}/pins"): "PinIn",
    ("put", "/v1/admin/models/{model}/window"): "WindowIn",
    ("put", "/v1/admin/alert-rules/{name}"): "AlertRuleIn",
    ("put", "/v1/admin/webhooks/{name}"): "WebhookIn",
    ("put", "/v1/admin/retrain/hooks/{name}"): "HookIn",
    ("post", "/v1/admin/retrain/runs/{run_id}/result"): "ResultIn",
}
#: The read API: the read token or the admin token.
READ_PATHS = {
    "/v1/models/{model}/windows",
    "/v1/models/{model}/results",
    "/v1/nodes/health",
    "/v1/alerts",
    "/v1/alerts/{alert_id}",
}
#: Answers without a body.
EMPTY = {("post", "/v1/heartbeats", "204"), ("get", "/v1/models/{model}/assignment", "304")}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("openapi")
    settings = Settings(database_url=f"sqlite:///{folder / 'x.db'}", admin_token="ema_x")
    app = create_app(settings)
    try:
        return app.openapi()
    finally:
        app.state.collector.engine.dispose()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]


def body_validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator of one request schema, its $refs resolved in the document."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return Draft202012Validator(schema)


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_the_packaged_swagger_ui_reads_openapi_3_1() -> None:
    # Swagger UI 4 (the old swagger-ui-bundle package) shows "Unable to render this
    # definition" for 3.1; swagger-ui-bundle-v2 ships Swagger UI 5 under the same import.
    folder = Path(swagger_ui_path).name
    major = int(folder.removeprefix("swagger-ui-").split(".")[0])
    assert major >= 5, f"{folder}: install swagger-ui-bundle-v2 instead of swagger-ui-bundle"


def test_every_route_that_takes_a_body_describes_it(document: dict[str, Any]) -> None:
    described = {
        (method, path): op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for method, path, op in operations(document)
        if "requestBody" in op
    }
    assert described == {key: f"#/components/schemas/{name}" for key, name in BODIES.items()}
    for name in BODIES.values():
        assert document["components"]["schemas"][name]["properties"]


def test_the_ingest_bodies_show_the_wire_rules_as_constraints(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    batch, record = schemas["RecordsBody"], schemas["Record"]
    assert batch["properties"]["records"]["maxItems"] == wire.MAX_RECORDS_PER_BATCH
    assert batch["properties"]["records"]["minItems"] == 1
    assert batch["properties"]["model"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.\\-:@]{0,127}$"
    assert record["properties"]["id"]["maxLength"] == wire.MAX_ID_CHARS
    assert "minimum" not in record["properties"]["ts"]  # a wrong clock is stored, not refused
    assert record["properties"]["features"]["maxProperties"] == wire.MAX_FEATURES
    assert set(record["required"]) == {"id", "ts", "features", "prediction"}
    labels = schemas["LabelsBody"]["properties"]["labels"]
    assert labels["maxItems"] == wire.MAX_LABELS_PER_REQUEST
    assert schemas["SdkCounters"]["maxProperties"] == wire.MAX_SDK_KEYS


def test_every_success_has_a_schema(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        for status, response in op["responses"].items():
            if not status.startswith("2") or (method, path, status) in EMPTY:
                continue
            content = response["content"]
            assert content, (method, path, status)
            for media in content.values():
                assert media["schema"] not in ({}, None), (method, path, status)


def test_every_refusal_is_the_error_envelope(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        refusals = {s: r for s, r in op["responses"].items() if s[0] in "45"}
        assert {"408", "431"} <= set(refusals), (method, path)
        for status, response in refusals.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": ENVELOPE}, (method, path, status)
            if status in ("429", "503"):
                assert response["headers"]["Retry-After"]["required"] is True
    text = str(document)
    assert "HTTPValidationError" not in text
    assert "ValidationError" not in document["components"]["schemas"]


def test_the_statuses_of_the_ingest_routes(document: dict[str, Any]) -> None:
    def statuses(method: str, path: str) -> set[str]:
        return set(document["paths"][path][method]["responses"])

    ingest = {"400", "401", "408", "413", "422", "429", "431", "503"}
    assert statuses("post", "/v1/records") == ingest | {"200", "403"}
    assert statuses("post", "/v1/heartbeats") == ingest | {"204", "403"}
    assert statuses("post", "/v1/labels") == ingest | {"200"}
    assert statuses("get", "/v1/models/{model}/assignment") == {
        "200", "304", "401", "403", "404", "408", "422", "429", "431", "503",
    }  # fmt: skip
    codes = str(document["paths"]["/v1/records"]["post"]["responses"]["400"])
    for code in ("malformed_json", "invalid_number", "too_deep", "bad_gzip"):
        assert code in codes


def test_routes_name_their_bearer_schemes(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert {name: (s["type"], s["scheme"]) for name, s in schemes.items()} == {
        "nodeToken": ("http", "bearer"),
        "adminToken": ("http", "bearer"),
        "readToken": ("http", "bearer"),
    }
    for method, path, op in operations(document):
        security = op.get("security")
        if path in READ_PATHS:
            assert security == [{"readToken": []}, {"adminToken": []}], (method, path)
        elif path.startswith("/v1/admin/"):
            assert security == [{"adminToken": []}], (method, path)
        elif path == "/v1/labels":
            assert security == [{"nodeToken": []}, {"adminToken": []}]
        elif path.startswith("/v1/"):
            assert security == [{"nodeToken": []}], (method, path)
        else:
            assert security is None, (method, path)  # health and metrics are open


def sdk_batch() -> dict[str, Any]:
    """A batch as the SDK builds it (its record builder, the wire's body)."""
    now = time.time()
    records = [
        build_record(new_id(), new_id(), now, {"temperature": 71.5, "rpm": 1450}, "ok",
                     {"ok": 0.9, "fail": 0.1}, 1.25),
        build_record(new_id(), "order-17", now, {"machine_type": "press", "flag": None}, 3,
                     [0.2, 0.8], None),
        build_record(new_id(), "order-18", now, {}, True, None, 0),
    ]  # fmt: skip
    return wire.records_body(uuid.uuid4().hex, MODEL, "1", records)


def sdk_labels() -> dict[str, Any]:
    return wire.labels_body(MODEL, [build_label("order-17", "fail", time.time())])


def sdk_heartbeat() -> dict[str, Any]:
    counters = {"logged": 3, "enqueued": 3, "delivered": 3, "dropped": {"sampled_out": 0}}
    counters |= {"queue_depth": 0, "spool_records": 0, "spool_bytes": 0, "internal_errors": 0}
    runtime = heartbeat_runtime({"model_version": "1", "p95_ms": 4.2, "last_error": "x" * 5000})
    return {"ts": time.time(), "model": MODEL, "model_version": "1", "sdk": counters,
            "runtime": runtime}  # fmt: skip


def test_the_request_schemas_accept_what_the_sdk_sends(document: dict[str, Any]) -> None:
    for name, body in (
        ("RecordsBody", sdk_batch()),
        ("LabelsBody", sdk_labels()),
        ("HeartbeatBody", sdk_heartbeat()),
    ):
        errors = list(body_validator(document, name).iter_errors(body))
        assert errors == [], (name, [e.message for e in errors])


def test_the_documented_examples_are_valid(document: dict[str, Any]) -> None:
    for (method, path), name in BODIES.items():
        example = document["paths"][path][method]["requestBody"]["content"]["application/json"]
        if "example" in example:
            body_validator(document, name).validate(example["example"])


def _with(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    if value is _MISSING:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


_MISSING = object()

#: Bodies the collector refuses (a 4xx, or every record rejected), each breaking one rule.
REFUSED: list[tuple[str, str, tuple[str | int, ...], Any]] = [
    ("records", "RecordsBody", ("model",), _MISSING),
    ("records", "RecordsBody", ("model",), "pump failure"),  # not a name
    ("records", "RecordsBody", ("records",), []),
    ("records", "RecordsBody", ("records", 0, "ts"), "yesterday"),
    ("records", "RecordsBody", ("records", 0, "id"), "x" * (wire.MAX_ID_CHARS + 1)),
    ("records", "RecordsBody", ("records", 0, "id"), "a\x00b"),
    ("records", "RecordsBody", ("records", 0, "probabilities"), {"ok": 1.5}),
    ("records", "RecordsBody", ("records", 0, "features"), {"rpm": [1, 2]}),
    ("records", "RecordsBody", ("records", 0, "latency_ms"), -1),
    ("records", "RecordsBody", ("records", 0, "prediction"), None),
    ("labels", "LabelsBody", ("labels",), []),
    ("labels", "LabelsBody", ("labels", 0, "request_id"), ""),
    ("labels", "LabelsBody", ("labels", 0, "label"), {"class": "fail"}),
    ("heartbeats", "HeartbeatBody", ("ts",), "yesterday"),
    ("heartbeats", "HeartbeatBody", ("sdk", "logged"), -3),
    ("heartbeats", "HeartbeatBody", ("sdk", "dropped"), {"queue_full": -1}),
]


@pytest.mark.parametrize(
    ("route", "name", "path", "value"),
    REFUSED,
    ids=[f"{route}:{'.'.join(map(str, path))}" for route, _, path, _ in REFUSED],
)
def test_the_request_schemas_refuse_what_the_collector_refuses(
    document: dict[str, Any], route: str, name: str, path: tuple[str | int, ...], value: Any
) -> None:
    valid = {"records": sdk_batch, "labels": sdk_labels, "heartbeats": sdk_heartbeat}[route]()
    if route == "records":
        valid["records"] = valid["records"][:1]  # one record: its rejection refuses the batch
    body = _with(valid, path, value)

    assert not body_validator(document, name).is_valid(body)


def test_the_collector_refuses_those_bodies_too(http: httpx.Client, token: str) -> None:
    # Against a real collector (each database): the schema is no stricter than the collector.
    def send(route: str, body: dict[str, Any]) -> httpx.Response:
        return http.post(f"/v1/{route}", json=body, headers=auth(token))

    assert send("records", sdk_batch()).status_code == 200
    assert send("labels", sdk_labels()).status_code == 200
    assert send("heartbeats", sdk_heartbeat()).status_code == 204
    for route, _, path, value in REFUSED:
        valid = {"records": sdk_batch, "labels": sdk_labels, "heartbeats": sdk_heartbeat}[route]()
        if route == "records":
            valid["records"] = valid["records"][:1]
        answer = send(route, _with(valid, path, value))
        assert 400 <= answer.status_code < 500, (route, path, answer.text)
        assert answer.json()["error"]["code"], (route, path)
