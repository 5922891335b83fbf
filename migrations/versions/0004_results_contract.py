"""Results contract: analysis_runs and feature_results become per-kind scope and feature tables
(drift_scopes, drift_features, quality_scopes, quality_features, performance_scopes), snapshots
point at drift scopes, and labels.value is labels.label. Every stored result is carried over.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 17:05:12.000000
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Old runs (and new scope rows) read per round trip; their feature rows come with them.
CHUNK = 1_000

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TEXT = sa.String(length=160)
_TS = sa.DateTime(timezone=True)

#: Evidently's dataset-drift share that the old ``analysis_runs.drifted`` was judged by.
_OLD_DATASET_DRIFT_SHARE = 0.5
#: Drift methods Evidently uses only on numerical columns.
_NUMERICAL_METHODS = ("wasserstein", "ks")
_NUMERICAL_TESTS = ("ks", "ks-asymptotic")
_SCHEMA_STATUSES = ("missing_column", "unexpected_column", "type_mismatch")


# --- Tables -----------------------------------------------------------------------------------


def _scope_columns(*fields: tuple[str, Any, bool]) -> list[Any]:
    return [
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("window_start", _TS, nullable=False),
        sa.Column("window_end", _TS, nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("n_reference", sa.Integer(), nullable=True),
        sa.Column("computed_at", _TS, nullable=False),
        sa.Column("scope_kind", _TEXT, nullable=False),
        sa.Column("scope_key", _TEXT, nullable=False),
        *(sa.Column(name, type_, nullable=nullable) for name, type_, nullable in fields),
    ]


def _create_scope_table(name: str, *fields: tuple[str, Any, bool]) -> None:
    op.create_table(
        name,
        *_scope_columns(*fields),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f(f"fk_{name}_model_id_models"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f(f"fk_{name}_model_version_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f(f"fk_{name}_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
        sa.UniqueConstraint(
            "model_id",
            "window_start",
            "scope_kind",
            "scope_key",
            name=op.f(f"uq_{name}_model_id_window_start_scope_kind_scope_key"),
        ),
    )
    with op.batch_alter_table(name, schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f(f"ix_{name}_model_id_scope_kind_window_start"),
            ["model_id", "scope_kind", "window_start"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f(f"ix_{name}_node_id_window_start"), ["node_id", "window_start"], unique=False
        )


def _drop_scope_table(name: str) -> None:
    with op.batch_alter_table(name, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f(f"ix_{name}_node_id_window_start"))
        batch_op.drop_index(batch_op.f(f"ix_{name}_model_id_scope_kind_window_start"))
    op.drop_table(name)


def _create_feature_table(name: str, scopes: str, *fields: tuple[str, Any, bool]) -> None:
    op.create_table(
        name,
        sa.Column("scope_id", sa.BigInteger(), nullable=False),
        *(sa.Column(column, type_, nullable=nullable) for column, type_, nullable in fields),
        sa.ForeignKeyConstraint(
            ["scope_id"],
            [f"{scopes}.id"],
            name=op.f(f"fk_{name}_scope_id_{scopes}"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("scope_id", "feature", name=op.f(f"pk_{name}")),
    )


# The fields of monitor.schema's row types as of this revision, spelled out: (name, type,
# nullable). The scope tables' own columns (id, model, window, node, version, n_reference,
# computed_at, scope_kind, scope_key) come first, from _scope_columns.
DRIFT_SCOPE = (
    ("status", _TEXT, False),
    ("n_rows", sa.Integer(), False),
    ("n_features", sa.Integer(), False),
    ("n_drifted", sa.Integer(), False),
    ("share_drifted", sa.Float(), True),
    ("drifted", sa.Boolean(), True),
    ("prediction_drifted", sa.Boolean(), True),
    ("evidently_share_drifted", sa.Float(), True),
)
DRIFT_FEATURE = (
    ("feature", _TEXT, False),
    ("role", _TEXT, False),
    ("column_kind", _TEXT, False),
    ("method", _TEXT, True),
    ("test", _TEXT, True),
    ("statistic", sa.Float(), True),
    ("threshold", sa.Float(), True),
    ("p_value", sa.Float(), True),
    ("adjusted_p_value", sa.Float(), True),
    ("drifted", sa.Boolean(), True),
    ("evidently_drifted", sa.Boolean(), True),
    ("n_current", sa.Integer(), False),
    ("n_reference", sa.Integer(), False),
    ("status", _TEXT, False),
)
QUALITY_SCOPE = (
    ("status", _TEXT, False),
    ("n_rows", sa.Integer(), False),
    ("n_features", sa.Integer(), False),
    ("n_issues", sa.Integer(), False),
    ("has_issues", sa.Boolean(), False),
    ("max_missing_share", sa.Float(), True),
    ("max_out_of_range_share", sa.Float(), True),
)
QUALITY_FEATURE = (
    ("feature", _TEXT, False),
    ("role", _TEXT, False),
    ("column_kind", _TEXT, False),
    ("n_rows", sa.Integer(), False),
    ("n_missing", sa.Integer(), False),
    ("missing_share", sa.Float(), True),
    ("n_invalid", sa.Integer(), False),
    ("n_out_of_range", sa.Integer(), True),
    ("out_of_range_share", sa.Float(), True),
    ("n_new_category_rows", sa.Integer(), True),
    ("n_new_categories", sa.Integer(), True),
    ("new_categories", sa.JSON(), True),
    ("constant", sa.Boolean(), True),
    ("issue", sa.Boolean(), True),
    ("status", _TEXT, False),
)
PERFORMANCE_SCOPE = (
    ("status", _TEXT, False),
    ("task", _TEXT, False),
    ("n_rows", sa.Integer(), False),
    ("n_labelled", sa.Integer(), False),
    ("label_coverage", sa.Float(), True),
    ("accuracy", sa.Float(), True),
    ("precision", sa.Float(), True),
    ("recall", sa.Float(), True),
    ("f1", sa.Float(), True),
    ("roc_auc", sa.Float(), True),
    ("mae", sa.Float(), True),
    ("rmse", sa.Float(), True),
)
PERFORMANCE_FIGURES = (
    "label_coverage",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "mae",
    "rmse",
)


def _light(name: str, columns: list[tuple[str, Any]]) -> sa.TableClause:
    return sa.table(name, *(sa.column(column, type_) for column, type_ in columns))


def _scope_light(name: str, fields: Sequence[tuple[str, Any, bool]]) -> sa.TableClause:
    return _light(name, [(c.name, c.type) for c in _scope_columns(*fields)])


def _feature_light(name: str, fields: Sequence[tuple[str, Any, bool]]) -> sa.TableClause:
    return _light(name, [("scope_id", sa.BigInteger()), *((f[0], f[1]) for f in fields)])


drift_scopes = _scope_light("drift_scopes", DRIFT_SCOPE)
drift_features = _feature_light("drift_features", DRIFT_FEATURE)
quality_scopes = _scope_light("quality_scopes", QUALITY_SCOPE)
quality_features = _feature_light("quality_features", QUALITY_FEATURE)
performance_scopes = _scope_light("performance_scopes", PERFORMANCE_SCOPE)
analysis_runs = _light(
    "analysis_runs",
    [
        ("id", sa.BigInteger()),
        ("model_id", sa.Integer()),
        ("kind", sa.String()),
        ("window_start", _TS),
        ("window_end", _TS),
        ("scope_kind", sa.String()),
        ("scope_key", sa.String()),
        ("node_id", sa.Integer()),
        ("model_version_id", sa.Integer()),
        ("status", sa.String()),
        ("n_rows", sa.Integer()),
        ("n_reference", sa.Integer()),
        ("drifted", sa.Boolean()),
        ("drift_share", sa.Float()),
        ("summary", sa.JSON()),
        ("computed_at", _TS),
    ],
)
feature_results = _light(
    "feature_results",
    [
        ("run_id", sa.BigInteger()),
        ("feature", sa.String()),
        ("method", sa.String()),
        ("statistic", sa.Float()),
        ("threshold", sa.Float()),
        ("p_value", sa.Float()),
        ("drifted", sa.Boolean()),
        ("details", sa.JSON()),
    ],
)
#: Columns every scope row and every old run share, copied as they are.
COMMON = (
    "model_id",
    "window_start",
    "window_end",
    "scope_kind",
    "scope_key",
    "node_id",
    "model_version_id",
    "n_reference",
    "computed_at",
)


# --- Upgrade ----------------------------------------------------------------------------------


def _require_online() -> None:
    # The rows are rewritten in Python (summaries and details are JSON), which a printed SQL
    # script cannot do; printing one that drops the old tables would lose every result.
    if op.get_context().as_sql:
        raise RuntimeError("revision 0004 moves analysis results row by row: run it online")


def upgrade() -> None:
    _require_online()
    # SQLite >= 3.25 and PostgreSQL rename in place: no copy of what may be a large table.
    op.execute("ALTER TABLE labels RENAME COLUMN value TO label")

    _create_scope_table("drift_scopes", *DRIFT_SCOPE)
    _create_scope_table("performance_scopes", *PERFORMANCE_SCOPE)
    _create_scope_table("quality_scopes", *QUALITY_SCOPE)
    _create_feature_table("drift_features", "drift_scopes", *DRIFT_FEATURE)
    _create_feature_table("quality_features", "quality_scopes", *QUALITY_FEATURE)

    conn = op.get_bind()
    _move_runs_to_scopes(conn)
    for table in ("drift_scopes", "quality_scopes", "performance_scopes"):
        _reset_id_sequence(conn, table)

    # Snapshots were only ever made of drift runs; one of any other kind (none is known) would
    # have no drift scope to point at, and a snapshot is a cache the report rebuilds.
    conn.execute(
        sa.text("DELETE FROM analysis_snapshots WHERE run_id NOT IN (SELECT id FROM drift_scopes)")
    )
    # Renamed first: SQLite's batch copy loses a foreign key made on a column it renames.
    op.execute("ALTER TABLE analysis_snapshots RENAME COLUMN run_id TO scope_id")
    with op.batch_alter_table("analysis_snapshots", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_analysis_snapshots_run_id_analysis_runs"), type_="foreignkey"
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_analysis_snapshots_scope_id_drift_scopes"),
            "drift_scopes",
            ["scope_id"],
            ["id"],
            ondelete="CASCADE",
        )

    op.drop_table("feature_results")
    with op.batch_alter_table("analysis_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analysis_runs_node_id_window_start"))
        batch_op.drop_index(batch_op.f("ix_analysis_runs_model_id_kind_scope_kind_window_start"))
    op.drop_table("analysis_runs")


def _move_runs_to_scopes(conn: sa.Connection) -> None:
    """Every old run becomes a row of its kind's scope table with the same id, so that feature
    rows and snapshots keep their links; its feature results become feature rows."""
    for runs in _chunks(conn, analysis_runs, analysis_runs.c.id):
        features = _features_of(conn, [run["id"] for run in runs])
        by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        drift_rows: list[dict[str, Any]] = []
        quality_rows: list[dict[str, Any]] = []
        for run in runs:
            rows = features.get(run["id"], [])
            if run["kind"] == "drift":
                by_kind["drift"].append(_drift_scope(run, rows))
                drift_rows.extend(_drift_feature(run, row) for row in rows)
            elif run["kind"] == "quality":
                scope, feature_rows = _quality_scope(run, rows)
                by_kind["quality"].append(scope)
                quality_rows.extend(feature_rows)
            elif run["kind"] == "performance":
                by_kind["performance"].append(_performance_scope(run))
            # No other kind was ever written.
        for kind, table in (
            ("drift", drift_scopes),
            ("quality", quality_scopes),
            ("performance", performance_scopes),
        ):
            if by_kind[kind]:
                conn.execute(table.insert(), by_kind[kind])
        if drift_rows:
            conn.execute(drift_features.insert(), drift_rows)
        if quality_rows:
            conn.execute(quality_features.insert(), quality_rows)


def _chunks(
    conn: sa.Connection, table: sa.TableClause, key: sa.ColumnClause[Any]
) -> Iterator[list[dict[str, Any]]]:
    """A table's rows in key order, CHUNK at a time (keyset pagination: no open cursor while
    the caller writes)."""
    last: Any = None
    while True:
        query = sa.select(table).order_by(key).limit(CHUNK)
        if last is not None:
            query = query.where(key > last)
        rows = [dict(row) for row in conn.execute(query).mappings()]
        if not rows:
            return
        yield rows
        last = rows[-1][key.name]


def _features_of(conn: sa.Connection, run_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    query = (
        sa.select(feature_results)
        .where(feature_results.c.run_id.in_(run_ids))
        .order_by(feature_results.c.run_id, feature_results.c.feature)
    )
    for row in conn.execute(query).mappings():
        found[row["run_id"]].append(dict(row))
    return found


def _common(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in COMMON}


def _drift_scope(run: dict[str, Any], features: list[dict[str, Any]]) -> dict[str, Any]:
    summary = run["summary"] or {}
    n_features = summary.get("n_features")
    if n_features is None:
        n_features = sum(f["drifted"] is not None for f in features)
    n_drifted = summary.get("n_drifted")
    if n_drifted is None:
        n_drifted = sum(bool(f["drifted"]) for f in features)
    return {
        "id": run["id"],
        **_common(run),
        "status": run["status"],
        "n_rows": run["n_rows"],
        "n_features": n_features,
        "n_drifted": n_drifted,
        "share_drifted": run["drift_share"],
        # The scope's verdict is now "any feature drifted"; the old column held Evidently's
        # dataset drift (share of drifted features >= 0.5), which the share still gives.
        "drifted": n_drifted > 0 if n_features else None,
        "prediction_drifted": summary.get("prediction_drifted"),
        "evidently_share_drifted": summary.get("evidently_share_drifted"),
    }


def _drift_feature(run: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    details = row["details"] or {}
    method, test = row["method"], details.get("test")
    # Old rows did not record the column's kind. Best effort: Evidently applies wasserstein
    # and ks only to numerical columns (and the KS test only to them); every other method
    # (jensenshannon, chisquare, z) is taken as categorical, as is a missing column's row.
    numerical = method in _NUMERICAL_METHODS or test in _NUMERICAL_TESTS
    return {
        "scope_id": row["run_id"],
        "feature": row["feature"],
        "role": details.get("role") or "feature",
        "column_kind": "numerical" if numerical else "categorical",
        "method": method,
        "test": test,
        "statistic": row["statistic"],
        "threshold": row["threshold"],
        # The old p_value column held the Benjamini-Hochberg adjusted p-value, details the raw.
        "p_value": details.get("p_raw"),
        "adjusted_p_value": row["p_value"],
        "drifted": row["drifted"],
        "evidently_drifted": details.get("evidently_drifted"),
        "n_current": details.get("n_current") or 0,
        "n_reference": run["n_reference"] or 0,
        "status": details.get("status") or "ok",
    }


def _quality_scope(
    run: dict[str, Any], features: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    summary = run["summary"] or {}
    problems = set(summary.get("features_with_problems") or [])
    n_rows = run["n_rows"]
    rows = {
        f["feature"]: _quality_feature(run["id"], n_rows, f, f["feature"] in problems)
        for f in features
    }
    # Schema issues were a list in the fleet run's summary; they are now the status of the
    # fleet's feature rows, an unexpected column a fleet row of its own.
    for item in summary.get("schema") or []:
        feature, issue = item.get("feature"), item.get("issue")
        if issue not in _SCHEMA_STATUSES or not feature:
            continue
        if issue == "unexpected_column":
            rows.setdefault(feature, _unexpected_column(run["id"], n_rows, feature, item))
        elif feature in rows:
            rows[feature]["status"] = issue
            if item.get("expected"):
                rows[feature]["column_kind"] = str(item["expected"])[:160]
            if issue == "missing_column":
                rows[feature]["issue"] = None
    judged = [
        r for r in rows.values() if r["status"] not in ("missing_column", "unexpected_column")
    ]
    n_issues = len(problems)
    scope = {
        "id": run["id"],
        **_common(run),
        "status": run["status"],
        "n_rows": n_rows,
        "n_features": len(judged),
        "n_issues": n_issues,
        "has_issues": bool(summary.get("has_issues", n_issues > 0)),
        "max_missing_share": summary.get("max_missing_share"),
        "max_out_of_range_share": summary.get("max_out_of_range_share"),
    }
    return scope, list(rows.values())


def _quality_feature(
    scope_id: int, n_rows: int, row: dict[str, Any], issue: bool
) -> dict[str, Any]:
    details = row["details"] or {}
    missing_share = details.get("missing_share")
    out_share = details.get("out_of_range_share")
    n_invalid = details.get("n_invalid") or 0
    n_missing = round(missing_share * n_rows) if missing_share is not None else 0
    # The old share was of the present (neither missing nor invalid) values.
    present = max(n_rows - n_missing - n_invalid, 0)
    new_categories = details.get("new_categories") or None
    new_rows = details.get("n_new_category_rows")
    return {
        "scope_id": scope_id,
        "feature": row["feature"],
        # Old rows recorded neither role nor status: every profiled column was a feature.
        "role": "feature",
        # Only numerical columns have a range; only categorical ones new categories.
        "column_kind": "numerical" if out_share is not None else "categorical",
        "n_rows": n_rows,
        "n_missing": n_missing,
        "missing_share": missing_share,
        "n_invalid": n_invalid,
        "n_out_of_range": round(out_share * present) if out_share is not None else None,
        "out_of_range_share": out_share,
        "n_new_category_rows": new_rows,
        # The old list was capped at the most frequent categories: a lower bound.
        "n_new_categories": None if new_rows is None else len(new_categories or {}),
        "new_categories": new_categories,
        "constant": details.get("constant"),
        "issue": issue,
        "status": "ok",
    }


def _unexpected_column(
    scope_id: int, n_rows: int, feature: str, item: dict[str, Any]
) -> dict[str, Any]:
    return {
        "scope_id": scope_id,
        "feature": feature,
        "role": "feature",
        "column_kind": str(item.get("actual") or "unknown")[:160],
        "n_rows": n_rows,
        "n_missing": 0,
        "missing_share": None,
        "n_invalid": 0,
        "n_out_of_range": None,
        "out_of_range_share": None,
        "n_new_category_rows": None,
        "n_new_categories": None,
        "new_categories": None,
        "constant": None,
        "issue": None,
        "status": "unexpected_column",
    }


def _performance_scope(run: dict[str, Any]) -> dict[str, Any]:
    summary = run["summary"] or {}
    figures = {name: summary.get(name) for name in PERFORMANCE_FIGURES}
    regression = figures["mae"] is not None or figures["rmse"] is not None
    return {
        "id": run["id"],
        **_common(run),
        "status": run["status"],
        "task": summary.get("task") or ("regression" if regression else "classification"),
        "n_rows": run["n_rows"],
        "n_labelled": summary.get("n_labelled") or 0,
        **figures,
    }


def _reset_id_sequence(conn: sa.Connection, table: str) -> None:
    """After rows were inserted with explicit ids, PostgreSQL's sequence must continue after
    them (SQLite's rowid does by itself)."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(
        sa.text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
        )
    )


