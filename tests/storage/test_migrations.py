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


def _table(conn: Connection, name: str) -> sa.Table:
    """A table as the database has it now: tests write at every revision, not only at head."""
    return sa.Table(name, sa.MetaData(), autoload_with=conn)


def _insert(conn: Connection, table: str, **values: object) -> int:
    result = conn.execute(sa.insert(_table(conn, table)).values(**values))
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
        # Revision 0004 renamed labels.value to labels.label.
        label_column = "label" if "drift_scopes" in existing else "value"
        _insert(
            conn,
            "labels",
            model_id=model,
            request_id="req-1",
            **{label_column: {"label": 1}},
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
        if "analysis_runs" in existing:  # revisions 0003: scheduled analysis
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
            results = [
                ("feature_results", {"run_id": run, "feature": "t", "statistic": 0.2}),
                ("analysis_snapshots", {"run_id": run, "snapshot": b"{}", "created_at": T0}),
            ]
        if "drift_scopes" in existing:  # revision 0004: the results contract
            scope = {
                "model_id": model,
                "window_start": T0,
                "window_end": T0,
                "scope_kind": "node",
                "scope_key": "shop-1",
                "node_id": node,
                "model_version_id": version,
                "computed_at": T0,
                "status": "ok",
                "n_rows": 10,
            }
            drift = _insert(
                conn, "drift_scopes", **scope, n_features=1, n_drifted=0, share_drifted=0.0
            )
            quality = _insert(
                conn, "quality_scopes", **scope, n_features=1, n_issues=0, has_issues=False
            )
            _insert(conn, "performance_scopes", **scope, task="classification", n_labelled=0)
            feature = {
                "feature": "t",
                "role": "feature",
                "column_kind": "numerical",
                "status": "ok",
            }
            results = [
                (
                    "drift_features",
                    {"scope_id": drift, **feature, "n_current": 10, "n_reference": 5},
                ),
                (
                    "quality_features",
                    {"scope_id": quality, **feature, "n_rows": 10, "n_missing": 0, "n_invalid": 0},
                ),
                ("analysis_snapshots", {"scope_id": drift, "snapshot": b"{}", "created_at": T0}),
            ]
        if "estimation_scopes" in existing:  # revision 0008: estimation, multivariate drift
            _insert(
                conn,
                "estimation_scopes",
                **scope,
                task="classification",
                n_scored=10,
                n_labelled=0,
                trusted=True,
                trust_evidence="no_contrary_evidence",
                trust_reason="nothing contradicts it yet: no labelled records to check it",
            )
            _insert(
                conn,
                "multivariate_scopes",
                **scope,
                method="pca-reconstruction",
                n_components=2,
            )
        if "node_models" in existing:  # revision 0005: node-bound labels and model access
            _insert(conn, "node_models", node_id=node, model_id=model, created_at=T0)
        if "row_windows" in existing:  # revision 0006: your own model and data
            _insert(
                conn,
                "row_windows",
                model_id=model,
                window_start=T0,
                window_end=T0,
                n_rows=1,
                created_at=T0,
            )
        if "alert_rules" in existing:  # revision 0007: alerts, webhooks and retraining
            stamps = {"created_at": T0, "updated_at": T0}
            rule = _insert(
                conn,
                "alert_rules",
                name="r",
                model_id=model,
                kind="scope_drift",
                params={},
                scope="fleet",
                hooks=[],
                **stamps,
            )
            _insert(
                conn,
                "alert_evaluations",
                rule_id=rule,
                model_id=model,
                window_start=T0,
                window_end=T0,
                evaluated_at=T0,
            )
            _insert(
                conn,
                "alert_observations",
                rule_id=rule,
                subject="fleet",
                window_start=T0,
                window_end=T0,
                state="breach",
                details={},
                observed_at=T0,
            )
            alert = _insert(
                conn,
                "alerts",
                rule_id=rule,
                model_id=model,
                group_key="fleet",
                episode=1,
                state="firing",
                severity="warning",
                summary="s",
                subjects=[],
                details={},
                fired_at=T0,
                updated_at=T0,
            )
            event = _insert(
                conn,
                "alert_events",
                alert_id=alert,
                seq=1,
                kind="fired",
                message_id="msg_1",
                payload={},
                at=T0,
            )
            endpoint = _insert(
                conn, "webhook_endpoints", name="e", url="https://x", secret="whsec_x", **stamps
            )
            message = _insert(
                conn,
                "webhook_messages",
                endpoint_id=endpoint,
                message_id="msg_1",
                event_type="alert.fired",
                body=b"{}",
                event_id=event,
                status="pending",
                next_attempt_at=T0,
                created_at=T0,
            )
            _insert(conn, "webhook_attempts", message_id=message, attempt=1, at=T0, duration_ms=1.0)
            hook = _insert(
                conn,
                "retrain_hooks",
                name="h",
                model_id=model,
                kind="command",
                config={},
                timeout_seconds=1.0,
                cooldown_seconds=0,
                **stamps,
            )
            _insert(
                conn,
                "retrain_runs",
                model_id=model,
                hook_id=hook,
                alert_id=alert,
                trigger="alert",
                status="queued",
                details={},
                created_at=T0,
                updated_at=T0,
            )
        if "job_leases" in existing:  # revision 0003: scheduled analysis
            for table, values in [
                *results,
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
            ]:
                conn.execute(sa.insert(_table(conn, table)).values(**values))


def _row_counts(engine: Engine) -> dict[str, int]:
    existing = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    with engine.connect() as conn:
        return {
            name: conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one()
            for name in sorted(existing)
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


# --- 0004: analysis runs become the results contract's scope and feature tables -------------


def _rows(conn: Connection, name: str, *order_by: str) -> list[dict[str, object]]:
    table = _table(conn, name)
    query = sa.select(table).order_by(*(table.c[column] for column in order_by))
    return [dict(row) for row in conn.execute(query).mappings()]


def _new_rows(conn: Connection, name: str, *order_by: str) -> list[dict[str, object]]:
    """Rows of a head table read through its definition (aware datetimes, typed JSON), the
    columns a later revision added left out."""
    table = metadata.tables[name]
    present = {column["name"] for column in sa.inspect(conn).get_columns(name)}
    query = sa.select(*(c for c in table.c if c.name in present)).order_by(
        *(table.c[column] for column in order_by)
    )
    return [dict(row) for row in conn.execute(query).mappings()]


def _details(**values: object) -> dict[str, object]:
    drift = {"role": "feature", "evidently_drifted": False, "status": "ok"}
    return {**drift, **values}


def _fill_0003(conn: Connection) -> dict[str, int]:
    """A model analysed at revision 0003: every kind of run at the fleet and one node, with
    feature results, a snapshot and labels; returns the run ids by name."""
    node = _insert(
        conn, "nodes", name="shop-1", tags={}, token_hash="a" * 64, token_hint="a", created_at=T0
    )
    model = _insert(conn, "models", name="churn", description="", created_at=T0)
    version = _insert(conn, "model_versions", model_id=model, version="1", created_at=T0)
    for request_id, value in (("req-1", 1), ("req-2", {"a": [1, "b"]})):
        _insert(
            conn,
            "labels",
            model_id=model,
            request_id=request_id,
            value=value,
            node_id=node,
            ts=T0,
            received_at=T0,
        )
    end = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)

    def run(kind: str, scope: str, **values: object) -> int:
        fleet = scope == "fleet"
        return _insert(
            conn,
            "analysis_runs",
            model_id=model,
            kind=kind,
            window_start=T0,
            window_end=end,
            scope_kind=scope,
            scope_key="" if fleet else "shop-1",
            node_id=None if fleet else node,
            model_version_id=version,
            computed_at=end,
            **{"status": "ok", "drifted": None, "drift_share": None, **values},
        )

    ids = {
        # One feature of four drifted: not Evidently's dataset drift (share < 0.5), but the
        # scope's verdict now says drifted.
        "drift_fleet": run(
            "drift",
            "fleet",
            n_rows=100,
            n_reference=50,
            drifted=False,
            drift_share=0.25,
            summary={
                "n_features": 4,
                "n_drifted": 1,
                "prediction_drifted": False,
                "evidently_share_drifted": 0.5,
                "drifted_features": ["x"],
            },
        ),
        "drift_node": run(
            "drift",
            "node",
            status="insufficient_data",
            n_rows=3,
            n_reference=50,
            summary={
                "n_features": 0,
                "n_drifted": 0,
                "prediction_drifted": None,
                "evidently_share_drifted": None,
                "drifted_features": [],
            },
        ),
        "quality_fleet": run(
            "quality",
            "fleet",
            n_rows=100,
            n_reference=50,
            summary={
                "features_with_problems": ["color"],
                "max_missing_share": 0.1,
                "max_out_of_range_share": 0.02,
                "schema": [
                    {
                        "feature": "gone",
                        "issue": "missing_column",
                        "expected": "numerical",
                        "actual": None,
                    },
                    {
                        "feature": "extra",
                        "issue": "unexpected_column",
                        "expected": None,
                        "actual": "int64",
                    },
                ],
            },
        ),
        "quality_node": run(
            "quality",
            "node",
            n_rows=3,
            n_reference=50,
            summary={
                "features_with_problems": [],
                "max_missing_share": 0.0,
                "max_out_of_range_share": 0.0,
                "schema": [],
            },
        ),
        "performance_fleet": run(
            "performance",
            "fleet",
            n_rows=100,
            summary={
                "n_labelled": 40,
                "label_coverage": 0.4,
                "accuracy": 0.875,
                "precision": 0.75,
                "recall": 0.5,
                "f1": 0.625,
                "roc_auc": 0.9375,
                "mae": None,
                "rmse": None,
            },
        ),
        "performance_node": run(
            "performance",
            "node",
            status="insufficient_labels",
            n_rows=3,
            summary={
                "n_labelled": 3,
                "label_coverage": 1.0,
                **dict.fromkeys(("accuracy", "precision", "recall", "f1", "roc_auc")),
                "mae": 1.5,
                "rmse": 2.25,
            },
        ),
    }
    features = [
        (
            ids["drift_fleet"],
            "x",
            {"method": "wasserstein", "statistic": 0.3, "threshold": 0.1, "p_value": 0.004},
            True,
            _details(p_raw=0.001, test="ks-asymptotic", evidently_drifted=True, n_current=100),
        ),
        (
            ids["drift_fleet"],
            "color",
            {"method": "jensenshannon", "statistic": 0.05, "threshold": 0.1, "p_value": 0.5},
            False,
            _details(p_raw=0.25, test="chi2-homogeneity", n_current=100),
        ),
        (
            ids["drift_node"],
            "x",
            {"method": "ks", "statistic": 0.5, "threshold": 0.05, "p_value": None},
            None,
            _details(p_raw=None, test="ks", n_current=3, status="insufficient_data"),
        ),
    ]
    quality = {
        "x": {
            "missing_share": 0.1,
            "n_invalid": 0,
            "out_of_range_share": 0.02,
            "n_new_category_rows": None,
            "new_categories": {},
            "constant": False,
        },
        "color": {
            "missing_share": 0.0,
            "n_invalid": 2,
            "out_of_range_share": None,
            "n_new_category_rows": 5,
            "new_categories": {"teal": 5},
            "constant": False,
        },
        "gone": {
            "missing_share": None,
            "n_invalid": 0,
            "out_of_range_share": None,
            "n_new_category_rows": None,
            "new_categories": {},
            "constant": None,
        },
    }
    results = _table(conn, "feature_results")
    for run_id, feature, figures, drifted, details in features:
        conn.execute(
            sa.insert(results).values(
                run_id=run_id, feature=feature, drifted=drifted, details=details, **figures
            )
        )
    for feature, details in quality.items():
        conn.execute(
            sa.insert(results).values(run_id=ids["quality_fleet"], feature=feature, details=details)
        )
    conn.execute(
        sa.insert(results).values(run_id=ids["quality_node"], feature="x", details=quality["x"])
    )
    conn.execute(
        sa.insert(_table(conn, "analysis_snapshots")).values(
            run_id=ids["drift_fleet"], snapshot=b"{snapshot}", created_at=end
        )
    )
    return ids


def _old_contents(engine: Engine) -> dict[str, list[dict[str, object]]]:
    with engine.connect() as conn:
        return {
            "labels": _rows(conn, "labels", "id"),
            "analysis_runs": _rows(conn, "analysis_runs", "id"),
            "feature_results": _rows(conn, "feature_results", "run_id", "feature"),
            "analysis_snapshots": _rows(conn, "analysis_snapshots", "run_id"),
        }


def _pick(rows: list[dict[str, object]], *names: str) -> list[tuple[object, ...]]:
    return [tuple(row[name] for name in names) for row in rows]


def _matches(rows: list[dict[str, object]], expected: list[dict[str, object]]) -> None:
    """Each row has the values its expected dict names (other columns are not compared)."""
    assert len(rows) == len(expected)
    picked = [{name: row[name] for name in want} for row, want in zip(rows, expected, strict=True)]
    assert picked == expected


def test_analysis_runs_move_to_the_result_tables_and_back(bare_engine: Engine, db_url: str) -> None:
    migrations.upgrade(db_url, "0003")
    with bare_engine.begin() as conn:
        ids = _fill_0003(conn)
    before = _old_contents(bare_engine)

    migrations.upgrade(db_url, "0004")

    with bare_engine.connect() as conn:
        _matches(
            _new_rows(conn, "labels", "id"),
            [
                {"request_id": "req-1", "label": 1},
                {"request_id": "req-2", "label": {"a": [1, "b"]}},
            ],
        )

        drift = _new_rows(conn, "drift_scopes", "id")
        assert all(
            row["window_start"] == T0 and row["model_version_id"] and row["n_reference"] == 50
            for row in drift
        )
        _matches(
            drift,
            [
                {
                    "id": ids["drift_fleet"],
                    "scope_kind": "fleet",
                    "node_id": None,
                    "status": "ok",
                    "n_rows": 100,
                    "n_features": 4,
                    "n_drifted": 1,
                    "share_drifted": 0.25,
                    # The old run said "no dataset drift"; the new verdict: a feature drifted.
                    "drifted": True,
                    "prediction_drifted": False,
                    "evidently_share_drifted": 0.5,
                },
                {
                    "id": ids["drift_node"],
                    "scope_kind": "node",
                    "scope_key": "shop-1",
                    "status": "insufficient_data",
                    "n_rows": 3,
                    "n_features": 0,
                    "n_drifted": 0,
                    "share_drifted": None,
                    "drifted": None,
                    "prediction_drifted": None,
                    "evidently_share_drifted": None,
                },
            ],
        )
        common = {"role": "feature", "n_reference": 50, "status": "ok"}
        _matches(
            _new_rows(conn, "drift_features", "scope_id", "feature"),
            [
                {
                    **common,
                    "scope_id": ids["drift_fleet"],
                    "feature": "color",
                    "column_kind": "categorical",
                    "method": "jensenshannon",
                    "test": "chi2-homogeneity",
                    "statistic": 0.05,
                    "threshold": 0.1,
                    "p_value": 0.25,
                    "adjusted_p_value": 0.5,
                    "drifted": False,
                    "evidently_drifted": False,
                    "n_current": 100,
                },
                {
                    **common,
                    "scope_id": ids["drift_fleet"],
                    "feature": "x",
                    "column_kind": "numerical",
                    "method": "wasserstein",
                    "test": "ks-asymptotic",
                    "statistic": 0.3,
                    "threshold": 0.1,
                    "p_value": 0.001,
                    "adjusted_p_value": 0.004,
                    "drifted": True,
                    "evidently_drifted": True,
                    "n_current": 100,
                },
                {
                    **common,
                    "scope_id": ids["drift_node"],
                    "feature": "x",
                    "column_kind": "numerical",
                    "method": "ks",
                    "test": "ks",
                    "p_value": None,
                    "adjusted_p_value": None,
                    "drifted": None,
                    "n_current": 3,
                    "status": "insufficient_data",
                },
            ],
        )

        _matches(
            _new_rows(conn, "quality_scopes", "id"),
            [
                {
                    "id": ids["quality_fleet"],
                    "scope_kind": "fleet",
                    "window_start": T0,
                    "n_reference": 50,
                    "status": "ok",
                    "n_rows": 100,
                    # x and color: the missing column has no figures to judge.
                    "n_features": 2,
                    "n_issues": 1,
                    "has_issues": True,
                    "max_missing_share": 0.1,
                    "max_out_of_range_share": 0.02,
                },
                {
                    "id": ids["quality_node"],
                    "scope_kind": "node",
                    "n_rows": 3,
                    "n_features": 1,
                    "n_issues": 0,
                    "has_issues": False,
                    "max_missing_share": 0.0,
                },
            ],
        )
        fleet = {"scope_id": ids["quality_fleet"], "role": "feature", "n_rows": 100}
        nothing = dict.fromkeys(
            ("missing_share", "n_out_of_range", "n_new_categories", "new_categories", "issue")
        )
        _matches(
            _new_rows(conn, "quality_features", "scope_id", "feature"),
            [
                {
                    **fleet,
                    "feature": "color",
                    "column_kind": "categorical",
                    "n_missing": 0,
                    "n_invalid": 2,
                    "n_out_of_range": None,
                    "n_new_category_rows": 5,
                    "n_new_categories": 1,
                    "new_categories": {"teal": 5},
                    "constant": False,
                    "issue": True,
                    "status": "ok",
                },
                {**fleet, **nothing, "feature": "extra", "column_kind": "int64"}
                | {"status": "unexpected_column"},
                {**fleet, **nothing, "feature": "gone", "column_kind": "numerical"}
                | {"n_missing": 0, "status": "missing_column"},
                {
                    **fleet,
                    "feature": "x",
                    "column_kind": "numerical",
                    # 10% of 100 rows missing; 2% of the 90 present values out of range.
                    "n_missing": 10,
                    "missing_share": 0.1,
                    "n_out_of_range": 2,
                    "out_of_range_share": 0.02,
                    "n_new_category_rows": None,
                    "n_new_categories": None,
                    "new_categories": None,
                    "issue": False,
                    "status": "ok",
                },
                {
                    "scope_id": ids["quality_node"],
                    "feature": "x",
                    "n_rows": 3,
                    "n_missing": 0,
                    "n_out_of_range": 0,
                    "issue": False,
                },
            ],
        )

        _matches(
            _new_rows(conn, "performance_scopes", "id"),
            [
                {
                    "id": ids["performance_fleet"],
                    "scope_kind": "fleet",
                    "status": "ok",
                    "task": "classification",
                    "n_rows": 100,
                    "n_labelled": 40,
                    "label_coverage": 0.4,
                    "accuracy": 0.875,
                    "precision": 0.75,
                    "recall": 0.5,
                    "f1": 0.625,
                    "roc_auc": 0.9375,
                    "mae": None,
                    "rmse": None,
                    "n_reference": None,
                },
                {
                    "id": ids["performance_node"],
                    "scope_kind": "node",
                    "status": "insufficient_labels",
                    "task": "regression",
                    "n_labelled": 3,
                    "accuracy": None,
                    "roc_auc": None,
                    "mae": 1.5,
                    "rmse": 2.25,
                },
            ],
        )
        _matches(
            _new_rows(conn, "analysis_snapshots", "scope_id"),
            [{"scope_id": ids["drift_fleet"], "snapshot": b"{snapshot}"}],
        )

    # New rows are numbered after the carried-over ones (PostgreSQL's sequences were moved on).
    later = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
    with bare_engine.begin() as conn:
        common = {
            "model_id": drift[0]["model_id"],
            "window_start": later,
            "window_end": later,
            "scope_kind": "fleet",
            "scope_key": "",
            "computed_at": later,
            "status": "ok",
            "n_rows": 1,
        }
        new_ids = [
            _insert(conn, "drift_scopes", **common, n_features=0, n_drifted=0),
            _insert(conn, "quality_scopes", **common, n_features=0, n_issues=0, has_issues=False),
            _insert(conn, "performance_scopes", **common, task="classification", n_labelled=0),
        ]
        assert new_ids[0] > ids["drift_node"]
        assert new_ids[1] > ids["quality_node"]
        assert new_ids[2] > ids["performance_node"]
        for table in ("drift_scopes", "quality_scopes", "performance_scopes"):
            conn.execute(
                sa.delete(metadata.tables[table]).where(metadata.tables[table].c.n_rows == 1)
            )

    migrations.downgrade(db_url, "0003")
    assert _old_contents(bare_engine) == before


def test_downgrade_renumbers_scopes_whose_ids_clash(bare_engine: Engine, db_url: str) -> None:
    # Each scope table numbers its rows from 1, but analysis_runs is one id space: drift scopes
    # keep their ids (snapshots point at them), the others move above every run id.
    migrations.upgrade(db_url)
    _insert_sample_rows(bare_engine)
    with bare_engine.connect() as conn:
        scope_ids = {
            table: conn.execute(sa.select(metadata.tables[table].c.id)).scalar_one()
            for table in ("drift_scopes", "quality_scopes", "performance_scopes")
        }
    assert set(scope_ids.values()) == {1}

    migrations.downgrade(db_url, "0003")
    with bare_engine.connect() as conn:
        runs = {row["kind"]: row["id"] for row in _rows(conn, "analysis_runs", "id")}
        results = _pick(_rows(conn, "feature_results", "run_id", "feature"), "run_id", "feature")
        snapshots = _pick(_rows(conn, "analysis_snapshots", "run_id"), "run_id")
        labels = _pick(_rows(conn, "labels", "id"), "value")
    assert runs["drift"] == 1
    assert len(set(runs.values())) == 3
    assert sorted(results) == sorted([(runs["drift"], "t"), (runs["quality"], "t")])
    assert snapshots == [(runs["drift"],)]
    assert labels == [({"label": 1},)]

    migrations.upgrade(db_url)
    with bare_engine.connect() as conn:
        for table, kind in (("drift_scopes", "drift"), ("quality_scopes", "quality")):
            assert conn.execute(sa.select(metadata.tables[table].c.id)).scalar_one() == runs[kind]


# --- 0005: labels bound to nodes; labellers; the models a node is registered for -------------


def _fill_0004(conn: Connection) -> dict[str, int]:
    """Two nodes of one model, each with a record of request id ``req``; a label sent by node
    ``a`` for ``req`` and one sent with the admin token for ``other``."""
    model = _insert(conn, "models", name="m", description="", created_at=T0)
    version = _insert(conn, "model_versions", model_id=model, version="1", created_at=T0)
    ids = {"model": model}
    for name in ("a", "b"):
        node = _insert(
            conn,
            "nodes",
            name=name,
            tags={},
            token_hash=name * 64,
            token_hint="emn_",
            created_at=T0,
        )
        batch = _insert(
            conn,
            "batches",
            node_id=node,
            model_id=model,
            model_version_id=version,
            received_at=T0,
            min_ts=T0,
            max_ts=T0,
            n_records=1,
            payload=b"x",
        )
        _insert(
            conn,
            "records",
            batch_id=batch,
            pos=0,
            node_id=node,
            uid=name,
            model_id=model,
            request_id="req",
        )
        ids[name] = node
    _insert(
        conn, "nodes", name="idle", tags={}, token_hash="i" * 64, token_hint="emn_", created_at=T0
    )
    for request_id, sender in (("req", ids["a"]), ("other", None)):
        _insert(
            conn,
            "labels",
            model_id=model,
            request_id=request_id,
            label="ok",
            node_id=sender,
            ts=T0,
            received_at=T0,
        )
    return ids


def test_labels_stay_with_the_node_that_sent_them_and_admin_labels_name_any_node(
    bare_engine: Engine, db_url: str
) -> None:
    migrations.upgrade(db_url, "0004")
    with bare_engine.begin() as conn:
        ids = _fill_0004(conn)

    migrations.upgrade(db_url, "0005")
    with bare_engine.connect() as conn:
        labels = _pick(_rows(conn, "labels", "request_id"), "request_id", "node_id")
        registered = _pick(_rows(conn, "node_models", "node_id"), "node_id", "model_id")
        roles = _pick(_rows(conn, "nodes", "name"), "name", "role")
    assert labels == [("other", 0), ("req", ids["a"])]
    # Nodes keep fetching the models they sent records for; a node that sent none gets none.
    assert registered == [(ids["a"], ids["model"]), (ids["b"], ids["model"])]
    assert roles == [("a", "node"), ("b", "node"), ("idle", "node")]


def test_downgrading_keeps_the_latest_label_of_each_request(
    bare_engine: Engine, db_url: str
) -> None:
    migrations.upgrade(db_url, "0004")
    with bare_engine.begin() as conn:
        ids = _fill_0004(conn)
    migrations.upgrade(db_url, "0005")
    with bare_engine.begin() as conn:  # node b labels its own record of the same request id
        _insert(
            conn,
            "labels",
            model_id=ids["model"],
            request_id="req",
            label="fail",
            node_id=ids["b"],
            ts=T0,
            received_at=T0,
        )

    migrations.downgrade(db_url, "0004")
    with bare_engine.connect() as conn:
        labels = _pick(_rows(conn, "labels", "request_id"), "request_id", "label", "node_id")
    assert labels == [("other", "ok", None), ("req", "fail", ids["b"])]
