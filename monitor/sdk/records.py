"""Building wire records and labels from what the host application passes to ``log()``.

Validation is deliberately cheap type checking (no JSON encoding on the caller's thread): it
accepts exactly what ``monitor.wire`` allows, so the worker's later encoding cannot fail.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

from monitor.wire import MAX_FEATURES, MAX_ID_CHARS


class InvalidValue(ValueError):
    """A value the SDK cannot put on the wire; the record is counted as ``invalid``."""


def _uuid4_hex(h: str) -> str:
    # Set the version (4) and RFC 4122 variant bits the way uuid.UUID(version=4) does.
    return h[:12] + "4" + h[13:16] + "89ab"[int(h[16], 16) & 3] + h[17:32]


def new_id() -> str:
    """A random UUID4 as 32 hex digits, ~4x cheaper than ``uuid.uuid4().hex``."""
    return _uuid4_hex(os.urandom(16).hex())


def new_id_pair() -> tuple[str, str]:
    """Two random UUID4 hex ids from one ``os.urandom`` call (request id and record id)."""
    h = os.urandom(32).hex()
    return _uuid4_hex(h), _uuid4_hex(h[32:])


def check_id(value: object, what: str) -> str:
    """``value`` if it is a usable id (non-empty ``str`` of at most MAX_ID_CHARS)."""
    if type(value) is not str and not isinstance(value, str):
        raise InvalidValue(f"{what} must be a str, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_CHARS:
        raise InvalidValue(f"{what} must have 1..{MAX_ID_CHARS} characters")
    return str(value)


def _slow_scalar(value: object) -> Any:
    """Coerce numpy-style scalars (and str/int/float subclasses) to plain JSON scalars."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    item = getattr(value, "item", None)  # numpy scalars and 0-d arrays (np.bool_ is not a Number)
    if callable(item):
        plain = item()
        if type(plain) in (bool, int, float, str):
            return plain
    raise InvalidValue(f"unsupported value of type {type(value).__name__}")


def feature_value(value: object) -> Any:
    """A feature value on the wire: number, string, boolean or null.

    NaN and infinities become null: JSON has no spelling for them, and in a feature vector they
    mean "missing", which the data-quality checks should see rather than lose the record.
    """
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is not float:
        value = _slow_scalar(value)
        if type(value) is not float:
            return value
    return value if math.isfinite(value) else None  # type: ignore[arg-type]


def finite_number(value: object, what: str) -> float | int:
    """A finite int or float (NaN/inf/non-numbers are invalid)."""
    t = type(value)
    if t is not int and t is not float:
        value = _slow_scalar(value)
        t = type(value)
        if t is not int and t is not float:
            raise InvalidValue(f"{what} must be a number")
    if t is float and not math.isfinite(value):  # type: ignore[arg-type]
        raise InvalidValue(f"{what} must be finite")
    return value  # type: ignore[return-value]


def prediction_value(value: object) -> Any:
    """A prediction on the wire: a finite number, a string or a boolean."""
    t = type(value)
    if t is str or t is int or t is bool:
        return value
    if value is None:
        raise InvalidValue("prediction must not be None")
    if t is not float:
        value = _slow_scalar(value)
        if type(value) is not float:
            return value
    if not math.isfinite(value):  # type: ignore[arg-type]
        raise InvalidValue("prediction must be finite")
    return value


def features_value(features: object) -> dict[str, Any]:
    """A copy of ``features`` with plain values, so later mutation by the caller is harmless."""
    if type(features) is not dict and not isinstance(features, Mapping):
        raise InvalidValue(f"features must be a dict, got {type(features).__name__}")
    if len(features) > MAX_FEATURES:
        raise InvalidValue(f"more than {MAX_FEATURES} features")
    out = dict(features)
    # Fast pass: plain str keys and plain finite values need no conversion (the common case).
    for key, value in out.items():
        t = type(value)
        if t is float:
            if value - value != 0.0:  # NaN or infinity
                break
        elif not (t is str or t is int or t is bool or value is None):
            break
        if type(key) is not str:
            break
    else:
        return out
    clean: dict[str, Any] = {}
    for key, value in out.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise InvalidValue("feature names must be str")
            key = str(key)
        clean[key] = feature_value(value)
    return clean


def probabilities_value(probabilities: object) -> dict[str, float] | list[float] | None:
    """None, an object of class -> probability, or a list of probabilities (all finite)."""
    if probabilities is None:
        return None
    if type(probabilities) is dict or isinstance(probabilities, Mapping):
        out: dict[str, float] = {}
        for key, value in probabilities.items():
            if isinstance(key, str):
                name = str(key)
            elif isinstance(key, Integral) and not isinstance(key, bool):
                name = str(int(key))  # class indices: JSON object keys are strings anyway
            else:
                raise InvalidValue("probability class names must be str or int")
            out[name] = finite_number(value, "probability")
        return out
    tolist = getattr(probabilities, "tolist", None)  # numpy arrays, without importing numpy
    if callable(tolist) and not isinstance(probabilities, (list, tuple)):
        probabilities = tolist()
    if isinstance(probabilities, (list, tuple)):
        return [finite_number(v, "probability") for v in probabilities]
    raise InvalidValue("probabilities must be a dict, a list or None")


def build_record(
    record_id: str,
    request_id: str,
    ts: float,
    features: object,
    prediction: object,
    probabilities: object,
    latency_ms: object,
) -> dict[str, Any]:
    """One wire record (see ``monitor.wire``); raises InvalidValue for anything unencodable."""
    return {
        "id": record_id,
        "ts": ts,
        "request_id": request_id,
        "features": features_value(features),
        "prediction": prediction_value(prediction),
        "probabilities": probabilities_value(probabilities),
        "latency_ms": None if latency_ms is None else finite_number(latency_ms, "latency_ms"),
    }


def build_label(request_id: str, label: object, ts: float) -> dict[str, Any]:
    """One wire label ``{"request_id", "label", "ts"}``."""
    return {"request_id": request_id, "label": prediction_value(label), "ts": ts}
