"""Validation of request bodies against the wire contract, with a field path for every error.

Plain Python over the parsed JSON instead of a model library: this runs for every record of
every batch, and a record's problems must reject that record only, not its batch. The rules are
``monitor.wire``'s, the ones the SDK applies before it queues a value. Bodies come from
``body.parse_json``, which has already refused the whole body for what only a parser sees:
NaN and infinite numbers, numbers beyond float64, nesting beyond ``wire.MAX_JSON_DEPTH``, and
strings that are not text (NUL, lone surrogates). What is left to check here is shape, types,
lengths, integer ranges and times.

A time that is a number but implausible (``wire.ts_ok`` is False: before 2000, or more than a
day ahead) is a device's wrong clock, not bad data: the record is kept with the time it was
received as its ``ts`` (what analysis windows it by) and its own time as ``device_ts``
(``DEVICE_TS``); a label or a heartbeat takes the time it was received.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from monitor import wire
from monitor.errors import PayloadTooLarge, ValidationFailed
from monitor.storage import payload

#: Earliest plausible record time (2000-01-01): anything before is a clock that was never set.
MIN_TS = wire.MIN_TS
#: How far ahead of the collector's clock a record time is plausible, in seconds.
MAX_FUTURE_SKEW = wire.MAX_FUTURE_SKEW
#: The key under which a stored record keeps the time its device gave it, when that time was
#: implausible and its received time took its place as ``ts``.
DEVICE_TS = payload.DEVICE_TS

_MAX_INT = wire.MAX_SAFE_INTEGER
_MAX_FLOAT = sys.float_info.max
_MIN_INT = -wire.MAX_SAFE_INTEGER
_FEATURE_TYPES = frozenset({str, int, float, bool, type(None)})
#: The fields of a wire record; other keys are dropped before storage, which would otherwise
#: convert them too (and fail on what Arrow cannot hold, such as a 64-bit unsigned integer).
_RECORD_FIELDS = frozenset(
    {"id", "request_id", "ts", "features", "prediction", "probabilities", "latency_ms"}
)
_TS_RULE = (
    "must be a number of seconds since the Unix epoch (one before 2000-01-01 or more than a "
    "day ahead is taken as a wrong clock: the time it was received is used instead)"
)
_NUMBER_RULE = f"integers must be within +-2**53 ({_MAX_INT:,}), the range float64 holds"


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
    #: When the batch was received (seconds since the epoch): the ``ts`` of its records whose
    #: own time was implausible.
    received: float = 0.0
    #: The device time minus ``received`` of the last record with an implausible time, or
    #: None when every record's time was plausible.
    clock_skew: float | None = None


class _Reject(Exception):
    """One record's problem; ``path`` is relative to the record (``""`` for the record)."""

    def __init__(self, code: str, path: str, message: str) -> None:
        self.code, self.path, self.message = code, path, message


def records_batch(body: Any) -> RecordsBatch:
    """Check a records body: a bad envelope raises; bad records are listed, good ones kept."""
    if type(body) is not dict:
        raise _invalid("body", "must be a JSON object")
    model = _name(body, "model")
    version = _name(body, "model_version")
    batch_id = body.get("batch_id")
    if batch_id is not None and not (type(batch_id) is str and len(batch_id) <= wire.MAX_ID_CHARS):
        raise _invalid("batch_id", f"must be a string of at most {wire.MAX_ID_CHARS} characters")
    items = body.get("records")
    if type(items) is not list:
        raise _invalid("records", "must be a list of records", missing="records" not in body)
    if not items:
        raise _invalid("records", "must hold at least one record")
    if len(items) > wire.MAX_RECORDS_PER_BATCH:
        raise _invalid("records", f"holds more than {wire.MAX_RECORDS_PER_BATCH} records")
    now = time.time()
    batch = RecordsBatch(batch_id, model, version, [], received=now)
    latest = now + MAX_FUTURE_SKEW
    names: set[str] = set()
    keep = batch.records.append
    for index, item in enumerate(items):
        try:
            record = _record(item, latest, names)
        except _Reject as reject:
            path = f"records[{index}]{'.' if reject.path else ''}{reject.path}"
            batch.rejected.append(Rejection(index, reject.code, path, reject.message))
            continue
        ts = record["ts"]
        if not MIN_TS <= ts <= latest:
            # A wrong clock: the record is analysed at the time it arrived.
            batch.clock_skew = ts - now
            record = {**record, "ts": now, DEVICE_TS: float(ts)}
        keep(record)
    return batch


