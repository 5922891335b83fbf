"""The collector does what /openapi.json says: a schemathesis run against a real collector, on
each database, finds no undocumented status code, no 5xx, and no answer whose body, media type
or headers (Retry-After) differ from the document.

For every operation, schemathesis generates requests from the document, valid (positive) and
invalid (negative), and sends them with the right token, a stranger's token or none. Bounded
and derandomized: the same requests every run, a few seconds per database.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from monitor.collector.server import BackgroundCollector
from tests.collector.conftest import ADMIN_TOKEN, MODEL, auth

#: Requests per operation and generation mode (MONITOR_TEST_CONFORMANCE_EXAMPLES for a longer
#: hunt; the default keeps the run to a few seconds per database).
EXAMPLES = int(os.environ.get("MONITOR_TEST_CONFORMANCE_EXAMPLES", "6"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
STRANGER = "emn_not-a-registered-token"
READ_PATHS = {
    "/v1/models/{model}/windows",
    "/v1/models/{model}/results",
    "/v1/nodes/health",
    "/v1/alerts",
    "/v1/alerts/{alert_id}",
}


def _bounded(test: Callable[..., None]) -> Callable[..., None]:
    return settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )(test)


def conform(
    operation: Any, mode: GenerationMode, url: str, owner: str, session: requests.Session
) -> int:
    """Send ``operation``'s generated requests; the checks raise on the first failure. Returns
    how many requests went out (0 when the mode has nothing to generate)."""
    sent = []

    @_bounded
    @given(
        case=operation.as_strategy(generation_mode=mode),
        who=st.sampled_from(["owner"] * 3 + [STRANGER, ""]),
    )
    def run(case: Any, who: str) -> None:
        token = owner if who == "owner" else who
        headers = dict(case.headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        else:
            headers.pop("Authorization", None)
        case.headers = headers
        response = case.call(base_url=url, session=session, timeout=30)
        sent.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        # Negative mode cannot break an operation that takes nothing (/healthz).
        assert mode is GenerationMode.NEGATIVE and not sent
    return len(sent)


def test_the_collector_answers_as_documented(
    collector: BackgroundCollector, token: str, backend: str
) -> None:
    schema = schemathesis.openapi.from_dict(httpx.get(f"{collector.url}/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    sent = 0
    session = requests.Session()  # one keep-alive connection for the run
    for operation in operations:
        # The read API takes the admin token as well as the read token.
        admin = operation.path.startswith("/v1/admin/") or operation.path in READ_PATHS
        owner = ADMIN_TOKEN if admin else token
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            sent += conform(operation, mode, collector.url, owner, session)
    assert sent >= len(operations) * EXAMPLES


def _documented(document: dict[str, Any], method: str, path: str, status: int) -> bool:
    template = next(
        p for p in document["paths"] if re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", p), path)
    )
    return str(status) in document["paths"][template][method.lower()]["responses"]


def test_a_nul_in_a_path_name_is_a_documented_refusal(http: httpx.Client, token: str) -> None:
    # PostgreSQL cannot store NUL: before, such a name was a 500 there (SQLite finds nothing).
    document = http.get("/openapi.json").json()
    for method, path, headers in [
        ("GET", "/v1/models/a%00b/assignment", auth(token)),
        ("GET", f"/v1/models/{MODEL}/versions/a%00/artifact", auth(token)),
        ("GET", "/v1/admin/models/a%00/versions", auth(ADMIN_TOKEN)),
        ("POST", "/v1/admin/nodes/a%00/revoke", auth(ADMIN_TOKEN)),
    ]:
        answer = http.request(method, path, headers=headers)
        assert (answer.status_code, answer.json()["error"]["code"]) in {
            (422, "invalid_string"),  # PostgreSQL
            (404, "unknown_model"),  # SQLite
            (404, "unknown_version"),
            (404, "unknown_node"),
        }, (path, answer.text)
        assert _documented(document, method, path, answer.status_code)


def test_a_nul_in_an_admin_body_is_refused_with_its_field_on_every_database(
    http: httpx.Client,
) -> None:
    # Was a 500 on PostgreSQL and stored on SQLite.
    for path, body, field in [
        ("/v1/admin/models", {"name": "m2", "description": "a\x00b"}, "description"),
        ("/v1/admin/nodes", {"name": "n2", "site": "a\x00b"}, "site"),
        ("/v1/admin/nodes", {"name": "n3", "tags": {"line": "\x00"}}, "tags.line"),
        (f"/v1/admin/models/{MODEL}/pins", {"version": "a\x00", "group": "g"}, "version"),
    ]:
        answer = http.post(path, headers=auth(ADMIN_TOKEN), json=body)
        assert answer.status_code == 422, (path, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "validation_failed"
        assert [d["field"] for d in error["details"]] == [field]
