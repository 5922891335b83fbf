"""One node's heartbeats as flat series: what each beat says, the period and model it keeps,
thinning to a bounded number of points, and the moments its model version changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, insert

from monitor.storage import models, nodes, telemetry
from monitor.storage.engine import begin_write
from monitor.storage.tables import node_heartbeats
from monitor.storage.telemetry import Beat, VersionChange, node_telemetry

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def sdk(dropped: dict[str, Any] | None = None, spool: Any = 0, queue: Any = 0) -> dict[str, Any]:
    """An SDK ``stats()`` object as the heartbeat carries it."""
    return {
        "logged": 100,
        "enqueued": 10,
        "delivered": 10,
        "dropped": dropped if dropped is not None else {"sampled_out": 90, "queue_full": 0},
        "queue_depth": queue,
        "spool_records": spool,
        "spool_bytes": 0,
        "retries": 0,
        "auth_failures": 0,
        "internal_errors": 0,
    }


def runtime(p50: float, p95: float, errors: int, version: str | None = None) -> dict[str, Any]:
    """The reference runtime's ``telemetry()`` object (the parts the series read)."""
    out: dict[str, Any] = {
        "calls": 10,
        "errors_total": errors,
        "errors": {"inference_failed": errors} if errors else {},
        "latency_ms": {"window": 10, "p50": p50, "p95": p95, "p99": p95, "max": p95},
    }
    if version is not None:
        out["model_version"] = version
    return out


def store(
    conn: Connection,
    node_id: int,
    received_at: datetime,
    version_id: int | None,
    sdk_object: dict[str, Any],
    runtime_object: dict[str, Any] | None = None,
    *,
    skew: timedelta = timedelta(0),
) -> None:
    # Inserted directly: record_heartbeat stamps the time it runs, and these beats need theirs.
    conn.execute(
        insert(node_heartbeats).values(
            node_id=node_id,
            received_at=received_at,
            ts=received_at + skew,
            model_version_id=version_id,
            sdk=sdk_object,
            runtime=runtime_object,
        )
    )


@pytest.fixture
def fleet(engine: Engine) -> dict[str, int]:
    """Two nodes and two models; ids by name (``pump``, ``pump:1``, ``pump:2``, ``fan:1``)."""
    with begin_write(engine) as conn:
        a, _ = nodes.add_node(conn, "edge-a", site="north")
        b, _ = nodes.add_node(conn, "edge-b", site="north")
        pump = models.add_model(conn, "pump")
        fan = models.add_model(conn, "fan")
        return {
            "edge-a": a.id,
            "edge-b": b.id,
            "pump": pump.id,
            "pump:1": models.version_id(conn, pump.id, "1"),
            "pump:2": models.version_id(conn, pump.id, "2"),
            "fan:1": models.version_id(conn, fan.id, "1"),
        }


def test_each_beat_is_flattened_from_what_the_sdk_and_runtime_sent(
    engine: Engine, fleet: dict[str, int]
) -> None:
    with begin_write(engine) as conn:
        store(
            conn,
            fleet["edge-a"],
            T0,
            fleet["pump:1"],
            sdk({"sampled_out": 90, "queue_full": 3, "expired": 1}, spool=250, queue=7),
            runtime(1.5, 4.25, 2),
            skew=timedelta(hours=2),
        )
        # An SDK without a runtime beside it, and one whose counters are not numbers.
        store(conn, fleet["edge-a"], T0 + SECOND, fleet["pump:1"], sdk(spool=0, queue=0))
        store(conn, fleet["edge-a"], T0 + 2 * SECOND, None, {"dropped": "?", "spool_records": 1.5})

    with engine.connect() as conn:
        found = node_telemetry(conn, fleet["edge-a"])

    assert found.total == 3 and found.bucket_seconds is None
    assert found.beats == [
        Beat(
            received_at=T0,
            ts=T0 + timedelta(hours=2),
            model_version="1",
            latency_p50_ms=1.5,
            latency_p95_ms=4.25,
            errors=2,
            dropped={"sampled_out": 90, "queue_full": 3, "expired": 1},
            spool_records=250,
            queue_depth=7,
        ),
        Beat(
            received_at=T0 + SECOND,
            ts=T0 + SECOND,
            model_version="1",
            latency_p50_ms=None,
            latency_p95_ms=None,
            errors=None,
            dropped={"sampled_out": 90, "queue_full": 0},
            spool_records=0,
            queue_depth=0,
        ),
        Beat(
            received_at=T0 + 2 * SECOND,
            ts=T0 + 2 * SECOND,
            model_version=None,
            latency_p50_ms=None,
            latency_p95_ms=None,
            errors=None,
            dropped={},
            spool_records=None,
            queue_depth=None,
        ),
    ]


