"""Validation of request bodies against the wire contract, with a field path for every error.

Plain Python over the parsed JSON instead of a model library: this runs for every record of
every batch, and a record's problems must reject that record only, not its batch. Bodies come
from ``body.parse_json``, which never yields NaN or infinite numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from monitor import wire
from monitor.errors import ValidationFailed

#: Earliest record time accepted (2000-01-01): anything before is a clock that was never set.
MIN_TS = 946_684_800.0
#: How far ahead of the collector's clock a record time may be, in seconds.
MAX_FUTURE_SKEW = 24 * 3600.0

_NUMBER = (int, float)
_SCALAR = (str, int, float, bool)
_FEATURE_TYPES = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one record of a batch was not stored."""

    index: int
    code: str
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "code": self.code,
            "field": self.field,
            "message": self.message,
        }


@dataclass(slots=True)
class RecordsBatch:
    """A records body whose envelope is valid; ``records`` holds the valid records only."""

    batch_id: str | None
    model: str
    model_version: str
    records: list[dict[str, Any]]
    rejected: list[Rejection] = field(default_factory=list)


class _Reject(Exception):
    def __init__(self, code: str, path: str, message: str) -> None:
        self.code, self.path, self.message = code, path, message


def records_batch(body: Any) -> RecordsBatch:
    """Check a records body: a bad envelope raises; bad records are listed, good ones kept."""
    if not isinstance(body, dict):
        raise _invalid("body", "must be a JSON object")
    model = _name(body, "model")
    version = _name(body, "model_version")
    batch_id = body.get("batch_id")
    if batch_id is not None and not (isinstance(batch_id, str) and len(batch_id) <= 128):
        raise _invalid("batch_id", "must be a string of at most 128 characters")
    items = body.get("records")
    if not isinstance(items, list):
        raise _invalid("records", "must be a list of records", missing="records" not in body)
    if not items:
        raise _invalid("records", "must hold at least one record")
    if len(items) > wire.MAX_RECORDS_PER_BATCH:
        raise _invalid("records", f"holds more than {wire.MAX_RECORDS_PER_BATCH} records")
    batch = RecordsBatch(batch_id, model, version, [])
    now = time.time()
    for index, item in enumerate(items):
        try:
            batch.records.append(_record(item, index, now))
        except _Reject as reject:
            batch.rejected.append(Rejection(index, reject.code, reject.path, reject.message))
    return batch


def _record(item: Any, index: int, now: float) -> dict[str, Any]:
    path = f"records[{index}]"
    if type(item) is not dict:
        raise _Reject("invalid_type", path, "must be an object")
    uid = item.get("id")
    if type(uid) is not str or not 0 < len(uid) <= wire.MAX_ID_CHARS:
        raise _field_error(item, "id", path, f"a non-empty string of <= {wire.MAX_ID_CHARS}")
    ts = item.get("ts")
    if type(ts) is not int and type(ts) is not float:  # exact types: a bool is no time
        raise _field_error(item, "ts", path, "a number of seconds since the Unix epoch")
    if not MIN_TS <= ts <= now + MAX_FUTURE_SKEW:
        raise _Reject("invalid_value", f"{path}.ts", "is before 2000 or more than a day ahead")
    request_id = item.get("request_id")
    if request_id is not None and (
        type(request_id) is not str or not 0 < len(request_id) <= wire.MAX_ID_CHARS
    ):
        raise _Reject("invalid_type", f"{path}.request_id", "must be a non-empty short string")
    features = item.get("features")
    if type(features) is not dict:
        raise _field_error(item, "features", path, "an object of feature name -> value")
    if len(features) > wire.MAX_FEATURES:
        raise _Reject("too_large", f"{path}.features", f"more than {wire.MAX_FEATURES} features")
    # Type checks in C over all values at once; the loop below runs only to name the culprit.
    if features and not _FEATURE_TYPES.issuperset(map(type, features.values())):
        for name, value in features.items():
            if type(value) not in _FEATURE_TYPES:
                raise _Reject(
                    "invalid_type",
                    f"{path}.features.{name}",
                    "must be a number, string, boolean or null",
                )
    if features and ("" in features or max(map(len, features)) > wire.MAX_ID_CHARS):
        raise _Reject(
            "invalid_value",
            f"{path}.features",
            f"feature names must have 1..{wire.MAX_ID_CHARS} chars",
        )
    prediction = item.get("prediction")
    if type(prediction) not in _SCALAR or (
        type(prediction) is float and not math.isfinite(prediction)
    ):
        raise _field_error(item, "prediction", path, "a number, string or boolean")
    probabilities = item.get("probabilities")
    if probabilities is not None:
        _probabilities(probabilities, f"{path}.probabilities")
    latency = item.get("latency_ms")
    if latency is not None and (type(latency) not in _NUMBER or not 0 <= latency < math.inf):
        raise _Reject("invalid_type", f"{path}.latency_ms", "must be a non-negative number")
    return item


