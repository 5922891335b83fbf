"""The read side's storage queries: analysed windows newest first with their node counts, the
window that holds a time, the latest labelled performance, and every node's status now.

Also home of ``analyse_fleet`` (a real analysis of a drifting site, used by the CLI and read
API tests) and ``stored_verdicts``/``document_verdicts``, which put what storage.results holds
and what a results document says side by side."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update

from monitor.fleet.scenarios import NodePlan, scenario
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.storage import health, nodes, readout, results
from monitor.storage.engine import begin_write
from monitor.storage.tables import nodes as nodes_table
from monitor.storage.types import utcnow
from tests.jobs.fleetdata import (
    WINDOW,
    register_demo_model,
    register_fleet,
    send_labels,
    store_readings,
)

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
CONFIG = AnalysisConfig(window=WINDOW, grace=timedelta(minutes=1), lookback=timedelta(days=30))
NOW = T0 + timedelta(days=1)
#: The sensor-drift scenario drifts every node of this site; the others stay steady.
DRIFTING_SITE = "site-a"


@dataclass(frozen=True)
class Analysed:
    """A fleet whose windows were analysed: the model, its nodes, and its windows' starts."""

    model_id: int
    plans: list[NodePlan]
    starts: list[datetime]

    def drifting_nodes(self) -> list[str]:
        return sorted(p.name for p in self.plans if p.site == DRIFTING_SITE)


def analyse_fleet(engine: Engine, windows: int = 2, per_node: int = 200) -> Analysed:
    """Eight nodes over four sites, the sensors of one site drifting into the last window,
    half of the last window's records labelled; every window analysed by the worker."""
    model_id = register_demo_model(engine)
    plans = register_fleet(engine, 8)
    plan = scenario("sensor-drift", hours=24.0 * windows, sites=[DRIFTING_SITE])
    starts = [T0 + i * WINDOW for i in range(windows)]
    last = None
    for start in starts:
        last = store_readings(engine, model_id, plans, plan, start, start + WINDOW, per_node, t0=T0)
    assert last is not None
    send_labels(engine, model_id, last, share=0.5)
    assert Worker(engine, CONFIG).run_due(now=NOW) == windows
    return Analysed(model_id, plans, starts)


def stored_verdicts(engine: Engine, model_id: int, start: datetime) -> dict[str, Any]:
    """Per scope (``fleet``, ``site:X``, ...): what storage.results holds for the window."""
    with engine.connect() as conn:
        stored = results.window(conn, model_id, start)
    assert stored is not None
    out: dict[str, Any] = {}
    for row in stored.drift:
        name = "fleet" if row.scope_kind == "fleet" else f"{row.scope_kind}:{row.scope_key}"
        quality = stored.quality_of(row.scope_kind, row.scope_key)
        performance = stored.performance_of(row.scope_kind, row.scope_key).result
        out[name] = {
            "drifted": row.result.drifted,
            "status": row.result.status,
            "drifted_features": stored.drifted_features(row.scope_kind, row.scope_key),
            "features": {
                f.feature: (f.method, f.statistic, f.adjusted_p_value, f.drifted)
                for f in stored.drift_features[row.id]
            },
            "has_issues": quality.result.has_issues,
            "issues": stored.quality_issues(row.scope_kind, row.scope_key),
            "performance": (performance.n_labelled, performance.accuracy, performance.f1),
        }
    return out


def document_verdicts(window: dict[str, Any]) -> dict[str, Any]:
    """The same figures, as one window of a results document says them."""
    return {
        s["scope"]: {
            "drifted": s["drift"]["drifted"],
            "status": s["drift"]["status"],
            "drifted_features": s["drift"]["drifted_features"],
            "features": {
                f["feature"]: (f["method"], f["statistic"], f["adjusted_p_value"], f["drifted"])
                for f in s["drift"]["features"]
            },
            "has_issues": s["quality"]["has_issues"],
            "issues": s["quality"]["issues"],
            "performance": (
                s["performance"]["n_labelled"],
                s["performance"]["accuracy"],
                s["performance"]["f1"],
            ),
        }
        for s in window["scopes"]
    }


# --- windows ------------------------------------------------------------------------------------


def test_analysed_windows_are_summarised_newest_first_with_their_drifting_nodes(
    engine: Engine,
) -> None:
    fleet = analyse_fleet(engine)

    with engine.connect() as conn:
        summaries = readout.window_summaries(conn, fleet.model_id, limit=10)

    assert [s.window_start for s in summaries] == fleet.starts[::-1]
    latest, first = summaries
    assert latest.window_end == fleet.starts[-1] + WINDOW
    assert latest.fleet.result.drifted is True
    assert (latest.nodes, latest.nodes_drifting) == (8, len(fleet.drifting_nodes()))
    assert (first.nodes, first.nodes_drifting) == (8, 0)
    assert latest.revision == 1 and latest.n_late == 0
    assert latest.fleet.result.n_rows == 8 * 200