def test_the_runtime_names_the_version_it_serves_before_the_beat_does(
    engine: Engine, fleet: dict[str, int]
) -> None:
    # Right after a hot swap the runtime serves 2 while the SDK's beat still says 1.
    with begin_write(engine) as conn:
        store(conn, fleet["edge-a"], T0, fleet["pump:1"], sdk(), runtime(1, 2, 0, version="2"))
    with engine.connect() as conn:
        (only,) = node_telemetry(conn, fleet["edge-a"]).beats
    assert only.model_version == "2"


def test_the_period_the_node_and_the_model_choose_the_beats(
    engine: Engine, fleet: dict[str, int]
) -> None:
    with begin_write(engine) as conn:
        for i in range(10):
            store(conn, fleet["edge-a"], T0 + i * SECOND, fleet["pump:1"], sdk(spool=i))
            store(conn, fleet["edge-b"], T0 + i * SECOND, fleet["pump:1"], sdk(spool=100 + i))
        store(conn, fleet["edge-a"], T0 + 3.5 * SECOND, fleet["fan:1"], sdk(spool=999))
        store(conn, fleet["edge-a"], T0 + 4.5 * SECOND, None, sdk(spool=555))

    with engine.connect() as conn:
        window = node_telemetry(
            conn,
            fleet["edge-a"],
            model_id=fleet["pump"],
            start=T0 + 2 * SECOND,
            end=T0 + 6 * SECOND,
        )
        every = node_telemetry(conn, fleet["edge-a"], start=T0 + 2 * SECOND, end=T0 + 6 * SECOND)

    # [start, end): 2, 3, 4 and 5; the fan's beat and the unversioned one are not the pump's.
    assert [b.spool_records for b in window.beats] == [2, 3, 4, 5]
    assert [b.received_at for b in window.beats] == [T0 + i * SECOND for i in (2, 3, 4, 5)]
    assert window.total == 4
    assert [b.spool_records for b in every.beats] == [2, 3, 999, 4, 555, 5]


def test_a_node_without_heartbeats_has_empty_series(engine: Engine, fleet: dict[str, int]) -> None:
    with engine.connect() as conn:
        found = node_telemetry(conn, fleet["edge-b"], model_id=fleet["pump"])
    assert found == telemetry.Telemetry(beats=[], total=0, bucket_seconds=None, version_changes=[])


