"""The SQL schema: every table of the service, with one naming convention for constraints."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Unicode,
    UniqueConstraint,
)

from monitor import schema
from monitor.storage.types import BigId, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

nodes = Table(
    "nodes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("group_name", String(128)),
    Column("site", String(128)),
    Column("tags", JSON, nullable=False, default=dict),
    # sha256 of the token: tokens carry >= 256 random bits, so a fast hash is enough.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("token_hint", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Column("last_seen_at", UTCDateTime),
    Column("last_heartbeat_at", UTCDateTime),
    # "node": an edge node, which sends records, labels its own records and fetches the models
    # it is registered for; "labeller": a back-office system whose labels apply to any node's
    # records and which sends nothing else.
    Column("role", String(16), nullable=False, server_default="node"),
    # The last implausible record time the node sent (a clock never set, or days fast): how far
    # off it was (device time minus received time) and when it was seen.
    Column("clock_skew_seconds", Float),
    Column("clock_skew_at", UTCDateTime),
    CheckConstraint("role IN ('node', 'labeller')", name="role"),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", String(1000), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    # How the model's records are cut into analysis windows (None: the settings' default);
    # see monitor.jobs.windows for its JSON form.
    Column("window_policy", JSON),
    # What each node (or site) is judged against when the fleet differs by design (None: the
    # version's reference for every scope); see monitor.jobs.baselines for its JSON form.
    Column("baseline", JSON),
)

# A version is created either by registration (with its ONNX artifact, model card and
# reference data) or the first time a node reports records for it (without them).
model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("stage", String(16), nullable=False, server_default="candidate"),
    Column("artifact", LargeBinary),
    Column("sha256", String(64)),
    Column("size", BigInteger),
    Column("card", JSON),
    # The reference dataset as Parquet bytes: what drift is measured against.
    Column("reference", LargeBinary),
    Column("reference_rows", Integer),
    Column("metrics", JSON),
    # The version's data schema (features and their kinds, prediction, probability and label
    # columns, task, classes): from the card, or inferred from a reference-only registration.
    Column("schema", JSON),
    Column("registered_at", UTCDateTime),
    Column("promoted_at", UTCDateTime),
    UniqueConstraint("model_id", "version"),
    CheckConstraint("stage IN ('candidate', 'production', 'archived')", name="stage"),
)

# The models a node is registered for: it may read their assignment and download their
# artifacts (a group pin for the node's group grants the pinned model as well).
node_models = Table(
    "node_models",
    metadata,
    Column("node_id", Integer, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("node_id", "model_id"),
)

# Which version each node of a model should run: production for everyone, a canary version
# for a deterministic share of the nodes, and pins for whole node groups.
deployments = Table(
    "deployments",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("production_version_id", Integer, ForeignKey("model_versions.id")),
    # What production was before the last promotion: the target of a rollback.
    Column("previous_version_id", Integer, ForeignKey("model_versions.id")),
    Column("canary_version_id", Integer, ForeignKey("model_versions.id")),
    Column("canary_share", Float, nullable=False, server_default="0"),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("canary_share >= 0 AND canary_share <= 1", name="canary_share"),
)

deployment_pins = Table(
    "deployment_pins",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("group_name", String(128), nullable=False),
    Column("version_id", Integer, ForeignKey("model_versions.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model_id", "group_name"),
)

# Every change to a model's rollout, for the record and for the dashboard's rollout history.
rollout_events = Table(
    "rollout_events",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("action", String(32), nullable=False),
    Column("version_id", Integer, ForeignKey("model_versions.id", ondelete="SET NULL")),
    Column("details", JSON, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index(None, "model_id", "at"),
)

# One row per accepted batch: who sent it, when, the time span of its records, and the new
# (non-duplicate) records themselves as one columnar Arrow IPC payload. Windows are loaded from
# these payloads, never row by row.
batches = Table(
    "batches",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("node_id", Integer, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column(
        "model_version_id",
        Integer,
        ForeignKey("model_versions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("batch_uid", String(128)),
    Column("received_at", UTCDateTime, nullable=False),
    Column("min_ts", UTCDateTime, nullable=False),
    Column("max_ts", UTCDateTime, nullable=False),
    Column("n_records", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Index(None, "model_id", "max_ts"),
    Index(None, "model_id", "node_id", "max_ts"),
    Index(None, "received_at"),
)

# The thin per-record index: identity (deduplication per node), where the record's values are
# (row ``pos`` of its batch's payload), and the request id that labels join on.
records = Table(
    "records",
    metadata,
    Column("batch_id", BigInteger, ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    Column("pos", Integer, nullable=False),
    Column("node_id", Integer, nullable=False),
    Column("uid", String(128), nullable=False),
    Column("model_id", Integer, nullable=False),
    Column("request_id", String(128), nullable=False),
    PrimaryKeyConstraint("batch_id", "pos"),
    UniqueConstraint("node_id", "uid"),
    Index(None, "model_id", "request_id"),
)

labels = Table(
    "labels",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("label", JSON, nullable=False),
    # The node whose record this labels: a node labels only its own records, so one node can
    # never overwrite another's labels. 0 (ANY_NODE, not a node id, hence no foreign key) is a
    # back-office label, which applies to any node's record of that request id.
    Column("node_id", Integer, nullable=False, server_default="0"),
    Column("ts", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("model_id", "request_id", "node_id"),
)

node_heartbeats = Table(
    "node_heartbeats",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("node_id", Integer, ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("model_version_id", Integer, ForeignKey("model_versions.id", ondelete="SET NULL")),
    Column("sdk", JSON, nullable=False),
    Column("runtime", JSON),
    Index(None, "node_id", "received_at"),
)

# --- Scheduled analysis -----------------------------------------------------------------------

# Results are declared once, in monitor.schema; each result table's columns come from its row
# type there. A scope table has one row per (model, window, scope) of its kind; a feature table
# one row per feature of a scope row.


def _result_column(field: schema.Field) -> Column[Any]:
    return Column(field.name, _SQL_TYPES[field.type], nullable=field.nullable)


_SQL_TYPES: dict[type, Any] = {
    str: String(160),
    int: Integer,
    float: Float,
    bool: Boolean,
    dict: JSON,
}


def _scope_table(name: str, row_type: type) -> Table:
    return Table(
        name,
        metadata,
        Column("id", BigId, primary_key=True),
        Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        Column("window_start", UTCDateTime, nullable=False),
        Column("window_end", UTCDateTime, nullable=False),
        Column("node_id", Integer, ForeignKey("nodes.id", ondelete="CASCADE")),
        # The version whose reference data the window was compared with.
        Column("model_version_id", Integer, ForeignKey("model_versions.id", ondelete="SET NULL")),
        Column("n_reference", Integer),
        Column("computed_at", UTCDateTime, nullable=False),
        # 1 for the first analysis of the window; each re-analysis (records or labels that
        # arrived after it) stores the next revision, with how many rows arrived late.
        Column("revision", Integer, nullable=False, server_default="1"),
        Column("n_late", Integer, nullable=False, server_default="0"),
        # A small scope judged on consecutive windows pooled: where its span starts (None: this
        # window alone).
        Column("span_start", UTCDateTime),
        # Which reference the scope was judged against: "version <name>" or a baseline's name.
        Column("reference", String(160)),
        *(_result_column(f) for f in schema.fields_of(row_type)),
        UniqueConstraint("model_id", "window_start", "scope_kind", "scope_key"),
        Index(None, "model_id", "scope_kind", "window_start"),
        Index(None, "node_id", "window_start"),
    )


def _feature_table(name: str, scopes: Table, row_type: type) -> Table:
    return Table(
        name,
        metadata,
        Column(
            "scope_id",
            BigInteger,
            ForeignKey(f"{scopes.name}.id", ondelete="CASCADE"),
            nullable=False,
        ),
        # The scope's kind and key are its scope row's.
        *(
            _result_column(f)
            for f in schema.fields_of(row_type)
            if f.name not in ("scope_kind", "scope_key")
        ),
        PrimaryKeyConstraint("scope_id", "feature"),
    )


drift_scopes = _scope_table("drift_scopes", schema.DriftScope)
drift_features = _feature_table("drift_features", drift_scopes, schema.DriftFeature)
quality_scopes = _scope_table("quality_scopes", schema.QualityScope)
quality_features = _feature_table("quality_features", quality_scopes, schema.QualityFeature)
performance_scopes = _scope_table("performance_scopes", schema.PerformanceScope)

#: Per result kind: its scope table and its feature table (None: results per scope only).
RESULT_TABLES: dict[str, tuple[Table, Table | None]] = {
    schema.DRIFT: (drift_scopes, drift_features),
    schema.QUALITY: (quality_scopes, quality_features),
    schema.PERFORMANCE: (performance_scopes, None),
}

# The windows of a model whose policy counts rows: each is cut once, when enough records have
# arrived, so that its bounds never move when later records land.
row_windows = Table(
    "row_windows",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("window_end", UTCDateTime, nullable=False),
    Column("n_rows", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model_id", "window_start"),
)

# Evidently's snapshot of a window's fleet-wide drift (on a sample), made when a report is first
# asked for and kept so that the next one renders at once; re-analysing the window drops it.
analysis_snapshots = Table(
    "analysis_snapshots",
    metadata,
    Column(
        "scope_id", BigInteger, ForeignKey("drift_scopes.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("snapshot", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Leases make each unit of scheduled work run once however many workers run: a worker claims a
# key until expires_at; a crashed worker's lease expires and another worker takes it over.
job_leases = Table(
    "job_leases",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    Column("attempts", Integer, nullable=False),
)

# The current health of every node, refreshed by the worker from heartbeats.
node_health = Table(
    "node_health",
    metadata,
    Column("node_id", Integer, ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("checked_at", UTCDateTime, nullable=False),
    Column("last_heartbeat_at", UTCDateTime),
    Column("model_version", String(128)),
    Column("dropped", JSON, nullable=False),
    Column("spool_records", BigInteger),
    Column("queue_depth", BigInteger),
    Column("latency_p95_ms", Float),
    Column("errors", BigInteger),
    Column("details", JSON, nullable=False),
)

# APScheduler's job store, declared here so that migrations create it and autogenerate knows
# it; the columns are exactly those of apscheduler.jobstores.sqlalchemy.SQLAlchemyJobStore.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