# --- Downgrade --------------------------------------------------------------------------------


def downgrade() -> None:
    _require_online()
    _create_old_tables()
    conn = op.get_bind()
    _move_scopes_to_runs(conn)
    _reset_id_sequence(conn, "analysis_runs")

    # Renamed first: SQLite's batch copy loses a foreign key made on a column it renames.
    op.execute("ALTER TABLE analysis_snapshots RENAME COLUMN scope_id TO run_id")
    with op.batch_alter_table("analysis_snapshots", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_analysis_snapshots_scope_id_drift_scopes"), type_="foreignkey"
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_analysis_snapshots_run_id_analysis_runs"),
            "analysis_runs",
            ["run_id"],
            ["id"],
            ondelete="CASCADE",
        )

    op.drop_table("quality_features")
    op.drop_table("drift_features")
    _drop_scope_table("quality_scopes")
    _drop_scope_table("performance_scopes")
    _drop_scope_table("drift_scopes")
    op.execute("ALTER TABLE labels RENAME COLUMN label TO value")


def _create_old_tables() -> None:
    """analysis_runs and feature_results exactly as revision 0003 made them."""
    op.create_table(
        "analysis_runs",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("window_start", _TS, nullable=False),
        sa.Column("window_end", _TS, nullable=False),
        sa.Column("scope_kind", sa.String(length=8), nullable=False),
        sa.Column("scope_key", sa.String(length=128), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("n_reference", sa.Integer(), nullable=True),
        sa.Column("drifted", sa.Boolean(), nullable=True),
        sa.Column("drift_share", sa.Float(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("computed_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_analysis_runs_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_analysis_runs_model_version_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_analysis_runs_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis_runs")),
        sa.UniqueConstraint(
            "model_id",
            "kind",
            "window_start",
            "scope_kind",
            "scope_key",
            name=op.f("uq_analysis_runs_model_id_kind_window_start_scope_kind_scope_key"),
        ),
    )
    with op.batch_alter_table("analysis_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_analysis_runs_model_id_kind_scope_kind_window_start"),
            ["model_id", "kind", "scope_kind", "window_start"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_analysis_runs_node_id_window_start"),
            ["node_id", "window_start"],
            unique=False,
        )
    op.create_table(
        "feature_results",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("feature", sa.String(length=160), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("drifted", sa.Boolean(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["analysis_runs.id"],
            name=op.f("fk_feature_results_run_id_analysis_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "feature", name=op.f("pk_feature_results")),
    )


def _move_scopes_to_runs(conn: sa.Connection) -> None:
    """Scope rows become runs and feature rows feature results. Drift scopes keep their ids
    (snapshots point at them); each scope table numbers its rows on its own, so a quality or
    performance id already taken is shifted, with all of its table's ids, above every run id."""
    kinds = (
        ("drift", drift_scopes, drift_features, _drift_run),
        ("quality", quality_scopes, quality_features, _quality_run),
        ("performance", performance_scopes, None, _performance_run),
    )
    for kind, scopes, features, to_run in kinds:
        offset = _id_offset(conn, scopes.name)
        for chunk in _chunks(conn, scopes, scopes.c.id):
            rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
            if features is not None:
                query = (
                    sa.select(features)
                    .where(features.c.scope_id.in_([scope["id"] for scope in chunk]))
                    .order_by(features.c.scope_id, features.c.feature)
                )
                for row in conn.execute(query).mappings():
                    rows[row["scope_id"]].append(dict(row))
            runs, results = [], []
            for scope in chunk:
                run, feature_rows = to_run(scope, rows.get(scope["id"], []))
                run_id = scope["id"] + offset
                runs.append({"id": run_id, "kind": kind, **_common(scope), **run})
                results.extend({"run_id": run_id, **row} for row in feature_rows)
            conn.execute(analysis_runs.insert(), runs)
            if results:
                conn.execute(feature_results.insert(), results)


def _id_offset(conn: sa.Connection, table: str) -> int:
    clash = conn.execute(
        sa.text(f"SELECT 1 FROM {table} s JOIN analysis_runs r ON r.id = s.id LIMIT 1")
    ).first()
    if clash is None:
        return 0
    return int(conn.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM analysis_runs")).scalar_one())


Run = tuple[dict[str, Any], list[dict[str, Any]]]


def _drift_run(scope: dict[str, Any], features: list[dict[str, Any]]) -> Run:
    share = scope["share_drifted"]
    run = {
        "status": scope["status"],
        "n_rows": scope["n_rows"],
        # The old verdict was Evidently's dataset drift at its default share.
        "drifted": None if share is None else share >= _OLD_DATASET_DRIFT_SHARE,
        "drift_share": share,
        "summary": {
            "n_features": scope["n_features"],
            "n_drifted": scope["n_drifted"],
            "prediction_drifted": scope["prediction_drifted"],
            "evidently_share_drifted": scope["evidently_share_drifted"],
            "drifted_features": sorted(f["feature"] for f in features if f["drifted"]),
        },
    }
    results = [
        {
            "feature": f["feature"],
            "method": f["method"],
            "statistic": f["statistic"],
            "threshold": f["threshold"],
            "p_value": f["adjusted_p_value"],
            "drifted": f["drifted"],
            "details": {
                "role": f["role"],
                "p_raw": f["p_value"],
                "test": f["test"],
                "evidently_drifted": f["evidently_drifted"],
                "n_current": f["n_current"],
                "status": f["status"],
            },
        }
        for f in features
    ]
    return run, results


def _quality_run(scope: dict[str, Any], features: list[dict[str, Any]]) -> Run:
    schema = [
        {
            "feature": f["feature"],
            "issue": f["status"],
            "expected": None if f["status"] == "unexpected_column" else f["column_kind"],
            # A retyped column's actual type was not kept by the new schema.
            "actual": f["column_kind"] if f["status"] == "unexpected_column" else None,
        }
        for f in sorted(features, key=lambda f: (f["status"] == "unexpected_column", f["feature"]))
        if f["status"] in _SCHEMA_STATUSES
    ]
    run = {
        "status": scope["status"],
        "n_rows": scope["n_rows"],
        "drifted": None,
        "drift_share": None,
        "summary": {
            "features_with_problems": sorted(f["feature"] for f in features if f["issue"]),
            "max_missing_share": scope["max_missing_share"] or 0.0,
            "max_out_of_range_share": scope["max_out_of_range_share"] or 0.0,
            "schema": schema if scope["scope_kind"] == "fleet" else [],
        },
    }
    results = [
        {
            "feature": f["feature"],
            "method": None,
            "statistic": None,
            "threshold": None,
            "p_value": None,
            "drifted": None,
            "details": {
                "missing_share": f["missing_share"],
                "n_invalid": f["n_invalid"],
                "out_of_range_share": f["out_of_range_share"],
                "n_new_category_rows": f["n_new_category_rows"],
                "new_categories": f["new_categories"] or {},
                "constant": f["constant"],
            },
        }
        # An unexpected column had no feature result, only its entry in the schema list.
        for f in features
        if f["status"] != "unexpected_column"
    ]
    return run, results


def _performance_run(scope: dict[str, Any], _features: list[dict[str, Any]]) -> Run:
    run = {
        "status": scope["status"],
        "n_rows": scope["n_rows"],
        "drifted": None,
        "drift_share": None,
        "summary": {
            "n_labelled": scope["n_labelled"],
            **{name: scope[name] for name in PERFORMANCE_FIGURES},
        },
    }
    return run, []
