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
from the inference runtime (latency percentiles, errors), bounded (see below). The answer is 204.

What every value may hold is one rule set, below: the SDK applies it before it queues a value
(and counts a value it refuses as ``invalid``, never sending it) and the collector when it
validates a body (and refuses a value with a 4xx naming its field), so that whatever the SDK
accepts, the collector accepts.

Every error answer has one envelope: ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final, NamedTuple

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
#: Names of models and nodes: they appear in URL paths, so letters, digits and ``_.-:@`` only
#: (``\Z``, not ``$``, which would let a trailing newline through).
NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.\-:@]{0,127}\Z"
#: Most features in one record.
MAX_FEATURES: Final = 1_000
#: Most classes in one record's probabilities.
MAX_CLASSES: Final = 1_000

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
    "expired",  # waited in the spool longer than its age cap before it could be delivered
    "too_large",  # a single record larger than the collector accepts
    "invalid",  # log() was called with a value the SDK cannot encode
    "poisoned",  # the collector kept failing (5xx) on this one record; kept in a dead-letter file
)


# --- What a record, a label and a heartbeat may hold ------------------------------------------
#
# * Strings (record and request ids, model names and versions, feature names and values,
#   predictions, labels, class names, heartbeat strings): no NUL character (PostgreSQL text
#   cannot hold one) and no surrogate code point (UTF-8 cannot encode one): ``text_ok``.
# * Numbers (feature values, predictions, labels, probabilities, latencies, times, counters):
#   finite, and an integer's magnitude at most MAX_SAFE_INTEGER: every value is stored and
#   analysed as a float64, which holds integers exactly only that far (a larger integer is an
#   id: send it as a string): ``number_ok``.
# * Names (ids, request ids, model names and versions, feature names, class names): 1 to
#   MAX_ID_CHARS characters of text: ``name_ok``.
# * Times (``ts`` of records, labels and heartbeats): seconds since the Unix epoch, a number
#   that travels (``number_ok``). A time before MIN_TS (2000-01-01: a clock that was never set,
#   such as a device that booted in 1970) or more than MAX_FUTURE_SKEW ahead of the receiver's
#   clock is implausible (``ts_ok`` is False) but not refused: the collector stores such a
#   record at the time it received it, keeps the device's time beside it (``device_ts``) and
#   marks the node as having clock skew; a label or heartbeat takes its received time. The
#   SDK never drops a record for its time: a wrong clock must not lose data.
# * ``latency_ms``: a number >= 0 or null. Probabilities: numbers in [0, 1], at most MAX_CLASSES.
# * A nested array or object where a scalar belongs is refused; a body nested deeper than
#   MAX_JSON_DEPTH is refused whole.
# * Heartbeats: ``sdk`` holds counters (``sdk_problem``); ``runtime`` is free-form telemetry
#   within bounds of depth, entries, string length and size (``runtime_problem``).

#: Earliest plausible time of a record, label or heartbeat (2000-01-01 UTC): earlier is an
#: unset clock.
MIN_TS: Final = 946_684_800.0
#: How far ahead of the receiver's clock a time is plausible, in seconds.
MAX_FUTURE_SKEW: Final = 24 * 3600.0
#: Largest magnitude of an integer value: 2**53, the last integer a float64 holds exactly.
MAX_SAFE_INTEGER: Final = 2**53
#: Deepest nesting of arrays and objects in a request body (the collector's JSON parser's).
MAX_JSON_DEPTH: Final = 1024

#: Most keys of a heartbeat's ``sdk`` object, and of its ``dropped`` object.
MAX_SDK_KEYS: Final = 32
#: Longest counter name, drop reason or string value in a heartbeat's ``sdk`` object.
MAX_SDK_NAME_CHARS: Final = 64
#: Deepest nesting of a heartbeat's ``runtime`` object (the object itself is level 1).
MAX_RUNTIME_DEPTH: Final = 3
#: Most entries (object members and array items, at every level) of a ``runtime`` object.
MAX_RUNTIME_ENTRIES: Final = 1024
#: Longest string (key or value) in a ``runtime`` object: room for a whole error message.
MAX_RUNTIME_STRING_CHARS: Final = 1024
#: Largest ``runtime`` object, in bytes of compact UTF-8 JSON.
MAX_RUNTIME_BYTES: Final = 16 * 1024

_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")


class Problem(NamedTuple):
    """Why a value may not travel: a stable code, the path of the culprit inside the value
    checked (``""`` for the value itself), and what the rule is."""

    code: str
    field: str
    message: str


def text_ok(value: str) -> bool:
    """Whether a string may travel: no NUL and no surrogate code point."""
    if value.isascii():  # the common case, checked in C without a regex
        return "\x00" not in value
    return _NOT_TEXT.search(value) is None


def name_ok(value: object) -> bool:
    """Whether ``value`` is a name: a str of 1..MAX_ID_CHARS characters of text."""
    return type(value) is str and 0 < len(value) <= MAX_ID_CHARS and text_ok(value)


def number_ok(value: object) -> bool:
    """Whether ``value`` is a number that travels: a finite float, or an int (not a bool) of
    magnitude at most MAX_SAFE_INTEGER."""
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER


