"""The seeded database says what tests/dashboards/seed.py promises, on both backends: the page
tests compare what the dashboard shows with it, so a seed that silently held less would let
them pass on empty pages."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from monitor.storage import (
    alerts,
    heartbeats,
    models,
    nodes,
    readout,
    registry,
    results,
    retrains,
    webhooks,
)
from monitor.storage.results import WindowResults
from tests.dashboards import seed
from tests.dashboards.seed import Seeded


def window(seeded: Seeded, start) -> WindowResults:
    with seeded.engine.connect() as conn:
        found = results.window(conn, seeded.model_id, start)
    assert found is not None, f"window {start} was not analysed"
    return found


def test_eight_windows_were_analysed_each_ending_before_the_seed_finished(
    seeded: Seeded,
) -> None:
    with seeded.engine.connect() as conn:
        analysed = results.analysed_windows(conn, seeded.model_id)
    assert [start for start, _ in analysed] == list(seeded.window_starts)
    assert all(end - start == seed.WINDOW for start, end in analysed)
    assert analysed[-1][1] <= seeded.now - timedelta(minutes=2)
    assert len(seeded.nodes) == 12 and len(seeded.sites) == 3


def test_the_drifting_site_drifts_in_the_last_three_windows_and_never_before(
    seeded: Seeded,
) -> None:
    for index, start in enumerate(seeded.window_starts):
        found = window(seeded, start)
        drifting = {s.scope_key for s in found.drifting_scopes("site")}
        if index >= seed.WINDOWS - 3:
            assert drifting == {seeded.drifting_site}, start
            assert {"temperature_c", "vibration_mm_s"} <= set(
                found.drifted_features("site", seeded.drifting_site)
            )
        else:
            assert drifting == set(), start


def test_the_drifting_sites_nodes_drift_in_the_last_window(seeded: Seeded) -> None:
    last = window(seeded, seeded.window_starts[-1])
    with seeded.engine.connect() as conn:
        at_site = {n.name for n in nodes.list_nodes(conn) if n.site == seeded.drifting_site}
    assert {s.scope_key for s in last.drifting_scopes("node")} == at_site


def test_most_records_are_labelled_and_each_window_has_accuracy(seeded: Seeded) -> None:
    for start in seeded.window_starts:
        fleet = window(seeded, start).performance_of().result
        assert fleet.n_labelled == fleet.n_rows * 4 // 5 or 0.75 < fleet.label_coverage < 0.85
        assert fleet.accuracy is not None and 0.5 < fleet.accuracy <= 1.0


def test_the_quality_site_misses_vibration_in_one_window_only(seeded: Seeded) -> None:
    for start in seeded.window_starts:
        issues = window(seeded, start).quality_issues("site", seeded.quality_site)
        assert ("vibration_mm_s" in issues) == (start == seeded.quality_window), start


def test_alerts_fire_for_the_drifting_site_and_the_nodes_and_one_resolved(
    seeded: Seeded,
) -> None:
    with seeded.engine.connect() as conn:
        found = {(a.rule, a.group_key): a for a in alerts.list_alerts(conn)}
    assert found[("site drift", f"site:{seeded.drifting_site}")].state == "firing"
    assert found[("missing vibration", f"site:{seeded.quality_site}")].state == "resolved"
    offline = [a for (rule, _), a in found.items() if rule == "node offline"]
    assert [a.subjects for a in offline] == [(f"node:{seeded.offline_node}",)]
    assert offline[0].state == "firing"
    assert found[("clock skew", f"node:{seeded.skewed_node}")].state == "firing"
    assert len(found) == 4


def test_node_states_cover_online_offline_silent_and_degraded(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        states = {
            s.name: s
            for s in readout.node_states(conn, offline_before=seeded.now - seeded.offline_after)
        }
    assert states[seeded.offline_node].status == "offline"
    assert states[seeded.silent_node].status == "silent"
    assert states[seeded.skewed_node].status == "degraded"
    assert states[seeded.skewed_node].clock_skew_seconds == seed.SKEW_SECONDS
    assert states[seeded.lossy_node].status == "degraded"
    special = {seeded.offline_node, seeded.silent_node, seeded.skewed_node, seeded.lossy_node}
    assert {states[n].status for n in set(seeded.nodes) - special} == {"online"}


def test_every_heard_node_has_a_heartbeat_per_window_with_telemetry(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        by_id = {n.id: n.name for n in nodes.list_nodes(conn)}
        counts = dict(
            conn.execute(
                sa.text("select node_id, count(*) from node_heartbeats group by node_id")
            ).all()
        )
        latest = {by_id[i]: beat for i, beat in heartbeats.latest_heartbeats(conn).items()}
    named = {by_id[i]: n for i, n in counts.items()}
    assert seeded.silent_node not in named
    assert named[seeded.offline_node] == seed.OFFLINE_LAST + 1
    assert {named[n] for n in set(seeded.nodes) - {seeded.offline_node, seeded.silent_node}} == {
        seed.WINDOWS + 1
    }
    lossy = latest[seeded.lossy_node]
    assert lossy.sdk["dropped"]["queue_full"] > 0 and lossy.runtime["errors_total"] > 0
    assert all(b.runtime["latency_ms"]["p95"] > 0 for b in latest.values())
    assert {latest[n].runtime["model_version"] for n in seeded.canary_nodes} == {"2"}


def test_version_1_is_in_production_and_version_2_in_a_quarter_canary(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        stages = {v.version: v.stage for v in registry.versions(conn, seeded.model_id)}
        deployment = registry.deployment(conn, seeded.model_id)
        version_1 = registry.get_version(conn, seeded.model_id, "1")
    assert stages["1"] == "production"
    assert deployment.canary_share == 0.25
    assert version_1.reference_rows and version_1.reference_rows > 0
    assert seeded.canary_nodes and set(seeded.canary_nodes) < set(seeded.nodes)


def test_webhook_messages_are_in_every_delivery_status(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        statuses = [m.status for m in webhooks.list_messages(conn)]
    assert {"delivered", "failed", "pending", "delivering"} <= set(statuses)


def test_one_retrain_run_failed_and_one_produced_the_canary_version(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        runs = retrains.list_runs(conn, model_id=seeded.model_id)
    assert sorted((r.status, r.version) for r in runs) == [("canary", "2"), ("failed", None)]


def test_the_empty_database_holds_no_model(empty_url: str) -> None:
    engine = seed.migrated(empty_url)
    with engine.connect() as conn:
        assert models.list_models(conn) == []
    engine.dispose()


def test_the_no_reference_database_holds_a_model_without_versions(no_reference_url: str) -> None:
    engine = seed.migrated(no_reference_url)
    with engine.connect() as conn:
        [model] = models.list_models(conn)
        assert registry.versions(conn, model.id) == []
    engine.dispose()


def test_the_no_window_database_holds_records_and_a_reference_but_no_window(
    no_window_url: str,
) -> None:
    engine = seed.migrated(no_window_url)
    with engine.connect() as conn:
        [model] = models.list_models(conn)
        assert registry.get_version(conn, model.id, "1").reference_rows
        assert results.analysed_windows(conn, model.id) == []
        assert conn.execute(sa.text("select count(*) from records")).scalar() == 3 * seed.PER_NODE
    engine.dispose()
