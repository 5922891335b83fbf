"""The Alembic migrations build exactly the schema of monitor.storage.tables, up and down."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from monitor.errors import SchemaOutOfDate
from monitor.storage import migrations
from monitor.storage.engine import make_engine
from monitor.storage.tables import metadata

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def bare_engine(db_url: str) -> Iterator[Engine]:
    """An engine on the test's empty, unmigrated database."""
    engine = make_engine(db_url, pool_size=1)
    yield engine
    engine.dispose()


def _insert(conn: Connection, table: str, **values: object) -> int:
    result = conn.execute(sa.insert(metadata.tables[table]).values(**values))
    return int(result.inserted_primary_key[0])


def _insert_sample_rows(engine: Engine) -> None:
    """One row in every table that exists, linked the way the service links them."""
    existing = set(sa.inspect(engine).get_table_names())
    with engine.begin() as conn:
        node = _insert(
            conn,
            "nodes",
            name="shop-1",
            tags={"region": "eu"},
            token_hash="a" * 64,
            token_hint="abcd",
            created_at=T0,
        )
        model = _insert(conn, "models", name="churn", description="", created_at=T0)
        version = _insert(conn, "model_versions", model_id=model, version="1", created_at=T0)
        batch = _insert(
            conn,
            "batches",
            node_id=node,
            model_id=model,
            model_version_id=version,
            batch_uid="b-1",
            received_at=T0,
            min_ts=T0,
            max_ts=T0,
            n_records=1,
            payload=b"\x00arrow",
        )
        _insert(
            conn,
            "records",
            pos=0,
            node_id=node,
            uid="r-1",
            batch_id=batch,
            model_id=model,
            request_id="req-1",
        )
        _insert(
            conn,
            "labels",
            model_id=model,
            request_id="req-1",
            value={"label": 1},
            node_id=node,
            ts=T0,
            received_at=T0,
        )
        _insert(
            conn,
            "node_heartbeats",
            node_id=node,
            received_at=T0,
            ts=T0,
            model_version_id=version,
            sdk={"version": "0.1.0"},
        )
        if "deployments" in existing:  # revision 0002: the registry and rollout
            _insert(
                conn,
                "deployments",
                model_id=model,
                production_version_id=version,
                canary_share=0.0,
                updated_at=T0,
            )
            _insert(
                conn,
                "deployment_pins",
                model_id=model,
                group_name="eu",
                version_id=version,
                created_at=T0,
            )
            _insert(
                conn,
                "rollout_events",
                model_id=model,
                action="promote",
                version_id=version,
                details={},
                at=T0,
            )
        if "analysis_runs" in existing:  # revision 0003: scheduled analysis
            run = _insert(
                conn,
                "analysis_runs",
                model_id=model,
                kind="drift",
                window_start=T0,
                window_end=T0,
                scope_kind="node",
                scope_key="shop-1",
                node_id=node,
                model_version_id=version,
                status="ok",
                n_rows=10,
                summary={},
                computed_at=T0,
            )
            for table, values in (
                ("feature_results", {"run_id": run, "feature": "t", "statistic": 0.2}),
                ("analysis_snapshots", {"run_id": run, "snapshot": b"{}", "created_at": T0}),
                (
                    "job_leases",
                    {"key": "k", "owner": "w", "acquired_at": T0, "expires_at": T0, "attempts": 1},
                ),
                (
                    "node_health",
                    {
                        "node_id": node,
                        "status": "online",
                        "checked_at": T0,
                        "dropped": {},
                        "details": {},
                    },
                ),
                ("apscheduler_jobs", {"id": "job", "next_run_time": 1.0, "job_state": b"x"}),
            ):
                conn.execute(sa.insert(metadata.tables[table]).values(**values))


def _row_counts(engine: Engine) -> dict[str, int]:
    existing = set(sa.inspect(engine).get_table_names())
    with engine.connect() as conn:
        return {
            name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for name, table in metadata.tables.items()
            if name in existing
        }


def _revisions_oldest_first() -> list[str]:
    scripts = ScriptDirectory(str(migrations.script_directory()))
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


def test_sample_rows_cover_every_table(bare_engine: Engine, db_url: str) -> None:
    migrations.upgrade(db_url)
    _insert_sample_rows(bare_engine)
    empty = [name for name, count in _row_counts(bare_engine).items() if count == 0]
    assert not empty, f"add sample rows for the new tables {empty} to _insert_sample_rows"


def test_there_is_exactly_one_head() -> None:
    scripts = ScriptDirectory(str(migrations.script_directory()))
    assert len(scripts.get_heads()) == 1
    assert migrations.head() == scripts.get_current_head()
    assert _revisions_oldest_first()[0] == "0001"


