"""One scope's results over a period: the windows a period holds (newest ``limit``, oldest
first), a scope's drift / quality / performance / estimation / multivariate rows in them (several
kinds over the same windows at once), its feature x window drift matrix equal to the stored
feature rows, the scopes judged in one window, and one scope's results of one window (every
kind of it)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from sqlalchemy import Engine

from monitor.schema import (
    ESTIMATION,
    FEATURE,
    FLEET,
    FLEET_KEY,
    MULTIVARIATE,
    NODE,
    OK,
    PERFORMANCE,
    PREDICTION_ROLE,
    SITE,
    EstimationScope,
    MultivariateScope,
    ResultTable,
)
from monitor.storage import results, timelines
from monitor.storage.engine import begin_write
from monitor.storage.results import KindResults
from tests.jobs.fleetdata import WINDOW, register_demo_model
from tests.storage.test_readout import DRIFTING_SITE, NOW, T0, Analysed, analyse_fleet


@pytest.fixture
def fleet(engine: Engine) -> Analysed:
    """Three analysed windows of eight nodes at four sites, one site drifting in the last."""
    return analyse_fleet(engine, windows=3, per_node=60)


#: The scopes given estimation and multivariate rows by ``store_new_kinds``.
NEW_KIND_SCOPES = [(FLEET, FLEET_KEY), (SITE, DRIFTING_SITE)]


def store_new_kinds(engine: Engine, fleet: Analysed) -> None:
    """Estimation and multivariate rows for the fleet and the drifting site in every window but
    the first (analysed, say, before these kinds existed), each figure telling its window."""
    with begin_write(engine) as conn:
        for index, start in enumerate(fleet.starts):
            first = results.window(conn, fleet.model_id, start)
            assert first is not None
            rows: dict[str, list[Any]] = {ESTIMATION: [], MULTIVARIATE: []}
            for kind, key in NEW_KIND_SCOPES if index else []:
                known = {"scope_kind": kind, "scope_key": key, "status": OK, "n_rows": 10}
                rows[ESTIMATION].append(
                    EstimationScope(
                        **_nothing(EstimationScope)
                        | known
                        | {"task": "classification", "n_scored": 10, "n_labelled": 0}
                        | {"accuracy": 0.9 - index / 100, "trusted": index != 2}
                    )
                )
                rows[MULTIVARIATE].append(
                    MultivariateScope(
                        **_nothing(MultivariateScope)
                        | known
                        | {"method": "pca-reconstruction", "n_components": 2}
                        | {"reconstruction_error": 1.0 + index, "drifted": index == 2}
                    )
                )
            results.save_window(
                conn,
                fleet.model_id,
                start,
                first.window_end,
                {
                    kind: KindResults(ResultTable.from_rows(row_type, rows[kind]))
                    for kind, row_type in (
                        (ESTIMATION, EstimationScope),
                        (MULTIVARIATE, MultivariateScope),
                    )
                },
                model_version_id=first.drift_of().model_version_id,
                n_reference=first.drift_of().n_reference,
            )


def _nothing(row_type: type) -> dict[str, Any]:
    return {f.name: None for f in fields(row_type)}


def test_a_period_holds_the_windows_that_end_after_its_start_and_start_before_its_end(
    engine: Engine, fleet: Analysed
) -> None:
    first, second, third = fleet.starts

    with engine.connect() as conn:

        def starts(**period: object) -> list[object]:
            return timelines.window_starts(conn, fleet.model_id, **period)  # type: ignore[arg-type]

        everything = starts()
        # A window that ends inside the period is in it; one that ends at its start is not.
        from_inside_first = starts(ending_after=first + WINDOW / 2)
        from_end_of_first = starts(ending_after=first + WINDOW)
        until_third = starts(starting_before=third)
        newest_two = starts(limit=2)
        none = starts(ending_after=NOW)

    assert everything == [first, second, third]
    assert from_inside_first == [first, second, third]
    assert from_end_of_first == [second, third]
    assert until_third == [first, second]
    assert newest_two == [second, third]
    assert none == []


def test_a_scopes_timelines_are_its_stored_rows_window_by_window(
    engine: Engine, fleet: Analysed
) -> None:
    with engine.connect() as conn:
        drift = timelines.drift_timeline(conn, fleet.model_id, SITE, DRIFTING_SITE)
        quality = timelines.quality_timeline(conn, fleet.model_id, SITE, DRIFTING_SITE)
        performance = timelines.performance_timeline(conn, fleet.model_id, FLEET, FLEET_KEY)
        newest = timelines.drift_timeline(conn, fleet.model_id, FLEET, FLEET_KEY, limit=1)
        stored_drift = results.drift(conn, fleet.model_id, scope_kind=SITE, scope_key=DRIFTING_SITE)
        stored_quality = results.quality(
            conn, fleet.model_id, scope_kind=SITE, scope_key=DRIFTING_SITE
        )
        stored_performance = results.performance(conn, fleet.model_id, scope_kind=FLEET)

    assert drift == stored_drift and len(drift) == 3
    assert [row.window_start for row in drift] == fleet.starts
    assert [row.result.drifted is True for row in drift] == [False, False, True]
    assert quality == stored_quality
    assert performance == stored_performance
    assert [row.result.n_labelled for row in performance] == [0, 0, 8 * 60 // 2]
    assert [row.window_start for row in newest] == [fleet.starts[-1]]


def test_several_kinds_of_a_scope_are_read_over_the_same_windows(
    engine: Engine, fleet: Analysed
) -> None:
    store_new_kinds(engine, fleet)
    kinds = (PERFORMANCE, ESTIMATION, MULTIVARIATE)

    with engine.connect() as conn:
        together = timelines.scope_timelines(conn, fleet.model_id, kinds, SITE, DRIFTING_SITE)
        one_by_one = {
            kind: timelines.scope_timeline(conn, fleet.model_id, kind, SITE, DRIFTING_SITE)
            for kind in kinds
        }
        estimation = timelines.estimation_timeline(conn, fleet.model_id, SITE, DRIFTING_SITE)
        multivariate = timelines.multivariate_timeline(conn, fleet.model_id, FLEET, FLEET_KEY)
        newest = timelines.scope_timelines(conn, fleet.model_id, kinds, FLEET, FLEET_KEY, limit=1)
        stored = results.estimation(conn, fleet.model_id, scope_kind=SITE, scope_key=DRIFTING_SITE)
        none = timelines.scope_timelines(
            conn, fleet.model_id, kinds, FLEET, FLEET_KEY, ending_after=NOW
        )

    assert together == one_by_one
    assert together[ESTIMATION] == estimation == stored
    # The first window was analysed before these kinds existed: no row there.
    assert [r.window_start for r in estimation] == fleet.starts[1:]
    assert [r.result.accuracy for r in estimation] == [0.89, 0.88]
    assert [r.result.trusted for r in estimation] == [True, False]
    assert [r.window_start for r in multivariate] == fleet.starts[1:]
    assert [r.result.drifted for r in multivariate] == [False, True]
    assert {kind: [r.window_start for r in rows] for kind, rows in newest.items()} == {
        kind: [fleet.starts[-1]] for kind in kinds
    }
    assert none == {kind: [] for kind in kinds}


def test_a_node_has_no_row_in_a_window_it_was_not_judged_in(
    engine: Engine, fleet: Analysed
) -> None:
    with engine.connect() as conn:
        unknown = timelines.drift_timeline(conn, fleet.model_id, NODE, "no-such-node")
        outside = timelines.drift_timeline(
            conn, fleet.model_id, NODE, fleet.plans[0].name, ending_after=NOW
        )

    assert unknown == []
    assert outside == []


def test_the_drift_matrix_holds_every_stored_feature_row_of_the_scope(
    engine: Engine, fleet: Analysed
) -> None:
    with engine.connect() as conn:
        matrix = timelines.drift_matrix(conn, fleet.model_id, SITE, DRIFTING_SITE)
        stored = [results.window(conn, fleet.model_id, start) for start in fleet.starts]
        two = timelines.drift_matrix(conn, fleet.model_id, SITE, DRIFTING_SITE, limit=2)

    expected = {}
    for window in stored:
        assert window is not None
        scope = window.drift_of(SITE, DRIFTING_SITE)
        for row in window.drift_features[scope.id]:
            expected[(window.window_start, row.feature)] = row
    assert [w.window_start for w in matrix.windows] == fleet.starts
    assert dict(matrix.cells) == expected
    assert set(matrix.features) == {feature for _, feature in expected}
    # Inputs by name first, then the prediction, then the class probabilities.
    roles = [matrix.cells[(fleet.starts[0], name)].role for name in matrix.features]
    inputs = [name for name, role in zip(matrix.features, roles, strict=True) if role == FEATURE]
    assert matrix.features[: len(inputs)] == sorted(inputs)
    assert roles[len(inputs)] == PREDICTION_ROLE
    last = stored[-1]
    assert last is not None
    drifted = sorted(
        name
        for name in matrix.features
        if matrix.cell(fleet.starts[-1], name).drifted  # type: ignore[union-attr]
        and matrix.cell(fleet.starts[-1], name).role == FEATURE  # type: ignore[union-attr]
    )
    assert drifted == last.drifted_features(SITE, DRIFTING_SITE) != []
    assert matrix.cell(fleet.starts[0], "no-such-feature") is None
    assert [w.window_start for w in two.windows] == fleet.starts[1:]
    assert {start for start, _ in two.cells} == set(fleet.starts[1:])


def test_the_scopes_of_a_window_are_the_fleet_then_sites_groups_and_nodes_by_name(
    engine: Engine, fleet: Analysed
) -> None:
    with engine.connect() as conn:
        scopes = timelines.window_scopes(conn, fleet.model_id, fleet.starts[-1])
        stored = results.window(conn, fleet.model_id, fleet.starts[-1])
        later = timelines.window_scopes(conn, fleet.model_id, NOW)

    assert stored is not None
    assert sorted(scopes) == sorted((row.scope_kind, row.scope_key) for row in stored.drift)
    kinds = [kind for kind, _ in scopes]
    assert scopes[0] == (FLEET, FLEET_KEY)
    assert kinds == sorted(kinds, key=["fleet", "site", "group", "node"].index)
    assert [key for kind, key in scopes if kind == NODE] == sorted(p.name for p in fleet.plans)
    assert later == []


def test_a_scopes_window_holds_its_rows_of_every_kind_and_agrees_with_the_whole_window(
    engine: Engine, fleet: Analysed
) -> None:
    start = fleet.starts[-1]
    node = fleet.drifting_nodes()[0]
    store_new_kinds(engine, fleet)
    with engine.connect() as conn:
        whole = results.window(conn, fleet.model_id, start)
        scoped = {
            scope: timelines.scope_window(conn, fleet.model_id, start, *scope)
            for scope in [(FLEET, FLEET_KEY), (SITE, DRIFTING_SITE), (NODE, node)]
        }
        missing = timelines.scope_window(conn, fleet.model_id, start, NODE, "no-such-node")
        later = timelines.scope_window(conn, fleet.model_id, NOW, FLEET, FLEET_KEY)

    assert whole is not None
    assert missing is None and later is None
    for (kind, key), one in scoped.items():
        assert one is not None
        assert (one.window_start, one.window_end) == (whole.window_start, whole.window_end)
        drift, quality = one.drift_of(kind, key), one.quality_of(kind, key)
        assert drift == whole.drift_of(kind, key)
        assert quality == whole.quality_of(kind, key)
        assert one.performance_of(kind, key) == whole.performance_of(kind, key)
        assert one.estimation == [
            r for r in whole.estimation if (r.scope_kind, r.scope_key) == (kind, key)
        ]
        assert one.multivariate == [
            r for r in whole.multivariate if (r.scope_kind, r.scope_key) == (kind, key)
        ]
        if (kind, key) in NEW_KIND_SCOPES:
            assert one.estimation_of(kind, key) == whole.estimation_of(kind, key)
            assert one.multivariate_of(kind, key) == whole.multivariate_of(kind, key)
        assert one.drift_features[drift.id] == whole.drift_features[drift.id]
        assert one.quality_features[quality.id] == whole.quality_features[quality.id]
        assert one.drifted_features(kind, key) == whole.drifted_features(kind, key)
        assert one.quality_issues(kind, key) == whole.quality_issues(kind, key)
        assert [(r.scope_kind, r.scope_key) for r in one.drift] == [(kind, key)]
    site = scoped[(SITE, DRIFTING_SITE)]
    assert site is not None and site.drifted_features(SITE, DRIFTING_SITE) != []


def test_a_model_never_analysed_has_empty_timelines(engine: Engine) -> None:
    model_id = register_demo_model(engine)

    with engine.connect() as conn:
        assert timelines.window_starts(conn, model_id) == []
        assert timelines.drift_timeline(conn, model_id, FLEET, FLEET_KEY) == []
        assert timelines.estimation_timeline(conn, model_id, FLEET, FLEET_KEY) == []
        assert timelines.multivariate_timeline(conn, model_id, FLEET, FLEET_KEY) == []
        matrix = timelines.drift_matrix(conn, model_id, FLEET, FLEET_KEY, ending_after=T0)
        assert (matrix.windows, matrix.features, dict(matrix.cells)) == ([], [], {})
        assert timelines.window_scopes(conn, model_id, T0) == []
        assert timelines.scope_window(conn, model_id, T0, FLEET, FLEET_KEY) is None
