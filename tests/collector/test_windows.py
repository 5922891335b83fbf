"""The window policy routes of the admin API: the admin token only, bodies of the documented
shape, and the policy as the worker will use it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine

from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.jobs.windows import window_of
from monitor.storage import models, policies
from monitor.storage.policies import Calendar
from tests.collector.conftest import ADMIN_TOKEN, MODEL, auth, batch, record

PATH = f"/v1/admin/models/{MODEL}/window"


def test_the_routes_want_the_admin_token(http: httpx.Client, token: str) -> None:
    assert http.get(PATH).status_code == 401
    assert http.put(PATH, json={"every": "1h"}, headers=auth(token)).status_code == 401
    assert http.get(PATH, headers=auth(ADMIN_TOKEN)).status_code == 200


def test_a_policy_set_through_the_api_is_the_one_the_worker_reads(
    http: httpx.Client, engine: Engine, token: str
) -> None:
    answer = http.put(
        PATH, json={"calendar": "quarter", "timezone": "Asia/Tokyo"}, headers=auth(ADMIN_TOKEN)
    )

    with engine.connect() as conn:
        model = models.get_model(conn, MODEL)
        schedule = policies.read_schedule(conn, model.id)
    assert answer.status_code == 200
    assert schedule.current == Calendar("quarter", "Asia/Tokyo")
    assert answer.json()["since"] is None  # nothing analysed: from the first record


def test_bodies_not_of_the_documented_shape_name_the_field(http: httpx.Client, token: str) -> None:
    def refused(body: Any) -> tuple[int, str, list[str]]:
        answer = http.put(PATH, json=body, headers=auth(ADMIN_TOKEN))
        error = answer.json()["error"]
        return answer.status_code, error["code"], [d["field"] for d in error["details"]]

    assert refused({"every": "1h", "sliding": True}) == (422, "validation_failed", ["sliding"])
    assert refused({"rows": "many"}) == (422, "validation_failed", ["rows"])
    assert refused({"calendar": "fortnight"}) == (422, "invalid_value", ["calendar"])
    assert refused({"default": False}) == (422, "invalid_value", ["every"])


def test_a_policy_set_after_analyses_says_where_it_took_over(
    http: httpx.Client, engine: Engine, token: str
) -> None:
    sent = datetime.now(UTC) - timedelta(hours=2)
    answer = http.post(
        "/v1/records", json=batch([record(ts=sent.timestamp())]), headers=auth(token)
    )
    assert answer.status_code == 200, answer.text
    worker = Worker(engine, AnalysisConfig(window=timedelta(minutes=15)))
    assert worker.run_due() == 1
    analysed_until = window_of(sent, timedelta(minutes=15)).end

    answer = http.put(PATH, json={"every": "1h"}, headers=auth(ADMIN_TOKEN))

    assert answer.status_code == 200
    assert answer.json()["since"] == analysed_until.isoformat()
    assert answer.json()["description"] == "every 1 h"


def test_the_document_describes_both_routes(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    item = document["paths"]["/v1/admin/models/{model}/window"]
    body = item["put"]["requestBody"]["content"]["application/json"]["schema"]

    assert body == {"$ref": "#/components/schemas/WindowIn"}
    for method in ("get", "put"):
        ok = item[method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/WindowPolicyOut"}
        assert item[method]["security"] == [{"adminToken": []}]
        assert "404" in item[method]["responses"]
    assert "invalid_value" in str(item["put"]["responses"]["422"])