def _record(item: Any, latest: float, names: set[str]) -> dict[str, Any]:
    # The common case runs a handful of C-level checks per record; the loops that name a
    # culprit run only once a cheap check has failed. ``names`` holds the feature and class
    # names already found good in this batch: records of one model repeat the same names.
    if type(item) is not dict:
        raise _Reject("invalid_type", "", "must be an object")
    uid = item.get("id")
    if type(uid) is not str or not 0 < len(uid) <= wire.MAX_ID_CHARS:
        raise _field_error(item, "id", f"a non-empty string of <= {wire.MAX_ID_CHARS}")
    ts = item.get("ts")
    if type(ts) is not float and type(ts) is not int:  # exact types: a bool is no time
        raise _field_error(item, "ts", "a number of seconds since the Unix epoch")
    if not MIN_TS <= ts <= latest and not wire.number_ok(ts):
        # Only a plausible time skips this; an implausible one is kept (see records_batch).
        if type(ts) is int:
            raise _Reject("out_of_range", "ts", _NUMBER_RULE)
        raise _Reject("invalid_value", "ts", "must be finite")
    request_id = item.get("request_id")
    if request_id is not None and (
        type(request_id) is not str or not 0 < len(request_id) <= wire.MAX_ID_CHARS
    ):
        raise _Reject("invalid_type", "request_id", "must be a non-empty short string")
    features = item.get("features")
    if type(features) is not dict:
        raise _field_error(item, "features", "an object of feature name -> value")
    if features:
        _features(features, names)
    prediction: Any = item.get("prediction")
    kind = type(prediction)
    if kind is float:
        if not -_MAX_FLOAT <= prediction <= _MAX_FLOAT:  # NaN compares false
            raise _Reject("invalid_value", "prediction", "must be finite")
    elif kind is int:
        if not _MIN_INT <= prediction <= _MAX_INT:
            raise _Reject("out_of_range", "prediction", _NUMBER_RULE)
    elif kind is not str and kind is not bool:
        raise _field_error(item, "prediction", "a number, string or boolean")
    probabilities = item.get("probabilities")
    if probabilities is not None:
        _probabilities(probabilities, names)
    latency = item.get("latency_ms")
    if latency is not None and not (
        (type(latency) is float and 0.0 <= latency <= _MAX_FLOAT)
        or (type(latency) is int and 0 <= latency <= _MAX_INT)
    ):
        if type(latency) is int and latency > _MAX_INT:
            raise _Reject("out_of_range", "latency_ms", _NUMBER_RULE)
        raise _Reject("invalid_type", "latency_ms", "must be a non-negative number")
    if not _RECORD_FIELDS.issuperset(item):
        return {k: v for k, v in item.items() if k in _RECORD_FIELDS}
    return item


def _features(features: dict[str, Any], names: set[str]) -> None:
    if len(features) > wire.MAX_FEATURES:
        raise _Reject("too_large", "features", f"more than {wire.MAX_FEATURES} features")
    # Names first, so that the paths below name short names.
    if not names.issuperset(features):
        _learn_names(features, names, "features", "feature names")
    kinds = set(map(type, features.values()))
    if not kinds <= _FEATURE_TYPES:
        for name, value in features.items():
            if type(value) not in _FEATURE_TYPES:
                raise _Reject(
                    "invalid_type",
                    f"features.{name}",
                    "must be a number, string, boolean or null",
                )
    if int in kinds:
        for name, value in features.items():
            if type(value) is int and not _MIN_INT <= value <= _MAX_INT:
                raise _Reject("out_of_range", f"features.{name}", _NUMBER_RULE)


def _learn_names(keys: dict[str, Any], names: set[str], path: str, what: str) -> None:
    if "" in keys or max(map(len, keys)) > wire.MAX_ID_CHARS:
        raise _Reject("invalid_value", path, f"{what} must have 1..{wire.MAX_ID_CHARS} chars")
    names.update(keys)


