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
    Text,
    Unicode,
    UniqueConstraint,
    true,
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
    sql_type = Text if field.name in _SENTENCES else _SQL_TYPES[field.type]
    return Column(field.name, sql_type, nullable=field.nullable)


#: Result fields that hold a sentence for a person, not a name or a code: unbounded text.
_SENTENCES = frozenset({"trust_reason"})


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
estimation_scopes = _scope_table("estimation_scopes", schema.EstimationScope)
multivariate_scopes = _scope_table("multivariate_scopes", schema.MultivariateScope)

#: Per result kind: its scope table and its feature table (None: results per scope only).
RESULT_TABLES: dict[str, tuple[Table, Table | None]] = {
    schema.DRIFT: (drift_scopes, drift_features),
    schema.QUALITY: (quality_scopes, quality_features),
    schema.PERFORMANCE: (performance_scopes, None),
    schema.ESTIMATION: (estimation_scopes, None),
    schema.MULTIVARIATE: (multivariate_scopes, None),
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

# --- Alerts, webhooks, retraining ------------------------------------------------------------

# Alert rules: from a rules file (``alerts apply``), the CLI or the admin API. ``kind`` names what
# is judged (see monitor.alerts.rules), ``params`` its figures; ``scope`` is fleet, site, group,
# node or each_node, narrowed by ``scope_key``; ``group_by`` folds subjects into one alert.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    # None: every model (node rules such as offline or clock skew).
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE")),
    Column("kind", String(32), nullable=False),
    Column("params", JSON, nullable=False),
    Column("scope", String(16), nullable=False),
    Column("scope_key", String(128)),
    Column("group_by", String(16)),
    Column("fire_m", Integer, nullable=False, server_default="1"),
    Column("fire_n", Integer, nullable=False, server_default="1"),
    Column("resolve_m", Integer, nullable=False, server_default="1"),
    Column("resolve_n", Integer, nullable=False, server_default="1"),
    Column("cooldown_seconds", Integer, nullable=False, server_default="0"),
    Column("severity", String(16), nullable=False, server_default="warning"),
    # Webhook endpoints to notify by name (None: every enabled endpoint) and retrain hooks to
    # start when the rule fires.
    Column("endpoints", JSON),
    Column("hooks", JSON, nullable=False, default=list),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    # "file" (kept in step with the rules file by ``alerts apply``), "cli" or "api".
    Column("source", String(16), nullable=False, server_default="api"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# What a rule saw of one subject (a scope, or a node) in one window: only breaches and what an
# open or pending alert needs are written; no row for a window the rule judged means "clear".
alert_observations = Table(
    "alert_observations",
    metadata,
    Column("rule_id", Integer, ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("window_end", UTCDateTime, nullable=False),
    # "breach", "clear" or "unknown" (too little evidence either way).
    Column("state", String(8), nullable=False),
    Column("value", Float),
    Column("bound", Float),
    Column("details", JSON, nullable=False),
    Column("observed_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("rule_id", "subject", "window_start"),
)

# The windows (or health ticks) each rule has judged: with the observations, the M-of-N memory.
alert_evaluations = Table(
    "alert_evaluations",
    metadata,
    Column("rule_id", Integer, ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE")),
    Column("window_start", UTCDateTime, nullable=False),
    Column("window_end", UTCDateTime, nullable=False),
    Column("evaluated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("rule_id", "window_start"),
)

# An alert: one rule's trouble in one group (a scope, a site, or the fleet), firing until resolved.
alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("rule_id", Integer, ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE")),
    Column("group_key", String(300), nullable=False),
    # Alerts of one (rule, group) are numbered: at most one is open, and a second worker that
    # would open the same one collides on the number.
    Column("episode", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("summary", String(2000), nullable=False),
    # The subjects in trouble now (and those that were, with when they recovered).
    Column("subjects", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    Column("first_window_start", UTCDateTime),
    Column("last_window_start", UTCDateTime),
    Column("fired_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    UniqueConstraint("rule_id", "group_key", "episode"),
    CheckConstraint("state IN ('firing', 'resolved')", name="state"),
    Index(None, "state", "fired_at"),
)

# Each transition of an alert (fired, updated as subjects join or leave, resolved): what is
# notified. ``message_id`` is the Standard Webhooks ``webhook-id``: one per transition, stable
# across retries and endpoints, so receivers can deduplicate.
alert_events = Table(
    "alert_events",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("alert_id", BigInteger, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("message_id", String(64), nullable=False, unique=True),
    Column("window_start", UTCDateTime),
    Column("payload", JSON, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    UniqueConstraint("alert_id", "seq"),
)

# Where notifications go: a URL with its own signing secret (``whsec_`` + base64).
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("url", String(2000), nullable=False),
    Column("secret", String(200), nullable=False),
    Column("description", String(1000), nullable=False, server_default=""),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("disabled_reason", String(300)),
    # Since when every delivery to it has failed (None: its last one succeeded).
    Column("failing_since", UTCDateTime),
    Column("source", String(16), nullable=False, server_default="api"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The outbox: one message for one endpoint, written in the transaction that caused it and sent
# by the delivery job until delivered or given up. The body is kept as the exact bytes signed.
webhook_messages = Table(
    "webhook_messages",
    metadata,
    Column("id", BigId, primary_key=True),
    Column(
        "endpoint_id",
        Integer,
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("message_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("event_id", BigInteger, ForeignKey("alert_events.id", ondelete="SET NULL")),
    # pending, delivering, delivered, failed (gave up) or dropped (its endpoint was disabled).
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("claimed_by", String(128)),
    Column("claimed_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    Column("last_error", String(1000)),
    UniqueConstraint("endpoint_id", "message_id"),
    Index(None, "status", "next_attempt_at"),
)

# Every delivery attempt, for the delivery log.
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigId, primary_key=True),
    Column(
        "message_id",
        BigInteger,
        ForeignKey("webhook_messages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("status_code", Integer),
    Column("error", String(1000)),
    Column("duration_ms", Float, nullable=False),
    Column("retry_after_seconds", Float),
    Index(None, "message_id", "attempt"),
)

# Retraining hooks: what to start when a rule fires (or by hand): a signed webhook to a
# pipeline, a command, a Python entry point, or the bundled reference retrainer.
retrain_hooks = Table(
    "retrain_hooks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    # webhook, command, python or reference.
    Column("kind", String(16), nullable=False),
    Column("config", JSON, nullable=False),
    Column("timeout_seconds", Float, nullable=False),
    Column("cooldown_seconds", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("source", String(16), nullable=False, server_default="api"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Every retrain: what started it, how it went, what it produced, and the promotion that followed
# (gate figures, canary, rollout or rollback in ``details``).
retrain_runs = Table(
    "retrain_runs",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("hook_id", Integer, ForeignKey("retrain_hooks.id", ondelete="SET NULL")),
    Column("alert_id", BigInteger, ForeignKey("alerts.id", ondelete="SET NULL")),
    # "alert" or "manual".
    Column("trigger", String(16), nullable=False),
    # queued, running, failed, timed_out, produced, gated, canary, promoted, rolled_back.
    Column("status", String(16), nullable=False),
    Column("version", String(128)),
    Column("output", String(20000), nullable=False, server_default=""),
    Column("details", JSON, nullable=False),
    Column("claimed_by", String(128)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "model_id", "created_at"),
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
