"""Result revisions and pooled spans: a re-analysis after late records stores the next revision
with its late rows on every scope row; a recomputation of one kind keeps the revision it had;
a pooled scope's span start is stored on that scope's row alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from monitor.schema import DRIFT, PERFORMANCE
from monitor.storage import models, nodes, results
from monitor.storage.engine import begin_write
from monitor.storage.results import KindResults
from tests.storage.test_results import END, START, drift_results, performance

EARLIER = START - timedelta(days=3)


def setup(engine: Engine) -> int:
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "pump").id
        nodes.add_node(conn, "n-7")
    return model_id


def save(engine: Engine, model_id: int, found: dict[str, KindResults], **extra) -> None:
    with begin_write(engine) as conn:
        results.save_window(
            conn, model_id, START, END, found, model_version_id=None, n_reference=900, **extra
        )


def pooled_drift() -> KindResults:
    plain = drift_results()
    return KindResults(plain.scopes, plain.features, span_starts={("node", "n-7"): EARLIER})


def test_a_first_analysis_is_revision_1_with_no_late_rows(engine: Engine) -> None:
    model_id = setup(engine)

    save(engine, model_id, {DRIFT: drift_results(), PERFORMANCE: performance(5_000, 0.9)})

    with engine.connect() as conn:
        stored = results.window(conn, model_id, START)
    assert stored is not None
    rows = [*stored.drift, *stored.performance]
    assert [(r.revision, r.n_late, r.span_start, r.reference) for r in rows] == [
        (1, 0, None, None)
    ] * 4


def test_a_reanalysis_stores_its_revision_and_late_rows_on_every_scope(engine: Engine) -> None:
    model_id = setup(engine)
    save(engine, model_id, {DRIFT: drift_results(), PERFORMANCE: performance(5_000, 0.9)})

    save(
        engine,
        model_id,
        {DRIFT: pooled_drift(), PERFORMANCE: performance(6_234, 0.8)},
        revision=2,
        n_late=1_234,
    )

    with engine.connect() as conn:
        stored = results.window(conn, model_id, START)
    assert stored is not None
    assert {(r.revision, r.n_late) for r in [*stored.drift, *stored.performance]} == {(2, 1_234)}
    assert stored.performance_of().result.n_rows == 6_234


def test_a_recomputed_kind_keeps_the_revision_it_had(engine: Engine) -> None:
    model_id = setup(engine)
    save(
        engine,
        model_id,
        {DRIFT: drift_results(), PERFORMANCE: performance(5_000, 0.9)},
        revision=3,
        n_late=17,
    )

    save(engine, model_id, {PERFORMANCE: performance(5_000, 0.7)})  # labels arrived

    with engine.connect() as conn:
        (perf,) = results.performance(conn, model_id)
    assert (perf.revision, perf.n_late, perf.result.accuracy) == (3, 17, 0.7)


def test_a_pooled_scope_has_its_span_start_and_the_others_none(engine: Engine) -> None:
    model_id = setup(engine)

    save(engine, model_id, {DRIFT: pooled_drift()})

    with engine.connect() as conn:
        rows = results.drift(conn, model_id)
    spans = {(r.scope_kind, r.scope_key): r.span_start for r in rows}
    assert spans == {("fleet", ""): None, ("site", "plant-1"): None, ("node", "n-7"): EARLIER}
    assert spans[("node", "n-7")].tzinfo == UTC


def test_analysed_windows_say_when_and_on_how_many_rows(engine: Engine) -> None:
    model_id = setup(engine)
    as_of = datetime(2026, 11, 25, 12, 20, 1, 5, tzinfo=UTC)
    save(engine, model_id, {DRIFT: drift_results()}, revision=2, n_late=3, computed_at=as_of)

    with engine.connect() as conn:
        found = results.analysed_since(conn, model_id, START)
        later = results.analysed_since(conn, model_id, END)

    assert found == [results.Analysed(START, END, 2, 5_000, as_of)]
    assert later == []