def test_current_is_none_before_and_head_after_upgrade(db_url: str) -> None:
    assert migrations.current(db_url) is None
    migrations.upgrade(db_url)
    assert migrations.current(db_url) == migrations.head() == _revisions_oldest_first()[-1]


def test_downgrade_to_base_and_upgrade_again_gives_a_fresh_schema(
    bare_engine: Engine, db_url: str
) -> None:
    migrations.upgrade(db_url)
    _insert_sample_rows(bare_engine)
    assert all(_row_counts(bare_engine).values())

    migrations.downgrade(db_url, "base")
    assert migrations.current(db_url) is None
    assert set(sa.inspect(bare_engine).get_table_names()) <= {"alembic_version"}

    migrations.upgrade(db_url)
    assert set(_row_counts(bare_engine).values()) == {0}
    _insert_sample_rows(bare_engine)  # unique names are free again: nothing was left behind


def test_every_revision_downgrades_and_upgrades_again(db_url: str) -> None:
    # The "stairway": each step up must come down and go up again cleanly.
    previous = "base"
    for revision in _revisions_oldest_first():
        migrations.upgrade(db_url, revision)
        migrations.downgrade(db_url, previous)
        assert migrations.current(db_url) == (None if previous == "base" else previous)
        migrations.upgrade(db_url, revision)
        assert migrations.current(db_url) == revision
        previous = revision


def test_data_survives_downgrading_later_revisions(bare_engine: Engine, db_url: str) -> None:
    first = _revisions_oldest_first()[0]
    migrations.upgrade(db_url, first)
    _insert_sample_rows(bare_engine)
    before = _row_counts(bare_engine)
    assert all(before.values())

    migrations.upgrade(db_url)
    migrations.downgrade(db_url, first)
    migrations.upgrade(db_url)

    assert migrations.current(db_url) == migrations.head()
    after = _row_counts(bare_engine)
    assert {name: after[name] for name in before} == before
    with bare_engine.connect() as conn:
        assert conn.execute(sa.select(metadata.tables["nodes"].c.name)).scalars().all() == [
            "shop-1"
        ]


def test_upgrade_runs_on_the_callers_connection_and_transaction(
    bare_engine: Engine, db_url: str
) -> None:
    config = migrations.alembic_config(db_url)
    with bare_engine.connect() as conn:
        config.attributes["connection"] = conn
        with conn.begin() as transaction:
            command.upgrade(config, "head")
            assert MigrationContext.configure(conn).get_current_revision() == migrations.head()
            transaction.rollback()
    # The caller rolled back, so nothing was committed (DDL is transactional on both backends).
    assert migrations.current(db_url) is None
    assert "nodes" not in sa.inspect(bare_engine).get_table_names()


def test_migrated_schema_matches_the_table_definitions(bare_engine: Engine, db_url: str) -> None:
    migrations.upgrade(db_url)
    with bare_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == [], (
        f"monitor/storage/tables.py and the migrations disagree; write a revision: {differences}"
    )


def test_ensure_at_head_names_the_fix_on_an_empty_database(bare_engine: Engine) -> None:
    with pytest.raises(SchemaOutOfDate) as raised:
        migrations.ensure_at_head(bare_engine)
    message = str(raised.value)
    assert "\n" not in message
    assert "is at revision none" in message
    assert f"needs {migrations.head()}" in message
    assert 'run "edge-monitor db upgrade"' in message
    assert raised.value.details == {"current": None, "expected": migrations.head()}


def test_ensure_at_head_passes_at_head(bare_engine: Engine, db_url: str) -> None:
    migrations.upgrade(db_url)
    migrations.ensure_at_head(bare_engine)


def test_ensure_at_head_on_a_database_from_a_newer_release(
    bare_engine: Engine, db_url: str
) -> None:
    migrations.upgrade(db_url)
    with bare_engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaOutOfDate, match="9999, which this edge-monitor does not know"):
        migrations.ensure_at_head(bare_engine)


def test_ensure_at_head_names_the_database_without_its_password(backend: str, db_url: str) -> None:
    url = sa.make_url(db_url)
    if backend == "postgresql":
        # The test server trusts local connections, so any password gets in.
        url = url.set(password="s3cret-pw")
    engine = make_engine(url.render_as_string(hide_password=False), pool_size=1)
    try:
        with pytest.raises(SchemaOutOfDate) as raised:
            migrations.ensure_at_head(engine)
    finally:
        engine.dispose()
    message = str(raised.value)
    assert message.startswith(f"database {url.render_as_string(hide_password=True)} is at")
    assert "s3cret-pw" not in message


def test_upgrade_leaves_the_application_logging_alone(db_url: str) -> None:
    app_logger = logging.getLogger("monitor.some_module")
    root_handlers = list(logging.getLogger().handlers)
    migrations.upgrade(db_url)
    assert logging.getLogger().handlers == root_handlers
    assert not app_logger.disabled