def test_a_limit_keeps_the_newest_windows_and_since_the_later_ones(engine: Engine) -> None:
    fleet = analyse_fleet(engine, windows=3, per_node=60)

    with engine.connect() as conn:
        newest = readout.window_summaries(conn, fleet.model_id, limit=2)
        since = readout.window_summaries(conn, fleet.model_id, limit=10, since=fleet.starts[1])
        later = readout.window_summaries(conn, fleet.model_id, limit=10, since=NOW)

    assert [s.window_start for s in newest] == [fleet.starts[2], fleet.starts[1]]
    assert [s.window_start for s in since] == [fleet.starts[2], fleet.starts[1]]
    assert later == []


def test_the_window_holding_a_time_is_found_by_its_start_or_any_time_inside(
    engine: Engine,
) -> None:
    fleet = analyse_fleet(engine, per_node=60)

    with engine.connect() as conn:
        at_start = readout.window_holding(conn, fleet.model_id, fleet.starts[1])
        inside = readout.window_holding(conn, fleet.model_id, fleet.starts[0] + WINDOW / 2)
        at_end = readout.window_holding(conn, fleet.model_id, fleet.starts[1] + WINDOW)

    assert at_start == fleet.starts[1]
    assert inside == fleet.starts[0]
    assert at_end is None  # a window is [start, end)


def test_the_latest_labelled_performance_skips_windows_without_labels(engine: Engine) -> None:
    fleet = analyse_fleet(engine, windows=3, per_node=60)
    # The labels went to the last window's records only: the earlier windows have none.

    with engine.connect() as conn:
        found = readout.latest_labelled_performance(conn, fleet.model_id)
        others = [
            p.result.n_labelled
            for p in results.performance(conn, fleet.model_id, scope_kind="fleet")
            if p.window_start != fleet.starts[-1]
        ]

    assert found is not None
    assert found.window_start == fleet.starts[-1]
    assert found.result.n_labelled == 8 * 60 // 2
    assert found.result.accuracy is not None
    assert others == [0, 0]


def test_a_model_without_analysis_has_no_windows_and_no_performance(engine: Engine) -> None:
    model_id = register_demo_model(engine)

    with engine.connect() as conn:
        assert readout.window_summaries(conn, model_id, limit=5) == []
        assert readout.window_holding(conn, model_id, T0) is None
        assert readout.latest_labelled_performance(conn, model_id) is None


# --- nodes --------------------------------------------------------------------------------------


def test_each_node_is_online_degraded_offline_silent_or_revoked_as_judged_now(
    engine: Engine,
) -> None:
    with begin_write(engine) as conn:
        ids = {
            name: nodes.add_node(conn, name)[0].id
            for name in ("online", "degraded", "offline", "silent", "revoked")
        }
        nodes.add_node(conn, "erp", role="labeller")
        for name in ("online", "degraded", "offline"):
            nodes.touch_node(conn, ids[name], heartbeat=True)
        # A heartbeat an hour old: offline, whatever the health job said last.
        conn.execute(
            update(nodes_table)
            .where(nodes_table.c.id == ids["offline"])
            .values(last_heartbeat_at=utcnow() - timedelta(hours=1))
        )
        health.save_health(
            conn,
            [
                _health(ids["degraded"], "degraded", ["3 SDK internal errors"]),
                _health(ids["offline"], "online", []),
            ],
        )
        nodes.revoke_node(conn, "revoked")

    with engine.connect() as conn:
        states = {s.name: s for s in readout.node_states(conn, utcnow() - timedelta(minutes=2))}

    assert {name: s.status for name, s in states.items()} == {
        "online": "online",
        "degraded": "degraded",
        "offline": "offline",
        "silent": "silent",
        "revoked": "revoked",
        "erp": None,  # a labeller sends no heartbeats
    }
    assert states["degraded"].problems == ("3 SDK internal errors",)
    assert states["degraded"].checked_at is not None
    assert states["silent"].checked_at is None and states["silent"].problems == ()


def test_a_node_shows_its_last_clock_skew(engine: Engine) -> None:
    seen = utcnow()
    with begin_write(engine) as conn:
        node_id = nodes.add_node(conn, "press-07")[0].id
        conn.execute(
            update(nodes_table)
            .where(nodes_table.c.id == node_id)
            .values(clock_skew_seconds=3 * 3600.0, clock_skew_at=seen)
        )

    with engine.connect() as conn:
        (state,) = readout.node_states(conn, utcnow())

    assert state.clock_skew_seconds == 3 * 3600.0
    assert abs((state.clock_skew_at or seen) - seen) < timedelta(seconds=1)


def _health(node_id: int, status: str, problems: list[str]) -> health.NodeHealth:
    return health.NodeHealth(
        node_id=node_id,
        status=status,
        checked_at=utcnow(),
        last_heartbeat_at=utcnow(),
        model_version="1",
        dropped={},
        spool_records=0,
        queue_depth=0,
        latency_p95_ms=None,
        errors=0,
        details={"problems": problems},
    )
