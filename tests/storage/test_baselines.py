"""Baseline settings and periods: stored on the model, read back, and a scope's first days or
rows of a version found from its batches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from monitor.errors import ValidationFailed
from monitor.storage import models, nodes
from monitor.storage.baselines import (
    BaselineSetting,
    baseline_period,
    baseline_rows,
    first_seen,
    get_baseline,
    nth_record_time,
    parse_baseline,
    set_baseline,
)
from monitor.storage.engine import begin_write
from monitor.storage.records import insert_batch, prepare_batch

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def store(engine: Engine, node: str, version: str, times: list[datetime]) -> None:
    """One batch of records of ``version`` from ``node`` at these times."""
    with begin_write(engine) as conn:
        model_id = models.get_model(conn, "press").id
        records = []
        for i, ts in enumerate(times):
            uid = uuid.uuid4().hex
            records.append(
                {"id": uid, "ts": ts.timestamp(), "features": {"x": float(i)}, "prediction": "ok"}
            )
        insert_batch(
            conn,
            node_id=nodes.get_node(conn, node).id,
            model_id=model_id,
            model_version_id=models.version_id(conn, model_id, version),
            batch_uid=None,
            batch=prepare_batch(records),
        )


@pytest.fixture
def press(engine: Engine) -> int:
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "press").id
        for name in ("press-01", "press-02"):
            nodes.add_node(conn, name, group_name="line", site="hall")
    return model_id


def ids(engine: Engine, *names: str) -> list[int]:
    with engine.connect() as conn:
        return [nodes.get_node(conn, n).id for n in names]


def test_a_setting_is_stored_read_back_and_cleared(engine: Engine, press: int) -> None:
    with engine.connect() as conn:
        assert get_baseline(conn, press) is None
    with begin_write(engine) as conn:
        set_baseline(conn, press, BaselineSetting("site", rows=1000))
    with engine.connect() as conn:
        assert get_baseline(conn, press) == BaselineSetting("site", rows=1000)
        assert models.get_model(conn, "press").baseline == {"scope": "site", "rows": 1000}
    with begin_write(engine) as conn:
        set_baseline(conn, press, None)
    with engine.connect() as conn:
        assert get_baseline(conn, press) is None
        assert models.get_model(conn, "press").baseline is None


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"scope": "group", "days": 7}, "baseline.scope"),
        ({"scope": "node"}, "baseline.days"),
        ({"scope": "node", "days": 7, "rows": 10}, "baseline.days"),
        ({"scope": "node", "days": 0}, "baseline.days"),
        ({"scope": "node", "days": 2.5}, "baseline.days"),
        ({"scope": "node", "days": True}, "baseline.days"),
        ({"scope": "node", "rows": -1}, "baseline.rows"),
        ({"scope": "node", "days": 7, "hours": 1}, "baseline.hours"),
        ([], "baseline"),
    ],
)
def test_a_malformed_setting_is_refused_with_its_field(value: object, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_baseline(value)

    assert caught.value.details[0]["field"] == field


def test_a_setting_says_what_it_is() -> None:
    assert BaselineSetting("node", days=7).describe() == "per node, first 7 days"
    assert BaselineSetting("site", rows=1000).describe() == "per site, first 1,000 rows"
    assert parse_baseline({"scope": "node", "days": 1}) == BaselineSetting("node", days=1)


def test_first_seen_is_per_node_and_version(engine: Engine, press: int) -> None:
    store(engine, "press-01", "1", [T0 + timedelta(hours=3), T0 + timedelta(hours=4)])
    store(engine, "press-01", "1", [T0 + timedelta(hours=1)])
    store(engine, "press-01", "2", [T0 + timedelta(days=2)])
    one, two = ids(engine, "press-01", "press-02")

    with engine.connect() as conn:
        seen = {(s.node_id, s.model_version_id): s for s in first_seen(conn, press, [one, two])}
        v1, v2 = models.version_id(conn, press, "1"), models.version_id(conn, press, "2")

    assert set(seen) == {(one, v1), (one, v2)}
    assert seen[(one, v1)].first_ts == T0 + timedelta(hours=1)
    assert seen[(one, v1)].n_records == 3
    assert seen[(one, v2)].first_ts == T0 + timedelta(days=2)


def test_a_days_period_starts_with_the_first_record_of_the_version(
    engine: Engine, press: int
) -> None:
    store(engine, "press-02", "1", [T0 + timedelta(hours=5)])
    store(engine, "press-01", "1", [T0 + timedelta(hours=2)])
    one, two = ids(engine, "press-01", "press-02")
    setting = BaselineSetting("site", days=7)

    with engine.connect() as conn:
        v1 = models.version_id(conn, press, "1")
        site = baseline_period(conn, press, v1, [one, two], setting)
        node = baseline_period(conn, press, v1, [two], setting)
        never = baseline_period(conn, press, v1 + 1, [one], setting)

    assert site is not None and node is not None
    assert (site.start, site.end, site.n_records) == (
        T0 + timedelta(hours=2),
        T0 + timedelta(days=7, hours=2),
        2,
    )
    assert node.start == T0 + timedelta(hours=5)
    assert never is None
    assert site.complete_before(T0 + timedelta(days=7, hours=2))
    assert not site.complete_before(T0 + timedelta(days=7))


def test_a_rows_period_ends_just_after_its_nth_record_in_time_order(
    engine: Engine, press: int
) -> None:
    # Batches overlap in time: the third record by time is in the second batch sent.
    store(engine, "press-01", "1", [T0, T0 + timedelta(minutes=10), T0 + timedelta(minutes=30)])
    store(engine, "press-01", "1", [T0 + timedelta(minutes=5), T0 + timedelta(minutes=20)])
    (one,) = ids(engine, "press-01")

    with engine.connect() as conn:
        v1 = models.version_id(conn, press, "1")
        third = nth_record_time(conn, press, v1, [one], 3)
        fifth = nth_record_time(conn, press, v1, [one], 5)
        sixth = nth_record_time(conn, press, v1, [one], 6)
        period = baseline_period(conn, press, v1, [one], BaselineSetting("node", rows=3))
        waiting = baseline_period(conn, press, v1, [one], BaselineSetting("node", rows=6))
        rows = baseline_rows(conn, press, v1, [one], T0, T0 + timedelta(minutes=10))

    assert third == T0 + timedelta(minutes=10)
    assert fifth == T0 + timedelta(minutes=30)
    assert sixth is None
    assert period is not None and period.end == T0 + timedelta(minutes=10, microseconds=1)
    assert waiting is not None and waiting.end is None and waiting.n_records == 5
    assert [ts.to_pydatetime() for ts in rows["ts"]] == [T0, T0 + timedelta(minutes=5)]
