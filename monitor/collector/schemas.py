"""The collector's bodies and answers as pydantic models: what /openapi.json describes.

Documentation only for the ingest routes: records, labels and heartbeats are read as raw bytes
within the body budget and checked by ``validation`` (the fast path, which rejects one bad
record without its batch); these models say the same rules (``monitor.wire``'s) as JSON Schema,
so that a client generator and a reader of /docs see what the collector accepts. Rules a JSON
Schema cannot say (a time at most a day ahead of the collector's clock, an integer within
+-2**53 where floats are welcome, the total size of heartbeat telemetry) are in descriptions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from monitor import schema as result_schema
from monitor import wire

#: ``wire.NAME_PATTERN`` as ECMA-262 (JSON Schema's dialect): ``$`` there ends the input, which
#: is what Python's ``\Z`` says.
NAME_JSON_PATTERN = wire.NAME_PATTERN.removesuffix(r"\Z") + "$"
#: Text holds no NUL (PostgreSQL cannot store one); the parser refuses one with 422.
TEXT_PATTERN = r"^[^\u0000]*$"

_NUMBER_RULE = (
    f"integers within +-2**53 ({wire.MAX_SAFE_INTEGER:,}): every value is analysed as a float64; "
    "send a larger integer (an id) as a string"
)
_TS_RULE = (
    "seconds since the Unix epoch (UTC); a time before 2000-01-01 or more than one day ahead "
    "of the collector is a wrong clock, not refused: the time it arrives is used instead "
    "(a record keeps its own as `device_ts` and its node shows clock skew)"
)

#: A model or node name: it appears in URL paths.
Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=wire.MAX_ID_CHARS,
        pattern=NAME_JSON_PATTERN,
        description=f"letters, digits and _.-:@, at most {wire.MAX_ID_CHARS} characters",
    ),
]
#: A record id, request id or model version: 1..MAX_ID_CHARS of text.
Id = Annotated[str, Field(min_length=1, max_length=wire.MAX_ID_CHARS, pattern=TEXT_PATTERN)]
#: A feature or class name (an object's key: JSON Schema bounds it by ``propertyNames``).
Key = Annotated[str, Field(min_length=1, max_length=wire.MAX_ID_CHARS)]
Time = Annotated[float, Field(description=_TS_RULE)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
#: A prediction or a label.
Scalar = Annotated[
    float | str | bool, Field(description=f"a number, text or boolean; {_NUMBER_RULE}")
]
FeatureValue = Annotated[
    float | str | bool | None,
    Field(description=f"a number, text, boolean or null; {_NUMBER_RULE}"),
]


# --- records -------------------------------------------------------------------------------

EXAMPLE_RECORD: dict[str, Any] = {
    "id": "0193a1f2c3d47e8f9a0b1c2d3e4f5a6b",
    "ts": 1732530000.125,
    "features": {"temperature": 71.5, "rpm": 1450, "machine_type": "press"},
    "prediction": "ok",
    "probabilities": {"ok": 0.9, "fail": 0.1},
    "latency_ms": 1.8,
}


class Record(BaseModel):
    """One prediction. A record that breaks a rule is rejected alone (listed in the answer's
    ``rejected``); the others of its batch are stored."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_RECORD]})

    id: Id = Field(
        description="the record id: chosen by the SDK (UUIDv7 as 32 hex digits); a record is "
        "stored at most once per node, however often it is sent"
    )
    request_id: Id | None = Field(
        default=None, description="what labels name; default: the record id"
    )
    ts: Time
    features: Annotated[dict[Key, FeatureValue], Field(max_length=wire.MAX_FEATURES)] = Field(
        description=f"feature name -> value, at most {wire.MAX_FEATURES} features"
    )
    prediction: Scalar
    probabilities: (
        Annotated[dict[Key, Probability], Field(max_length=wire.MAX_CLASSES)]
        | Annotated[list[Probability], Field(max_length=wire.MAX_CLASSES)]
        | None
    ) = Field(
        default=None,
        description=f"class -> probability, or a list of probabilities; at most "
        f"{wire.MAX_CLASSES} classes",
    )
    latency_ms: Annotated[float, Field(ge=0.0)] | None = Field(
        default=None, description="inference time in milliseconds"
    )