def _probabilities(value: Any, names: set[str]) -> None:
    pairs: Iterable[tuple[Any, Any]]
    if type(value) is dict:
        if not names.issuperset(value):
            _learn_names(value, names, "probabilities", "class names")
        pairs = value.items()
    elif type(value) is list:
        pairs = enumerate(value)
    else:
        raise _Reject(
            "invalid_type",
            "probabilities",
            "must be an object of class -> probability or a list",
        )
    if len(value) > wire.MAX_CLASSES:
        raise _Reject("too_large", "probabilities", f"more than {wire.MAX_CLASSES} classes")
    for key, p in pairs:
        if (type(p) is not float and type(p) is not int) or not 0.0 <= p <= 1.0:
            raise _Reject(
                "invalid_value", f"probabilities.{key}", "must be a number between 0 and 1"
            )


def _field_error(item: dict[str, Any], name: str, expected: str) -> _Reject:
    if name not in item:
        return _Reject("missing_field", name, f"is required: {expected}")
    return _Reject("invalid_type", name, f"must be {expected}")


def labels_body(body: Any) -> tuple[str, list[dict[str, Any]]]:
    """Check a labels body; any bad label rejects the request with every bad field listed."""
    if type(body) is not dict:
        raise _invalid("body", "must be a JSON object")
    model = _name(body, "model")
    items = body.get("labels")
    if type(items) is not list or not items:
        raise _invalid("labels", "must be a non-empty list", missing="labels" not in body)
    if len(items) > wire.MAX_LABELS_PER_REQUEST:
        raise _invalid("labels", f"holds more than {wire.MAX_LABELS_PER_REQUEST} labels")
    now = time.time()
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        path = f"labels[{index}]"
        if type(item) is not dict:
            problems.append(_problem("invalid_type", path, "must be an object"))
            continue
        if not wire.name_ok(item.get("request_id")):
            problems.append(
                _problem(
                    "missing_field" if "request_id" not in item else "invalid_type",
                    f"{path}.request_id",
                    f"must be a string of 1..{wire.MAX_ID_CHARS} characters",
                )
            )
        label = item.get("label")
        if not wire.scalar_ok(label):
            if type(label) is int:
                problems.append(_problem("out_of_range", f"{path}.label", _NUMBER_RULE))
            else:
                code = "missing_field" if "label" not in item else "invalid_type"
                problems.append(
                    _problem(code, f"{path}.label", "must be a number, string or boolean")
                )
        ts = item.get("ts")
        if ts is not None and not wire.ts_ok(ts, now):
            if wire.number_ok(ts):
                item["ts"] = None  # a wrong clock: the label takes the time it arrives
            else:
                problems.append(_problem("invalid_value", f"{path}.ts", _TS_RULE))
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
    """Check a heartbeat body: its time, names, ``sdk`` counters and bounded ``runtime``."""
    if type(body) is not dict:
        raise _invalid("body", "must be a JSON object")
    now = time.time()
    ts = body.get("ts", now)
    if not wire.ts_ok(ts, now):
        if not wire.number_ok(ts):
            raise _invalid("ts", _TS_RULE)
        ts = now  # a wrong clock: the heartbeat is the node's news as of its arrival
    model = _optional_name(body, "model")
    version = _optional_name(body, "model_version")
    sdk = body.get("sdk", {})
    _refuse("sdk", wire.sdk_problem(sdk))
    runtime = body.get("runtime")
    if runtime is not None:
        _refuse("runtime", wire.runtime_problem(runtime))
    return HeartbeatBody(float(ts), model, version, sdk, runtime)


def _refuse(path: str, problem: wire.Problem | None) -> None:
    if problem is None:
        return
    where = f"{path}.{problem.field}" if problem.field else path
    detail = [_problem(problem.code, where, problem.message)]
    if problem.code == "too_large":
        raise PayloadTooLarge(f"{where} {problem.message}", details=detail)
    raise ValidationFailed(f"{where} {problem.message}", details=detail)


def _name(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not wire.name_ok(value):
        raise _invalid(
            key, f"must be a non-empty string of <= {wire.MAX_ID_CHARS}", missing=key not in body
        )
    return str(value)


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
