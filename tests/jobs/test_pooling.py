"""Small scopes still get a verdict: a node with too few rows in a window for a drift verdict
is judged on this window and the ones before it, pooled, in the window's one false-discovery
family; quality stays on the window's own rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from monitor.cli import main
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.schema import INSUFFICIENT_DATA, OK
from monitor.storage import results
from tests.jobs.sensorfleet import WINDOW, SensorFleet, window_start

WINDOWS = 24
CHANGE = 12  # the drifting node's temperature moves by 3 standard deviations from here on
CONFIG = AnalysisConfig(window=WINDOW, grace=timedelta(hours=1), lookback=timedelta(days=400))
NOW = window_start(WINDOWS) + timedelta(hours=2)
BIG = ("big-1", "big-2")


def fill(engine: Engine, seed: int = 5) -> SensorFleet:
    fleet = SensorFleet.register(
        engine, [*BIG, "small-drift", "small-clean"], groups=dict.fromkeys(BIG, "hall")
    )
    fleet.seed = seed
    for window in range(WINDOWS):
        for node in BIG:
            fleet.send(node, window, 400)
        fleet.send("small-clean", window, 110)
        shift = {"temperature": 3.0} if window >= CHANGE else {}
        fleet.send("small-drift", window, 110, shift)
    return fleet


def node_rows(engine: Engine, fleet: SensorFleet, node: str) -> list[results.Stored]:
    with engine.connect() as conn:
        return results.drift(conn, fleet.model_id, scope_kind="node", scope_key=node)


def drifted(engine: Engine, fleet: SensorFleet, window: int, node: str) -> list[str]:
    with engine.connect() as conn:
        stored = results.window(conn, fleet.model_id, window_start(window))
    assert stored is not None
    return stored.drifted_features("node", node)


@pytest.fixture
def analysed(engine: Engine) -> SensorFleet:
    fleet = fill(engine)
    assert Worker(engine, CONFIG).run_due(now=NOW) == WINDOWS
    return fleet


def test_a_small_node_is_judged_on_its_windows_pooled(
    engine: Engine, analysed: SensorFleet
) -> None:
    rows = node_rows(engine, analysed, "small-clean")

    assert len(rows) == WINDOWS
    first, *rest = rows
    # Nothing before the first window: 110 rows stay too few.
    assert (first.result.status, first.result.drifted, first.span_start) == (
        INSUFFICIENT_DATA,
        None,
        None,
    )
    assert first.result.n_rows == 110
    for index, row in enumerate(rest, 1):
        assert row.result.status == OK
        assert row.result.n_rows == 220  # this window and the one before
        assert row.span_start == window_start(index - 1)
    # The large nodes and the fleet are judged on the window alone.
    with engine.connect() as conn:
        stored = results.window(conn, analysed.model_id, window_start(5))
        quality = results.quality(conn, analysed.model_id, scope_key="small-clean")
    assert stored is not None
    assert stored.drift_of("node", "big-1").span_start is None
    assert stored.drift_of().span_start is None
    assert stored.drift_of().result.n_rows == 2 * 400 + 2 * 110
    assert stored.drift_of("group", "hall").result.n_rows == 800
    assert {q.result.n_rows for q in quality} == {110}


def test_the_results_command_says_where_a_pooled_span_starts(
    db_url: str, analysed: SensorFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    window = window_start(5).isoformat()

    code = main(["--database-url", db_url, "results", "--model", "sensors", "--window", window,
                 "--scope", "node:small-clean"])  # fmt: skip

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    verdict = out.index("node:small-clean: no drift (0 of 3 features, 220 records)")
    assert out[verdict + 1] == f"  judged on the windows pooled since {window_start(4).isoformat()}"


def test_a_small_node_whose_feature_moves_is_flagged_within_two_windows(
    engine: Engine, analysed: SensorFleet
) -> None:
    flagged = [w for w in range(WINDOWS) if drifted(engine, analysed, w, "small-drift")]

    assert flagged, "the drifting node was never flagged"
    assert CHANGE <= flagged[0] <= CHANGE + 1
    assert flagged == list(range(flagged[0], WINDOWS))
    assert all(drifted(engine, analysed, w, "small-drift") == ["temperature"] for w in flagged)


def test_a_clean_small_node_is_never_flagged_in_24_windows(
    engine: Engine, analysed: SensorFleet
) -> None:
    rows = node_rows(engine, analysed, "small-clean")

    assert [r.result.drifted for r in rows] == [None] + [False] * (WINDOWS - 1)
    for node in BIG:
        assert not any(r.result.drifted for r in node_rows(engine, analysed, node))


def test_without_pooling_a_small_node_gets_no_verdict(engine: Engine) -> None:
    fleet = SensorFleet.register(engine, ["big-1", "small"])
    for window in range(3):
        fleet.send("big-1", window, 400)
        fleet.send("small", window, 110, {"temperature": 3.0})
    alone = AnalysisConfig(
        window=WINDOW, grace=timedelta(hours=1), lookback=timedelta(days=400), pool_windows=1
    )

    Worker(engine, alone).run_due(now=window_start(3) + timedelta(hours=2))

    rows = node_rows(engine, fleet, "small")
    assert [(r.result.status, r.span_start) for r in rows] == [(INSUFFICIENT_DATA, None)] * 3


def test_a_node_too_small_even_pooled_stays_insufficient(engine: Engine) -> None:
    fleet = SensorFleet.register(engine, ["big-1", "tiny"])
    for window in range(4):
        fleet.send("big-1", window, 400)
        fleet.send("tiny", window, 30)
    config = AnalysisConfig(
        window=WINDOW, grace=timedelta(hours=1), lookback=timedelta(days=400), pool_windows=3
    )

    Worker(engine, config).run_due(now=window_start(4) + timedelta(hours=2))

    rows = node_rows(engine, fleet, "tiny")
    # At most 3 windows of 30 rows: 90, never 200.
    assert [(r.result.status, r.result.n_rows, r.span_start) for r in rows] == [
        (INSUFFICIENT_DATA, 30, None)
    ] * 4


def test_a_small_group_is_pooled_apart_from_its_nodes(engine: Engine) -> None:
    fleet = SensorFleet.register(
        engine, ["big-1", "yard-1", "yard-2"], groups={"yard-1": "yard", "yard-2": "yard"}
    )
    for window in range(5):
        fleet.send("big-1", window, 400)
        fleet.send("yard-1", window, 60)
        fleet.send("yard-2", window, 60)

    Worker(engine, CONFIG).run_due(now=window_start(5) + timedelta(hours=2))

    with engine.connect() as conn:
        stored = results.window(conn, fleet.model_id, window_start(4))
    assert stored is not None
    group = stored.drift_of("group", "yard")
    node = stored.drift_of("node", "yard-1")
    # The group needs two windows of its 120 rows; each node four of its 60.
    assert (group.result.n_rows, group.span_start) == (240, window_start(3))
    assert (node.result.n_rows, node.span_start) == (240, window_start(1))
    assert group.result.status == node.result.status == OK
    assert stored.drift_of().result.n_rows == 520