class RecordsBody(BaseModel):
    """A batch of records from one node, of one model version (``POST /v1/records``). Send it
    as JSON, optionally with ``Content-Encoding: gzip``; at most 5 MiB on the wire and 20 MiB
    decoded."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "batch_id": "9f1c2b7a0d3e4f5a8b6c7d8e9f0a1b2c",
                    "model": "pump-failure",
                    "model_version": "3",
                    "records": [EXAMPLE_RECORD],
                }
            ]
        }
    )

    batch_id: Annotated[str, Field(max_length=wire.MAX_ID_CHARS, pattern=TEXT_PATTERN)] | None = (
        Field(default=None, description="the SDK's id of this batch (for its logs)")
    )
    model: Name = Field(description="a registered model's name")
    model_version: Id = Field(
        description="the version that made the predictions; an unregistered one is created on "
        "first sight, up to the collector's cap per model"
    )
    records: list[Record] = Field(min_length=1, max_length=wire.MAX_RECORDS_PER_BATCH)


class RejectedRecord(BaseModel):
    """Why one record of a batch was not stored. Final: the SDK never sends it again."""

    index: int = Field(ge=0, description="its position in the batch's records")
    code: str = Field(description="invalid_type, invalid_value, missing_field, out_of_range, ...")
    field: str = Field(description="the field path, e.g. records[7].features.rpm")
    message: str


class RecordsAnswer(BaseModel):
    """What happened to every record of a batch, after the transaction committed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "accepted": 498,
                    "duplicate": 1,
                    "rejected": [
                        {
                            "index": 7,
                            "code": "invalid_type",
                            "field": "records[7].features.rpm",
                            "message": "must be a number, string, boolean or null",
                        }
                    ],
                }
            ]
        }
    )

    accepted: int = Field(ge=0, description="records stored now")
    duplicate: int = Field(ge=0, description="records this node had sent before (not stored again)")
    rejected: list[RejectedRecord]


# --- labels --------------------------------------------------------------------------------


class Label(BaseModel):
    """The ground truth of one earlier prediction, joined to it by request id."""

    request_id: Id
    label: Scalar
    ts: Time | None = Field(default=None, description=f"{_TS_RULE}; default: when it arrives")


class LabelsBody(BaseModel):
    """Labels of one model (``POST /v1/labels``). Any bad label refuses the request, with every
    bad field listed; a later label for the same request replaces the earlier one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "pump-failure",
                    "labels": [{"request_id": "5b0e6f2a9c1d", "label": "fail", "ts": 1732531000.0}],
                }
            ]
        }
    )

    model: Name = Field(description="a registered model's name")
    labels: list[Label] = Field(min_length=1, max_length=wire.MAX_LABELS_PER_REQUEST)


class LabelsAnswer(BaseModel):
    accepted: int = Field(ge=0, description="labels stored (new or replacing earlier ones)")


# --- heartbeats ----------------------------------------------------------------------------

_SDK_NAME: dict[str, Any] = {"minLength": 1, "maxLength": wire.MAX_SDK_NAME_CHARS}


class SdkCounters(BaseModel):
    """The SDK's counters, totals since its process started: e.g. ``logged``, ``enqueued``,
    ``delivered``, ``retries``, ``queue_depth``, ``spool_records``, ``spool_bytes``,
    ``internal_errors``; each a number >= 0, null, or text of at most 64 characters."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "maxProperties": wire.MAX_SDK_KEYS,
            "propertyNames": _SDK_NAME,
            "additionalProperties": {
                "anyOf": [
                    {"type": "number", "minimum": 0},
                    {"type": "string", "maxLength": wire.MAX_SDK_NAME_CHARS},
                    {"type": "null"},
                ]
            },
        },
    )

    dropped: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        default=None,
        description=f"drop reason -> records dropped ({', '.join(wire.DROP_REASONS)})",
        json_schema_extra={"maxProperties": wire.MAX_SDK_KEYS, "propertyNames": _SDK_NAME},
    )