@pytest.mark.parametrize(
    ("total", "max_points"), [(10, 10), (11, 10), (1_000, 100), (2_500, 2_000)]
)
def test_many_beats_are_thinned_to_one_per_time_bucket_keeping_the_newest(
    engine: Engine, fleet: dict[str, int], total: int, max_points: int
) -> None:
    with begin_write(engine) as conn:
        conn.execute(
            insert(node_heartbeats),
            [
                {
                    "node_id": fleet["edge-a"],
                    # A microsecond off the second: the first beat's bucket must still be 0.
                    "received_at": T0 + i * SECOND + timedelta(microseconds=123),
                    "ts": T0 + i * SECOND,
                    "model_version_id": fleet["pump:1"],
                    "sdk": sdk(spool=i),
                    "runtime": None,
                }
                for i in range(total)
            ],
        )

    with engine.connect() as conn:
        found = node_telemetry(conn, fleet["edge-a"], max_points=max_points)

    kept = [b.spool_records for b in found.beats]
    assert found.total == total
    assert [b.received_at for b in found.beats] == [
        T0 + i * SECOND + timedelta(microseconds=123) for i in kept
    ]
    if total <= max_points:
        assert found.bucket_seconds is None and kept == list(range(total))
        return
    width = found.bucket_seconds
    assert width == pytest.approx((total - 1) / (max_points - 3))
    assert len(kept) <= max_points
    assert kept[0] == 0 and kept[-1] == total - 1
    # One beat per bucket (the first stored), and every bucket with a beat has its one.
    buckets = [int(i // width) for i in range(total)]
    assert kept == [i for i in range(total) if i == 0 or buckets[i] != buckets[i - 1]] + (
        [] if buckets[-1] != buckets[-2] else [total - 1]
    )


def test_a_gap_in_the_beats_stays_a_gap(engine: Engine, fleet: dict[str, int]) -> None:
    # A node silent for most of the period: its beats before and after, none drawn between.
    times = [T0 + i * SECOND for i in range(50)] + [
        T0 + 10_000 * SECOND + i * SECOND for i in range(50)
    ]
    with begin_write(engine) as conn:
        for at in times:
            store(conn, fleet["edge-a"], at, fleet["pump:1"], sdk())
    with engine.connect() as conn:
        found = node_telemetry(conn, fleet["edge-a"], max_points=20)
    kept = [b.received_at for b in found.beats]
    assert len(kept) <= 20 and kept[0] == times[0] and kept[-1] == times[-1]
    assert set(kept) <= set(times)
    # Buckets of (10,049 s / 17) ~ 591 s: the 50 s bursts fall in one bucket each.
    assert kept == [times[0], times[50], times[-1]]


def test_too_few_points_are_refused(engine: Engine, fleet: dict[str, int]) -> None:
    with engine.connect() as conn, pytest.raises(ValueError, match="at least 4"):
        node_telemetry(conn, fleet["edge-a"], max_points=3)


def test_version_changes_are_the_beats_naming_another_version(
    engine: Engine, fleet: dict[str, int]
) -> None:
    a = fleet["edge-a"]
    with begin_write(engine) as conn:
        store(conn, a, T0, fleet["pump:1"], sdk())
        store(conn, a, T0 + 1 * SECOND, fleet["pump:1"], sdk())
        # An unversioned beat between two of version 1 is no change.
        store(conn, a, T0 + 2 * SECOND, None, sdk())
        store(conn, a, T0 + 3 * SECOND, fleet["pump:1"], sdk())
        store(conn, a, T0 + 4 * SECOND, fleet["pump:2"], sdk(), skew=timedelta(minutes=1))
        store(conn, a, T0 + 5 * SECOND, fleet["pump:2"], sdk())
        store(conn, a, T0 + 6 * SECOND, fleet["pump:1"], sdk())
        # Another model's beat is another stream: no change of the pump's version.
        store(conn, a, T0 + 7 * SECOND, fleet["fan:1"], sdk())
        store(conn, a, T0 + 8 * SECOND, fleet["pump:1"], sdk())

    with engine.connect() as conn:
        pump = node_telemetry(conn, a, model_id=fleet["pump"])
        # Thinned to four points, the changes are still all found.
        thinned = node_telemetry(conn, a, model_id=fleet["pump"], max_points=4)
        # A period starting after the first change still sees the version it started with.
        later = node_telemetry(conn, a, model_id=fleet["pump"], start=T0 + 4 * SECOND)
        within = node_telemetry(conn, a, model_id=fleet["pump"], start=T0 + 5 * SECOND)

    first = VersionChange(T0 + 4 * SECOND, T0 + 4 * SECOND + timedelta(minutes=1), "1", "2")
    back = VersionChange(T0 + 6 * SECOND, T0 + 6 * SECOND, "2", "1")
    assert pump.version_changes == [first, back]
    assert len(thinned.beats) <= 4 and thinned.version_changes == [first, back]
    assert later.version_changes == [first, back]
    assert within.version_changes == [back]


def test_a_flapping_node_reports_its_first_changes_only(
    engine: Engine, fleet: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry, "MAX_CHANGES", 3)
    with begin_write(engine) as conn:
        for i in range(10):
            store(conn, fleet["edge-a"], T0 + i * SECOND, fleet[f"pump:{1 + i % 2}"], sdk())
    with engine.connect() as conn:
        found = node_telemetry(conn, fleet["edge-a"])
    assert [(c.received_at, c.previous, c.version) for c in found.version_changes] == [
        (T0 + 1 * SECOND, "1", "2"),
        (T0 + 2 * SECOND, "2", "1"),
        (T0 + 3 * SECOND, "1", "2"),
    ]
