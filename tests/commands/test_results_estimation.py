"""The results the CLI and the read API share (``monitor.commands.results``): estimated
performance and multivariate drift per scope, read through storage.results' typed rows, and
the JSON document that carries every field of both kinds."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Engine

from monitor.commands import results as readers
from monitor.schema import EstimationScope, MultivariateScope, fields_of
from monitor.storage import results
from tests.commands.stored_rows import (
    LATEST,
    MODEL,
    REGRESSOR,
    T0,
    store_story,
    store_unestimable,
)


def test_the_found_window_names_the_untrusted_estimates_and_the_joint_drift(
    engine: Engine,
) -> None:
    store_story(engine)

    found = readers.find_results(engine, MODEL)

    (window,) = found.windows
    assert window.window_start == LATEST
    assert [s.name for s in window.untrusted()] == ["site:site-a"]
    assert [s.name for s in window.multivariate_drifting()] == ["site:site-a"]
    # node-1 had too few rows: no trust verdict and no multivariate verdict.
    assert "node:node-1" not in {s.name for s in window.judged_estimates()}
    assert "node:node-1" not in {s.name for s in window.judged_multivariate()}
    assert window.estimated and window.multivariate_analysed
    assert window.not_estimable is None and window.multivariate_unjudged is None


def test_the_document_carries_every_field_of_both_kinds_as_storage_holds_them(
    engine: Engine,
) -> None:
    story = store_story(engine)
    with engine.connect() as conn:
        estimates = {r.scope_key: r for r in results.estimation(conn, story.model_id)}
        joint = {r.scope_key: r for r in results.multivariate(conn, story.model_id)}

    document = readers.results_document(engine, MODEL)

    (window,) = document["windows"]
    by_scope = {s["scope_key"]: s for s in window["scopes"]}
    assert set(by_scope) == set(estimates) == set(joint)
    for key, scope in by_scope.items():
        assert _result(scope["estimation"], EstimationScope) == _plain(estimates[key].result)
        assert _result(scope["multivariate"], MultivariateScope) == _plain(joint[key].result)
        for kind in ("estimation", "multivariate"):
            assert scope[kind]["model_version"] == "1"
            assert scope[kind]["n_reference"] == 5000
            assert scope[kind]["revision"] == 1
    site_a = by_scope["site-a"]["estimation"]
    assert (site_a["trusted"], site_a["trust_evidence"]) == (False, "calibration")
    assert (site_a["realised_accuracy"], site_a["expected_accuracy"]) == (0.62, 0.81)
    assert by_scope["site-a"]["multivariate"]["drifted"] is True
    assert by_scope["node-1"]["estimation"]["accuracy"] is None


def test_a_window_analysed_before_the_kinds_existed_has_none_of_them(engine: Engine) -> None:
    store_story(engine)

    found = readers.find_results(engine, MODEL, window=T0.isoformat())
    document = readers.results_of(found)

    (window,) = found.windows
    assert window.window_start == T0
    assert not window.estimated and not window.multivariate_analysed
    assert window.untrusted() == [] and window.judged_estimates() == []
    scopes = document["windows"][0]["scopes"]
    assert scopes and all(s["estimation"] is None and s["multivariate"] is None for s in scopes)


def test_a_model_that_cannot_be_estimated_says_why_once_for_the_window(engine: Engine) -> None:
    store_unestimable(engine)

    found = readers.find_results(engine, REGRESSOR)

    (window,) = found.windows
    assert window.not_estimable == "not_classification"
    fleet, *others = window.scopes
    assert fleet.estimation is not None and fleet.estimation_unavailable
    assert all(s.estimation is None for s in others)
    assert window.judged_estimates() == []
    assert len(window.judged_multivariate()) == len(window.scopes)


def test_one_scope_keeps_its_estimate_and_multivariate_row(engine: Engine) -> None:
    store_story(engine)

    document = readers.results_document(engine, MODEL, scope="site:site-a")

    (scope,) = document["windows"][0]["scopes"]
    assert scope["scope"] == "site:site-a"
    assert scope["estimation"]["trusted"] is False
    assert scope["multivariate"]["reconstruction_error"] == 1.31


def _result(answer: dict[str, Any], row_type: type) -> dict[str, Any]:
    """The fields of the schema row ``row_type`` in an answer (besides the scope's own)."""
    names = [f.name for f in fields_of(row_type) if f.name not in ("scope_kind", "scope_key")]
    assert set(names) <= set(answer), set(names) - set(answer)
    return {name: answer[name] for name in names}


def _plain(row: Any) -> dict[str, Any]:
    return {
        k: v for k, v in dataclasses.asdict(row).items() if k not in ("scope_kind", "scope_key")
    }