class RuntimeTelemetry(BaseModel):
    """Free-form telemetry of the inference runtime (latency percentiles, errors), within
    bounds: nested at most 3 levels, at most 1,024 entries in all, strings of at most 1,024
    characters, finite numbers, 16 KiB as compact JSON (larger is 413)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"maxProperties": 1024})

    model_version: Id | None = Field(default=None, description="the version it runs")


class HeartbeatBody(BaseModel):
    """A node's health (``POST /v1/heartbeats``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ts": 1732530000.0,
                    "model": "pump-failure",
                    "model_version": "3",
                    "sdk": {
                        "logged": 1200,
                        "enqueued": 130,
                        "delivered": 128,
                        "dropped": {"sampled_out": 1070, "queue_full": 0},
                        "queue_depth": 2,
                        "spool_records": 0,
                        "spool_bytes": 0,
                        "internal_errors": 0,
                    },
                    "runtime": {"model_version": "3", "latency_p95_ms": 4.2, "errors": 0},
                }
            ]
        }
    )

    ts: Time | None = Field(default=None, description=f"{_TS_RULE}; default: when it arrives")
    model: Name | None = None
    model_version: Id | None = None
    sdk: SdkCounters = Field(default_factory=SdkCounters)
    runtime: RuntimeTelemetry | None = None


# --- registry (node side) ------------------------------------------------------------------


class Assignment(BaseModel):
    """The model version this node should run, and why."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "pump-failure",
                    "version": "3",
                    "sha256": "3b4c…",
                    "size": 48213,
                    "reason": "production",
                    "artifact_url": "/v1/models/pump-failure/versions/3/artifact",
                    "card": {"name": "pump-failure", "version": "3"},
                }
            ]
        }
    )

    model: str
    version: str
    sha256: str = Field(description="hex SHA-256 of the ONNX bytes: check the artifact with it")
    size: int = Field(ge=0, description="bytes of the artifact")
    reason: Literal["production", "canary", "pinned"]
    artifact_url: str = Field(description="the artifact's path on this collector")
    card: dict[str, Any] | None = Field(description="the version's model card")


# --- health --------------------------------------------------------------------------------


class Alive(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    revision: str = Field(description="the database's migration revision (the code's head)")


# --- admin ---------------------------------------------------------------------------------


class NodeOut(BaseModel):
    """A registered node, without its token."""

    id: int
    name: str
    group_name: str | None
    site: str | None
    tags: dict[str, Any]
    token_hint: str = Field(description="the token's first characters, to tell tokens apart")
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None
    last_heartbeat_at: datetime | None
    role: Literal["node", "labeller"]


class ListedNode(NodeOut):
    models: list[str] = Field(description="models whose assignment and artifacts it may fetch")


class NewNode(ListedNode):
    token: str = Field(description="the node's token (emn_...): shown only in this answer")


class NodeList(BaseModel):
    nodes: list[ListedNode]


class GrantedNode(NodeOut):
    granted: str = Field(description="the model granted")


class Withdrawn(BaseModel):
    node: str
    model: str
    withdrawn: bool = Field(description="whether the node had the model")


class ModelOut(BaseModel):
    id: int
    name: str
    description: str
    created_at: datetime


class ModelList(BaseModel):
    models: list[ModelOut]


class VersionOut(BaseModel):
    """A model version as the registry knows it (without its artifact and reference data)."""

    id: int
    model_id: int
    version: str
    stage: str = Field(description="candidate, production, archived, or reported (unregistered)")
    sha256: str | None
    size: int | None
    card: dict[str, Any] | None
    reference_rows: int | None
    metrics: dict[str, Any] | None
    created_at: datetime
    registered_at: datetime | None
    promoted_at: datetime | None
    # "schema" is a BaseModel method's name: the field is named otherwise, shown as "schema".
    data_schema: dict[str, Any] | None = Field(
        default=None,
        alias="schema",
        description="the data schema (features and kinds, prediction, probability and label "
        "columns, task, classes): from the card, or of a reference-only registration; null "
        "for versions registered before schemas were kept",
    )


class Deployment(BaseModel):
    """Which versions a model's nodes should run."""

    production: str | None
    previous: str | None
    canary: str | None
    canary_share: float = Field(ge=0.0, le=1.0)
    pins: dict[str, str] = Field(description="node group -> pinned version")


class Rollout(BaseModel):
    deployment: Deployment


class VersionList(BaseModel):
    versions: list[VersionOut]
    deployment: Deployment


