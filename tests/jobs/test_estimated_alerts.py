"""Performance alerts on estimates as the worker raises them: a window's estimated and realised
results stored by hand, judged in their own transaction, on both databases. An estimated drop
fires the rule a realised one does, marked estimated in its summary, details and webhook, and
resolves as the rule says once trusted estimates or labels are clear."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonschema
import pytest
from sqlalchemy import Engine, select

from monitor.alerts.payload import PAYLOAD_SCHEMA
from monitor.alerts.rules import Rule
from monitor.jobs.alerts import Change, evaluate_window, figures_from, figures_of
from monitor.schema import (
    ESTIMATION,
    OK,
    PERFORMANCE,
    EstimationScope,
    PerformanceScope,
    ResultTable,
)
from monitor.storage import alerts, results, webhooks
from monitor.storage.alert_rules import upsert_rule
from monitor.storage.engine import begin_write
from monitor.storage.results import KindResults
from monitor.storage.tables import alert_observations, webhook_messages
from tests.alerts.windows import T0, WINDOW, fleet, node_names, start

SITES = {"hot": 3, "cold": 3}
NODES = node_names(SITES)
#: As the trust rules say it (monitor.analysis.trust): the verdict opens its own sentence.
BROKE = (
    "not trusted: calibration broke at site hot: on 150 labelled records the model was right 61% "
    "of the time where its calibrated confidence promised 80% (band 0.77\u20130.83)"
)

#: (scope kind, key) -> (accuracy, half-width of its band, trusted)
Estimates = Mapping[tuple[str, str], tuple[float, float, bool | None]]
#: (scope kind, key) -> (labelled rows, accuracy or None: too few labels)
Realised = Mapping[tuple[str, str], tuple[int, float | None]]


def estimation_row(kind: str, key: str, accuracy: float, half: float, trusted: bool | None):
    def band(figure: float) -> tuple[float, float, float]:
        return figure, figure - half, figure + half

    if trusted is None:
        evidence, reason = None, None
    elif trusted:
        evidence, reason = "no_contrary_evidence", "nothing contradicts it (no labels yet)"
    else:
        evidence, reason = "calibration", BROKE
    return EstimationScope(
        kind,
        key,
        OK,
        "classification",
        500,
        500,
        *band(accuracy),
        *band(accuracy),
        *band(accuracy),
        *band(accuracy),
        *band(accuracy),
        0.01,
        0.0,
        0,
        None,
        None,
        None,
        trusted,
        evidence,
        reason,
    )


def performance_row(kind: str, key: str, labelled: int, accuracy: float | None):
    status = OK if accuracy is not None else "insufficient_labels"
    return PerformanceScope(
        kind,
        key,
        status,
        "classification",
        500,
        labelled,
        labelled / 500,
        accuracy,
        accuracy,
        accuracy,
        accuracy,
        None,
        None,
        None,
    )


def kinds(
    estimates: Estimates | None = None, realised: Realised | None = None
) -> dict[str, KindResults]:
    found: dict[str, KindResults] = {}
    if estimates is not None:
        rows = [estimation_row(k, key, *e) for (k, key), e in estimates.items()]
        found[ESTIMATION] = KindResults(ResultTable.from_rows(EstimationScope, rows))
    if realised is not None:
        rows = [performance_row(k, key, *p) for (k, key), p in realised.items()]
        found[PERFORMANCE] = KindResults(ResultTable.from_rows(PerformanceScope, rows))
    return found


def store(
    engine: Engine,
    model_id: int,
    i: int,
    estimates: Estimates | None = None,
    realised: Realised | None = None,
    *,
    read_back: bool = False,
) -> list[Change]:
    """Store window ``i``'s estimated and realised performance and judge it as the worker does
    (the results it just stored handed over), or from what is stored (``read_back``)."""
    found = kinds(estimates, realised)
    with begin_write(engine) as conn:
        results.save_window(
            conn, model_id, start(i), start(i) + WINDOW, found, model_version_id=None,
            n_reference=None,
        )  # fmt: skip
        if read_back:
            return evaluate_window(conn, model_id, start(i), now=start(i + 1))
        return evaluate_window(
            conn,
            model_id,
            start(i),
            now=start(i + 1),
            found=found,
            window_end=start(i) + WINDOW,
            model_version_id=None,
        )


def add_rule(engine: Engine, **fields: Any) -> Rule:
    fields = {
        "name": "accuracy",
        "model": "pump",
        "kind": "performance",
        "params": {"metric": "accuracy", "below": 0.85},
        "scope": "site",
        **fields,
    }
    with begin_write(engine) as conn:
        return upsert_rule(conn, Rule(**fields), now=T0)


def add_endpoint(engine: Engine) -> None:
    with begin_write(engine) as conn:
        webhooks.upsert_endpoint(
            conn, name="ops", url="https://hooks.example/alerts", secret="whsec_" + "A" * 32, now=T0
        )


def all_alerts(engine: Engine) -> list[alerts.Alert]:
    with engine.connect() as conn:
        return alerts.list_alerts(conn)


def queued(engine: Engine) -> list[dict[str, Any]]:
    """Every outbox body, decoded, each checked against the documented schema."""
    with engine.connect() as conn:
        bodies = conn.execute(select(webhook_messages.c.body).order_by(webhook_messages.c.id))
        found = [json.loads(body) for body in bodies.scalars()]
    for body in found:
        jsonschema.validate(body, PAYLOAD_SCHEMA)
    return found


HOT, COLD = ("site", "hot"), ("site", "cold")
FIRED_SUMMARY = f"site hot: estimated accuracy 0.80 (0.77-0.83) below 0.85 — {BROKE}"


def test_an_estimated_drop_fires_marked_estimated_and_resolves_on_trusted_estimates_and_labels(
    engine: Engine,
) -> None:
    model_id = fleet(engine, SITES)
    add_rule(engine, resolve_m=2, resolve_n=2)
    add_endpoint(engine)

    fired = store(engine, model_id, 0, {HOT: (0.80, 0.03, False), COLD: (0.93, 0.02, True)})

    [alert] = all_alerts(engine)
    assert [c.event.kind for c in fired] == ["fired"]
    assert alert.group_key == "site:hot" and alert.subjects == ("site:hot",)
    assert alert.summary == FIRED_SUMMARY
    assert alert.details["estimated"] is True
    assert alert.details["band"] == [pytest.approx(0.77), pytest.approx(0.83)]
    assert (alert.details["trusted"], alert.details["trust_evidence"]) == (False, "calibration")
    assert alert.details["trust_reason"] == BROKE
    assert alert.details["observations"]["site:hot"]["estimated"] is True
    [body] = queued(engine)
    assert body["type"] == "alert.fired"
    assert body["data"]["estimated"] is True and body["data"]["summary"] == FIRED_SUMMARY
    assert body["data"]["details"]["band"] == [pytest.approx(0.77), pytest.approx(0.83)]
    assert body["data"]["value"] == pytest.approx(0.80)
    assert body["data"]["bound"] == pytest.approx(0.85)
    assert body["text"].startswith(f"FIRING [warning] accuracy: {FIRED_SUMMARY} (pump, window ")
    with engine.connect() as conn:
        [observed] = conn.execute(select(alert_observations)).mappings().all()
    assert (observed["subject"], observed["state"]) == ("site:hot", "breach")
    assert observed["details"]["estimated"] is True

    # Above the bound but not trusted: unknown, which counts for neither firing nor resolving.
    assert store(engine, model_id, 1, {HOT: (0.93, 0.02, False), COLD: (0.93, 0.02, True)}) == []
    # A trusted estimate above the bound is clear: 1 of the 2 the rule wants.
    assert store(engine, model_id, 2, {HOT: (0.93, 0.02, True), COLD: (0.93, 0.02, True)}) == []
    assert all_alerts(engine)[0].state == "firing"
    # Labels are in: the realised figure is clear too, the same subject's second clear window.
    resolved = store(
        engine,
        model_id,
        3,
        {HOT: (0.80, 0.03, False)},
        realised={HOT: (2000, 0.95), COLD: (2000, 0.95)},
    )

    [alert] = all_alerts(engine)
    assert [c.event.kind for c in resolved] == ["resolved"]
    assert alert.state == "resolved" and alert.subjects == ()
    _, resolved_body = queued(engine)
    assert resolved_body["type"] == "alert.resolved"
    assert resolved_body["data"]["left"] == ["site:hot"]
    # It says what was wrong, as it was judged: on the estimate.
    assert resolved_body["data"]["summary"] == FIRED_SUMMARY
    assert resolved_body["data"]["estimated"] is True


def test_a_subject_judged_on_the_estimate_then_on_labels_is_one_subject_to_m_of_n(
    engine: Engine,
) -> None:
    model_id = fleet(engine, SITES)
    add_rule(engine, fire_m=2, fire_n=2)
    add_endpoint(engine)

    assert store(engine, model_id, 0, {HOT: (0.80, 0.03, True)}, realised={HOT: (5, None)}) == []
    fired = store(engine, model_id, 1, {HOT: (0.80, 0.03, True)}, realised={HOT: (2000, 0.70)})

    [alert] = all_alerts(engine)
    assert [c.event.kind for c in fired] == ["fired"]
    assert alert.subjects == ("site:hot",)
    # The second window was judged on labels: the alert tells the realised figure.
    assert alert.summary.startswith("site hot: accuracy 0.70 (0.")
    assert "estimated" not in alert.summary and "estimated" not in alert.details
    [body] = queued(engine)
    assert body["data"]["estimated"] is False
    assert set(body["data"]["details"]) >= {"interval", "n_labelled", "confidence"}


def test_a_rule_with_estimated_false_ignores_an_estimated_drop(engine: Engine) -> None:
    model_id = fleet(engine, SITES)
    add_rule(engine, params={"metric": "accuracy", "below": 0.85, "estimated": False})
    for i in range(3):
        assert store(engine, model_id, i, {HOT: (0.50, 0.02, True)}, {HOT: (5, None)}) == []
    assert all_alerts(engine) == []


def test_a_steady_fleet_whose_estimates_sit_well_above_the_bound_raises_no_alert(
    engine: Engine,
) -> None:
    model_id = fleet(engine, SITES)
    add_rule(engine, name="sites")
    add_rule(engine, name="nodes", scope="each_node", group_by="site")
    add_rule(engine, name="fleet", scope="fleet", params={"metric": "accuracy", "below": 0.9})
    steady: dict[tuple[str, str], tuple[float, float, bool | None]] = {
        ("fleet", ""): (0.93, 0.01, True),
        HOT: (0.93, 0.02, True),
    }
    steady |= {COLD: (0.92, 0.02, None)}  # trust unknown: never clear, never a breach either
    steady |= {("node", n): (0.93, 0.04, i % 2 == 0) for i, n in enumerate(NODES)}
    changes = []
    for i in range(30):
        changes += store(engine, model_id, i, steady, realised={("fleet", ""): (0, None)})
    assert changes == [] and all_alerts(engine) == []


def test_the_stored_estimates_are_judged_as_the_fresh_ones(engine: Engine) -> None:
    model_id = fleet(engine, SITES)
    estimates = {
        ("fleet", ""): (0.90, 0.02, True),
        HOT: (0.80, 0.03, False),
        COLD: (0.93, 0.02, True),
        ("node", "hot-0"): (0.84, 0.03, True),
    }
    realised = {("fleet", ""): (2000, 0.91), HOT: (3, None)}
    found = kinds(estimates, realised)
    with begin_write(engine) as conn:
        results.save_window(
            conn, model_id, start(0), start(0) + WINDOW, found, model_version_id=None,
            n_reference=None,
        )  # fmt: skip
        stored = results.window(conn, model_id, start(0))
    assert stored is not None
    fresh = figures_from(found, start(0), start(0) + WINDOW)
    read = figures_of(stored)
    for figures in (fresh, read):
        assert figures.size("estimation") == 4
    rules = [
        Rule("a", "performance", "m", params={"metric": "accuracy", "below": 0.85}, scope=s)
        for s in ("fleet", "site", "each_node")
    ]
    from monitor.alerts.evaluate import evaluate

    def judged(figures) -> list[tuple[Any, ...]]:
        out = evaluate(figures, rules)
        return sorted(
            zip(out["rule"], out["subject"], out["state"], out["details"].map(repr), strict=True)
        )

    assert judged(fresh) == judged(read)
    states = {(r, s): state for r, s, state, _ in judged(fresh)}
    assert states == {
        (0, "fleet"): "clear",  # realised, on 2,000 labels
        (1, "site:hot"): "breach",  # 3 labels: the estimate decides
        (1, "site:cold"): "clear",
        (2, "node:hot-0"): "unknown",  # its band straddles 0.85
    }


def test_without_estimates_the_tables_are_empty_and_nothing_fails(engine: Engine) -> None:
    model_id = fleet(engine, SITES)
    add_rule(engine)
    found = kinds(realised={HOT: (2000, 0.70)})
    assert figures_from(found, start(0), start(0) + WINDOW).size("estimation") == 0
    assert figures_from({}, start(0), start(0) + WINDOW).size("estimation") == 0
    fired = store(engine, model_id, 0, realised={HOT: (2000, 0.70)}, read_back=True)
    assert [c.event.kind for c in fired] == ["fired"]
    with engine.connect() as conn:
        stored = results.window(conn, model_id, start(0))
    assert stored is not None and figures_of(stored).size("estimation") == 0


def test_a_refresh_of_one_kind_judges_it_beside_the_other_kind_as_stored(engine: Engine) -> None:
    model_id = fleet(engine, SITES)
    add_rule(engine)
    # The window's first analysis: an estimate, no labels yet; the rule fires on it.
    fired = store(engine, model_id, 0, {HOT: (0.80, 0.03, False)}, realised={HOT: (0, None)})
    assert [c.event.kind for c in fired] == ["fired"]
    # Late labels refresh the realised figure alone; the stored estimate is still read (it is
    # not judged where labels now give a figure: they say the site is fine).
    with begin_write(engine) as conn:
        refreshed = kinds(realised={HOT: (2000, 0.95)})
        results.save_window(
            conn, model_id, start(0), start(0) + WINDOW, refreshed, model_version_id=None,
            n_reference=None,
        )  # fmt: skip
        resolved = evaluate_window(
            conn, model_id, start(0), now=start(1), found=refreshed, window_end=start(1)
        )
    assert [c.event.kind for c in resolved] == ["resolved"]
    # A refresh of the estimate alone: the stored realised figure still takes precedence.
    with begin_write(engine) as conn:
        again = kinds({HOT: (0.70, 0.03, False)})
        results.save_window(
            conn, model_id, start(0), start(0) + WINDOW, again, model_version_id=None,
            n_reference=None,
        )  # fmt: skip
        judged = evaluate_window(
            conn, model_id, start(0), now=start(1), found=again, window_end=start(1)
        )
    assert judged == []
    assert [a.state for a in all_alerts(engine)] == ["resolved"]