def ts_ok(value: object, now: float) -> bool:
    """Whether ``value`` is a plausible time: a number of seconds in [MIN_TS, now +
    MAX_FUTURE_SKEW]. An implausible one is a wrong clock (see the rules above)."""
    if type(value) is float or type(value) is int:
        return MIN_TS <= value <= now + MAX_FUTURE_SKEW
    return False


def scalar_ok(value: object) -> bool:
    """Whether ``value`` is a prediction or a label: text, a bool, or a number that travels."""
    if type(value) is str:
        return text_ok(value)
    return type(value) is bool or number_ok(value)


def sdk_problem(sdk: object) -> Problem | None:
    """Why a heartbeat's ``sdk`` object is refused, or None. It holds counters: at most
    MAX_SDK_KEYS names of 1..MAX_SDK_NAME_CHARS characters, each a number >= 0, null, or a
    string of at most MAX_SDK_NAME_CHARS; ``dropped`` is an object of reason -> number >= 0."""
    if type(sdk) is not dict:
        return Problem("invalid_type", "", "must be an object of counters")
    dropped = sdk.get("dropped")
    if dropped is not None:
        if type(dropped) is not dict:
            return Problem("invalid_type", "dropped", "must be an object of reason -> count")
        problem = _counters_problem(dropped, "reasons", top=False)
        if problem is not None:
            where = _join("dropped", problem.field) if problem.field else "dropped"
            return Problem(problem.code, where, problem.message)
    return _counters_problem(sdk, "counters", top=True)


def _counters_problem(counters: dict[Any, Any], what: str, *, top: bool) -> Problem | None:
    if len(counters) > MAX_SDK_KEYS:
        return Problem("too_large", "", f"has more than {MAX_SDK_KEYS} {what}")
    for key, value in counters.items():
        if not (type(key) is str and 0 < len(key) <= MAX_SDK_NAME_CHARS and text_ok(key)):
            return Problem("invalid_value", "", f"names must have 1..{MAX_SDK_NAME_CHARS} chars")
        if top and (value is None or key == "dropped"):  # ``dropped`` is checked by the caller
            continue
        if top and type(value) is str:
            if len(value) > MAX_SDK_NAME_CHARS or not text_ok(value):
                return Problem("invalid_value", key, f"must be at most {MAX_SDK_NAME_CHARS} chars")
        elif not (number_ok(value) and value >= 0):
            return Problem("invalid_value", key, "must be a number >= 0")
    return None


def runtime_problem(runtime: object) -> Problem | None:
    """Why a heartbeat's ``runtime`` object is refused, or None.

    Free-form telemetry within bounds: an object nested at most MAX_RUNTIME_DEPTH deep, with
    at most MAX_RUNTIME_ENTRIES entries in all, strings (keys and values) of text of at most
    MAX_RUNTIME_STRING_CHARS, numbers that travel, and MAX_RUNTIME_BYTES as compact JSON.
    ``model_version``, which the node's health reports, is a name or null.
    """
    if type(runtime) is not dict:
        return Problem("invalid_type", "", "must be an object")
    version = runtime.get("model_version")
    if version is not None and not name_ok(version):
        return Problem("invalid_value", "model_version", f"must be 1..{MAX_ID_CHARS} chars")
    entries = 0
    # Iterative, level by level, stopping at the first problem: a hostile object costs at most
    # MAX_RUNTIME_ENTRIES steps, whatever its size or depth.
    stack: list[tuple[str, Any, int]] = [("", runtime, 1)]
    while stack:
        path, value, depth = stack.pop()
        t = type(value)
        if t is dict or t is list:
            if depth > MAX_RUNTIME_DEPTH:
                return Problem("too_deep", path, f"nests deeper than {MAX_RUNTIME_DEPTH} levels")
            entries += len(value)
            if entries > MAX_RUNTIME_ENTRIES:
                return Problem("too_large", path, f"more than {MAX_RUNTIME_ENTRIES} entries")
            if t is list:
                stack.extend((f"{path}[{i}]", v, depth + 1) for i, v in enumerate(value))
                continue
            for key, v in value.items():
                if type(key) is not str:
                    return Problem("invalid_type", path, "keys must be strings")
                if len(key) > MAX_RUNTIME_STRING_CHARS or not text_ok(key):
                    return Problem("invalid_value", path, _STRING_RULE)
                stack.append((_join(path, key), v, depth + 1))
        elif t is str:
            if len(value) > MAX_RUNTIME_STRING_CHARS or not text_ok(value):
                return Problem("invalid_value", path, _STRING_RULE)
        elif not (value is None or t is bool or number_ok(value)):
            return Problem("invalid_value", path, "must be a finite number, text, bool or null")
    size = len(json.dumps(runtime, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_RUNTIME_BYTES:
        return Problem("too_large", "", f"is {size} bytes as JSON, more than {MAX_RUNTIME_BYTES}")
    return None


_STRING_RULE = f"strings must be text of at most {MAX_RUNTIME_STRING_CHARS} chars"


def _join(path: str, key: str) -> str:
    # Keys are shown as sent, cut short: a field path names the culprit, it does not echo it.
    shown = key if len(key) <= 64 else key[:61] + "..."
    return f"{path}.{shown}" if path else shown


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