class WindowPolicyOut(BaseModel):
    """A model's current window policy (monitor.storage.policies describes the JSON form)."""

    model: str
    kind: Literal["fixed", "calendar", "rows"]
    description: str = Field(description='e.g. "every 15 min", "calendar month in Europe/Berlin"')
    default: bool = Field(description="the settings' default (MONITOR_ANALYSIS_WINDOW_MINUTES)")
    since: datetime | None = Field(
        description="where it took over: the end of the last window analysed before it was "
        "set; null: from the first record"
    )
    policy: dict[str, Any] = Field(
        description='its JSON form: {"kind": "fixed", "minutes": 15, "origin"?: ISO}, '
        '{"kind": "calendar", "unit": "month", "timezone": "Europe/Berlin"} or '
        '{"kind": "rows", "rows": 5000}'
    )


# --- errors --------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """One thing wrong, with the field path of the culprit where a field is at fault."""

    model_config = ConfigDict(extra="allow")

    code: str | None = None
    field: str | None = Field(default=None, description="e.g. records[7].features.rpm, or body")
    message: str | None = None
    index: int | None = Field(default=None, description="the rejected record's position")


class ErrorBody(BaseModel):
    code: str = Field(description="stable, for programs: e.g. invalid_token, rate_limited")
    message: str = Field(description="for people")
    details: list[ErrorDetail] | dict[str, Any] | None = Field(
        description="what is wrong where (a list of field problems), or context"
    )