def _probabilities(value: Any, path: str) -> None:
    pairs: Iterable[tuple[Any, Any]]
    if type(value) is dict:
        pairs = value.items()
    elif type(value) is list:
        pairs = enumerate(value)
    else:
        raise _Reject("invalid_type", path, "must be an object of class -> probability or a list")
    for key, p in pairs:
        if type(p) not in _NUMBER or not 0.0 <= p <= 1.0:
            raise _Reject("invalid_value", f"{path}.{key}", "must be a number between 0 and 1")


def _field_error(item: dict[str, Any], name: str, path: str, expected: str) -> _Reject:
    if name not in item:
        return _Reject("missing_field", f"{path}.{name}", f"is required: {expected}")
    return _Reject("invalid_type", f"{path}.{name}", f"must be {expected}")


def labels_body(body: Any) -> tuple[str, list[dict[str, Any]]]:
    """Check a labels body; any bad label rejects the request with every bad field listed."""
    if not isinstance(body, dict):
        raise _invalid("body", "must be a JSON object")
    model = _name(body, "model")
    items = body.get("labels")
    if not isinstance(items, list) or not items:
        raise _invalid("labels", "must be a non-empty list", missing="labels" not in body)
    if len(items) > wire.MAX_LABELS_PER_REQUEST:
        raise _invalid("labels", f"holds more than {wire.MAX_LABELS_PER_REQUEST} labels")
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        path = f"labels[{index}]"
        if type(item) is not dict:
            problems.append(_problem("invalid_type", path, "must be an object"))
            continue
        request_id = item.get("request_id")
        if type(request_id) is not str or not 0 < len(request_id) <= wire.MAX_ID_CHARS:
            problems.append(_problem("invalid_type", f"{path}.request_id", "must be a string"))
        label = item.get("label")
        if type(label) not in _SCALAR or (type(label) is float and not math.isfinite(label)):
            code = "missing_field" if "label" not in item else "invalid_type"
            problems.append(_problem(code, f"{path}.label", "must be a number, string or bool"))
        ts = item.get("ts")
        if ts is not None and (type(ts) not in _NUMBER or not MIN_TS <= ts < math.inf):
            problems.append(_problem("invalid_type", f"{path}.ts", "must be epoch seconds"))
    if problems:
        raise ValidationFailed(f"{len(problems)} invalid label field(s)", details=problems)
    return model, items


@dataclass(frozen=True, slots=True)
class HeartbeatBody:
    """A valid heartbeat."""

    ts: float
    model: str | None
    model_version: str | None
    sdk: dict[str, Any]
    runtime: dict[str, Any] | None


def heartbeat_body(body: Any) -> HeartbeatBody:
    """Check a heartbeat body."""
    if not isinstance(body, dict):
        raise _invalid("body", "must be a JSON object")
    ts = body.get("ts", time.time())
    if type(ts) not in _NUMBER or not MIN_TS <= ts < math.inf:
        raise _invalid("ts", "must be a number of seconds since the Unix epoch")
    model = _optional_name(body, "model")
    version = _optional_name(body, "model_version")
    sdk = body.get("sdk", {})
    if not isinstance(sdk, dict):
        raise _invalid("sdk", "must be an object")
    runtime = body.get("runtime")
    if runtime is not None and not isinstance(runtime, dict):
        raise _invalid("runtime", "must be an object")
    return HeartbeatBody(float(ts), model, version, sdk, runtime)


def _name(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if type(value) is not str or not 0 < len(value) <= wire.MAX_ID_CHARS:
        raise _invalid(
            key, f"must be a non-empty string of <= {wire.MAX_ID_CHARS}", missing=key not in body
        )
    return value


def _optional_name(body: dict[str, Any], key: str) -> str | None:
    return None if body.get(key) is None else _name(body, key)


def _problem(code: str, path: str, message: str) -> dict[str, Any]:
    return {"code": code, "field": path, "message": message}


def _invalid(path: str, message: str, *, missing: bool = False) -> ValidationFailed:
    code = "missing_field" if missing else "invalid_field"
    return ValidationFailed(
        f"{path} {'is missing' if missing else message}",
        details=[_problem(code, path, message)],
    )
