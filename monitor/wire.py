"""The SDK <-> collector contract: paths, headers, limits and the shape of every body.

Standard library only: the SDK imports this module on edge nodes that install nothing else.

A records batch (``POST /v1/records``, JSON, optionally gzip-encoded)::

    {"batch_id": "9f1c...", "model": "pump-failure", "model_version": "3",
     "records": [{"id": "0193a1f2...", "ts": 1732530000.125,
                  "features": {"temperature": 71.5, "machine_type": "press"},
                  "prediction": "ok", "probabilities": {"ok": 0.9, "fail": 0.1},
                  "latency_ms": 1.8}]}

``id`` is the record's identity, chosen by the SDK (UUIDv7 as 32 hex digits: time-ordered,
which keeps the collector's indexes appending): a record is stored at most once per node
whatever is retried. ``request_id`` (what labels name) is optional and defaults to ``id``; the
SDK sends it only when the caller chose one. ``ts`` is seconds since the Unix epoch (UTC),
which the SDK rounds to milliseconds. Feature values are numbers, strings, booleans or null;
``prediction`` is a number, string or boolean; ``probabilities`` is an object of class ->
probability, a list of probabilities, or null.

The answer to a batch (200) counts what happened to every record::

    {"accepted": 498, "duplicate": 1,
     "rejected": [{"index": 7, "code": "invalid_type", "field": "records[7].features.rpm",
                   "message": "..."}]}

Rejected records are final: the SDK counts them and never retries them.

Labels (``POST /v1/labels``): ``{"model": "pump-failure", "labels": [{"request_id": "5b0e...",
"label": "fail", "ts": 1732531000.0}]}``; the answer is ``{"accepted": n}``. A label for the same
(model, request id) replaces the earlier one, so retries are harmless.

Heartbeats (``POST /v1/heartbeats``)::

    {"ts": 1732530000.0, "model": "pump-failure", "model_version": "3",
     "sdk": {"logged": 1200, "enqueued": 130, "delivered": 128,
             "dropped": {"sampled_out": 1070, "queue_full": 0, ...},
             "queue_depth": 2, "spool_records": 0, "spool_bytes": 0, "internal_errors": 0},
     "runtime": {...}}

``sdk`` counters are totals since the SDK process started; ``runtime`` is free-form telemetry
from the inference runtime (latency percentiles, errors). The answer is 204.

Every error answer has one envelope: ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from typing import Any, Final

API_PREFIX: Final = "/v1"
RECORDS_PATH: Final = "/v1/records"
LABELS_PATH: Final = "/v1/labels"
HEARTBEATS_PATH: Final = "/v1/heartbeats"

#: Prefix of node tokens, so that a leaked token is recognisable (e.g. by secret scanners).
NODE_TOKEN_PREFIX: Final = "emn_"
#: Prefix of admin tokens.
ADMIN_TOKEN_PREFIX: Final = "ema_"

#: Largest request body accepted on the wire (compressed), in bytes.
MAX_WIRE_BYTES: Final = 5 * 1024 * 1024
#: Largest request body accepted after gzip decoding, in bytes.
MAX_DECODED_BYTES: Final = 20 * 1024 * 1024
#: Most records in one batch.
MAX_RECORDS_PER_BATCH: Final = 10_000
#: Most labels in one labels request.
MAX_LABELS_PER_REQUEST: Final = 10_000
#: Longest record id, request id, model name or model version, in characters.
MAX_ID_CHARS: Final = 128
#: Names of models and nodes: they appear in URL paths, so letters, digits and ``_.-:@`` only.
NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.\-:@]{0,127}$"
#: Most features in one record.
MAX_FEATURES: Final = 1_000

#: HTTP statuses after which the SDK sends the same batch again later.
RETRYABLE_STATUSES: Final = frozenset({408, 429, 502, 503, 504})
#: The status after which the SDK splits a batch in two and sends the halves.
TOO_LARGE_STATUS: Final = 413

#: Reasons for which the SDK drops a record; every drop is counted under one of them.
DROP_REASONS: Final = (
    "sampled_out",  # not chosen by the sampling hash (not an error)
    "queue_full",  # the in-memory queue was full when log() was called
    "spool_overflow",  # the on-disk spool was at its size cap
    "rejected",  # the collector refused the record (4xx other than the retryable ones)
    "expired",  # older than the spool's age cap before it could be delivered
    "too_large",  # a single record larger than the collector accepts
    "invalid",  # log() was called with a value the SDK cannot encode
    "poisoned",  # the collector kept failing (5xx) on this one record; kept in a dead-letter file
)


def records_body(
    batch_id: str, model: str, model_version: str, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """The JSON object of one records batch."""
    return {
        "batch_id": batch_id,
        "model": model,
        "model_version": model_version,
        "records": records,
    }


def labels_body(model: str, labels: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON object of one labels request: ``[{"request_id", "label", "ts"}]``."""
    return {"model": model, "labels": labels}


# --- Model registry and rollout (node side) -------------------------------------------------
#
# ``GET /v1/models/{model}/assignment`` (node token) answers which version this node should
# run, chosen by the collector from the model's deployment (production, canary share, group
# pin)::
#
#     {"model": "pump-failure", "version": "3", "sha256": "<hex of the ONNX bytes>",
#      "size": 48213, "reason": "production" | "canary" | "pinned",
#      "artifact_url": "/v1/models/pump-failure/versions/3/artifact",
#      "card": {...the version's model card...}}
#
# with an ``ETag`` header; a request with ``If-None-Match: <that etag>`` gets 304 while the
# assignment is unchanged. 404 ``no_assignment`` when the model has no deployed version.
# ``GET /v1/models/{model}/versions/{version}/artifact`` (node token) returns the ONNX bytes
# (``application/octet-stream``); the node must check them against ``sha256`` before use.

#: Path template of a node's assignment.
ASSIGNMENT_PATH: Final = "/v1/models/{model}/assignment"
#: Path template of a version's ONNX artifact.
ARTIFACT_PATH: Final = "/v1/models/{model}/versions/{version}/artifact"
#: Why a node runs the version it was assigned.
ASSIGNMENT_REASONS: Final = ("production", "canary", "pinned")


def assignment_path(model: str) -> str:
    """The assignment path of ``model`` (names are URL-safe: letters, digits, ``_.-:@``)."""
    return ASSIGNMENT_PATH.format(model=model)


def artifact_path(model: str, version: str) -> str:
    """The artifact path of one version."""
    return ARTIFACT_PATH.format(model=model, version=version)