class ErrorEnvelope(BaseModel):
    """The one error body of the API."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "validation_failed",
                        "message": "model is missing",
                        "details": [
                            {"code": "missing_field", "field": "model", "message": "is missing"}
                        ],
                    }
                }
            ]
        }
    )

    error: ErrorBody


# --- results (the read API) ----------------------------------------------------------------
# The result rows' fields are monitor.schema's dataclasses, so these models are built from
# them: a field added there is documented here without a second list to keep in step.


def _result_fields(row_type: type, *, dropped: tuple[str, ...] = ()) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for f in result_schema.fields_of(row_type):
        if f.name in ("scope_kind", "scope_key", *dropped):
            continue
        kind: Any = dict[str, Any] if f.type is dict else f.type
        fields[f.name] = (kind | None if f.nullable else kind, ...)
    return fields


#: What every stored scope row says besides its result: which analysis, against what.
_STORED_FIELDS: dict[str, Any] = {
    "model_version": (
        str | None,
        Field(description="the version whose reference the window was compared with"),
    ),
    "n_reference": (int | None, Field(description="rows of that reference")),
    "computed_at": (datetime, Field(description="when this result was computed")),
    "revision": (
        int,
        Field(description="1 for the first analysis of the window, then one per re-analysis"),
    ),
    "n_late": (int, Field(description="rows that arrived after the previous revision")),
    "span_start": (
        datetime | None,
        Field(description="a small scope judged on pooled windows: where its span starts"),
    ),
    "reference": (str | None, Field(description="what the scope was judged against")),
}

DriftFeatureOut: Any = create_model(
    "DriftFeatureOut",
    __doc__="One column at one scope: the statistic, the p-values and the verdict.",
    **_result_fields(result_schema.DriftFeature),
)
DriftOut: Any = create_model(
    "DriftOut",
    __doc__="A scope's drift: its verdict (drifted: null when too little data) and features.",
    **_result_fields(result_schema.DriftScope),
    **_STORED_FIELDS,
    drifted_features=(
        list[str],
        Field(description="the model's input features drifted at this scope, by name"),
    ),
    features=(list[DriftFeatureOut], Field(description="every column, by name")),
)
QualityFeatureOut: Any = create_model(
    "QualityFeatureOut",
    __doc__="One column's data quality at one scope.",
    **_result_fields(result_schema.QualityFeature),
)
QualityOut: Any = create_model(
    "QualityOut",
    __doc__="A scope's data quality.",
    **_result_fields(result_schema.QualityScope),
    **_STORED_FIELDS,
    issues=(list[str], Field(description="the features with a data-quality issue, by name")),
    features=(list[QualityFeatureOut], Field(description="every column, by name")),
)
PerformanceOut: Any = create_model(
    "PerformanceOut",
    __doc__="A scope's realised performance (null figures: undefined, or too few labels).",
    **_result_fields(result_schema.PerformanceScope),
    **_STORED_FIELDS,
)
EstimationOut: Any = create_model(
    "EstimationOut",
    __doc__="A scope's performance estimated without labels (NannyML's CBPE): each figure with "
    "its band (<figure>_lower, <figure>_upper), the accuracy realised on the labelled records "
    "so far beside what the estimate promised for them, and the trust verdict: trusted false "
    "means the evidence (trust_evidence) says the reference's calibration no longer holds, "
    "and trust_reason says why in words. status not_classification, no_probabilities, "
    "no_reference_labels or no_reference: the model cannot be estimated (the fleet row alone).",
    **_result_fields(result_schema.EstimationScope),
    **_STORED_FIELDS,
)
MultivariateOut: Any = create_model(
    "MultivariateOut",
    __doc__="A scope's multivariate drift: the mean error with which the reference's principal "
    "components reconstruct the window's rows, against the reference's own error and the "
    "thresholds for a scope of this size; drifted after false-discovery control (null: too "
    "few rows), and NannyML's own verdict for comparison.",
    **_result_fields(result_schema.MultivariateScope),
    **_STORED_FIELDS,
)
_ScopeKind: Any = Literal["fleet", "site", "group", "node"]
ScopeResults: Any = create_model(
    "ScopeResults",
    __doc__="One scope's results of one window; a kind not analysed for it is null.",
    scope=(str, Field(description="fleet, site:NAME, group:NAME or node:NAME")),
    scope_kind=(_ScopeKind, ...),
    scope_key=(str, Field(description='the site, group or node name; "" for the fleet')),
    drift=(DriftOut | None, ...),
    quality=(QualityOut | None, ...),
    performance=(PerformanceOut | None, ...),
    estimation=(
        EstimationOut | None,
        Field(description="null: not estimated for this scope (or the window predates it)"),
    ),
    multivariate=(
        MultivariateOut | None,
        Field(description="null: not analysed for this scope (or the window predates it)"),
    ),
)
WindowResults: Any = create_model(
    "WindowResults",
    window_start=(datetime, ...),
    window_end=(datetime, ...),
    scopes=(list[ScopeResults], Field(description="fleet, then sites, groups, nodes")),
)
ResultList: Any = create_model(
    "ResultList",
    model=(str, ...),
    windows=(
        list[WindowResults],
        Field(description="newest first; empty when no window is analysed yet"),
    ),
)


class WindowSummary(BaseModel):
    """One analysed window: the fleet's drift verdict and how many nodes drifted."""

    window_start: datetime
    window_end: datetime
    n_rows: int = Field(description="records in the window")
    status: str = Field(description="ok, insufficient_data, no_reference, ...")
    drifted: bool | None = Field(description="the fleet's verdict (null: too little data)")
    n_features: int
    n_drifted: int
    share_drifted: float | None
    nodes: int = Field(description="nodes judged in the window")
    nodes_drifting: int = Field(description="nodes whose verdict is drifted")
    revision: int = Field(description="1 for the first analysis, then one per re-analysis")
    n_late: int = Field(description="rows that arrived after the previous revision")
    computed_at: datetime


class WindowList(BaseModel):
    model: str
    windows: list[WindowSummary] = Field(description="newest first")


class NodeHealthOut(BaseModel):
    """A node's status now."""

    name: str
    group_name: str | None
    site: str | None
    role: Literal["node", "labeller"]
    status: Literal["online", "degraded", "offline", "silent", "revoked"] | None = Field(
        description="offline: no heartbeat for MONITOR_HEALTH_OFFLINE_AFTER_SECONDS; silent: "
        "never one; degraded: the health job found trouble (problems); null for a labeller"
    )
    last_seen_at: datetime | None
    last_heartbeat_at: datetime | None
    checked_at: datetime | None = Field(description="when the health job last judged it")
    problems: list[str]
    model_version: str | None = Field(description="the version it last said it runs")
    clock_skew_seconds: float | None = Field(
        description="how far off its last implausible record time was (device minus received)"
    )
    clock_skew_at: datetime | None


class NodeHealthList(BaseModel):
    offline_after_seconds: int
    counts: dict[str, int] = Field(description="nodes per status")
    nodes: list[NodeHealthOut] = Field(description="by name")
