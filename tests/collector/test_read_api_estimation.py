"""The read API's results carry estimated performance and multivariate drift per scope, every
field as the typed rows hold it, documented by the collector's own OpenAPI schema, with the same
filters as the other kinds; a bad filter is refused with its field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from monitor.commands import results as read_commands
from monitor.config import Settings
from monitor.schema import EstimationScope, MultivariateScope, fields_of
from tests.collector.conftest import ADMIN_TOKEN
from tests.collector.test_read_api import READ_TOKEN, READER, matches_schema
from tests.commands.stored_rows import LATEST, MODEL, REGRESSOR, T0, store_story, store_unestimable


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url, data_dir=tmp_path, admin_token=ADMIN_TOKEN, read_token=READ_TOKEN
    )


def get(http: httpx.Client, model: str = MODEL, **params: Any) -> dict[str, Any]:
    answer = http.get(f"/v1/models/{model}/results", params=params, headers=READER)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_each_scope_carries_its_estimate_and_multivariate_drift(
    engine: Engine, http: httpx.Client
) -> None:
    store_story(engine)

    body = get(http)

    assert body == read_commands.results_document(engine, MODEL)
    assert matches_schema(http, "ResultList", body) == []
    (window,) = body["windows"]
    assert window["window_start"] == LATEST.isoformat()
    scopes = {s["scope"]: s for s in window["scopes"]}
    untrusted = {k for k, s in scopes.items() if s["estimation"]["trusted"] is False}
    joint = {k for k, s in scopes.items() if s["multivariate"]["drifted"]}
    assert untrusted == joint == {"site:site-a"}
    site_a = scopes["site:site-a"]
    assert site_a["estimation"]["trust_evidence"] == "calibration"
    assert site_a["estimation"]["realised_accuracy"] == 0.62  # beside the estimate's 0.81
    assert site_a["performance"]["accuracy"] == 0.62
    assert site_a["multivariate"]["reconstruction_error"] == 1.31
    assert scopes["node:node-1"]["estimation"]["status"] == "insufficient_data"
    assert scopes["node:node-1"]["multivariate"]["drifted"] is None


def test_the_openapi_schema_documents_every_field_of_both_kinds(http: httpx.Client) -> None:
    components = http.get("/openapi.json").json()["components"]["schemas"]

    for name, row_type in (
        ("EstimationOut", EstimationScope),
        ("MultivariateOut", MultivariateScope),
    ):
        documented = components[name]
        fields = {f.name for f in fields_of(row_type)} - {"scope_kind", "scope_key"}
        assert fields <= set(documented["properties"]), fields - set(documented["properties"])
        assert fields <= set(documented["required"])
        assert documented["description"]
    scope = components["ScopeResults"]["properties"]
    assert {"estimation", "multivariate"} <= set(scope)


def test_the_filters_apply_to_both_kinds(engine: Engine, http: httpx.Client) -> None:
    store_story(engine)

    one = get(http, scope="site:site-a")
    sites = get(http, scope="site")
    earlier = get(http, window=T0.isoformat(), scope="fleet")
    since = get(http, since=T0.isoformat(), scope="site:site-b")

    (scope,) = one["windows"][0]["scopes"]
    assert (scope["scope"], scope["estimation"]["trusted"]) == ("site:site-a", False)
    assert [(s["scope"], s["estimation"]["trusted"]) for s in sites["windows"][0]["scopes"]] == [
        ("site:site-a", False),
        ("site:site-b", True),
    ]
    # A window analysed before the kinds existed: both null, the other kinds as ever.
    (fleet,) = earlier["windows"][0]["scopes"]
    assert (fleet["estimation"], fleet["multivariate"]) == (None, None)
    assert fleet["drift"]["drifted"] is False
    assert [w["window_start"] for w in since["windows"]] == [LATEST.isoformat(), T0.isoformat()]
    assert [w["scopes"][0]["estimation"] is None for w in since["windows"]] == [False, True]
    assert matches_schema(http, "ResultList", since) == []


def test_a_model_that_cannot_be_estimated_has_the_fleets_row_saying_why(
    engine: Engine, http: httpx.Client
) -> None:
    store_unestimable(engine)

    body = get(http, REGRESSOR)

    fleet, *others = body["windows"][0]["scopes"]
    assert (fleet["estimation"]["status"], fleet["estimation"]["task"]) == (
        "not_classification",
        "regression",
    )
    assert fleet["estimation"]["accuracy"] is None and fleet["estimation"]["trusted"] is None
    assert all(s["estimation"] is None for s in others)
    assert all(s["multivariate"]["drifted"] is False for s in [fleet, *others])
    assert matches_schema(http, "ResultList", body) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"scope": "region"}, "query.scope"),
        ({"scope": "site:"}, "query.scope"),
        ({"scope": "planet:mars"}, "query.scope"),
        ({"window": "last tuesday"}, "query.window"),
        ({"since": "2026-11-31"}, "query.since"),
    ],
)
def test_a_bad_filter_is_a_422_naming_its_field(
    engine: Engine, http: httpx.Client, params: dict[str, str], field: str
) -> None:
    store_story(engine)

    answer = http.get(f"/v1/models/{MODEL}/results", params=params, headers=READER)

    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_failed"
    assert [d["field"] for d in error["details"]] == [field]
